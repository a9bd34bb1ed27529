//! What ops may see and do in the job queue (apalis keeps it in schema `apalis`): failed jobs,
//! and putting one back.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;

/// A job that failed for good (or is failing).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct FailedJob {
    /// Job id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// `Failed` (will retry) or `Killed` (out of attempts).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempt budget.
    pub max_attempts: i32,
    /// The last error.
    pub last_result: Option<String>,
    /// When it was due.
    pub run_at: DateTime<Utc>,
}

/// Failed and killed jobs, newest first.
///
/// # Errors
/// Database errors.
pub async fn failed(conn: impl PgExecutor<'_>, limit: i64) -> Result<Vec<FailedJob>> {
    Ok(sqlx::query_as(
        "SELECT id, job_type AS queue, status, attempts, max_attempts, last_result::text AS last_result, run_at
         FROM apalis.jobs WHERE status IN ('Failed', 'Killed') ORDER BY run_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Puts a failed job back on its queue with a fresh attempt budget. False when no failed job
/// has that id.
///
/// # Errors
/// Database errors.
pub async fn retry(conn: impl PgExecutor<'_>, id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE apalis.jobs SET status = 'Pending', attempts = 0, run_at = now(), lock_by = NULL, lock_at = NULL, done_at = NULL
         WHERE id = $1 AND status IN ('Failed', 'Killed')",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Instances with a provisioning job that is waiting, claimed or running (a job's payload
/// names its instance).
///
/// # Errors
/// Database errors.
pub async fn live_provision_jobs(conn: impl PgExecutor<'_>) -> Result<Vec<crate::ids::InstanceId>> {
    // A single order's job names `instance_id`; a chunk's names `instance_ids`.
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT id::uuid FROM (
             SELECT convert_from(job, 'UTF8')::jsonb AS payload FROM apalis.jobs
             WHERE job_type = ANY($1) AND status IN ('Pending', 'Queued', 'Running')
         ) live,
         LATERAL (SELECT payload ->> 'instance_id'
                  UNION ALL
                  SELECT jsonb_array_elements_text(COALESCE(payload -> 'instance_ids', '[]'))) ids(id)
         WHERE id IS NOT NULL",
    )
    .bind(crate::jobs::PROVISION_QUEUES)
    .fetch_all(conn)
    .await?)
}
