//! The protocol every consequential upstream call follows, written once:
//!
//! 1. **Intent.** [`begin`] commits an `operations` row with the facts a lost answer will be
//!    judged against, and a lease measured on the database's clock. Calls of one flight never
//!    overlap on an instance.
//! 2. **Deadline.** The call goes through [`Held::client`], which begins no request once the
//!    lease is over and lets none outlive it: a process that wakes after its lease cannot send.
//! 3. **Outcome.** An answer settles the operation at once. A refusal Wiro documents settles it
//!    `refused`; anything else that may have reached Wiro leaves it `unknown`.
//! 4. **Evidence.** Only after the lease (compared in SQL) may anyone judge an unresolved
//!    operation, by evidence that cannot be confused ([`Evidence`], gathered per kind). "Not
//!    applied" needs two checks a quiet period apart; checks that cannot decide are counted and
//!    alerted.
//! 5. **Fence.** [`settle`] writes the result, the ledger rows, the instance's new facts and the
//!    audit entry in one transaction, only if the operation is still unresolved.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Change, Instance};
use domain::db::ledger::{self, NewCharge};
use domain::db::operations::{self, NewOperation, Operation, Settlement};
use domain::db::{alerts, idempotency, messages};
use domain::ids::OperationId;
use domain::model::{InstanceState, OperationKind, OperationState};
use serde_json::json;
use tokio::time::Instant;
use wiro_client::models::UserAgent;

use crate::Services;
use crate::observe;

/// Subtracted from the lease when deriving the local deadline, for clock-rate differences.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// Who asks for a call: the audit actor and the request.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    /// `customer:<ext>`, `ops:<sub>`, `worker:<name>`.
    pub actor: &'a str,
    /// The HTTP request or job id.
    pub request_id: Option<&'a str>,
    /// The customer's spending limit applies (its own requests and automatic top-ups); ops
    /// actions and renewals are never refused.
    pub capped: bool,
}

/// An `Idempotency-Key` claim the operation answers for: linked in the intent's transaction,
/// so a replay finds the operation and never performs the call again.
#[derive(Clone, Copy, Debug)]
pub struct KeyClaim<'a> {
    /// The key's owner.
    pub caller: &'a str,
    /// The key.
    pub key: &'a str,
}

/// An operation whose lease this process holds.
#[derive(Debug)]
pub struct Held {
    /// The operation.
    pub op: Operation,
    deadline: Instant,
}

impl Held {
    /// The Wiro client for this call: no request begins after the lease, none outlives it.
    pub fn client(&self, services: &Services) -> wiro_client::Client {
        services.wiro.until(self.deadline)
    }

    pub(crate) fn new(op: Operation, asked_at: Instant) -> Self {
        // The lease began at the database's now(), after `asked_at`: counting from `asked_at`
        // ends our deadline no later than the lease.
        let deadline = asked_at + op.lease_left().saturating_sub(DEADLINE_MARGIN);
        Self { op, deadline }
    }
}

/// Commits the intent (and links `key` to it). `None` when the flight is busy — or, for a
/// Deploy, when the order already has its instance. With `spend` (the cents the call is
/// expected to charge), refuses it over the customer's monthly limit.
///
/// # Errors
/// Database errors.
pub async fn begin(
    services: &Services,
    new: NewOperation<'_>,
    key: Option<KeyClaim<'_>>,
    spend: Option<i64>,
) -> domain::Result<Option<Held>> {
    let asked_at = Instant::now();
    let mut tx = services.pool.begin().await?;
    // Under the instance's row lock (which recording a result also takes), so a caller that
    // read the instance before another's Deploy was recorded cannot start a second one.
    let Some(instance) = instances::lock_facts(&mut *tx, new.instance).await? else {
        return Ok(None);
    };
    if new.fence.is_some_and(|version| version != instance.version) {
        return Ok(None);
    }
    if new.kind == OperationKind::Deploy && instance.wiro_guid.is_some() {
        return Ok(None);
    }
    if new.kind == OperationKind::Deploy && instance.state == InstanceState::Pending {
        // The intent is what ends `pending`, in its transaction: an order is `pending` exactly
        // while no Deploy intent was ever written, so one deleted by now is never deployed.
        if instance.deleted_at.is_some() {
            return Ok(None);
        }
        let deploying = Change::to(InstanceState::Deploying);
        instances::update(&mut *tx, instance.id, instance.version, deploying).await?;
    }
    if let Some(cents) = spend {
        // In the intent's transaction, under the customer's row lock: two calls cannot both
        // pass the limit.
        domain::limits::check_spend(
            &mut tx,
            instance.customer_id,
            &services.settings.limits,
            cents,
        )
        .await?;
    }
    let Some(op) = operations::begin(&mut *tx, new).await? else {
        return Ok(None);
    };
    if let Some(key) = key {
        idempotency::link_operation(&mut *tx, key.caller, key.key, op.id).await?;
    }
    tx.commit().await?;
    Ok(Some(Held::new(op, asked_at)))
}

