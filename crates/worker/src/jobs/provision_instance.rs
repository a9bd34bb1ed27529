//! `provision` and `provision-bulk` queues: drive an instance towards its desired state.

use std::time::Duration;

use apalis::prelude::{BoxDynError, Data, TaskId};
use domain::ids::InstanceId;
use domain::jobs::{self, Lane, ProvisionInstance};
use tracing::Instrument;

use crate::provision::{self, Next};
use operations::Services;

/// Waits shorter than this are slept inside the job: apalis schedules in whole seconds.
const INLINE_WAIT: Duration = Duration::from_secs(1);

/// Runs [`provision::advance`] until it is done or must wait; a longer wait becomes a delayed
/// follow-up job, so no worker slot is held while nothing happens.
///
/// # Errors
/// Infrastructure failures (database); apalis then retries the job.
pub async fn provision_instance(
    job: ProvisionInstance,
    ctx: Data<Services>,
    lane: Data<Lane>,
    task_id: TaskId,
) -> Result<(), BoxDynError> {
    let lane = *lane;
    let queue = lane.queue();
    let span = tracing::info_span!("job", queue, job_id = %task_id, instance = %job.instance_id, trace_id = tracing::field::Empty);
    domain::trace::continue_trace(&span, job.traceparent.as_deref());
    super::measured(&ctx.pool, queue, &task_id, drive(job, &ctx, lane))
        .instrument(span)
        .await
}

async fn drive(job: ProvisionInstance, ctx: &Services, lane: Lane) -> Result<(), BoxDynError> {
    let next = provision::advance(ctx, job.instance_id).await?;
    until_done(ctx, job.instance_id, next, lane).await
}

/// Goes on after a run that ended in `next`: a short wait is slept here and the instance
/// advanced again; a longer one becomes a follow-up job in `lane`.
pub(super) async fn until_done(
    ctx: &Services,
    id: InstanceId,
    mut next: Next,
    lane: Lane,
) -> Result<(), BoxDynError> {
    loop {
        match next {
            Next::Done => return Ok(()),
            Next::RetryAfter(wait) if wait < INLINE_WAIT => {
                tokio::time::sleep(wait).await;
                next = provision::advance(ctx, id).await?;
            }
            Next::RetryAfter(wait) => {
                let mut conn = ctx.pool.acquire().await?;
                // The follow-up stays in this job's lane.
                jobs::enqueue_provision_in(&mut conn, &[id], lane, wait).await?;
                tracing::debug!(instance = %id, ?wait, "rescheduled");
                return Ok(());
            }
        }
    }
}
