//! The simulated Wiro: accounts and wallets, instances and their status machine, subscriptions,
//! messages and the charge ledger. Everything lives behind one mutex; time-driven changes are
//! applied by [`World::settle`] before every request and by a background ticker.

pub mod billing;
pub mod credentials;
pub mod instances;
pub mod messages;
pub mod oauth;
mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::Catalog;
use crate::clock::SimTime;

/// One of a fixed set of names. An alias, not `&'static str` written out, because serde's
/// derive would borrow a `&str` field from the input (the state file); these are read by
/// name into the known set instead (`crate::state`).
pub type Label = &'static str;

/// Pauses of the status machine, in simulated milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Delays {
    /// Queued (2) → Starting (3).
    pub queue_ms: i64,
    /// Starting (3) → Running (4).
    pub start_ms: i64,
    /// Stopping (1) → Stopped (0), or → Queued when `restartafter`.
    pub stop_ms: i64,
    /// `agent_queue` → `agent_start`.
    pub message_start_ms: i64,
    /// `agent_start` → `agent_end`.
    pub message_reply_ms: i64,
}

impl Default for Delays {
    fn default() -> Self {
        Self {
            queue_ms: 500,
            start_ms: 500,
            stop_ms: 300,
            message_start_ms: 200,
            message_reply_ms: 300,
        }
    }
}

impl Delays {
    /// Sets the time from Start to Running (split between Queued and Starting).
    pub fn with_start_delay_ms(mut self, ms: i64) -> Self {
        self.queue_ms = ms / 2;
        self.start_ms = ms - ms / 2;
        self
    }

    /// Every pause at `ms` (tests use small values).
    pub fn uniform(ms: i64) -> Self {
        Self {
            queue_ms: ms,
            start_ms: ms,
            stop_ms: ms,
            message_start_ms: ms,
            message_reply_ms: ms,
        }
    }
}

/// A Wiro account (one project key) with its prepaid wallet.
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    /// The project's API key.
    pub api_key: String,
    /// Signature projects have a secret.
    #[serde(skip)]
    pub api_secret: Option<String>,
    /// The account's user uuid.
    pub uuid: String,
    /// Wallet in cents.
    #[serde(skip)]
    pub wallet_cents: i64,
    /// Teams the account belongs to.
    pub teams: Vec<String>,
}

/// A subscription of one instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subscription {
    /// `starter` or `pro`.
    pub plan: String,
    /// `prepaid` or `stripe`.
    pub provider: String,
    /// Cents per period.
    pub amount_cents: i64,
    /// Paid until.
    pub period_end: SimTime,
    /// `active` or `expired`.
    pub active: bool,
    /// CancelSubscription scheduled the end.
    pub cancel_at_period_end: bool,
}

/// A purchased extra-credit pack.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pack {
    /// Credits left in it.
    pub credits: i64,
    /// When the rest is forfeited (6 months after purchase).
    pub expires_at: SimTime,
}

/// A deployed instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    /// Numeric id.
    pub id: i64,
    /// Guid.
    pub guid: String,
    /// Owner account's uuid.
    pub owner_uuid: String,
    /// API key of the account whose wallet pays renewals.
    pub payer_key: String,
    /// Team, when deployed with a `teamGUID` header.
    pub team_guid: Option<String>,
    /// Template id.
    pub template_id: i64,
    /// Display name.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Categories (Update may change them).
    pub categories: Vec<String>,
    /// Pinned.
    pub pinned: bool,
    /// Status 0–6.
    pub status: i64,
    /// Stopping will re-queue instead of ending at Stopped.
    pub restart_after: bool,
    /// When the current timed status (1, 2, 3) moves on.
    pub transition_at: Option<SimTime>,
    /// Credential groups with values.
    pub credentials: Map<String, Value>,
    /// Custom skills with values.
    pub custom_skills: Vec<Value>,
    /// Skill switches.
    pub skills: Value,
    /// Subscription, if any.
    pub subscription: Option<Subscription>,
    /// Monthly credits left.
    pub monthly_credits: i64,
    /// Extra-credit packs, oldest first.
    pub packs: Vec<Pack>,
    /// Timestamps.
    pub created_at: SimTime,
    /// Real (not simulated) creation time: the `list_lag` fault ages instances in real time,
    /// since tests freeze the simulated clock. Not kept in a state file: a loaded instance
    /// counts as created at load.
    #[serde(skip, default = "std::time::Instant::now")]
    pub created_wall: std::time::Instant,
    /// Last change.
    pub updated_at: SimTime,
    /// Last Start.
    pub started_at: Option<SimTime>,
    /// Last time it reached Running.
    pub running_at: Option<SimTime>,
}