/// Takes over an unresolved operation whose lease ran out, to send it again (how Cancel and
/// undo-cancel are settled: both are free and converge). `None` when another process got it.
///
/// # Errors
/// Database errors.
pub async fn take_over(
    services: &Services,
    op: &Operation,
    lease: Duration,
) -> domain::Result<Option<Held>> {
    let asked_at = Instant::now();
    Ok(
        operations::take_over(&services.pool, op.id, &services.worker_name, lease)
            .await?
            .map(|op| Held::new(op, asked_at)),
    )
}

/// What a settled operation changes besides its own row, all in its transaction.
#[derive(Debug, Default)]
pub struct Effects<'a> {
    /// Charges to book.
    pub charges: Vec<NewCharge<'a>>,
    /// A fresh upstream record of the instance (renewals it reveals are booked with it).
    pub observation: Option<&'a UserAgent>,
    /// Our own facts to change on the instance (cancel record, plan...).
    pub change: Change,
    /// A message the operation sent.
    pub message: Option<messages::NewMessage<'a>>,
    /// A Deploy's instance: `(guid, status, end of the period it paid for)`.
    pub deployed: Option<(&'a str, i16, Option<DateTime<Utc>>)>,
}

impl Effects<'_> {
    fn changes_instance(&self) -> bool {
        self.observation.is_some() || !self.change.is_empty()
    }
}

/// Settles `op` with `settlement` and its `effects`, in one transaction fenced on the operation
/// still being unresolved. False when someone else settled it first (nothing is written).
///
/// # Errors
/// Database errors; a Deploy whose instance already has another guid is fenced out (false).
pub async fn settle(
    services: &Services,
    op: &Operation,
    settlement: Settlement,
    effects: Effects<'_>,
) -> domain::Result<bool> {
    Ok(settle_written(services, op, settlement, effects)
        .await?
        .is_some())
}

/// What [`settle_written`] wrote.
#[derive(Debug)]
pub struct Written {
    /// A Deploy's instance as its settlement left it (the caller goes on from this row instead
    /// of reading it again).
    pub deployed: Option<Instance>,
}

