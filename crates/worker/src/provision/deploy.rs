//! The deploy step: Deploy exactly once through `operations::deploy` (intent, lease, deadline,
//! correlator, evidence after a lost answer, fence, charge once). This step only waits out
//! leases and quiet periods and turns outcomes into provisioning steps.

use std::time::Duration;

use ::operations::Services;
use ::operations::deploy::{self, Deployed};
use ::operations::protocol::Judged;
use domain::db::instances::{Change, Instance};
use domain::db::operations;
use domain::model::{InstanceState, OperationKind};

use super::{Next, Step, transition, upstream_error};

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    if instance.wiro_guid.is_some() {
        // Deployed; the state only lags behind.
        transition(ctx, instance, Change::to(InstanceState::Configuring)).await?;
        return Ok(Step::Continue);
    }
    if instance.state == InstanceState::Pending {
        // Pending means no Deploy intent was written, so nothing was sent: an order its
        // customer deleted by now is never deployed (and never charged).
        let next = if instance.deleted_at.is_some() {
            InstanceState::Stopped
        } else {
            InstanceState::Deploying
        };
        transition(ctx, instance, Change::to(next)).await?;
        return Ok(Step::Continue);
    }
    if let Some(op) = operations::in_flight(&ctx.pool, instance.id, OperationKind::Deploy).await? {
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
    match deploy::deploy(ctx, instance).await? {
        Deployed::Done | Deployed::InFlight | Deployed::InDoubt => Ok(Step::Continue),
        Deployed::NotSent => Ok(Step::Stop(Next::RetryAfter(Duration::from_secs(1)))),
        Deployed::Refused(error) => upstream_error(ctx, instance, "deploy", &error).await,
    }
}
