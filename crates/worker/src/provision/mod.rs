//! Drives one instance towards its desired state, one recorded step at a time:
//! `pending → deploying → configuring → (awaiting_credentials | awaiting_connection |
//! starting → running)`.
//!
//! Every step reads the instance, acts upstream, and records the result with a fenced update
//! before the next step, so a restarted or duplicated job continues from the recorded step and
//! two runs at once cannot both act. Deploy has its own exactly-once protocol (`deploy.rs`).

mod chunk;
mod configure;
mod connection;
mod credits;
mod deploy;
mod retire;
mod start;

use std::time::Duration;

use anyhow::Context as _;
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Change, Instance};
use domain::ids::InstanceId;
use domain::model::InstanceState;
use rand::Rng;
use wiro_client::Error as WiroError;

use operations::Services;

/// What the job should do after a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing left to do (done, parked awaiting credentials, or failed for ops).
    Done,
    /// Run again after this delay (waiting on a lease, a backoff, or a slow start).
    RetryAfter(Duration),
}

/// How a step ended.
pub(crate) enum Step {
    /// Recorded progress, or lost a race; read the instance and run the next step now.
    Continue,
    /// Recorded progress and this is the row as recorded: run the next step from it.
    Advanced(Box<Instance>),
    /// Stop here for now.
    Stop(Next),
}

/// The most steps one run takes (a guard against a state machine bug looping forever).
const MAX_STEPS: usize = 50;

/// Advances `id` as far as it can go now.
///
/// # Errors
/// Infrastructure failures (database). Upstream failures are handled inside: transient ones
/// become a backoff, permanent ones fail the order with Wiro's reason.
pub async fn advance(ctx: &Services, id: InstanceId) -> anyhow::Result<Next> {
    advance_from(ctx, id, Step::Continue).await
}

pub use chunk::{CHUNK_WAIT_RUNNING, advance_chunk, chunk_services};

/// [`advance`], going on from a step already taken (`Continue`: from a fresh read).
async fn advance_from(ctx: &Services, id: InstanceId, first: Step) -> anyhow::Result<Next> {
    // The row a step just wrote, when it returned it: the next step needs no read.
    let mut recorded: Option<Box<Instance>> = match first {
        Step::Continue => None,
        Step::Advanced(row) => Some(row),
        Step::Stop(next) => return Ok(next),
    };
    for _ in 0..MAX_STEPS {
        let instance = match recorded.take() {
            Some(row) => *row,
            None => match instances::get(&ctx.pool, id).await? {
                Some(row) => row,
                None => {
                    tracing::warn!(instance = %id, "provisioning job for an unknown instance");
                    return Ok(Next::Done);
                }
            },
        };
        let step = match instance.state {
            // A deleted agent that no longer runs: cancel its renewal.
            InstanceState::Stopped | InstanceState::AwaitingCredentials | InstanceState::Failed
                if instance.deleted_at.is_some() =>
            {
                retire::run(ctx, &instance).await?
            }
            InstanceState::Pending | InstanceState::Deploying => {
                deploy::run(ctx, &instance).await?
            }
            InstanceState::Configuring => configure::run(ctx, &instance).await?,
            InstanceState::AwaitingConnection => connection::run(ctx, &instance).await?,
            InstanceState::OutOfCredits => credits::run(ctx, &instance).await?,
            InstanceState::Starting | InstanceState::Stopping => start::run(ctx, &instance).await?,
            InstanceState::AwaitingCredentials
            | InstanceState::Running
            | InstanceState::Stopped
            | InstanceState::Failed => Step::Stop(Next::Done),
        };
        match step {
            Step::Continue => {}
            Step::Advanced(row) => recorded = Some(row),
            Step::Stop(next) => return Ok(next),
        }
    }
    anyhow::bail!("instance {id} did not settle within {MAX_STEPS} steps")
}

