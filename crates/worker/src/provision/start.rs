//! Bring the agent to its desired run state and wait for Wiro to get there: Start and wait for
//! Running (4), or Stop and wait for Stopped (0). Polls Detail with backoff inside the job for
//! `provisioning.wait_running_inline`, then reschedules itself rather than hold a worker slot.

use std::time::Duration;

use domain::db::instances::{Change, Instance};
use domain::model::InstanceState;
use tokio::time::Instant;
use wiro_client::WiroError;
use wiro_client::models::{AgentStatus, UserAgent};

use super::{Next, Step, fail, transition, transition_observed, upstream_error};
use operations::Services;

const FIRST_POLL: Duration = Duration::from_millis(100);
const MAX_POLL: Duration = Duration::from_secs(2);
const RESCHEDULE: Duration = Duration::from_secs(2);

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    let Some(guid) = instance.wiro_guid.clone() else {
        transition(ctx, instance, Change::to(InstanceState::Deploying)).await?;
        return Ok(Step::Continue);
    };
    // A suspended or closed customer's agent is never started, whatever was ordered.
    let customer_active = domain::db::customers::get(&ctx.pool, instance.customer_id)
        .await?
        .is_some_and(|c| c.status == domain::model::CustomerStatus::Active);
    match begin(ctx, instance, &guid, customer_active).await? {
        Action::Finish(step) => Ok(step),
        Action::Wait => poll(ctx, instance, &guid, None).await,
    }
}

/// The step's first part, before any Detail: a suspended or closed customer's agent goes to
/// stop instead, and an agent the step before just observed Stopped is started without asking
/// again (if that was stale, Start's refusal says so and the poll goes on as usual).
pub(super) async fn begin(
    ctx: &Services,
    instance: &Instance,
    guid: &str,
    customer_active: bool,
) -> anyhow::Result<Action> {
    if instance.state == InstanceState::Starting && !customer_active {
        transition(ctx, instance, Change::to(InstanceState::Stopping)).await?;
        return Ok(Action::Finish(Step::Continue));
    }
    if instance.state == InstanceState::Starting && instance.wiro_status == Some(0) {
        return call_start(ctx, instance, guid).await;
    }
    Ok(Action::Wait)
}

/// Polls Detail (starting from `first`, when the caller already asked) until the agent is
/// where the step wants it, acting on what it shows, for at most
/// `provisioning.wait_running_inline`.
pub(super) async fn poll(
    ctx: &Services,
    instance: &Instance,
    guid: &str,
    mut first: Option<UserAgent>,
) -> anyhow::Result<Step> {
    let want_running = instance.state == InstanceState::Starting;
    let deadline = Instant::now() + ctx.settings.provisioning.wait_running_inline;
    let mut interval = FIRST_POLL;
    let mut current = instance.clone();
    loop {
        let agent = match first.take() {
            Some(agent) => agent,
            None => match ctx.wiro.detail(guid).await {
                Ok(agent) => agent,
                Err(e) => return upstream_error(ctx, &current, step_name(want_running), &e).await,
            },
        };
        let action = if want_running {
            towards_running(ctx, &current, &agent).await?
        } else {
            towards_stopped(ctx, &current, &agent).await?
        };
        match action {
            Action::Wait => {}
            Action::Finish(step) => return Ok(step),
        }
        // Polling has a deadline: an agent that never gets there fails for ops instead of
        // being polled forever.
        let waited = (chrono::Utc::now() - current.state_changed_at)
            .to_std()
            .unwrap_or_default();
        let limit = ctx.settings.provisioning.start_deadline;
        if waited > limit {
            let reason = format!(
                "the agent did not reach {} within {}s (Wiro status {})",
                if want_running { "Running" } else { "Stopped" },
                limit.as_secs(),
                agent.status.code()
            );
            return fail(ctx, &current, step_name(want_running), &reason).await;
        }
        // Keep a status change visible while we wait (and notice concurrent changes).
        if current.wiro_status != Some(agent.status.code() as i16) {
            match transition_observed(ctx, &current, &agent, Change::default()).await? {
                Some(updated) if updated.state == current.state => current = updated,
                _ => return Ok(Step::Continue), // someone moved it on; re-read
            }
        }
        if Instant::now() >= deadline {
            return Ok(Step::Stop(Next::RetryAfter(RESCHEDULE)));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_POLL);
    }
}

/// What a Start (or the step's first part) leaves to do.
pub(super) enum Action {
    /// Poll Detail.
    Wait,
    /// The step ended.
    Finish(Step),
}

fn step_name(want_running: bool) -> &'static str {
    if want_running { "start" } else { "stop" }
}

