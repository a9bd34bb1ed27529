//! The call, and what its outcome settles: the operation's result, the charge (renewals are
//! booked by the observation that sees the new period end), our cancellation record and plan.

use chrono::{DateTime, Utc};
use domain::db::instances::{Change, Instance};
use domain::db::ledger::{self, NewCharge};
use domain::db::operations::{Operation, Settlement};
use domain::model::{ChargeKind, OperationKind, OperationState, Plan};
use wiro_client::models::UserAgent;
use wiro_client::{Endpoint, Error};

use super::decide::Snapshot;
use super::{ActionOutcome, ActionResult};
use crate::Services;
use crate::observe::cents;
use crate::protocol::{self, Effects};

/// What Wiro's answer says happened.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer {
    /// A period was bought for this many cents.
    Renewed(i64),
    /// A pending cancellation was taken back.
    UndoCancel,
    /// Starter → Pro for this many cents.
    Upgraded(i64),
    /// The pack was added.
    CreditsAdded,
    /// The subscription ends then.
    Cancelled(Option<DateTime<Utc>>),
}

/// Makes the call with `client` (bound to the lease).
pub(super) async fn call(
    client: &wiro_client::Client,
    kind: OperationKind,
    guid: &str,
    snapshot: &Snapshot,
) -> Result<Answer, Error> {
    match kind {
        OperationKind::Renew | OperationKind::UndoCancel => {
            let answer = client.renew_subscription(guid).await?;
            match answer.action.as_str() {
                "renewed" => Ok(Answer::Renewed(
                    answer.amount.map_or(snapshot.amount_cents, cents),
                )),
                "undo-cancel" => Ok(Answer::UndoCancel),
                other => Err(Error::Decode {
                    endpoint: Endpoint::RenewSubscription,
                    status: 200,
                    reason: format!("undocumented action {other:?}"),
                    body: String::new(),
                }),
            }
        }
        OperationKind::Upgrade => {
            let answer = client.upgrade_plan(guid, "pro").await?;
            Ok(Answer::Upgraded(cents(answer.prorated_charge)))
        }
        OperationKind::ExtraCredits => {
            let pack = snapshot.pack.map(|p| p.as_str()).unwrap_or_default();
            client.buy_extra_credits(guid, pack).await?;
            Ok(Answer::CreditsAdded)
        }
        OperationKind::Cancel => {
            let answer = client.cancel_subscription(guid).await?;
            Ok(Answer::Cancelled(
                answer
                    .cancels_at
                    .and_then(|t| DateTime::from_timestamp(t.0, 0)),
            ))
        }
        OperationKind::Deploy | OperationKind::MessageSend => {
            unreachable!("not a billing operation")
        }
    }
}

/// The outcome, settlement and effects of `answer` on `op` (`estimated`: the amount is ours,
/// the answer having been lost).
pub(crate) fn outcome<'a>(
    op: &Operation,
    instance: &'a Instance,
    snapshot: &'a Snapshot,
    answer: Answer,
    observation: Option<&'a UserAgent>,
    state: OperationState,
    estimated: bool,
) -> (ActionOutcome, Settlement, Effects<'a>) {
    let guid = instance.wiro_guid.as_deref();
    let charge = |kind, amount_cents, reference| NewCharge {
        customer_id: instance.customer_id,
        instance_id: instance.id,
        kind,
        amount_cents,
        reference,
        wiro_guid: guid,
        operation_id: Some(op.id),
        estimated,
    };
    let mut effects = Effects {
        observation,
        ..Effects::default()
    };
    let clear_cancel = Change {
        cancel_at_period_end: Some(false),
        cancel_source: Some(None),
        cancels_at: Some(None),
        downgrade_to: Some(None),
        ..Change::default()
    };
    let outcome = match answer {
        Answer::Renewed(amount) => {
            // Booked by the observation that sees the new period end (now, or the next one).
            effects.change = clear_cancel;
            done(ActionResult::Renewed, amount, None)
        }
        Answer::UndoCancel => {
            effects.change = clear_cancel;
            let result = if snapshot.downgrade {
                ActionResult::DowngradeWithdrawn
            } else {
                ActionResult::CancelUndone
            };
            done(result, 0, None)
        }
        Answer::Upgraded(amount) => {
            effects.charges.push(charge(
                ChargeKind::Upgrade,
                amount,
                ledger::upgrade_reference(instance.id),
            ));
            effects.change = Change {
                plan: Some(Plan::Pro),
                ..Change::default()
            };
            done(ActionResult::Upgraded, amount, None)
        }
        Answer::CreditsAdded => {
            effects.charges.push(charge(
                ChargeKind::ExtraCredits,
                snapshot.expected_cents,
                ledger::pack_reference(op.id),
            ));
            done(ActionResult::CreditsAdded, snapshot.expected_cents, None)
        }
        Answer::Cancelled(at) => {
            let cancels_at = at.or_else(|| snapshot.period_end());
            effects.change = Change {
                cancel_at_period_end: Some(true),
                cancel_source: Some(snapshot.cancel_source),
                cancels_at: Some(cancels_at),
                downgrade_to: Some(snapshot.downgrade.then_some(Plan::Starter)),
                ..Change::default()
            };
            let result = if snapshot.downgrade {
                ActionResult::DowngradeScheduled
            } else {
                ActionResult::Cancelled
            };
            done(result, 0, cancels_at)
        }
    };
    let settlement = Settlement {
        state,
        wiro_guid: instance.wiro_guid.clone(),
        result: serde_json::to_value(&outcome).unwrap_or_default(),
        error: None,
    };
    (outcome, settlement, effects)
}

fn done(
    result: ActionResult,
    charged_cents: i64,
    cancels_at: Option<DateTime<Utc>>,
) -> ActionOutcome {
    ActionOutcome {
        result,
        charged_cents,
        cancels_at,
    }
}

/// Settles `op` from Wiro's answer, with a fresh Detail when one can be read (a renewal is
/// booked by it; if it cannot be read, by the next observation).
pub(super) async fn settle(
    services: &Services,
    op: &Operation,
    instance: &Instance,
    snapshot: &Snapshot,
    answer: Answer,
) -> domain::Result<ActionOutcome> {
    let post = services.wiro.detail(&snapshot.guid).await.ok();
    let (outcome, settlement, effects) = outcome(
        op,
        instance,
        snapshot,
        answer,
        post.as_ref(),
        OperationState::Succeeded,
        false,
    );
    protocol::settle(services, op, settlement, effects).await?;
    Ok(outcome)
}
