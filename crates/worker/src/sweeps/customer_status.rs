//! A customer's status applied to all its agents (the `customer` queue's job, enqueued with
//! every status change):
//!
//! - suspended: cancel renewal at period end (as the suspension's cancel) and stop the agents
//!   (their desired state is kept for reactivation);
//! - closed: the same, and the agents stay stopped for good (the ledger is kept); when ops
//!   closed it with erasure, every Wiro message session on its agents is then deleted and the
//!   erasure recorded as done (see `domain::customer_data`);
//! - active again: take back the cancellations the suspension made — never a customer's or
//!   ops' own — renew what expired meanwhile, and restore each agent's desired state.

use domain::db::customers;
use domain::db::instances::{self, Change, Instance, InstanceFilter};
use domain::ids::CustomerId;
use domain::model::{CancelSource, CustomerStatus, DesiredState, InstanceState};
use operations::Services;
use operations::billing::{self, BillingAction, BillingError};
use operations::protocol::Requester;
use wiro_client::WiroError;

use super::{refresh, restart, stop};

/// Applies the customer's current status to every one of its agents, a page at a time.
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
    let erasing = customer.status == CustomerStatus::Closed
        && customer.erase_requested_at.is_some()
        && customer.erased_at.is_none();
    let mut sessions_deleted = 0;
    let mut after = None;
    loop {
        let page = instances::list(&ctx.pool, &filter, after, domain::db::MAX_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id);
        for instance in page {
            if erasing {
                sessions_deleted += delete_sessions(ctx, &instance).await?;
            }
            if instance.wiro_guid.is_none() || instance.state == InstanceState::Failed {
                continue; // nothing upstream to change (yet)
            }
            apply_one(ctx, customer.status, instance).await?;
        }
    }
    if erasing {
        domain::customer_data::finish_erasure(
            &ctx.pool,
            customer_id,
            sessions_deleted,
            &ctx.actor(),
        )
        .await?;
    }
    Ok(())
}

/// Deletes every message session Wiro holds on the agent (a retried job finds fewer); an
/// instance Wiro no longer knows has none.
async fn delete_sessions(ctx: &Services, instance: &Instance) -> anyhow::Result<u64> {
    let Some(guid) = instance.wiro_guid.as_deref() else {
        return Ok(0);
    };
    let gone = |e: &wiro_client::Error| {
        matches!(
            e.wiro(),
            Some(WiroError::UserAgentNotFound | WiroError::AgentNotFoundOrAccessDenied)
        )
    };
    let sessions = match ctx.wiro.message_sessions(guid).await {
        Ok(found) => found.sessions,
        Err(e) if gone(&e) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut deleted = 0;
    for session in sessions {
        match ctx.wiro.delete_session(guid, &session.sessionkey).await {
            Ok(()) => deleted += 1,
            Err(e) if gone(&e) => return Ok(deleted),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(deleted)
}

async fn apply_one(
    ctx: &Services,
    status: CustomerStatus,
    instance: Instance,
) -> anyhow::Result<()> {
    let Some(instance) = refresh(ctx, &instance).await? else {
        return Ok(());
    };
    let actor = ctx.actor();
    let who = Requester {
        actor: &actor,
        request_id: None,
        capped: false,
    };
    let active = instance.subscription_status.as_deref() == Some("active");
    match status {
        CustomerStatus::Suspended | CustomerStatus::Closed => {
            if active && instance.cancelled_by().is_none() {
                let action = BillingAction::Cancel {
                    source: CancelSource::Suspension,
                };
                match billing::perform(ctx, &instance, action, who, None).await {
                    Ok(_) | Err(BillingError::InDoubt(_)) => {}
                    Err(e) => anyhow::bail!("cancelling {}: {e}", instance.id),
                }
            }
            let mut current = instances::get(&ctx.pool, instance.id)
                .await?
                .unwrap_or(instance);
            if status == CustomerStatus::Closed && current.desired_state != DesiredState::Stopped {
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
            let ours_to_undo = instance.cancelled_by() == Some(CancelSource::Suspension);
            let customer_ended_it = matches!(
                instance.cancelled_by(),
                Some(CancelSource::Customer | CancelSource::Ops)
            );
            let mut current = instance;
            if ours_to_undo || (!active && !customer_ended_it) {
                match billing::perform(ctx, &current, BillingAction::Renew, who, None).await {
                    Ok(outcome) => current = outcome.instance,
                    // A short wallet is the renewal sweep's to park and retry.
                    Err(e) => {
                        tracing::warn!(instance = %current.id, error = %e, "reactivation could not renew");
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
    Ok(())
}
