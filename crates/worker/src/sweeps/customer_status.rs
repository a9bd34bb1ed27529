//! A customer's status applied to its agents (the `customer` queue's job, enqueued with every
//! status change):
//!
//! - suspended: cancel renewal at period end and stop the agents (their desired state is kept
//!   for reactivation);
//! - closed: the same, and the agents stay stopped for good (the ledger is kept);
//! - active again: take back the pending cancellations (RenewSubscription), renew what expired
//!   meanwhile, and restore each agent's desired state.

use domain::db::customers;
use domain::db::instances::{self, Change, InstanceFilter};
use domain::ids::CustomerId;
use domain::model::{CustomerStatus, DesiredState, InstanceState};

use super::{restart, stop};
use operations::Services;
use operations::billing::{self, BillingAction};
use operations::observe::observed;

/// Applies the customer's current status.
///
/// # Errors
/// Database or upstream failures (the job is retried).
pub async fn apply(ctx: &Services, customer_id: CustomerId) -> anyhow::Result<()> {
    let Some(customer) = customers::get(&ctx.pool, customer_id).await? else {
        return Ok(());
    };
    let filter = InstanceFilter {
        customer: Some(customer_id),
        ..InstanceFilter::default()
    };
    let agents = instances::list(&ctx.pool, &filter, None, domain::db::MAX_PAGE).await?;
    let actor = ctx.actor();
    for instance in agents {
        let Some(guid) = instance.wiro_guid.clone() else {
            continue; // not deployed: nothing upstream to change yet
        };
        if instance.state == InstanceState::Failed {
            continue;
        }
        let agent = ctx.wiro.detail(&guid).await?;
        let Some(instance) =
            instances::update_with(&ctx.pool, instance.id, |_| Some(observed(&agent))).await?
        else {
            continue;
        };
        let active = instance.subscription_status.as_deref() == Some("active");
        match customer.status {
            CustomerStatus::Suspended | CustomerStatus::Closed => {
                if active && !instance.cancel_at_period_end {
                    billing::perform(ctx, &instance, BillingAction::Cancel, &actor, None)
                        .await
                        .map_err(|e| anyhow::anyhow!("cancelling {}: {e}", instance.id))?;
                }
                let mut current = instances::get(&ctx.pool, instance.id)
                    .await?
                    .unwrap_or(instance);
                if customer.status == CustomerStatus::Closed
                    && current.desired_state != DesiredState::Stopped
                {
                    let change = Change {
                        desired_state: Some(DesiredState::Stopped),
                        ..Change::default()
                    };
                    if let Some(updated) =
                        instances::update(&ctx.pool, current.id, current.version, change).await?
                    {
                        current = updated;
                    }
                }
                stop(ctx, &current).await?;
            }
            CustomerStatus::Active => {
                let needs_renew = instance.cancel_at_period_end || !active;
                let mut current = instance;
                if needs_renew {
                    match billing::perform(ctx, &current, BillingAction::Renew, &actor, None).await
                    {
                        Ok(outcome) => current = outcome.instance,
                        // A short wallet is the renewal sweep's to park and retry.
                        Err(e) => {
                            tracing::warn!(instance = %current.id, error = %e, "reactivation could not renew")
                        }
                    }
                }
                if current.desired_state == DesiredState::Running
                    && current.subscription_status.as_deref() == Some("active")
                    && matches!(
                        current.state,
                        InstanceState::Stopped | InstanceState::Stopping
                    )
                {
                    restart(ctx, &current, "customer reactivated").await?;
                }
            }
        }
    }
    Ok(())
}