impl Instance {
    /// Extra credits left across packs.
    pub fn extra_credits(&self) -> i64 {
        self.packs.iter().map(|p| p.credits).sum()
    }

    /// `setuprequired`: status 6 or required credentials missing.
    pub fn setup_required(&self) -> bool {
        self.status == 6 || !credentials::missing_required(&self.credentials).is_empty()
    }
}

/// A message sent to an instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    /// Guid.
    pub guid: String,
    /// Token for polling.
    pub token: String,
    /// Instance guid.
    pub instance_guid: String,
    /// Sender uuid.
    pub uuid: String,
    /// Session key.
    pub session: String,
    /// User text.
    pub content: String,
    /// Answer.
    pub response: String,
    /// Accumulated output.
    pub debugoutput: String,
    /// `agent_queue` ... `agent_end`.
    #[serde(deserialize_with = "crate::state::message_status")]
    pub status: Label,
    /// Generation metadata once done.
    pub metadata: Value,
    /// Webhook URL.
    pub callback_url: Option<String>,
    /// Order of creation (for `before` cursors).
    pub seq: u64,
    /// Times.
    pub created_at: SimTime,
    /// Start of processing.
    pub started_at: Option<SimTime>,
    /// End.
    pub ended_at: Option<SimTime>,
    /// Next timed transition.
    pub next_at: Option<SimTime>,
}

/// One wallet charge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Charge {
    /// Sequence number.
    pub id: u64,
    /// API key of the charged account.
    pub account: String,
    /// Instance guid.
    pub instance_guid: String,
    /// `deploy`, `renewal`, `upgrade` or `extra_credits`.
    #[serde(deserialize_with = "crate::state::charge_kind")]
    pub kind: Label,
    /// Dollars.
    pub amount: f64,
    /// Unix seconds (simulated).
    pub at: i64,
}

/// A webhook to deliver.
#[derive(Clone, Debug)]
pub struct Callback {
    /// Target.
    pub url: String,
    /// JSON body.
    pub body: Value,
}

/// A refusal: Wiro's envelope with an HTTP status (200 for business rules, 401 for auth).
#[derive(Clone, Debug)]
pub struct SimError {
    /// HTTP status.
    pub http: u16,
    /// Wiro error code.
    pub code: i64,
    /// Wiro's message.
    pub message: String,
}

impl SimError {
    /// A business-rule refusal (HTTP 200, code 0).
    pub fn refuse(message: impl Into<String>) -> Self {
        Self {
            http: 200,
            code: 0,
            message: message.into(),
        }
    }
}

/// Shorthand for handler results.
pub type SimResult = Result<Value, SimError>;

