//! A chunk of a batch's new orders: their Deploys set-based (`operations::deploy::chunk`), then
//! every order on from its recorded step, side by side. An order that is not a fresh `pending`
//! one when the chunk runs (a retried chunk, an order deleted or changed) simply goes on from
//! its recorded step, as its own job would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use domain::db::instances::{self, Instance};
use domain::ids::InstanceId;
use domain::model::InstanceState;
use operations::Services;
use operations::deploy::chunk::deploy_chunk;
use operations::observe::{FencedWrite, fenced_write};

use super::configure::{self, Configured};
use super::{Next, Step, advance_from, deploy};

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
    let (at_configure, mut steps): (Vec<_>, Vec<_>) = starts.into_iter().partition(
        |(_, step)| matches!(step, Step::Advanced(row) if row.state == InstanceState::Configuring),
    );
    let rows: Vec<Instance> = at_configure
        .into_iter()
        .filter_map(|(_, step)| match step {
            Step::Advanced(row) => Some(*row),
            _ => None,
        })
        .collect();
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
    if !together.is_empty() {
        let ids: Vec<InstanceId> = together.iter().map(|(id, ..)| *id).collect();
        let mut conn = ctx.pool.acquire().await?;
        let mut written: HashMap<InstanceId, Instance> =
            instances::update_many(&mut conn, together)
                .await?
                .into_iter()
                .map(|row| (row.id, row))
                .collect();
        for id in ids {
            // Not written: changed meanwhile, so from a fresh read.
            let step = written
                .remove(&id)
                .map_or(Step::Continue, |row| Step::Advanced(Box::new(row)));
            steps.push((id, step));
        }
    }
    Ok(steps)
}
