//! `out_of_credits`: both of the agent's credit pools are empty (a reply carried
//! `[SYSTEM_CREDIT_LIMIT_REACHED]`, or Start answered `No credits available`). The top-up policy
//! acts at once — Pro: a pack within the monthly cap; Starter: an alert or an upgrade, by
//! `billing.starter_policy` — and the agent starts again as soon as Wiro shows credits. If the
//! policy cannot help (cap reached, alert only, top-ups off), the agent rests here, clearly, and
//! reconciliation hands it back to this step now and then: a renewal's fresh monthly credits or
//! a pack bought by hand start it again.

use domain::db::instances::{self, Change, Instance};
use domain::model::{DesiredState, InstanceState};
use wiro_client::models::{Subscription, UserAgent};

use super::{Next, Step, transition, transition_observed, upstream_error};
use crate::sweeps::topups;
use operations::Services;

fn credits(agent: &UserAgent) -> i64 {
    agent.monthly_credits().unwrap_or(0) + agent.extracredits.unwrap_or(0)
}

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    let Some(guid) = instance.wiro_guid.clone() else {
        transition(ctx, instance, Change::to(InstanceState::Deploying)).await?;
        return Ok(Step::Continue);
    };
    if instance.desired_state == DesiredState::Stopped {
        transition(ctx, instance, Change::to(InstanceState::Stopping)).await?;
        return Ok(Step::Continue);
    }
    let agent = match ctx.wiro.detail(&guid).await {
        Ok(agent) => agent,
        Err(e) => return upstream_error(ctx, instance, "credits", &e).await,
    };
    if let Some(step) = leave_if_possible(ctx, instance, &agent).await? {
        return Ok(step);
    }
    topups::top_up_now(ctx, instance.id).await?;
    // The policy may have bought credits (or upgraded): look again.
    let Some(current) = instances::get(&ctx.pool, instance.id).await? else {
        return Ok(Step::Stop(Next::Done));
    };
    if current.state != InstanceState::OutOfCredits {
        return Ok(Step::Continue);
    }
    let agent = match ctx.wiro.detail(&guid).await {
        Ok(agent) => agent,
        Err(e) => return upstream_error(ctx, &current, "credits", &e).await,
    };
    if let Some(step) = leave_if_possible(ctx, &current, &agent).await? {
        return Ok(step);
    }
    tracing::info!(instance = %instance.id, "out of credits; the top-up policy could not add any");
    transition_observed(ctx, &current, &agent, Change::default()).await?;
    Ok(Step::Stop(Next::Done))
}

/// Starts again when Wiro shows credits; rests in `stopped` when the subscription ended (the
/// renewal sweep takes it from there). `None`: still out of credits.
async fn leave_if_possible(
    ctx: &Services,
    instance: &Instance,
    agent: &UserAgent,
) -> anyhow::Result<Option<Step>> {
    let subscribed = agent
        .subscription
        .as_ref()
        .is_some_and(Subscription::is_active);
    let next = if !subscribed {
        Change {
            last_error: Some(Some("the subscription is not active".into())),
            ..Change::to(InstanceState::Stopped)
        }
    } else if credits(agent) > 0 {
        Change::to(InstanceState::Starting)
    } else {
        return Ok(None);
    };
    transition_observed(ctx, instance, agent, next).await?;
    Ok(Some(Step::Continue))
}
