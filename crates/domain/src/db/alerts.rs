//! Operator alerts: one open alert per (kind, subject), updated while the condition lasts and
//! resolved when it clears.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::InstanceId;

/// An alert row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Alert {
    /// Id.
    pub id: i64,
    /// `renewal_parked`, `upstream_orphan`, ...
    pub kind: String,
    /// `instance:<id>` or `wiro:<guid>`.
    pub subject: String,
    /// The instance, when known.
    pub instance_id: Option<InstanceId>,
    /// Facts (amounts, titles...).
    pub detail: serde_json::Value,
    /// First raised.
    pub created_at: DateTime<Utc>,
    /// Last seen.
    pub updated_at: DateTime<Utc>,
    /// Closed.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Raises (or refreshes) the open alert of `kind` about `subject`. True when it is new.
///
/// # Errors
/// Database errors.
pub async fn raise(
    conn: impl PgExecutor<'_>,
    kind: &str,
    subject: &str,
    instance: Option<InstanceId>,
    detail: serde_json::Value,
) -> Result<bool> {
    let inserted: Option<bool> = sqlx::query_scalar(
        "INSERT INTO alerts (kind, subject, instance_id, detail) VALUES ($1, $2, $3, $4)
         ON CONFLICT (kind, subject) WHERE resolved_at IS NULL
         DO UPDATE SET detail = EXCLUDED.detail, updated_at = now()
         RETURNING xmax = 0",
    )
    .bind(kind)
    .bind(subject)
    .bind(instance)
    .bind(detail)
    .fetch_optional(conn)
    .await?;
    if inserted == Some(true) {
        tracing::warn!(kind, subject, "operator alert raised");
    }
    Ok(inserted == Some(true))
}

/// Resolves the open alert of `kind` about `subject`, if any.
///
/// # Errors
/// Database errors.
pub async fn resolve(conn: impl PgExecutor<'_>, kind: &str, subject: &str) -> Result<bool> {
    let done = sqlx::query("UPDATE alerts SET resolved_at = now() WHERE kind = $1 AND subject = $2 AND resolved_at IS NULL")
        .bind(kind)
        .bind(subject)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Open alerts (optionally of one kind), oldest first, after `after`.
///
/// # Errors
/// Database errors.
pub async fn open(
    conn: impl PgExecutor<'_>,
    kind: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Alert>> {
    Ok(sqlx::query_as::<_, Alert>(
        "SELECT id, kind, subject, instance_id, detail, created_at, updated_at, resolved_at FROM alerts
         WHERE resolved_at IS NULL AND ($1::text IS NULL OR kind = $1) AND ($2::bigint IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(kind)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// `instance:<id>`.
pub fn instance_subject(id: InstanceId) -> String {
    format!("instance:{id}")
}

/// Resolves the open alert `id`. False when there is no open alert with that id.
///
/// # Errors
/// Database errors.
pub async fn resolve_by_id(conn: impl PgExecutor<'_>, id: i64) -> Result<bool> {
    let done =
        sqlx::query("UPDATE alerts SET resolved_at = now() WHERE id = $1 AND resolved_at IS NULL")
            .bind(id)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() > 0)
}