/// Everything the simulator knows.
#[derive(Debug)]
pub struct World {
    /// Templates.
    pub catalog: Catalog,
    /// Accounts by API key.
    pub accounts: BTreeMap<String, Account>,
    /// Instances by guid.
    pub instances: BTreeMap<String, Instance>,
    /// Messages by guid.
    pub messages: BTreeMap<String, Message>,
    /// Every charge.
    pub ledger: Vec<Charge>,
    /// Webhooks waiting to be sent.
    pub outbox: Vec<Callback>,
    /// Pauses.
    pub delays: Delays,
    /// Requests seen per endpoint path (faulted ones included).
    pub calls: BTreeMap<String, u64>,
    /// Render fields the docs do not show (for experiments only).
    pub undocumented_fields: bool,
    /// OAuth Connects waiting for the browser, by state.
    pub oauth_states: BTreeMap<String, oauth::PendingConnect>,
    /// Facebook pages to choose from after a callback, by instance guid.
    pub fb_pending: BTreeMap<String, oauth::PendingPages>,
    pub(crate) next_instance_id: i64,
    pub(crate) next_message_seq: u64,
    /// When something next falls due for each instance (status transition, earliest pack
    /// expiry, active period end), earliest first: [`World::settle`] visits only the instances
    /// whose time has come. Valid while `indexed`.
    due: BTreeSet<(SimTime, String)>,
    /// Each indexed instance's entry in `due`, to move it when the instance changes.
    due_of: HashMap<String, SimTime>,
    /// `due` holds every instance's next time: nothing was written since the last pass over
    /// them all, other than writes to one instance that re-indexed it
    /// ([`World::changed_one`]). Any other mutable access clears it ([`World::touched`]).
    indexed: bool,
    /// The earliest message step (`SimTime::MAX` for none). Valid while `indexed`.
    messages_due: SimTime,
    /// Passes over every instance so far (tests check that reads skip them).
    pub(crate) settle_passes: u64,
}

impl World {
    /// An empty world with `catalog`.
    pub fn new(catalog: Catalog, delays: Delays) -> Self {
        Self {
            catalog,
            accounts: BTreeMap::new(),
            instances: BTreeMap::new(),
            messages: BTreeMap::new(),
            ledger: Vec::new(),
            outbox: Vec::new(),
            delays,
            calls: BTreeMap::new(),
            undocumented_fields: false,
            oauth_states: BTreeMap::new(),
            fb_pending: BTreeMap::new(),
            next_instance_id: 100,
            next_message_seq: 0,
            due: BTreeSet::new(),
            due_of: HashMap::new(),
            indexed: false,
            messages_due: SimTime::MAX,
            settle_passes: 0,
        }
    }

    /// Applies everything that became due by `now`: status transitions, renewals and expiries
    /// (in time order across instances, since they share wallets), pack expiry, and messages.
    /// Every call settles first, so a settle must not cost a walk over every instance: after a
    /// pass over them all it keeps when each next falls due, and then visits only the instances
    /// whose time has come (a sweep's 50,000 Details over 100,000 agents walked 5·10⁹
    /// instances before the first cut of this; a bulk run's every Start, due at once with no
    /// start delay, walked them all again). A write other than one instance's
    /// ([`World::changed_one`]) makes the next settle walk them all.
    pub fn settle(&mut self, now: SimTime) {
        if !self.indexed {
            self.settle_all(now);
            return;
        }
        let delays = self.delays;
        let mut period_ended = false;
        let mut visited = Vec::new();
        while self.due.first().is_some_and(|(at, _)| *at <= now) {
            let Some((_, guid)) = self.due.pop_first() else {
                break;
            };
            self.due_of.remove(&guid);
            if let Some(instance) = self.instances.get_mut(&guid) {
                period_ended |= settle_instance(instance, now, delays);
            }
            visited.push(guid);
        }
        if period_ended {
            billing::renew_or_expire_due(self, now);
            // A renewal moved periods and wallets: the next call walks every instance.
            self.indexed = false;
        } else {
            // Indexed again only once settled: an ended period stays due until it is renewed.
            for guid in visited {
                self.index(&guid);
            }
        }
        if self.messages_due <= now {
            messages::settle_messages(self, now);
            // A message's end may spend credits or stop an agent: the next call walks them all.
            self.indexed = false;
        }
    }

