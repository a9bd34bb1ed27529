//! A chunk of a batch's new orders: their Deploys set-based (`operations::deploy::chunk`), then
//! the configure and start steps together (calls side by side, the orders that go on recorded
//! in one fenced statement per shape), then every order on from its recorded step, side by
//! side. An order that is not a fresh `pending` one when the chunk runs (a retried chunk, an
//! order deleted or changed) simply goes on from its recorded step, as its own job would; one
//! that leaves the happy path of a step together goes that step's single order's way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::db::customers;
use domain::db::instances::{self, Change, Instance};
use domain::ids::{CustomerId, InstanceId};
use domain::model::InstanceState;
use operations::Services;
use operations::deploy::chunk::deploy_chunk;
use operations::observe::{FencedWrite, fenced_write};
use wiro_client::models::{AgentStatus, UserAgent};

use super::configure::{self, Configured};
use super::start::{self, Action};
use super::{Next, Step, advance_from, deploy, upstream_error};

/// How long a chunk waits inline for its orders to reach Running (at most; a deployment's
/// `provisioning.wait_running_inline` may be shorter). A chunk holds its worker slot until its
/// last order is done or rescheduled: one slow starter must not hold seven finished orders'
/// slots for long, so it goes on as its own job in the bulk lane.
pub const CHUNK_WAIT_RUNNING: Duration = Duration::from_secs(2);

/// The services a chunk runs with: `ctx` with the inline wait for Running capped at
/// [`CHUNK_WAIT_RUNNING`] (made once per worker, not per chunk).
pub fn chunk_services(ctx: &Services) -> Services {
    let mut settings = (*ctx.settings).clone();
    let wait = &mut settings.provisioning.wait_running_inline;
    *wait = (*wait).min(CHUNK_WAIT_RUNNING);
    Services {
        settings: Arc::new(settings),
        ..ctx.clone()
    }
}

/// Advances every order of `ids` as far as it can go now; returns what each needs next.
///
/// # Errors
/// Infrastructure failures (database) of the chunk's Deploys, or of any order (reported after
/// every order has run as far as it could).
pub async fn advance_chunk(
    ctx: &Services,
    ids: &[InstanceId],
) -> anyhow::Result<Vec<(InstanceId, Next)>> {
    let rows = instances::get_many(&ctx.pool, ids).await?;
    let (fresh, others): (Vec<Instance>, Vec<Instance>) = rows.into_iter().partition(|row| {
        row.state == InstanceState::Pending && row.deleted_at.is_none() && row.wiro_guid.is_none()
    });
    let mut starts: Vec<(InstanceId, Step)> = others
        .into_iter()
        .map(|row| (row.id, Step::Advanced(Box::new(row))))
        .collect();
    if !fresh.is_empty() {
        let mut outcomes: HashMap<InstanceId, _> =
            deploy_chunk(ctx, &fresh).await?.into_iter().collect();
        for order in &fresh {
            let step = match outcomes.remove(&order.id) {
                Some(outcome) => deploy::after(ctx, order.id, outcome).await?,
                // Changed since it was read: from a fresh read.
                None => Step::Continue,
            };
            starts.push((order.id, step));
        }
    }
    let starts = configure_together(ctx, starts).await?;
    let starts = start_together(ctx, starts).await?;
    let runs = starts
        .into_iter()
        .map(|(id, first)| async move { (id, advance_from(ctx, id, first).await) });
    let mut nexts = Vec::with_capacity(ids.len());
    let mut failure = None;
    for (id, result) in futures::future::join_all(runs).await {
        match result {
            Ok(next) => nexts.push((id, next)),
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "a chunk's order failed to advance");
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(nexts),
    }
}

/// The configure step for every order of the chunk at it (`configuring`, from the row its
/// Deploy recorded): Update side by side, then the orders that go on to start recorded in one
/// fenced statement per shape (`instances::update_many`); any other (waiting for the customer,
/// revealing a renewal, failed) is recorded one by one as a single order's is. Returns each
/// order's step.
async fn configure_together(
    ctx: &Services,
    starts: Vec<(InstanceId, Step)>,
) -> anyhow::Result<Vec<(InstanceId, Step)>> {
    let (rows, mut steps) = rows_where(starts, |row| row.state == InstanceState::Configuring);
    let decided =
        futures::future::join_all(rows.iter().map(|row| configure::decide(ctx, row))).await;
    let mut together = Vec::new();
    for (row, decided) in rows.iter().zip(decided) {
        let decision = match decided? {
            Configured::Ended(step) => {
                steps.push((row.id, step));
                continue;
            }
            Configured::Decided(decision) => decision,
        };
        if decision.goes_on()
            && let FencedWrite::Write(change) =
                fenced_write(row, &decision.agent, decision.change.clone())
        {
            together.push((row.id, row.version, *change));
            continue;
        }
        steps.push((row.id, configure::record(ctx, row, *decision).await?));
    }
    steps.extend(write_together(ctx, together).await?);
    Ok(steps)
}

