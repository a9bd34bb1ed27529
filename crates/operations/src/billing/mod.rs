//! The subscription and its credits, under the protocol (`crate::protocol`): RenewSubscription
//! (a renewal after expiry, or the undo of a pending cancel), CancelSubscription, UpgradePlan
//! and CreateExtraCreditCheckout.
//!
//! - `decide`: what the action means now (from a fresh Detail and our own records), what it
//!   will charge, and the facts a lost answer will be judged against;
//! - `answer`: what Wiro's answer settles;
//! - `evidence`: how a lost answer is judged once the lease is over.

mod answer;
mod decide;
pub mod evidence;

use chrono::{DateTime, Utc};
use domain::db::instances::{self, Instance};
use domain::db::operations::{self, NewOperation};
use domain::ids::OperationId;
use domain::model::{CancelSource, OperationKind, Pack};
use serde::{Deserialize, Serialize};
use wiro_client::{Outcome, WiroError};

use crate::Services;
use crate::observe;
use crate::protocol::{self, Judged, KeyClaim, Requester};

/// A billing action on one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum BillingAction {
    /// Renew an expired plan (charged), or take back a pending cancellation (free).
    Renew,
    /// UpgradePlan to Pro (prorated charge).
    Upgrade,
    /// A pack bought with the wallet.
    ExtraCredits {
        /// Which.
        pack: Pack,
    },
    /// Cancel at period end (free), remembering who asked.
    Cancel {
        /// Who asked: decides who may take it back.
        source: CancelSource,
    },
    /// Pro → Starter at the period end (Wiro: "cancel and re-deploy"): cancel now, remembering
    /// the plan to come back on; the renewal sweep deploys it when the period ends.
    Downgrade {
        /// Who asked.
        source: CancelSource,
    },
    /// Take back a scheduled downgrade before the period ends: the cancel is undone (free).
    WithdrawDowngrade,
}

/// What an action came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionResult {
    /// A new period was bought.
    Renewed,
    /// A pending cancellation was taken back.
    CancelUndone,
    /// Starter became Pro.
    Upgraded,
    /// A pack was added.
    CreditsAdded,
    /// The subscription ends at period end.
    Cancelled,
    /// The subscription ends at period end, and the agent comes back on Starter then.
    DowngradeScheduled,
    /// A scheduled downgrade was taken back: the plan goes on as before.
    DowngradeWithdrawn,
}

/// The settled outcome of a billing operation, as stored on it (`operations.result`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionOutcome {
    /// What happened.
    pub result: ActionResult,
    /// Cents charged to the operator's wallet.
    pub charged_cents: i64,
    /// When a cancelled subscription ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancels_at: Option<DateTime<Utc>>,
}

/// What happened, and the instance afterwards.
#[derive(Clone, Debug)]
pub struct BillingOutcome {
    /// The operation (its id answers replays of the same Idempotency-Key).
    pub operation_id: Option<OperationId>,
    /// The outcome.
    pub outcome: ActionOutcome,
    /// True when it was learnt from evidence after a lost answer.
    pub adopted: bool,
    /// The instance after the action.
    pub instance: Instance,
}

