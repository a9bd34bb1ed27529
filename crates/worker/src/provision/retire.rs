//! A deleted agent, once stopped (or never started): its subscription is cancelled at the
//! period end through the exactly-once protocol, as the customer's own cancel (so nothing of
//! ours ever takes it back). Wiro has no immediate cancel; the agent is not renewed.

use std::time::Duration;

use domain::db::instances::Instance;
use domain::model::CancelSource;
use operations::Services;
use operations::billing::{self, BillingAction, BillingError};
use operations::protocol::Requester;

use super::{Next, Step};

/// While another subscription change of the agent is unresolved, come back after this.
const BUSY: Duration = Duration::from_secs(10);

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    let active = instance.subscription_status.as_deref() == Some("active");
    if instance.wiro_guid.is_none() || !active || instance.cancelled_by().is_some() {
        return Ok(Step::Stop(Next::Done));
    }
    let actor = ctx.actor();
    let who = Requester {
        actor: &actor,
        request_id: None,
        capped: false,
    };
    let cancel = BillingAction::Cancel {
        source: CancelSource::Customer,
    };
    Ok(
        match billing::perform(ctx, instance, cancel, who, None).await {
            // Recorded: the next step sees the cancellation and is done.
            Ok(_) => Step::Continue,
            // Settled by evidence after the lease; the job comes back to see how it ended (and
            // sends again only if it never happened).
            Err(BillingError::InDoubt(_)) => {
                Step::Stop(Next::RetryAfter(ctx.settings.operations.lease))
            }
            Err(BillingError::InFlight(_) | BillingError::Upstream(_)) => {
                Step::Stop(Next::RetryAfter(BUSY))
            }
            Err(BillingError::Pointless(..)) => Step::Stop(Next::Done),
            Err(e) => {
                tracing::warn!(instance = %instance.id, error = %e, "cancelling a deleted agent was refused");
                Step::Stop(Next::Done)
            }
        },
    )
}