/// [`settle`], telling what was written: `None` when someone else settled it first.
///
/// # Errors
/// As [`settle`].
pub async fn settle_written(
    services: &Services,
    op: &Operation,
    settlement: Settlement,
    effects: Effects<'_>,
) -> domain::Result<Option<Written>> {
    let mut tx = services.pool.begin().await?;
    // Instance row first, then the operation: the order `begin` takes them in.
    instances::lock_facts(&mut *tx, op.instance_id).await?;
    let checks = match operations::settle(&mut *tx, op.id, &settlement).await {
        Ok(Some(checks)) => checks,
        Ok(None) => return Ok(None),
        Err(e) if e.is_unique_violation("operations_one_deploy") => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut written = Written { deployed: None };
    if let Some((guid, status, paid_until)) = effects.deployed {
        let Some(row) =
            instances::set_deployed(&mut *tx, op.instance_id, guid, status, paid_until).await?
        else {
            return Ok(None); // another guid is recorded: the caller contains this one
        };
        written.deployed = Some(row);
    }
    for charge in effects.charges.iter().cloned() {
        ledger::record(&mut *tx, charge).await?;
    }
    if effects.changes_instance() {
        match effects.observation {
            Some(agent) => {
                observe::record(&mut tx, op.instance_id, None, agent, effects.change).await?;
            }
            None => {
                if let Some(current) = instances::lock(&mut *tx, op.instance_id).await? {
                    instances::update(&mut *tx, op.instance_id, current.version, effects.change)
                        .await?;
                }
            }
        }
    }
    if let Some(message) = effects.message {
        messages::record(&mut *tx, message).await?;
    }
    if checks > 0 {
        // Only an operation that went through evidence checks can have raised an alert.
        alerts::resolve(&mut *tx, "operation_in_doubt", &subject(op.id)).await?;
    }
    audit::record(
        &mut *tx,
        NewAudit {
            actor: op.actor.as_deref().unwrap_or(&services.actor()),
            action: audit_action(op.kind),
            target: Some(format!("instance:{}", op.instance_id)),
            request_id: op.request_id.as_deref(),
            outcome: settlement.state.as_str(),
            detail: json!({"operation": op.id, "result": settlement.result, "error": settlement.error}),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(operation = %op.id, kind = %op.kind, state = %settlement.state, "operation settled");
    Ok(Some(written))
}

/// The audit action of a settled operation.
fn audit_action(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Deploy => "deploy",
        OperationKind::Renew => "subscription.renew",
        OperationKind::UndoCancel => "subscription.undo_cancel",
        OperationKind::Cancel => "subscription.cancel",
        OperationKind::Upgrade => "subscription.upgrade",
        OperationKind::ExtraCredits => "credits.buy",
        OperationKind::MessageSend => "message.send",
    }
}

/// A settlement with no outcome payload.
pub fn ended(state: OperationState, error: Option<String>) -> Settlement {
    Settlement {
        state,
        wiro_guid: None,
        result: json!({}),
        error,
    }
}

/// Settles a call that did not take effect: `not_sent` when it never left this process (its
/// deadline had passed), `refused` otherwise, with `reason`. True when it was not sent.
///
/// # Errors
/// Database errors.
pub async fn not_applied(
    services: &Services,
    op: &Operation,
    error: &wiro_client::Error,
    reason: String,
) -> domain::Result<bool> {
    let not_sent = matches!(error, wiro_client::Error::NotSent { .. });
    let state = if not_sent {
        OperationState::NotSent
    } else {
        OperationState::Refused
    };
    settle(services, op, ended(state, Some(reason)), Effects::default()).await?;
    Ok(not_sent)
}

/// Records a call whose answer was lost: it stays unresolved until its lease is over.
///
/// # Errors
/// Database errors.
pub async fn lost(
    services: &Services,
    op: &Operation,
    error: &wiro_client::Error,
) -> domain::Result<()> {
    tracing::warn!(operation = %op.id, kind = %op.kind, %error, "answer lost; in doubt until its lease is over");
    operations::mark_unknown(&services.pool, op.id, &error.to_string()).await?;
    Ok(())
}

/// What the upstream shows about an unresolved operation, after its lease.
#[derive(Debug)]
pub enum Evidence<'a> {
    /// The evidence decides: settle so (usually `adopted`, with its result and effects).
    Decided(Settlement, Box<Effects<'a>>),
    /// No trace of it.
    Absent(String),
    /// The evidence does not decide (or could not be read).
    Unclear(String),
}

/// What judging an operation came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judged {
    /// Settled now (by us or, meanwhile, by someone else).
    Settled,
    /// Still unresolved: the lease is running, or the evidence did not decide yet.
    Unresolved,
}

/// Applies `evidence` to `op`: settles it, or counts the check (alerting ops once the checks
/// pass `operations.alert_after_checks`). "Absent" settles `not_found` only when an earlier
/// check found it absent at least `operations.quiet_period` ago.
///
/// # Errors
/// Database errors.
pub async fn apply(
    services: &Services,
    op: &Operation,
    evidence: Evidence<'_>,
) -> domain::Result<Judged> {
    let quiet = services.settings.operations.quiet_period;
    let (absent, note) = match evidence {
        Evidence::Decided(settlement, effects) => {
            settle(services, op, settlement, *effects).await?;
            return Ok(Judged::Settled);
        }
        Evidence::Absent(note) if op.absent_for_at_least(quiet) => {
            let settlement = ended(OperationState::NotFound, Some(note));
            settle(services, op, settlement, Effects::default()).await?;
            return Ok(Judged::Settled);
        }
        Evidence::Absent(note) => (true, note),
        Evidence::Unclear(note) => (false, note),
    };
    let checks = operations::record_check(&services.pool, op.id, absent, &note).await?;
    if !absent && checks >= services.settings.operations.alert_after_checks {
        alerts::raise(
            &services.pool,
            "operation_in_doubt",
            &subject(op.id),
            Some(op.instance_id),
            json!({"operation": op.id, "kind": op.kind, "checks": checks, "why": note}),
        )
        .await?;
    }
    Ok(Judged::Unresolved)
}

/// The alert subject of an operation.
pub fn subject(id: OperationId) -> String {
    format!("operation:{id}")
}
