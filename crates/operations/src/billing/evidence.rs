//! Judging a billing call whose answer was lost, once its lease is over, by evidence that
//! cannot be confused:
//!
//! | call | it happened when |
//! |---|---|
//! | Renew (expired) | the subscription is active with a later period end |
//! | UpgradePlan | the plan is Pro |
//! | pack | extra credits grew by at least the pack since the intent (and when they did not grow while monthly credits remain in the same period, none were spent: it did not happen) |
//! | Cancel, undo-cancel | send it again: both are free and converge (`Subscription is already active` means the undo had applied) |

use domain::db::instances;
use domain::db::operations::Operation;
use domain::model::{OperationKind, OperationState};
use wiro_client::models::UserAgent;
use wiro_client::{Outcome, WiroError};

use super::answer::{self, Answer};
use super::decide::Snapshot;
use crate::Services;
use crate::observe::period_end;
use crate::protocol::{self, Evidence, Judged};

/// Judges `op` (its lease is over) and applies the evidence.
///
/// # Errors
/// Database errors.
pub async fn judge(services: &Services, op: &Operation) -> domain::Result<Judged> {
    let Ok(snapshot) = serde_json::from_value::<Snapshot>(op.detail.clone()) else {
        let why = "the intent's facts cannot be read".to_owned();
        return protocol::apply(services, op, Evidence::Unclear(why)).await;
    };
    let Some(instance) = instances::get(&services.pool, op.instance_id).await? else {
        return Ok(Judged::Unresolved);
    };
    let post = match services.wiro.detail(&snapshot.guid).await {
        Ok(post) => post,
        Err(e) if e.wiro() == Some(&WiroError::UserAgentNotFound) => {
            let why = "the instance no longer exists at Wiro".to_owned();
            return protocol::apply(services, op, Evidence::Absent(why)).await;
        }
        Err(e) => {
            let why = format!("Detail could not be read: {e}");
            return protocol::apply(services, op, Evidence::Unclear(why)).await;
        }
    };
    let sub = post.subscription.as_ref();
    let active = sub.is_some_and(wiro_client::models::Subscription::is_active);
    let moved_on = sub.and_then(period_end).map(|t| t.timestamp()) > snapshot.period_end;
    let happened = |answer| {
        let (_, settlement, effects) = answer::outcome(
            op,
            &instance,
            &snapshot,
            answer,
            Some(&post),
            OperationState::Adopted,
            true,
        );
        Evidence::Decided(settlement, Box::new(effects))
    };
    let evidence = match op.kind {
        OperationKind::Renew if active && moved_on => {
            happened(Answer::Renewed(snapshot.amount_cents))
        }
        OperationKind::Renew if !active => {
            Evidence::Absent("the subscription is still expired".into())
        }
        OperationKind::Upgrade if sub.is_some_and(|s| s.plan_tier() == "pro") => {
            happened(Answer::Upgraded(snapshot.expected_cents))
        }
        OperationKind::Upgrade => Evidence::Absent("the plan is still Starter".into()),
        OperationKind::ExtraCredits => match pack_evidence(&snapshot, &post) {
            Some(true) => happened(Answer::CreditsAdded),
            Some(false) => Evidence::Absent("extra credits did not grow".into()),
            None => Evidence::Unclear(
                "extra credits changed in a way consumption or expiry could explain".into(),
            ),
        },
        OperationKind::UndoCancel if !active => Evidence::Decided(
            protocol::ended(
                OperationState::NotFound,
                Some("the subscription ended before the cancellation was taken back".into()),
            ),
            Box::default(),
        ),
        OperationKind::UndoCancel if moved_on => happened(Answer::UndoCancel),
        OperationKind::Cancel if !active => happened(Answer::Cancelled(snapshot.period_end())),
        OperationKind::UndoCancel | OperationKind::Cancel => {
            return send_again(services, op, &instance, &snapshot).await;
        }
        _ => Evidence::Unclear("the upstream does not show it either way".into()),
    };
    protocol::apply(services, op, evidence).await
}

/// `Some(true)`: extra credits grew by at least the pack. `Some(false)`: they did not grow, and
/// none can have been spent (monthly credits remain in the same period; they go first).
fn pack_evidence(snapshot: &Snapshot, post: &UserAgent) -> Option<bool> {
    let before = snapshot.extra_credits.unwrap_or(0);
    let after = post.extracredits.unwrap_or(0);
    if after >= before + snapshot.pack_credits.unwrap_or(i64::MAX) {
        return Some(true);
    }
    let same_period = post
        .subscription
        .as_ref()
        .and_then(period_end)
        .map(|t| t.timestamp())
        == snapshot.period_end;
    let monthly_left = post.monthly_credits().unwrap_or(0) > 0;
    // Without an active subscription Wiro sells no pack ("Active subscription required to
    // purchase extra credits."): inactive then and now, it cannot have happened.
    let never_active = !snapshot.active
        && !post
            .subscription
            .as_ref()
            .is_some_and(wiro_client::models::Subscription::is_active);
    (after <= before && (never_active || (same_period && monthly_left))).then_some(false)
}

/// Cancel and undo-cancel are settled by sending them again under a new lease.
async fn send_again(
    services: &Services,
    op: &Operation,
    instance: &instances::Instance,
    snapshot: &Snapshot,
) -> domain::Result<Judged> {
    let Some(held) = protocol::take_over(services, op, services.settings.operations.lease).await?
    else {
        return Ok(Judged::Unresolved);
    };
    let client = held.client(services);
    let answer = match answer::call(&client, op.kind, &snapshot.guid, snapshot).await {
        Ok(answer) => answer,
        Err(e)
            if op.kind == OperationKind::UndoCancel
                && e.wiro() == Some(&WiroError::SubscriptionAlreadyActive) =>
        {
            Answer::UndoCancel
        }
        Err(e) if e.outcome() == Outcome::NotApplied => {
            let why = format!("sent again and refused: {e}");
            return protocol::apply(services, &held.op, Evidence::Unclear(why)).await;
        }
        Err(e) => {
            protocol::lost(services, &held.op, &e).await?;
            return Ok(Judged::Unresolved);
        }
    };
    let post = services.wiro.detail(&snapshot.guid).await.ok();
    let (_, settlement, effects) = answer::outcome(
        &held.op,
        instance,
        snapshot,
        answer,
        post.as_ref(),
        OperationState::Adopted,
        false,
    );
    protocol::settle(services, &held.op, settlement, effects).await?;
    Ok(Judged::Settled)
}
