//! Schedule ticks (apalis-cron, in every worker process): a tick only enqueues its sweep, under
//! the idempotency key `<kind>:<tick>`, so N processes make one sweep per tick.

use apalis::prelude::{BoxDynError, Data};
use apalis_cron::Tick;
use domain::jobs::{self, SweepKind};
use sqlx::PgPool;

/// What a schedule's ticks enqueue.
#[derive(Clone, Debug)]
pub struct TickTarget {
    /// The sweep.
    pub kind: SweepKind,
    /// Where to enqueue it.
    pub pool: PgPool,
}

/// Enqueues the tick's sweep unless another process already did.
///
/// # Errors
/// Database failures.
pub async fn on_tick(tick: Tick, target: Data<TickTarget>) -> Result<(), BoxDynError> {
    let at = tick.get_timestamp() as i64;
    let enqueued = jobs::enqueue_sweep(&target.pool, target.kind, at).await?;
    tracing::debug!(
        sweep = target.kind.as_str(),
        tick = at,
        enqueued,
        "schedule tick"
    );
    Ok(())
}
