//! The business clock (`business_now()`: the database's clock plus a shift) that calendar
//! months of charges and caps, and key retention, are measured on. Production leaves the shift
//! at zero; tests move it with the simulator's clock.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::Result;

/// The business clock's now.
///
/// # Errors
/// Database errors.
pub async fn now(conn: impl PgExecutor<'_>) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("SELECT business_now()")
        .fetch_one(conn)
        .await?)
}

/// The database's own clock, without the shift: what `updated_at` columns are written with, so
/// "written since" compares with it.
///
/// # Errors
/// Database errors.
pub async fn database_now(conn: impl PgExecutor<'_>) -> Result<DateTime<Utc>> {
    Ok(sqlx::query_scalar("SELECT now()").fetch_one(conn).await?)
}

/// Moves the business clock forward by `by` (tests, alongside the simulator's clock).
///
/// # Errors
/// Database errors.
pub async fn advance(conn: impl PgExecutor<'_>, by: std::time::Duration) -> Result<()> {
    sqlx::query("UPDATE business_clock SET shift = shift + $1 * interval '1 millisecond'")
        .bind(by.as_millis() as f64)
        .execute(conn)
        .await?;
    Ok(())
}
