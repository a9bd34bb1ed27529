//! Renewals. Wiro renews each prepaid plan by itself when the wallet covers it and lets it
//! expire otherwise; this sweep handles what that leaves, for subscriptions that expired or
//! end within `schedules.renewal_window`:
//!
//! - active customer: renew an expired plan (RenewSubscription) and start the agent again if it
//!   should run; take back a pending cancellation. "Insufficient wallet balance" parks the
//!   renewal with the required and available amounts in an operator alert.
//! - suspended or closed customer: cancel at period end (stopping alone does not stop renewal)
//!   and stop the agent.

use chrono::Utc;
use domain::db::alerts;
use domain::db::instances::{self, Instance};
use domain::model::{CustomerStatus, DesiredState};
use wiro_client::WiroError;

use super::{Statuses, for_each, restart, stop};
use operations::Services;
use operations::billing::{self, BillingAction, BillingError};
use operations::observe::observed;

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
    let statuses = Statuses::new(&ctx.pool);
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

/// Refreshes the instance from Wiro (retrying on concurrent changes: it only records facts).
async fn refresh(ctx: &Services, instance: &Instance) -> anyhow::Result<Option<Instance>> {
    let Some(guid) = instance.wiro_guid.as_deref() else {
        return Ok(None);
    };
    let agent = ctx.wiro.detail(guid).await?;
    Ok(instances::update_with(&ctx.pool, instance.id, |_| Some(observed(&agent))).await?)
}

async fn renew_one(ctx: &Services, instance: Instance, statuses: &Statuses) -> anyhow::Result<()> {
    let Some(instance) = refresh(ctx, &instance).await? else {
        return Ok(());
    };
    let actor = ctx.actor();
    let expired = instance.subscription_status.as_deref() == Some("expired");
    match statuses.get(instance.customer_id).await? {
        CustomerStatus::Active => {
            if expired || instance.cancel_at_period_end {
                match billing::perform(ctx, &instance, BillingAction::Renew, &actor, None).await {
                    Ok(outcome) => {
                        alerts::resolve(
                            &ctx.pool,
                            "renewal_parked",
                            &alerts::instance_subject(instance.id),
                        )
                        .await?;
                        if outcome.result == "renewed"
                            && instance.desired_state == DesiredState::Running
                        {
                            restart(ctx, &outcome.instance, "renewed").await?;
                        }
                    }
                    Err(BillingError::Refused(e)) => park(ctx, &instance, &e).await?,
                    Err(other) => return Err(anyhow::anyhow!("renewing {}: {other}", instance.id)),
                }
            }
        }
        CustomerStatus::Suspended | CustomerStatus::Closed => {
            if !expired && !instance.cancel_at_period_end {
                billing::perform(ctx, &instance, BillingAction::Cancel, &actor, None)
                    .await
                    .map_err(|e| anyhow::anyhow!("cancelling {}: {e}", instance.id))?;
            }
            if let Some(current) = instances::get(&ctx.pool, instance.id).await? {
                stop(ctx, &current).await?;
            }
        }
    }
    Ok(())
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
            "required_cents": (required * 100.0).round() as i64,
            "available_cents": (available * 100.0).round() as i64,
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
