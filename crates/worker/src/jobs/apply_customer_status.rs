//! `customer` queue: apply a customer's status (suspend, reactivate, close) to its agents.

use apalis::prelude::{BoxDynError, Data, TaskId};
use domain::jobs::{ApplyCustomerStatus, CUSTOMER_QUEUE};
use tracing::Instrument;

use crate::sweeps::customer_status;
use operations::Services;

/// Applies the status.
///
/// # Errors
/// Infrastructure or upstream failures; apalis retries the job.
pub async fn apply_customer_status(
    job: ApplyCustomerStatus,
    ctx: Data<Services>,
    task_id: TaskId,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", queue = CUSTOMER_QUEUE, job_id = %task_id, customer = %job.customer_id, trace_id = tracing::field::Empty);
    domain::trace::continue_trace(&span, job.traceparent.as_deref());
    super::measured(&ctx.pool, CUSTOMER_QUEUE, &task_id, async {
        customer_status::apply(&ctx, job.customer_id)
            .await
            .map_err(Into::into)
    })
    .instrument(span)
    .await
}
