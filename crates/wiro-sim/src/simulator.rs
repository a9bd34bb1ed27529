//! The in-process handle: configuration, the shared world, and the controls tests use directly
//! (the admin HTTP API calls the same methods).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::clock::{DAY_MS, SimClock, SimTime, secs};
use crate::faults::{FaultRule, FaultSpec, Faults};
use crate::money::{cents, dollars};
use crate::world::{Account, Charge, Delays, World, instances};

/// One account (project) the simulator accepts.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    /// API key.
    pub api_key: String,
    /// Secret for signature projects.
    pub api_secret: Option<String>,
    /// Starting wallet in dollars.
    pub wallet: f64,
}

/// How to build a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Accounts.
    pub accounts: Vec<AccountSpec>,
    /// A team every account belongs to.
    pub team_guid: Option<String>,
    /// Templates.
    pub catalog: Catalog,
    /// Status-machine pauses.
    pub delays: Delays,
    /// Pause between webhook attempts (Wiro: 2 s).
    pub webhook_retry_delay: Duration,
    /// Also render fields Wiro does not document (`subscription.cancelatperiodend`,
    /// `pricing.extracredits`): for experiments, never for the reseller's tests.
    pub undocumented_fields: bool,
}

impl SimConfig {
    /// One key-only account with `wallet` dollars, the default catalog and default delays.
    pub fn with_account(api_key: &str, wallet: f64) -> Self {
        Self {
            accounts: vec![AccountSpec {
                api_key: api_key.to_owned(),
                api_secret: None,
                wallet,
            }],
            team_guid: None,
            catalog: Catalog::default_catalog(),
            delays: Delays::default(),
            webhook_retry_delay: Duration::from_secs(2),
            undocumented_fields: false,
        }
    }
}

/// An account as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AccountView {
    /// API key.
    pub api_key: String,
    /// Account uuid.
    pub uuid: String,
    /// Wallet in dollars.
    pub wallet: f64,
    /// Teams.
    pub teams: Vec<String>,
    /// Signature project.
    pub signature: bool,
}

/// An instance as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceView {
    /// Guid.
    pub guid: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: Option<String>,
    /// Status 0–6.
    pub status: i64,
    /// Owner's API key.
    pub account: String,
    /// Team.
    pub team_guid: Option<String>,
    /// Template slug.
    pub template: String,
    /// Plan.
    pub plan: Option<String>,
    /// Subscription active.
    pub subscription_active: bool,
    /// Period end, Unix seconds.
    pub period_end: Option<i64>,
    /// Pending cancel.
    pub cancel_at_period_end: bool,
    /// Monthly credits left.
    pub monthly_credits: i64,
    /// Extra credits left.
    pub extra_credits: i64,
    /// Pinned.
    pub pinned: bool,
}

pub(crate) struct Inner {
    pub(crate) world: Mutex<World>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) clock: SimClock,
    pub(crate) webhook_retry_delay: Duration,
    /// `/v1` calls being answered now, and the most ever at once.
    pub(crate) calls_in_flight: AtomicUsize,
    pub(crate) most_calls_in_flight: AtomicUsize,
}

/// The world settled to now, read-only (from [`Simulator::world_read`]).
pub struct WorldView<'a>(MutexGuard<'a, World>);

impl std::ops::Deref for WorldView<'_> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.0
    }
}

/// The world, settled, for a write that changes at most one instance (and the wallet and
/// ledger): the holder names that instance with [`OneInstanceWrite::wrote`], which re-indexes
/// it alone; a guard dropped without naming one counts as any write (the next settle walks
/// every instance).
pub struct OneInstanceWrite<'a> {
    world: MutexGuard<'a, World>,
    named: bool,
}

impl OneInstanceWrite<'_> {
    /// The write changed instance `guid` alone.
    pub fn wrote(mut self, guid: &str) {
        self.world.changed_one(guid);
        self.named = true;
    }
}

impl std::ops::Deref for OneInstanceWrite<'_> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.world
    }
}

impl std::ops::DerefMut for OneInstanceWrite<'_> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Drop for OneInstanceWrite<'_> {
    fn drop(&mut self) {
        if !self.named {
            self.world.touched();
        }
    }
}

/// One `/v1` call being answered (counted in flight until dropped).
pub(crate) struct CallInFlight(Simulator);

impl Drop for CallInFlight {
    fn drop(&mut self) {
        self.0.inner.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running simulator's state and controls. Cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Simulator")
    }
}

