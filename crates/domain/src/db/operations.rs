//! Upstream operations: the intent row written before every consequential call to Wiro, and
//! the fence every result write goes through.
//!
//! Lifecycle: `calling` (intent committed, call about to be / being sent) → `succeeded` |
//! `refused` | `not_sent` (the caller heard back, or never sent), or `unknown` (the answer was
//! lost). An unresolved row whose lease ran out is judged by evidence upstream: `adopted` (it
//! happened) or `not_found` (two checks a quiet period apart found no trace). Calls of one
//! flight (one Deploy, one subscription change, one pack per instance) never overlap: the
//! partial unique index `operations_one_in_flight` refuses a second unresolved one.
//!
//! Every time is compared in SQL, on the database's clock: a worker's clock may be off, and
//! two workers' clocks disagree.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{InstanceId, OperationId};
use crate::model::{OperationKind, OperationState};

/// An operation row, with its lease and quiet period measured by the database.
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
    /// Worker or API process that wrote the intent (or last took it over).
    pub worker: String,
    /// Until then only the holder may send or decide.
    pub lease_until: DateTime<Utc>,
    /// The facts taken with the intent, which a lost answer is judged against.
    pub detail: serde_json::Value,
    /// The Wiro guid the operation produced or concerned.
    pub wiro_guid: Option<String>,
    /// Why it was refused or is in doubt.
    pub error: Option<String>,
    /// Intent time.
    pub started_at: DateTime<Utc>,
    /// Resolution time.
    pub finished_at: Option<DateTime<Utc>>,
    /// Who asked.
    pub actor: Option<String>,
    /// The request that asked.
    pub request_id: Option<String>,
    /// The settled outcome (kind-specific).
    pub result: Option<serde_json::Value>,
    /// Evidence checks made after the lease.
    pub checks: i32,
    /// When a check first found no trace of the call.
    pub absent_since: Option<DateTime<Utc>>,
    /// The lease has run out (database clock).
    pub lease_over: bool,
    /// Milliseconds left on the lease (0 once over; database clock).
    pub lease_left_ms: i64,
    /// Milliseconds since `absent_since` (database clock).
    pub absent_for_ms: Option<i64>,
}

impl Operation {
    /// Time left on the lease, as the database measured it when the row was read.
    pub fn lease_left(&self) -> Duration {
        Duration::from_millis(self.lease_left_ms.max(0) as u64)
    }

    /// True once a check found no trace and at least `quiet` has passed since.
    pub fn absent_for_at_least(&self, quiet: Duration) -> bool {
        self.absent_for_ms
            .is_some_and(|ms| ms >= quiet.as_millis() as i64)
    }
}

pub(crate) const COLUMNS: &str = "id, instance_id, kind, state, worker, lease_until, detail, wiro_guid, error, \
    started_at, finished_at, actor, request_id, result, checks, absent_since, \
    lease_until <= now() AS lease_over, \
    GREATEST(0, (EXTRACT(EPOCH FROM lease_until - now()) * 1000)::bigint) AS lease_left_ms, \
    (EXTRACT(EPOCH FROM now() - absent_since) * 1000)::bigint AS absent_for_ms";

/// What an intent records.
#[derive(Clone, Debug)]
pub struct NewOperation<'a> {
    /// The instance.
    pub instance: InstanceId,
    /// The call.
    pub kind: OperationKind,
    /// The process writing it (it holds the lease).
    pub worker: &'a str,
    /// Who asked (audit actor).
    pub actor: &'a str,
    /// The request that asked.
    pub request_id: Option<&'a str>,
    /// How long only the holder may send or decide.
    pub lease: Duration,
    /// The facts a lost answer will be judged against.
    pub detail: serde_json::Value,
    /// The instance version those facts were read at: with it, no intent is written once the
    /// instance has changed since (the caller reads it again).
    pub fence: Option<i64>,
}

/// Commits the intent. `None` when another operation of the same flight is unresolved for the
/// instance (the single-flight index refused the insert).
///
/// # Errors
/// Database errors other than that conflict.
pub async fn begin(conn: impl PgExecutor<'_>, new: NewOperation<'_>) -> Result<Option<Operation>> {
    let sql = format!(
        "INSERT INTO operations (id, instance_id, kind, state, worker, lease_until, detail, actor, request_id, generation)
         VALUES ($1, $2, $3, 'calling', $4, now() + $5 * interval '1 millisecond', $6, $7, $8,
                 (SELECT generation FROM instances WHERE id = $2))
         ON CONFLICT (instance_id, flight) WHERE state IN ('calling', 'unknown') AND flight IS NOT NULL
         DO NOTHING
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(OperationId::new())
        .bind(new.instance)
        .bind(new.kind.as_str())
        .bind(new.worker)
        .bind(new.lease.as_millis() as f64)
        .bind(new.detail)
        .bind(new.actor)
        .bind(new.request_id)
        .fetch_optional(conn)
        .await?)
}

/// One operation.
///
/// # Errors
/// Database errors.
pub async fn get(conn: impl PgExecutor<'_>, id: OperationId) -> Result<Option<Operation>> {
    let sql = format!("SELECT {COLUMNS} FROM operations WHERE id = $1");
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// The flight `kind` belongs to (mirrors the `flight` column): calls of one flight never
/// overlap on an instance. Message sends belong to none.
pub fn flight(kind: OperationKind) -> Option<&'static str> {
    match kind {
        OperationKind::Deploy => Some("deploy"),
        OperationKind::ExtraCredits => Some("extra_credits"),
        OperationKind::MessageSend => None,
        OperationKind::Renew
        | OperationKind::UndoCancel
        | OperationKind::Cancel
        | OperationKind::Upgrade => Some("subscription"),
    }
}

