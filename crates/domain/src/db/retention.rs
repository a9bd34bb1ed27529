//! Retention: rows older than their configured age are deleted, a batch per statement (short
//! transactions, no long lock on a busy table). Ages are measured on the business clock. The
//! ledger is never deleted; nothing unresolved is (a pending delivery, an operation in doubt, a
//! message still polled, a job that may run again).

use std::time::Duration;

use sqlx::PgExecutor;

use crate::error::Result;

/// What a retention pass can delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prunable {
    /// Jobs done, or failed for good (`apalis.jobs`).
    FinishedJobs,
    /// Webhook events whose every delivery is settled (deliveries and attempts go with them).
    WebhookEvents,
    /// Message records and the operations of their sends.
    Messages,
    /// Resolved alerts.
    ResolvedAlerts,
    /// Settled operations of money (deploys, renewals, upgrades, packs, cancels) and audit
    /// entries: the accounting retention.
    Accounting,
}

/// Deletes up to `batch` rows of `what` older than `age`; the number deleted.
///
/// # Errors
/// Database errors.
pub async fn prune(
    conn: &mut sqlx::PgConnection,
    what: Prunable,
    age: Duration,
    batch: i64,
) -> Result<u64> {
    let age = age.as_secs_f64();
    let deleted = match what {
        Prunable::FinishedJobs => {
            delete(
                &mut *conn,
                "DELETE FROM apalis.jobs WHERE id IN (
                     SELECT id FROM apalis.jobs
                     WHERE (status IN ('Done', 'Killed')
                            OR (status = 'Failed' AND attempts >= max_attempts))
                       AND done_at < business_now() - make_interval(secs => $1)
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
                age,
                batch,
            )
            .await?
        }
        Prunable::WebhookEvents => {
            delete(
                &mut *conn,
                "DELETE FROM webhook_events WHERE id IN (
                     SELECT e.id FROM webhook_events e
                     WHERE e.created_at < business_now() - make_interval(secs => $1)
                       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                                       WHERE d.event_id = e.id AND d.state = 'pending')
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
                age,
                batch,
            )
            .await?
        }
        Prunable::Messages => {
            let messages = delete(
                &mut *conn,
                "DELETE FROM messages WHERE wiro_guid IN (
                     SELECT wiro_guid FROM messages
                     WHERE created_at < business_now() - make_interval(secs => $1)
                       AND next_poll_at IS NULL
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
                age,
                batch,
            )
            .await?;
            messages
                + delete(
                    &mut *conn,
                    &settled_operations("kind = 'message_send'"),
                    age,
                    batch,
                )
                .await?
        }
        Prunable::ResolvedAlerts => {
            delete(
                &mut *conn,
                "DELETE FROM alerts WHERE id IN (
                     SELECT id FROM alerts
                     WHERE resolved_at < business_now() - make_interval(secs => $1)
                     LIMIT $2 FOR UPDATE SKIP LOCKED)",
                age,
                batch,
            )
            .await?
        }
        Prunable::Accounting => {
            let operations = delete(
                &mut *conn,
                &settled_operations("kind <> 'message_send'"),
                age,
                batch,
            )
            .await?;
            operations
                + delete(
                    &mut *conn,
                    "DELETE FROM audit_log WHERE id IN (
                         SELECT id FROM audit_log
                         WHERE at < business_now() - make_interval(secs => $1)
                         ORDER BY at, id LIMIT $2)",
                    age,
                    batch,
                )
                .await?
        }
    };
    Ok(deleted)
}

/// Settled operations matching `filter`, older than `$1` seconds, that no stored answer names.
fn settled_operations(filter: &str) -> String {
    format!(
        "DELETE FROM operations WHERE id IN (
             SELECT o.id FROM operations o
             WHERE o.{filter} AND o.state NOT IN ('calling', 'unknown')
               AND COALESCE(o.finished_at, o.started_at)
                   < business_now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.operation_id = o.id)
             LIMIT $2 FOR UPDATE OF o SKIP LOCKED)"
    )
}

async fn delete(conn: impl PgExecutor<'_>, sql: &str, age: f64, batch: i64) -> Result<u64> {
    let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(age)
        .bind(batch)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