/// Moves to `state` if the row is still at `instance.version` (the fence every step uses).
/// Returns false when someone else changed the instance first; the caller re-reads.
pub(crate) async fn transition(
    ctx: &Services,
    instance: &Instance,
    change: Change,
) -> anyhow::Result<bool> {
    Ok(
        instances::update(&ctx.pool, instance.id, instance.version, change)
            .await?
            .is_some(),
    )
}

/// [`transition`] as a step: on to the next step from the recorded row, or (someone else
/// changed the instance first) from a fresh read.
pub(crate) async fn advance_to(
    ctx: &Services,
    instance: &Instance,
    change: Change,
) -> anyhow::Result<Step> {
    Ok(
        match instances::update(&ctx.pool, instance.id, instance.version, change).await? {
            Some(row) => Step::Advanced(Box::new(row)),
            None => Step::Continue,
        },
    )
}

/// Like [`transition`], recording what `agent` shows with it (renewals it reveals are booked).
pub(crate) async fn transition_observed(
    ctx: &Services,
    instance: &Instance,
    agent: &wiro_client::models::UserAgent,
    change: Change,
) -> anyhow::Result<Option<Instance>> {
    Ok(operations::observe::record_fenced(&ctx.pool, instance, agent, change).await?)
}

/// Ends the order in `failed` with Wiro's (or our) reason, for ops to see and retry.
pub(crate) async fn fail(
    ctx: &Services,
    instance: &Instance,
    step: &str,
    reason: &str,
) -> anyhow::Result<Step> {
    let change = Change {
        state: Some(InstanceState::Failed),
        last_error: Some(Some(reason.to_owned())),
        failed_step: Some(Some(step.to_owned())),
        ..Change::default()
    };
    if !transition(ctx, instance, change).await? {
        return Ok(Step::Continue);
    }
    tracing::warn!(instance = %instance.id, step, reason, "provisioning failed");
    audit::record(
        &ctx.pool,
        NewAudit {
            actor: &ctx.actor(),
            action: "provision.fail",
            target: Some(format!("instance:{}", instance.id)),
            request_id: None,
            outcome: "failed",
            detail: serde_json::json!({"step": step, "reason": reason}),
        },
    )
    .await
    .context("writing the audit entry")?;
    Ok(Step::Stop(Next::Done))
}

/// A transient upstream failure: count it and back off, or give up after
/// `provisioning.max_step_failures` in a row.
pub(crate) async fn transient(
    ctx: &Services,
    instance: &Instance,
    step: &str,
    error: &WiroError,
) -> anyhow::Result<Step> {
    let failures = instance.step_failures + 1;
    let limit = ctx.settings.provisioning.max_step_failures;
    if failures as u32 >= limit {
        let reason = format!("gave up after {failures} attempts: {error}");
        return fail(ctx, instance, step, &reason).await;
    }
    let change = Change {
        step_failures: Some(failures),
        last_error: Some(Some(error.to_string())),
        ..Change::default()
    };
    if !transition(ctx, instance, change).await? {
        return Ok(Step::Continue);
    }
    let delay = backoff(ctx, failures as u32);
    tracing::info!(instance = %instance.id, step, %error, ?delay, "transient upstream failure, backing off");
    Ok(Step::Stop(Next::RetryAfter(delay)))
}

/// Exponential backoff with full jitter over [base, min(max, base·2^(n-1))].
pub(crate) fn backoff(ctx: &Services, failures: u32) -> Duration {
    let settings = &ctx.settings.provisioning;
    let cap = settings
        .backoff_base
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(settings.backoff_max);
    let spread = cap.saturating_sub(settings.backoff_base);
    settings.backoff_base + spread.mul_f64(rand::rng().random::<f64>())
}

/// Handles an upstream error the same way in every step: refusals fail the order with Wiro's
/// message, transient failures back off.
pub(crate) async fn upstream_error(
    ctx: &Services,
    instance: &Instance,
    step: &str,
    error: &WiroError,
) -> anyhow::Result<Step> {
    if error.is_transient() {
        transient(ctx, instance, step, error).await
    } else {
        let reason = error
            .wiro()
            .map_or_else(|| error.to_string(), ToString::to_string);
        fail(ctx, instance, step, &reason).await
    }
}
