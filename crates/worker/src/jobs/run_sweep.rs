//! `sweeps` queue: run one scheduled sweep.

use apalis::prelude::{BoxDynError, Data, TaskId};
use domain::jobs::{SWEEP_QUEUE, Sweep};
use tracing::Instrument;

use crate::sweeps;
use operations::Services;

/// Runs the sweep the tick asked for.
///
/// # Errors
/// Infrastructure failures; apalis retries the job.
pub async fn run_sweep(
    job: Sweep,
    ctx: Data<Services>,
    task_id: TaskId,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = SWEEP_QUEUE, job_id = %task_id, sweep = job.kind.as_str(), tick = job.tick, trace_id = tracing::field::Empty);
    domain::trace::continue_trace(&span, None);
    super::measured(&ctx.pool, SWEEP_QUEUE, &task_id, async {
        sweeps::run(&ctx, job.kind).await.map_err(Into::into)
    })
    .instrument(span)
    .await
}
