//! Renewals. Wiro renews each prepaid plan by itself when the wallet covers it and lets it
//! expire otherwise. For subscriptions that expired, end within `schedules.renewal_window`, or
//! carry a cancellation of ours, this sweep refreshes what Wiro shows (booking any renewal it
//! reveals) and handles what is left:
//!
//! - active customer: bring an agent whose downgrade's period ended back on its new plan
//!   (`downgrade`); renew an expired plan (RenewSubscription) — unless a customer's or ops'
//!   cancellation ended it: a customer's wish is never reversed by our jobs — or take back a
//!   suspension's cancellation, and start the agent again if it should run. "Insufficient wallet balance" parks the renewal with the
//!   required and available amounts in an operator alert.
//! - suspended or closed customer: cancel at period end (stopping alone does not stop renewal)
//!   and stop the agent.

use chrono::Utc;
use domain::db::alerts;
use domain::db::instances::{self, Instance};
use domain::model::{CancelSource, CustomerStatus, DesiredState};
use operations::Services;
use operations::billing::{self, ActionResult, BillingAction, BillingError};
use operations::protocol::Requester;
use wiro_client::WiroError;

use super::{Statuses, downgrade, for_each, refresh, restart, stop};

/// What a renewal sweep did.
#[derive(Debug, Default)]
pub struct RenewalReport {
    /// Instances looked at.
    pub candidates: usize,
    /// Items that failed (retried next sweep).
    pub failures: usize,
}

/// Runs the sweep.
///
/// # Errors
/// Database failures.
pub async fn run(ctx: &Services) -> anyhow::Result<RenewalReport> {
    let horizon = Utc::now() + chrono::Duration::from_std(ctx.settings.schedules.renewal_window)?;
    let candidates = instances::renewal_candidates(&ctx.pool, horizon).await?;
    let statuses = Statuses::of(&ctx.pool, candidates.iter().map(|i| i.customer_id)).await?;
    let count = candidates.len();
    let failures = for_each(ctx, candidates, |instance| {
        let statuses = &statuses;
        async move { renew_one(ctx, instance, statuses).await }
    })
    .await;
    Ok(RenewalReport {
        candidates: count,
        failures,
    })
}

async fn renew_one(ctx: &Services, instance: Instance, statuses: &Statuses) -> anyhow::Result<()> {
    let Some(instance) = refresh(ctx, &instance).await? else {
        return Ok(());
    };
    let actor = ctx.actor();
    let who = Requester {
        actor: &actor,
        request_id: None,
        capped: false,
    };
    let expired = instance.subscription_status.as_deref() == Some("expired");
    match statuses.get(instance.customer_id).await? {
        CustomerStatus::Active => {
            let wished_to_end = matches!(
                instance.cancelled_by(),
                Some(CancelSource::Customer | CancelSource::Ops)
            );
            let suspension_cancel = instance.cancelled_by() == Some(CancelSource::Suspension);
            if expired && instance.downgrade_to.0.is_some() && instance.deleted_at.is_none() {
                // A downgrade's period ended: the agent comes back on its new plan.
                downgrade::switch(ctx, &instance).await?;
            } else if expired && wished_to_end {
                // The cancellation took effect: the agent stays stopped.
                stop(ctx, &instance).await?;
            } else if expired || suspension_cancel {
                // Renew what lapsed, or take back what a suspension cancelled (the customer is
                // active again and the reactivation did not get to it).
                renew(ctx, &instance, who).await?;
            }
        }
        CustomerStatus::Suspended | CustomerStatus::Closed => {
            if !expired && instance.cancelled_by().is_none() {
                let action = BillingAction::Cancel {
                    source: CancelSource::Suspension,
                };
                match billing::perform(ctx, &instance, action, who, None).await {
                    Ok(_) | Err(BillingError::InDoubt(_)) => {}
                    Err(e) => return Err(anyhow::anyhow!("cancelling {}: {e}", instance.id)),
                }
            }
            if let Some(current) = instances::get(&ctx.pool, instance.id).await? {
                stop(ctx, &current).await?;
            }
        }
    }
    Ok(())
}

async fn renew(ctx: &Services, instance: &Instance, who: Requester<'_>) -> anyhow::Result<()> {
    match billing::perform(ctx, instance, BillingAction::Renew, who, None).await {
        Ok(done) => {
            alerts::resolve(
                &ctx.pool,
                "renewal_parked",
                &alerts::instance_subject(instance.id),
            )
            .await?;
            if done.outcome.result == ActionResult::Renewed
                && instance.desired_state == DesiredState::Running
            {
                restart(ctx, &done.instance, "renewed").await?;
            }
            Ok(())
        }
        Err(BillingError::Refused(e)) => park(ctx, instance, &e).await,
        // Settled by the settle sweep; the next renewal sweep sees the outcome.
        Err(BillingError::InDoubt(op)) => {
            tracing::warn!(instance = %instance.id, operation = %op, "renewal in doubt");
            Ok(())
        }
        Err(other) => Err(anyhow::anyhow!("renewing {}: {other}", instance.id)),
    }
}

/// Parks a refused renewal: an operator alert with Wiro's reason and, for a short wallet, the
/// required and available amounts.
async fn park(
    ctx: &Services,
    instance: &Instance,
    error: &wiro_client::Error,
) -> anyhow::Result<()> {
    let detail = match error.wiro() {
        Some(WiroError::InsufficientWalletBalance {
            required,
            available,
        }) => serde_json::json!({
            "reason": error.wiro().map(ToString::to_string),
            "required_cents": operations::observe::cents(*required),
            "available_cents": operations::observe::cents(*available),
        }),
        other => {
            serde_json::json!({"reason": other.map_or_else(|| error.to_string(), ToString::to_string)})
        }
    };
    alerts::raise(
        &ctx.pool,
        "renewal_parked",
        &alerts::instance_subject(instance.id),
        Some(instance.id),
        detail,
    )
    .await?;
    Ok(())
}