/// Why an action did not happen (or is not known yet).
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The instance has no Wiro guid yet.
    #[error("the agent is not deployed yet")]
    NotDeployed,
    /// Another change of the same kind is unresolved.
    #[error("another {0} change of this agent is in progress")]
    InFlight(&'static str),
    /// Nothing to do, and nothing was sent (e.g. already Pro, no cancellation to take back).
    #[error("{1}")]
    Pointless(&'static str, String),
    /// The operator sells no such pack for this template.
    #[error("pack {0} is not offered for template {1}")]
    PackNotOffered(Pack, String),
    /// Wiro refused (nothing happened); the typed reason is inside.
    #[error("{0}")]
    Refused(wiro_client::Error),
    /// Wiro could not be reached before the call; nothing happened.
    #[error("{0}")]
    Upstream(wiro_client::Error),
    /// The answer was lost: the operation is in doubt until its lease is over and evidence
    /// settles it (a replay of the same Idempotency-Key answers from it).
    #[error("Wiro's answer was lost; operation {0} is in doubt until it is settled")]
    InDoubt(OperationId),
    /// The customer's monthly spending limit would be exceeded; nothing was sent.
    #[error("the monthly spending limit ({limit} cents) would be exceeded: {usage} used")]
    LimitExceeded {
        /// The limit, in cents.
        limit: i64,
        /// Spent (or committed) this month, in cents.
        usage: i64,
    },
    /// Database or other internal failure.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<domain::Error> for BillingError {
    fn from(e: domain::Error) -> Self {
        match e {
            domain::Error::LimitExceeded { limit, usage, .. } => {
                BillingError::LimitExceeded { limit, usage }
            }
            other => BillingError::Internal(other.into()),
        }
    }
}

/// Runs `action` on `instance` exactly once.
///
/// # Errors
/// [`BillingError`]: refusals carry Wiro's typed reason; a lost answer is
/// [`BillingError::InDoubt`] (never "failed": it may have happened).
pub async fn perform(
    services: &Services,
    instance: &Instance,
    action: BillingAction,
    who: Requester<'_>,
    key: Option<KeyClaim<'_>>,
) -> Result<BillingOutcome, BillingError> {
    let guid = instance
        .wiro_guid
        .clone()
        .ok_or(BillingError::NotDeployed)?;
    let flight_kind = decide::flight_kind(action);
    if let Some(op) = operations::in_flight(&services.pool, instance.id, flight_kind).await?
        && (!op.lease_over || crate::settle::settle_one(services, &op).await? == Judged::Unresolved)
    {
        return Err(BillingError::InFlight(
            operations::flight(flight_kind).unwrap_or("billing"),
        ));
    }
    let pre = services
        .wiro
        .detail(&guid)
        .await
        .map_err(BillingError::Upstream)?;
    let current = observe::record_now(&services.pool, instance.id, None, &pre, Default::default())
        .await?
        .unwrap_or_else(|| instance.clone());
    let plan = decide::decide(services, &current, action, &pre)?;
    if let Some(done) = plan.already {
        return Ok(BillingOutcome {
            operation_id: None,
            outcome: done,
            adopted: false,
            instance: current,
        });
    }
    let intent = NewOperation {
        instance: current.id,
        kind: plan.kind,
        worker: &services.worker_name,
        actor: who.actor,
        request_id: who.request_id,
        lease: services.settings.operations.lease,
        detail: serde_json::to_value(&plan.snapshot).map_err(anyhow::Error::from)?,
        fence: None,
    };
    let spend = who.capped.then_some(plan.snapshot.expected_cents);
    let Some(held) = protocol::begin(services, intent, key, spend).await? else {
        return Err(BillingError::InFlight(
            operations::flight(plan.kind).unwrap_or("billing"),
        ));
    };
    let client = held.client(services);
    let answer = answer::call(&client, plan.kind, &guid, &plan.snapshot).await;
    let settled = match answer {
        Ok(answer) => answer::settle(services, &held.op, &current, &plan.snapshot, answer).await?,
        Err(error) if error.outcome() == Outcome::NotApplied => {
            if plan.kind == OperationKind::UndoCancel
                && error.wiro() == Some(&WiroError::SubscriptionAlreadyActive)
            {
                // Our record says a cancel was pending: "already active" means it is undone.
                let undone = answer::Answer::UndoCancel;
                answer::settle(services, &held.op, &current, &plan.snapshot, undone).await?
            } else {
                let reason = refusal_text(&error);
                let not_sent = protocol::not_applied(services, &held.op, &error, reason).await?;
                return Err(if not_sent || error.is_transient() {
                    BillingError::Upstream(error)
                } else {
                    BillingError::Refused(error)
                });
            }
        }
        Err(error) => {
            protocol::lost(services, &held.op, &error).await?;
            return Err(BillingError::InDoubt(held.op.id));
        }
    };
    outcome_of(services, held.op.id, current, settled, false).await
}

/// The instance and outcome after a settled operation.
pub(crate) async fn outcome_of(
    services: &Services,
    operation: OperationId,
    instance: Instance,
    outcome: ActionOutcome,
    adopted: bool,
) -> Result<BillingOutcome, BillingError> {
    let instance = instances::get(&services.pool, instance.id)
        .await?
        .unwrap_or(instance);
    Ok(BillingOutcome {
        operation_id: Some(operation),
        outcome,
        adopted,
        instance,
    })
}

/// Wiro's reason, or our description of the failure.
fn refusal_text(error: &wiro_client::Error) -> String {
    error
        .wiro()
        .map_or_else(|| error.to_string(), ToString::to_string)
}