impl Simulator {
    /// A simulator in the state `config` describes.
    pub fn new(config: SimConfig) -> Self {
        let mut catalog = config.catalog;
        catalog.set_undocumented_fields(config.undocumented_fields);
        let mut world = World::new(catalog, config.delays);
        world.undocumented_fields = config.undocumented_fields;
        for spec in config.accounts {
            world.accounts.insert(
                spec.api_key.clone(),
                Account {
                    api_key: spec.api_key,
                    api_secret: spec.api_secret,
                    uuid: uuid::Uuid::new_v4().to_string(),
                    wallet_cents: cents(spec.wallet),
                    teams: config.team_guid.iter().cloned().collect(),
                },
            );
        }
        Self {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                faults: Mutex::new(Faults::default()),
                clock: SimClock::default(),
                webhook_retry_delay: config.webhook_retry_delay,
                calls_in_flight: AtomicUsize::new(0),
                most_calls_in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// The world, settled to now, to change. Keep the guard short: every request waits on it.
    pub fn world(&self) -> MutexGuard<'_, World> {
        let mut world = self.settled();
        // Whatever the holder writes, the next settle must see.
        world.touched();
        world
    }

    /// The world, settled to now, for a write to one instance (see [`OneInstanceWrite`]).
    pub fn world_for_one(&self) -> OneInstanceWrite<'_> {
        OneInstanceWrite {
            world: self.settled(),
            named: false,
        }
    }

