//! Purge: stores that would otherwise grow without bound lose what nobody can ask for any more.
//! `Idempotency-Key` answers past `api.idempotency_ttl` (except a key whose operation is still
//! in doubt: the caller's replay is how it learns the outcome), then everything `[retention]`
//! names, each past its age. The ledger is never purged.

use std::time::Duration;

use domain::db::idempotency;
use domain::db::retention::{self, Prunable};
use operations::Services;

/// Rows deleted per statement: short transactions, no long lock on a busy table.
const BATCH: i64 = 5_000;

/// What one purge did.
#[derive(Debug, Default)]
pub struct PurgeReport {
    /// Expired idempotency keys deleted.
    pub idempotency_keys: u64,
    /// Finished jobs deleted.
    pub finished_jobs: u64,
    /// Webhook events deleted (with their deliveries and attempts).
    pub webhook_events: u64,
    /// Message records and send operations deleted.
    pub messages: u64,
    /// Resolved alerts deleted.
    pub resolved_alerts: u64,
    /// Money operations and audit entries past the accounting retention deleted.
    pub accounting: u64,
}

/// Deletes expired rows in batches until none is left.
///
/// # Errors
/// Database errors (what was deleted so far stays deleted; the next sweep goes on).
pub async fn run(ctx: &Services) -> anyhow::Result<PurgeReport> {
    let mut report = PurgeReport::default();
    loop {
        let deleted = idempotency::purge_expired(&ctx.pool, BATCH).await?;
        report.idempotency_keys += deleted;
        if deleted < BATCH as u64 {
            break;
        }
    }
    let ages = &ctx.settings.retention;
    let mut conn = ctx.pool.acquire().await?;
    for (what, age, count) in [
        (
            Prunable::FinishedJobs,
            ages.finished_jobs,
            &mut report.finished_jobs,
        ),
        (
            Prunable::WebhookEvents,
            ages.webhook_events,
            &mut report.webhook_events,
        ),
        (Prunable::Messages, ages.messages, &mut report.messages),
        (
            Prunable::ResolvedAlerts,
            ages.resolved_alerts,
            &mut report.resolved_alerts,
        ),
        (
            Prunable::Accounting,
            ages.accounting,
            &mut report.accounting,
        ),
    ] {
        *count += prune_all(&mut conn, what, age).await?;
    }
    Ok(report)
}

async fn prune_all(
    conn: &mut sqlx::PgConnection,
    what: Prunable,
    age: Duration,
) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let deleted = retention::prune(&mut *conn, what, age, BATCH).await?;
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
