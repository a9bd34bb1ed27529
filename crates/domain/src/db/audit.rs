//! The audit log: who did what to which thing, with the request id and the outcome.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;

/// An audit row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    /// Sequence.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// `customer:<external id>`, `ops:<sub>` or `worker:<name>`.
    pub actor: String,
    /// What, e.g. `order.create`, `subscription.renew`.
    pub action: String,
    /// The thing acted on, e.g. `instance:<id>`.
    pub target: Option<String>,
    /// The HTTP request id or job id.
    pub request_id: Option<String>,
    /// `ok`, `refused: ...`, `failed: ...`.
    pub outcome: String,
    /// Structured facts (never secrets).
    pub detail: serde_json::Value,
}

/// Something to write down.
#[derive(Clone, Debug)]
pub struct NewAudit<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub target: Option<String>,
    /// Correlation id.
    pub request_id: Option<&'a str>,
    /// Result.
    pub outcome: &'a str,
    /// Facts.
    pub detail: serde_json::Value,
}

/// Appends an entry.
///
/// # Errors
/// Database errors.
pub async fn record(conn: impl PgExecutor<'_>, entry: NewAudit<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, request_id, outcome, detail)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.actor)
    .bind(entry.action)
    .bind(entry.target)
    .bind(entry.request_id)
    .bind(entry.outcome)
    .bind(entry.detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// A page ordered by id after `after`, optionally for one action prefix or target.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: impl PgExecutor<'_>,
    action_prefix: Option<&str>,
    target: Option<&str>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, actor, action, target, request_id, outcome, detail FROM audit_log
         WHERE ($1::text IS NULL OR action LIKE $1 || '%') AND ($2::text IS NULL OR target = $2)
           AND ($3::bigint IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
    )
    .bind(action_prefix)
    .bind(target)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Entries about one customer, oldest first (at most `limit`): those it made, those about it,
/// and those about its agents.
///
/// # Errors
/// Database errors.
pub async fn of_customer(
    conn: impl PgExecutor<'_>,
    customer: crate::ids::CustomerId,
    external_id: &str,
    limit: i64,
) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as::<_, AuditEntry>(
        "SELECT id, at, actor, action, target, request_id, outcome, detail FROM audit_log
         WHERE actor = 'customer:' || $2 OR target = 'customer:' || $1::text
            OR target IN (SELECT 'instance:' || id::text FROM instances WHERE customer_id = $1)
         ORDER BY id LIMIT $3",
    )
    .bind(customer)
    .bind(external_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
