//! One apalis handler per file, and the measurement every handler goes through.

pub mod apply_customer_status;
pub mod provision_chunk;
pub mod provision_instance;
pub mod run_sweep;
pub mod tick;

use std::future::Future;
use std::time::Instant;

use apalis::prelude::{BoxDynError, TaskId};
use domain::metrics::METRICS;
use sqlx::PgPool;

/// Runs a job body, recording `jobs_total`, `job_duration_seconds` and
/// `job_queue_wait_seconds` (from when the job was due to when it started).
pub(crate) async fn measured<F>(
    pool: &PgPool,
    queue: &str,
    task_id: &TaskId,
    body: F,
) -> Result<(), BoxDynError>
where
    F: Future<Output = Result<(), BoxDynError>>,
{
    let started = Instant::now();
    let waited: Option<f64> = sqlx::query_scalar(
        "SELECT GREATEST(EXTRACT(EPOCH FROM (now() - run_at)), 0)::float8 FROM apalis.jobs WHERE id = $1",
    )
    .bind(task_id.to_string())
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    if let Some(waited) = waited {
        METRICS.job_wait.with_label_values(&[queue]).observe(waited);
    }
    let result = body.await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    METRICS.jobs.with_label_values(&[queue, outcome]).inc();
    METRICS
        .job_duration
        .with_label_values(&[queue])
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::warn!(queue, job_id = %task_id, error = %e, "job failed; it will be retried");
    }
    result
}