    /// The world, settled to now, to read: a read leaves the next settle free to skip its pass
    /// over every instance when nothing fell due.
    pub fn world_read(&self) -> WorldView<'_> {
        WorldView(self.settled())
    }

    fn settled(&self) -> MutexGuard<'_, World> {
        let mut world = self
            .inner
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        world.settle(self.inner.clock.now());
        world
    }

    /// The webhooks waiting to be sent, taken (what is due settled first). Not a change the
    /// next settle needs to look at.
    pub(crate) fn take_outbox(&self) -> Vec<crate::world::Callback> {
        std::mem::take(&mut self.settled().outbox)
    }

    /// How many times a call has walked every instance to settle the world.
    pub fn settle_passes(&self) -> u64 {
        self.settled().settle_passes
    }

    /// Counts one call to `endpoint`. The world is not settled for it: a count changes no
    /// agent, and settling walks every instance (the call's own `world()` settles).
    pub(crate) fn count_call(&self, endpoint: &str) {
        let mut world = self
            .inner
            .world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match world.calls.get_mut(endpoint) {
            Some(count) => *count += 1,
            None => {
                world.calls.insert(endpoint.to_owned(), 1);
            }
        }
    }

    /// Counts a `/v1` call in flight until the returned guard is dropped.
    pub(crate) fn call_begins(&self) -> CallInFlight {
        let now = self.inner.calls_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner
            .most_calls_in_flight
            .fetch_max(now, Ordering::SeqCst);
        CallInFlight(self.clone())
    }

    /// The `/v1` calls being answered now.
    pub fn calls_in_flight(&self) -> usize {
        self.inner.calls_in_flight.load(Ordering::SeqCst)
    }

    /// The most `/v1` calls this simulator has answered at once: a client's concurrency as the
    /// upstream sees it.
    pub fn most_calls_in_flight(&self) -> usize {
        self.inner.most_calls_in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Simulated now (ms).
    pub fn now(&self) -> SimTime {
        self.inner.clock.now()
    }

    /// Moves the clock forward and applies what fell due (renewals, expiries, transitions).
    pub fn advance_ms(&self, ms: i64) -> SimTime {
        let now = self.inner.clock.advance_ms(ms);
        drop(self.world_read());
        now
    }

    /// Freezes simulated time: only `advance_*` moves it (see [`SimClock::freeze`]).
    pub fn freeze_clock(&self) -> SimTime {
        let now = self.inner.clock.freeze();
        drop(self.world_read());
        now
    }

    /// Lets simulated time follow real time again.
    pub fn resume_clock(&self) -> SimTime {
        self.inner.clock.resume()
    }

    /// Moves the clock forward by whole days.
    pub fn advance_days(&self, days: i64) -> SimTime {
        self.advance_ms(days * DAY_MS)
    }

    /// Adds a fault rule.
    ///
    /// # Errors
    /// A message naming the invalid field.
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u64, String> {
        spec.validate()?;
        Ok(self.faults().add(spec))
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.faults().clear();
    }

    /// Active fault rules.
    pub fn fault_rules(&self) -> Vec<FaultRule> {
        self.faults().list()
    }

    /// Every wallet charge so far.
    pub fn ledger(&self) -> Vec<Charge> {
        self.world_read().ledger.clone()
    }

    /// Accounts and balances.
    pub fn accounts(&self) -> Vec<AccountView> {
        self.world_read()
            .accounts
            .values()
            .map(|a| AccountView {
                api_key: a.api_key.clone(),
                uuid: a.uuid.clone(),
                wallet: dollars(a.wallet_cents),
                teams: a.teams.clone(),
                signature: a.api_secret.is_some(),
            })
            .collect()
    }

    /// Sets an account's wallet.
    ///
    /// # Errors
    /// When no account has that key, or the balance is negative.
    pub fn set_wallet(&self, api_key: &str, balance: f64) -> Result<(), String> {
        if !balance.is_finite() || balance < 0.0 {
            return Err(format!(
                "balance must be a non-negative number, got {balance}"
            ));
        }
        let mut world = self.world();
        let account = world
            .accounts
            .get_mut(api_key)
            .ok_or_else(|| "no account has that API key".to_owned())?;
        account.wallet_cents = cents(balance);
        Ok(())
    }

    /// Every instance of every account.
    pub fn instances(&self) -> Vec<InstanceView> {
        let world = self.world_read();
        world
            .instances
            .values()
            .map(|inst| {
                let sub = inst.subscription.as_ref();
                InstanceView {
                    guid: inst.guid.clone(),
                    title: inst.title.clone(),
                    description: inst.description.clone(),
                    status: inst.status,
                    account: inst.payer_key.clone(),
                    team_guid: inst.team_guid.clone(),
                    template: world
                        .catalog
                        .by_id(inst.template_id)
                        .map(|t| t.slug.clone())
                        .unwrap_or_default(),
                    plan: sub.map(|s| s.plan.clone()),
                    subscription_active: sub.is_some_and(|s| s.active),
                    period_end: sub.map(|s| secs(s.period_end)),
                    cancel_at_period_end: sub.is_some_and(|s| s.cancel_at_period_end),
                    monthly_credits: inst.monthly_credits,
                    extra_credits: inst.extra_credits(),
                    pinned: inst.pinned,
                }
            })
            .collect()
    }

    /// Forces an instance's status (e.g. 5 to simulate a crash).
    ///
    /// # Errors
    /// Unknown guid or a status outside 0–6.
    pub fn force_status(&self, guid: &str, status: i64) -> Result<(), String> {
        if !(0..=6).contains(&status) {
            return Err(format!("status must be 0-6, got {status}"));
        }
        let now = self.now();
        let mut world = self.world();
        let inst = world
            .instances
            .get_mut(guid)
            .ok_or_else(|| "no instance has that guid".to_owned())?;
        instances::force_status(inst, status, now);
        Ok(())
    }

    /// Completes the Stripe checkout of a deploy made without `useprepaid`.
    ///
    /// # Errors
    /// Unknown guid, an existing subscription, or no price for `plan`.
    pub fn complete_checkout(&self, guid: &str, plan: &str) -> Result<(), String> {
        let now = self.now();
        instances::complete_checkout(&mut self.world(), guid, plan, now)
    }

    /// Deletes an instance as if removed behind our back.
    ///
    /// # Errors
    /// Unknown guid.
    pub fn delete_instance(&self, guid: &str) -> Result<(), String> {
        self.world()
            .instances
            .remove(guid)
            .map(|_| ())
            .ok_or_else(|| "no instance has that guid".to_owned())
    }

    /// Spends credits as the runtime would (monthly first, then packs).
    ///
    /// # Errors
    /// Unknown guid or a negative amount.
    pub fn consume_credits(&self, guid: &str, credits: i64) -> Result<(), String> {
        if credits < 0 {
            return Err(format!("credits must be non-negative, got {credits}"));
        }
        let mut world = self.world();
        let inst = world
            .instances
            .get_mut(guid)
            .ok_or_else(|| "no instance has that guid".to_owned())?;
        crate::world::billing::consume(inst, credits);
        Ok(())
    }

    /// Requests seen per endpoint path, faulted ones included.
    pub fn call_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.world_read().calls.clone()
    }
}
