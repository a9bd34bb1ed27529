//! Upstream operations: the intent row written before a Deploy or a money call, and the fence
//! every result write goes through.
//!
//! Lifecycle: `calling` (intent committed, call about to be / being sent) → `succeeded` |
//! `refused` (the caller heard back) or `unknown` (the answer was lost). An `unknown` or a
//! `calling` row whose lease ran out is resolved by looking upstream: `adopted` (it happened)
//! or `not_found` (it did not). Only then may a new operation of that kind start — the partial
//! unique index `operations_one_in_flight` makes that single-flight in the database.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{InstanceId, OperationId};
use crate::model::{OperationKind, OperationState};

/// An operation row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Operation {
    /// Id, also the fencing token.
    pub id: OperationId,
    /// Instance.
    pub instance_id: InstanceId,
    /// What was called.
    #[sqlx(try_from = "String")]
    pub kind: OperationKind,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub state: OperationState,
    /// Worker that wrote the intent.
    pub worker: String,
    /// Until then only the caller may decide the outcome.
    pub lease_until: DateTime<Utc>,
    /// Kind-specific facts (e.g. the period end before a renewal).
    pub detail: serde_json::Value,
    /// The Wiro guid the operation produced or concerned.
    pub wiro_guid: Option<String>,
    /// Why it was refused.
    pub error: Option<String>,
    /// Intent time.
    pub started_at: DateTime<Utc>,
    /// Resolution time.
    pub finished_at: Option<DateTime<Utc>>,
}

impl Operation {
    /// True while its caller may still be waiting on Wiro.
    pub fn lease_active(&self, now: DateTime<Utc>) -> bool {
        self.state == OperationState::Calling && now < self.lease_until
    }
}

const COLUMNS: &str = "id, instance_id, kind, state, worker, lease_until, detail, wiro_guid, error, started_at, finished_at";

/// Commits the intent. `None` when another operation of this kind is in flight for the
/// instance (the single-flight index refused the insert).
///
/// # Errors
/// Database errors other than that conflict.
pub async fn begin(
    conn: impl PgExecutor<'_>,
    instance: InstanceId,
    kind: OperationKind,
    worker: &str,
    lease: std::time::Duration,
    detail: serde_json::Value,
) -> Result<Option<Operation>> {
    let sql = format!(
        "INSERT INTO operations (id, instance_id, kind, state, worker, lease_until, detail)
         VALUES ($1, $2, $3, 'calling', $4, now() + $5 * interval '1 millisecond', $6)
         ON CONFLICT (instance_id, kind) WHERE state IN ('calling', 'unknown') DO NOTHING
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(OperationId::new())
        .bind(instance)
        .bind(kind.as_str())
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .bind(detail)
        .fetch_optional(conn)
        .await?)
}

/// The unresolved operation of `kind` for `instance`, if any.
///
/// # Errors
/// Database errors.
pub async fn in_flight(
    conn: impl PgExecutor<'_>,
    instance: InstanceId,
    kind: OperationKind,
) -> Result<Option<Operation>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM operations
         WHERE instance_id = $1 AND kind = $2 AND state IN ('calling', 'unknown')"
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(instance)
        .bind(kind.as_str())
        .fetch_optional(conn)
        .await?)
}

/// Resolves an unresolved operation — only if it is still unresolved and still `id` (the
/// fence). Returns false when someone else resolved it first.
///
/// # Errors
/// Database errors.
pub async fn resolve(
    conn: impl PgExecutor<'_>,
    id: OperationId,
    state: OperationState,
    wiro_guid: Option<&str>,
    error: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE operations
         SET state = $2, wiro_guid = COALESCE($3, wiro_guid), error = $4,
             finished_at = CASE WHEN $2 IN ('calling', 'unknown') THEN NULL ELSE now() END
         WHERE id = $1 AND state IN ('calling', 'unknown')",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(wiro_guid)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Every operation of an instance, oldest first (for ops and tests).
///
/// # Errors
/// Database errors.
pub async fn for_instance(
    conn: impl PgExecutor<'_>,
    instance: InstanceId,
) -> Result<Vec<Operation>> {
    let sql =
        format!("SELECT {COLUMNS} FROM operations WHERE instance_id = $1 ORDER BY started_at, id");
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(instance)
        .fetch_all(conn)
        .await?)
}
