//! The deploy step: Deploy exactly once through `operations::deploy` (intent, lease, deadline,
//! correlator, evidence after a lost answer, fence, charge once). This step only waits out
//! leases and quiet periods and turns outcomes into provisioning steps.

use std::time::Duration;

use ::operations::Services;
use ::operations::deploy::{self, Deployed};
use ::operations::protocol::Judged;
use domain::db::instances::{self, Change, Instance};
use domain::db::operations;
use domain::model::{InstanceState, OperationKind};

use super::{Next, Step, advance_to, upstream_error};

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    if instance.wiro_guid.is_some() {
        // Deployed; the state only lags behind.
        return advance_to(ctx, instance, Change::to(InstanceState::Configuring)).await;
    }
    if instance.state == InstanceState::Pending {
        // Pending means no Deploy intent was written, so nothing was sent: an order its
        // customer deleted by now is never deployed (and never charged). Otherwise the
        // Deploy's intent moves it to `deploying` (`operations::deploy`).
        if instance.deleted_at.is_some() {
            return advance_to(ctx, instance, Change::to(InstanceState::Stopped)).await;
        }
    } else if let Some(op) =
        operations::in_flight(&ctx.pool, instance.id, OperationKind::Deploy).await?
    {
        if !op.lease_over {
            // Its holder may still be waiting on Wiro; only it may decide for now.
            return Ok(Step::Stop(Next::RetryAfter(
                op.lease_left() + Duration::from_millis(100),
            )));
        }
        return Ok(match deploy::judge(ctx, &op).await? {
            Judged::Settled => Step::Continue,
            // No trace yet: look again after the quiet period (or retry a failed search).
            Judged::Unresolved => {
                Step::Stop(Next::RetryAfter(ctx.settings.operations.quiet_period))
            }
        });
    }
    let outcome = deploy::deploy(ctx, instance).await?;
    after(ctx, instance.id, outcome).await
}

/// The step a Deploy's outcome (this order's own, or its chunk's) leads to.
pub(super) async fn after(
    ctx: &Services,
    id: domain::ids::InstanceId,
    outcome: Deployed,
) -> anyhow::Result<Step> {
    match outcome {
        Deployed::Done(Some(recorded)) => Ok(Step::Advanced(recorded)),
        Deployed::Done(None) | Deployed::InFlight | Deployed::InDoubt => Ok(Step::Continue),
        Deployed::NotSent => Ok(Step::Stop(Next::RetryAfter(Duration::from_secs(1)))),
        Deployed::Refused(error) => {
            // The intent may have moved a pending order on: count the refusal on the row as it
            // is now, or the fence would turn it into a second Deploy.
            let Some(current) = instances::get(&ctx.pool, id).await? else {
                return Ok(Step::Continue);
            };
            upstream_error(ctx, &current, "deploy", &error).await
        }
    }
}
