//! Purge: stores that would otherwise grow without bound lose what nobody can ask for any more.
//! Today: `Idempotency-Key` answers past `api.idempotency_ttl`, except a key whose operation is
//! still in doubt (the caller's replay is how it learns the outcome).

use domain::db::idempotency;
use operations::Services;

/// Rows deleted per statement: short transactions, no long lock on a busy table.
const BATCH: i64 = 5_000;

/// What one purge did.
#[derive(Debug, Default)]
pub struct PurgeReport {
    /// Expired idempotency keys deleted.
    pub idempotency_keys: u64,
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
            return Ok(report);
        }
    }
}