    /// The pass over every instance, which rebuilds the index of when each falls due next.
    fn settle_all(&mut self, now: SimTime) {
        self.settle_passes += 1;
        let delays = self.delays;
        let mut period_ended = false;
        self.due.clear();
        self.due_of.clear();
        for instance in self.instances.values_mut() {
            period_ended |= settle_instance(instance, now, delays);
            let next = next_due(instance);
            if next < SimTime::MAX {
                self.due.insert((next, instance.guid.clone()));
                self.due_of.insert(instance.guid.clone(), next);
            }
        }
        if period_ended {
            billing::renew_or_expire_due(self, now);
        }
        messages::settle_messages(self, now);
        self.messages_due = self
            .messages
            .values()
            .filter_map(|m| m.next_at)
            .min()
            .unwrap_or(SimTime::MAX);
        // A renewal moved periods and wallets: the next call looks again.
        self.indexed = !period_ended;
    }

    /// Moves instance `guid`'s entry in the index of due times to what it is now.
    fn index(&mut self, guid: &str) {
        if let Some(old) = self.due_of.remove(guid) {
            self.due.remove(&(old, guid.to_owned()));
        }
        if let Some(next) = self.instances.get(guid).map(next_due)
            && next < SimTime::MAX
        {
            self.due.insert((next, guid.to_owned()));
            self.due_of.insert(guid.to_owned(), next);
        }
    }

    /// Marks the world as possibly changed anywhere: the next [`World::settle`] walks it.
    pub fn touched(&mut self) {
        self.indexed = false;
    }

    /// Records that a write changed instance `guid` alone (its status, timers, subscription or
    /// packs; the wallet and ledger at most besides, which nothing falls due on): the next
    /// [`World::settle`] needs no walk for it.
    pub fn changed_one(&mut self, guid: &str) {
        if self.indexed {
            self.index(guid);
        }
    }

    /// Charges `cents` to the account with `api_key` for `instance_guid`, or refuses with
    /// Wiro's wallet error. Nothing is written on refusal.
    pub fn charge(
        &mut self,
        api_key: &str,
        instance_guid: &str,
        kind: &'static str,
        cents: i64,
        now: SimTime,
    ) -> Result<(), SimError> {
        let account = self
            .accounts
            .get_mut(api_key)
            .ok_or_else(|| SimError::refuse("Project authorization is not founded."))?;
        if account.wallet_cents < cents {
            return Err(SimError::refuse(crate::money::wallet_error(
                cents,
                account.wallet_cents,
            )));
        }
        account.wallet_cents -= cents;
        let id = self.ledger.len() as u64 + 1;
        self.ledger.push(Charge {
            id,
            account: api_key.to_owned(),
            instance_guid: instance_guid.to_owned(),
            kind,
            amount: crate::money::dollars(cents),
            at: crate::clock::secs(now),
        });
        Ok(())
    }

    pub(crate) fn next_instance_id(&mut self) -> i64 {
        self.next_instance_id += 1;
        self.next_instance_id
    }

    pub(crate) fn next_message_seq(&mut self) -> u64 {
        self.next_message_seq += 1;
        self.next_message_seq
    }
}

/// Settles one instance to `now` (its timed status, its expired packs); whether its period
/// ended (the caller renews or expires every such one together, in time order).
fn settle_instance(inst: &mut Instance, now: SimTime, delays: Delays) -> bool {
    instances::settle_status(inst, now, delays);
    billing::forfeit_expired_packs(inst, now);
    billing::period_ended(inst, now)
}

/// When `inst`, settled, next changes by itself: its status transition, its earliest pack's
/// expiry or its active subscription's period end.
fn next_due(inst: &Instance) -> SimTime {
    let transition = inst.transition_at.unwrap_or(SimTime::MAX);
    let pack = inst
        .packs
        .iter()
        .map(|p| p.expires_at)
        .min()
        .unwrap_or(SimTime::MAX);
    let period = inst
        .subscription
        .as_ref()
        .filter(|sub| sub.active)
        .map_or(SimTime::MAX, |sub| sub.period_end);
    transition.min(pack).min(period)
}