async fn settle(
    ctx: &Services,
    instance: &Instance,
    agent: &UserAgent,
    state: InstanceState,
) -> anyhow::Result<Action> {
    Ok(Action::Finish(
        match transition_observed(ctx, instance, agent, Change::to(state)).await? {
            Some(recorded) => Step::Advanced(Box::new(recorded)),
            None => Step::Continue,
        },
    ))
}

async fn towards_running(
    ctx: &Services,
    instance: &Instance,
    agent: &UserAgent,
) -> anyhow::Result<Action> {
    match agent.status {
        AgentStatus::Running => settle(ctx, instance, agent, InstanceState::Running).await,
        AgentStatus::Queued | AgentStatus::Starting | AgentStatus::Stopping => Ok(Action::Wait),
        AgentStatus::SetupRequired => {
            let next = if instance.pending_config.is_some() {
                InstanceState::Configuring
            } else {
                InstanceState::AwaitingCredentials
            };
            settle(ctx, instance, agent, next).await
        }
        AgentStatus::Error => {
            let retries = ctx.settings.provisioning.start_retries;
            if instance.step_failures as u32 >= retries {
                let reason = format!("agent went to Error (5) {retries} times while starting");
                return Ok(Action::Finish(fail(ctx, instance, "start", &reason).await?));
            }
            let counted = Change {
                step_failures: Some(instance.step_failures + 1),
                last_error: Some(Some("agent in Error (5); starting it again".into())),
                ..Change::default()
            };
            if !transition(ctx, instance, counted).await? {
                return Ok(Action::Finish(Step::Continue));
            }
            call_start(ctx, instance, &agent.guid).await
        }
        AgentStatus::Stopped => call_start(ctx, instance, &agent.guid).await,
        AgentStatus::Unknown(n) => {
            let reason = format!("Wiro reported an unknown status {n}");
            Ok(Action::Finish(fail(ctx, instance, "start", &reason).await?))
        }
    }
}

async fn call_start(ctx: &Services, instance: &Instance, guid: &str) -> anyhow::Result<Action> {
    // Started, or already on its way: keep polling in this step.
    match ctx.wiro.start(guid).await {
        Ok(()) => Ok(Action::Wait),
        Err(e) => match e.wiro() {
            Some(
                WiroError::AlreadyRunning | WiroError::AlreadyQueued | WiroError::CurrentlyStopping,
            ) => Ok(Action::Wait),
            Some(WiroError::SubscriptionRequiredToStart) => {
                // The plan ended (expired, or a cancel took effect): nothing to provision; the
                // agent rests until a renewal starts it again.
                let change = Change {
                    last_error: Some(Some("the subscription is not active".into())),
                    ..Change::to(InstanceState::Stopped)
                };
                transition(ctx, instance, change).await?;
                Ok(Action::Finish(Step::Continue))
            }
            Some(WiroError::NoCreditsAvailable) => {
                // Both credit pools are empty: the top-up policy acts in the next step.
                let change = Change {
                    last_error: Some(Some(e.to_string())),
                    ..Change::to(InstanceState::OutOfCredits)
                };
                transition(ctx, instance, change).await?;
                Ok(Action::Finish(Step::Continue))
            }
            Some(WiroError::SetupIncomplete) => {
                transition(
                    ctx,
                    instance,
                    Change::to(InstanceState::AwaitingCredentials),
                )
                .await?;
                Ok(Action::Finish(Step::Continue))
            }
            _ => Ok(Action::Finish(
                upstream_error(ctx, instance, "start", &e).await?,
            )),
        },
    }
}

async fn towards_stopped(
    ctx: &Services,
    instance: &Instance,
    agent: &UserAgent,
) -> anyhow::Result<Action> {
    match agent.status {
        AgentStatus::Stopped | AgentStatus::SetupRequired | AgentStatus::Error => {
            settle(ctx, instance, agent, InstanceState::Stopped).await
        }
        AgentStatus::Stopping => Ok(Action::Wait),
        AgentStatus::Queued | AgentStatus::Starting | AgentStatus::Running => {
            match ctx.wiro.stop(&agent.guid).await {
                Ok(()) => Ok(Action::Wait),
                Err(e)
                    if matches!(
                        e.wiro(),
                        Some(WiroError::AlreadyStopped | WiroError::CurrentlyStopping)
                    ) =>
                {
                    Ok(Action::Wait)
                }
                Err(e) => Ok(Action::Finish(
                    upstream_error(ctx, instance, "stop", &e).await?,
                )),
            }
        }
        AgentStatus::Unknown(n) => {
            let reason = format!("Wiro reported an unknown status {n}");
            Ok(Action::Finish(fail(ctx, instance, "stop", &reason).await?))
        }
    }
}
