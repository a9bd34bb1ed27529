//! The live API processes (`api_replicas`): how many share the per-customer request rates.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Result;

/// A process silent for longer than this no longer counts (three of the API's 2 s heartbeats:
/// one late heartbeat does not shrink everyone's share and grow it back).
pub const LIVE: Duration = Duration::from_secs(6);

/// The API processes heard from within [`LIVE`].
///
/// # Errors
/// Database errors.
pub async fn live(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM api_replicas WHERE seen_at > now() - make_interval(secs => $1)",
    )
    .bind(LIVE.as_secs_f64())
    .fetch_one(pool)
    .await?)
}

/// Records that `member` is alive, forgets members silent for a minute, and returns how many
/// wrote within `live` (`member` included), in one statement.
///
/// # Errors
/// Database errors.
pub async fn heartbeat(pool: &PgPool, member: &str, live: Duration) -> Result<usize> {
    // The statement's snapshot does not see its own insert: `member` is counted apart.
    let others: i64 = sqlx::query_scalar(
        "WITH seen AS (
             INSERT INTO api_replicas (member) VALUES ($1)
             ON CONFLICT (member) DO UPDATE SET seen_at = now()
         ), gone AS (
             DELETE FROM api_replicas WHERE seen_at < now() - interval '1 minute'
         )
         SELECT count(*) FROM api_replicas
         WHERE member <> $1 AND seen_at > now() - make_interval(secs => $2)",
    )
    .bind(member)
    .bind(live.as_secs_f64())
    .fetch_one(pool)
    .await?;
    Ok(usize::try_from(others).unwrap_or(0) + 1)
}

/// Forgets `member` (an API process shutting down: the others take its part back at their next
/// heartbeat instead of after the live window).
///
/// # Errors
/// Database errors.
pub async fn leave(pool: &PgPool, member: &str) -> Result<()> {
    sqlx::query("DELETE FROM api_replicas WHERE member = $1")
        .bind(member)
        .execute(pool)
        .await?;
    Ok(())
}