/// The start step for every order of the chunk starting (`starting`, from the row configure
/// recorded): the customers read in one statement, each order's Start and then its first
/// Detail side by side with the others', and the orders it shows Running recorded in one fenced
/// statement; any other goes on the single order's way from the Detail it got (waits, retries,
/// failures).
async fn start_together(
    ctx: &Services,
    steps: Vec<(InstanceId, Step)>,
) -> anyhow::Result<Vec<(InstanceId, Step)>> {
    let (rows, mut steps) = rows_where(steps, |row| {
        row.state == InstanceState::Starting && row.wiro_guid.is_some()
    });
    if rows.is_empty() {
        return Ok(steps);
    }
    let customers: Vec<CustomerId> = rows.iter().map(|row| row.customer_id).collect();
    let active = customers::active_among(&ctx.pool, &customers).await?;
    let active = &active;
    // Each order's first Detail right after its own Start, not after the chunk's slowest Start:
    // nothing is recorded between the two, so the chunk has no reason to wait there.
    let begun = futures::future::join_all(rows.into_iter().map(|row| async move {
        let guid = row.wiro_guid.as_deref().unwrap_or_default();
        let begun = match start::begin(ctx, &row, guid, active.contains(&row.customer_id)).await {
            Ok(Action::Wait) => Ok(Begun::Polled(Box::new(ctx.wiro.detail(guid).await))),
            Ok(Action::Finish(step)) => Ok(Begun::Finished(step)),
            Err(e) => Err(e),
        };
        (row, begun)
    }))
    .await;
    let mut together = Vec::new();
    let mut alone = Vec::new();
    for (row, begun) in begun {
        match begun? {
            Begun::Finished(step) => steps.push((row.id, step)),
            Begun::Polled(detail) => match *detail {
                Ok(agent) if agent.status == AgentStatus::Running => {
                    match fenced_write(&row, &agent, Change::to(InstanceState::Running)) {
                        FencedWrite::Write(change) => {
                            together.push((row.id, row.version, *change));
                        }
                        _ => alone.push((row, Ok(agent))),
                    }
                }
                detail => alone.push((row, detail)),
            },
        }
    }
    let alone = futures::future::join_all(alone.into_iter().map(|(row, detail)| async move {
        let guid = row.wiro_guid.as_deref().unwrap_or_default();
        let step = match detail {
            Ok(agent) => start::poll(ctx, &row, guid, Some(agent)).await,
            Err(e) => upstream_error(ctx, &row, "start", &e).await,
        };
        step.map(|step| (row.id, step))
    }))
    .await;
    for step in alone {
        steps.push(step?);
    }
    steps.extend(write_together(ctx, together).await?);
    Ok(steps)
}

/// Where an order of [`start_together`] is after its Start: done with the step (waiting for
/// nothing more, or gone another way), or its first Detail's answer.
enum Begun {
    Finished(Step),
    Polled(Box<wiro_client::Result<UserAgent>>),
}

/// Splits off the orders whose step recorded a row that `at` picks (a step together starts from
/// it); the others' steps are returned as they were.
fn rows_where(
    steps: Vec<(InstanceId, Step)>,
    at: impl Fn(&Instance) -> bool,
) -> (Vec<Instance>, Vec<(InstanceId, Step)>) {
    let mut rows = Vec::new();
    let mut others = Vec::new();
    for (id, step) in steps {
        match step {
            Step::Advanced(row) if at(&row) => rows.push(*row),
            step => others.push((id, step)),
        }
    }
    (rows, others)
}

/// Writes changes fenced on their versions in one statement per shape: each written order goes
/// on from its recorded row, one changed meanwhile from a fresh read.
async fn write_together(
    ctx: &Services,
    together: Vec<(InstanceId, i64, Change)>,
) -> anyhow::Result<Vec<(InstanceId, Step)>> {
    if together.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<InstanceId> = together.iter().map(|(id, ..)| *id).collect();
    let mut conn = ctx.pool.acquire().await?;
    let mut written: HashMap<InstanceId, Instance> = instances::update_many(&mut conn, together)
        .await?
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    Ok(ids
        .into_iter()
        .map(|id| {
            let step = written
                .remove(&id)
                .map_or(Step::Continue, |row| Step::Advanced(Box::new(row)));
            (id, step)
        })
        .collect())
}
