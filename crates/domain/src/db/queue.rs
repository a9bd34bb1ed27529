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

/// Whether a job of `queue` keyed `key`, or `key:` and a suffix, is still to run: not done,
/// not killed, not failed with no attempt left (what apalis's own vacuum deletes).
///
/// # Errors
/// Database errors.
pub async fn still_to_run(conn: impl PgExecutor<'_>, queue: &str, key: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM apalis.jobs
                        WHERE job_type = $1
                          AND (idempotency_key = $2 OR starts_with(idempotency_key, $2 || ':'))
                          AND status NOT IN ('Done', 'Killed')
                          AND NOT (status = 'Failed' AND attempts >= max_attempts))",
    )
    .bind(queue)
    .bind(key)
    .fetch_one(conn)
    .await?)
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

/// The body of [`install_notify_of_late_due_jobs`]'s trigger function.
const NOTIFY_LATE_DUE_BODY: &str = "
BEGIN
    IF NEW.run_at > now() AND NEW.run_at <= clock_timestamp() THEN
        PERFORM pg_notify(
            'apalis::job::insert',
            json_build_object('job_type', NEW.job_type, 'id', NEW.id, 'run_at', NEW.run_at)::text
        );
    END IF;
    RETURN NEW;
END;
";

/// Adds to apalis's queue the notification its own insert trigger leaves out.
///
/// apalis notifies workers of a new job (`apalis::job::insert`) only when its `run_at` is at
/// or before `now()` — the inserting transaction's start — while `run_at` comes from the
/// enqueuing process's clock, in whole seconds. A job enqueued due now by a transaction that
/// began in an earlier second (a batch of a thousand orders takes ~150 ms; any transaction may
/// straddle a second) got no notification and waited for the next poll
/// (`worker.poll_interval`, 1 s by default). This trigger sends apalis's own payload for
/// exactly those: due by the time of the insert, after the transaction began.
///
/// Runs at every migrate (each `reseller up` start): when the function and trigger are already
/// there as written here it changes nothing, since re-creating a trigger locks `apalis.jobs`
/// against every job's insert and update (and waits behind any open transaction on it). One
/// process at a time (an advisory lock), as several may start together.
///
/// # Errors
/// When the statements fail (apalis's schema must exist).
pub async fn install_notify_of_late_due_jobs(pool: &sqlx::PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('wiro-reseller: queue notify trigger'))")
        .execute(&mut *tx)
        .await?;
    let installed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_proc
                        WHERE proname = 'notify_apalis_jobs_due_since_transaction_start'
                          AND prosrc = $1)
            AND EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgname = 'notify_workers_due_since_transaction_start'
                          AND tgrelid = 'apalis.jobs'::regclass)",
    )
    .bind(NOTIFY_LATE_DUE_BODY)
    .fetch_one(&mut *tx)
    .await?;
    if !installed {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE OR REPLACE FUNCTION notify_apalis_jobs_due_since_transaction_start()
             RETURNS TRIGGER AS $body${NOTIFY_LATE_DUE_BODY}$body$ LANGUAGE plpgsql;
             DROP TRIGGER IF EXISTS notify_workers_due_since_transaction_start ON apalis.jobs;
             CREATE TRIGGER notify_workers_due_since_transaction_start
             AFTER INSERT ON apalis.jobs
             FOR EACH ROW EXECUTE FUNCTION notify_apalis_jobs_due_since_transaction_start();"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
