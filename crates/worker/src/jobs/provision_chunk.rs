//! `provision-bulk-chunk` queue: a chunk of a new ops batch's orders (`provision::advance_chunk`).

use apalis::prelude::{BoxDynError, Data, TaskId};
use domain::jobs::{BULK_CHUNK_QUEUE, Lane, ProvisionChunk};
use tracing::Instrument;

use super::provision_instance::until_done;
use crate::provision;
use operations::Services;

/// Advances the chunk's orders together; each then goes on alone (a wait of its own is slept
/// here or becomes a follow-up job in the bulk lane).
///
/// # Errors
/// Infrastructure failures (database); apalis then retries the chunk, whose orders go on from
/// their recorded steps.
pub async fn provision_chunk(
    job: ProvisionChunk,
    ctx: Data<Services>,
    task_id: TaskId,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = BULK_CHUNK_QUEUE, job_id = %task_id, orders = job.instance_ids.len(), trace_id = tracing::field::Empty);
    domain::trace::continue_trace(&span, job.traceparent.as_deref());
    super::measured(&ctx.pool, BULK_CHUNK_QUEUE, &task_id, drive(job, &ctx))
        .instrument(span)
        .await
}

async fn drive(job: ProvisionChunk, ctx: &Services) -> Result<(), BoxDynError> {
    let nexts = provision::advance_chunk(ctx, &job.instance_ids).await?;
    let rest = nexts
        .into_iter()
        .map(|(id, next)| until_done(ctx, id, next, Lane::Bulk));
    futures::future::join_all(rest)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, BoxDynError>>()?;
    Ok(())
}