/// The unresolved operation of `kind`'s flight for `instance`, if any.
///
/// # Errors
/// Database errors.
pub async fn in_flight(
    conn: impl PgExecutor<'_>,
    instance: InstanceId,
    kind: OperationKind,
) -> Result<Option<Operation>> {
    let Some(flight) = flight(kind) else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM operations
         WHERE instance_id = $1 AND flight = $2 AND state IN ('calling', 'unknown')"
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(instance)
        .bind(flight)
        .fetch_optional(conn)
        .await?)
}

/// True while any operation on `instance` (of any kind, message sends included) is unresolved.
///
/// # Errors
/// Database errors.
pub async fn any_unresolved(conn: impl PgExecutor<'_>, instance: InstanceId) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM operations
                        WHERE instance_id = $1 AND state IN ('calling', 'unknown'))",
    )
    .bind(instance)
    .fetch_one(conn)
    .await?)
}

/// Unresolved operations whose lease has run out, oldest first: the settle sweep's work.
///
/// # Errors
/// Database errors.
pub async fn due_for_settling(conn: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Operation>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM operations
         WHERE state IN ('calling', 'unknown') AND lease_until <= now()
         ORDER BY lease_until, id LIMIT $1"
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Marks a sent call whose answer was lost. Its lease stands: nobody judges it before it runs
/// out. False when the operation was already resolved.
///
/// # Errors
/// Database errors.
pub async fn mark_unknown(conn: impl PgExecutor<'_>, id: OperationId, error: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE operations SET state = 'unknown', error = $2
         WHERE id = $1 AND state IN ('calling', 'unknown')",
    )
    .bind(id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Takes over an unresolved operation whose lease ran out, for a new lease held by `worker`
/// (to send again, where sending again is how the kind is settled). `None` when someone else
/// holds it or it was resolved.
///
/// # Errors
/// Database errors.
pub async fn take_over(
    conn: impl PgExecutor<'_>,
    id: OperationId,
    worker: &str,
    lease: Duration,
) -> Result<Option<Operation>> {
    let sql = format!(
        "UPDATE operations SET state = 'calling', worker = $2,
                lease_until = now() + $3 * interval '1 millisecond'
         WHERE id = $1 AND state IN ('calling', 'unknown') AND lease_until <= now()
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .fetch_optional(conn)
        .await?)
}

/// Records an evidence check that could not decide. `absent` says it found no trace of the
/// call (the first such check starts the quiet period). Returns the number of checks made.
///
/// # Errors
/// Database errors.
pub async fn record_check(
    conn: impl PgExecutor<'_>,
    id: OperationId,
    absent: bool,
    note: &str,
) -> Result<i32> {
    let checks: Option<i32> = sqlx::query_scalar(
        "UPDATE operations
         SET checks = checks + 1, error = $3,
             absent_since = CASE WHEN $2 THEN COALESCE(absent_since, now()) ELSE NULL END
         WHERE id = $1 AND state IN ('calling', 'unknown')
         RETURNING checks",
    )
    .bind(id)
    .bind(absent)
    .bind(note)
    .fetch_optional(conn)
    .await?;
    Ok(checks.unwrap_or(0))
}

/// How an operation ended.
#[derive(Clone, Debug)]
pub struct Settlement {
    /// A final state.
    pub state: OperationState,
    /// The Wiro guid it produced or concerned.
    pub wiro_guid: Option<String>,
    /// The outcome (kind-specific).
    pub result: serde_json::Value,
    /// Why it was refused or not found.
    pub error: Option<String>,
}

/// Resolves an unresolved operation — only if it is still unresolved (its id is the fence).
/// Returns the evidence checks it had been through (an alert may be open only if some were);
/// `None` when someone else resolved it first: the caller then writes nothing else.
///
/// # Errors
/// Database errors (including `operations_one_deploy` when a second Deploy would succeed).
pub async fn settle(
    conn: impl PgExecutor<'_>,
    id: OperationId,
    settlement: &Settlement,
) -> Result<Option<i32>> {
    debug_assert!(!settlement.state.is_unresolved());
    Ok(sqlx::query_scalar(
        "UPDATE operations
         SET state = $2, wiro_guid = COALESCE($3, wiro_guid), result = $4, error = $5,
             finished_at = now()
         WHERE id = $1 AND state IN ('calling', 'unknown')
         RETURNING checks",
    )
    .bind(id)
    .bind(settlement.state.as_str())
    .bind(settlement.wiro_guid.as_deref())
    .bind(&settlement.result)
    .bind(settlement.error.as_deref())
    .fetch_optional(conn)
    .await?)
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

/// Guids of messages other operations already claimed (sent or adopted), among `guids`.
///
/// # Errors
/// Database errors.
pub async fn claimed_messages(conn: impl PgExecutor<'_>, guids: &[String]) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT wiro_guid FROM operations
         WHERE kind = 'message_send' AND state IN ('succeeded', 'adopted') AND wiro_guid = ANY($1)",
    )
    .bind(guids)
    .fetch_all(conn)
    .await?)
}
