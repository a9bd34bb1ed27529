//! Webhook endpoints, the event outbox (written by triggers, see the `webhooks` migration),
//! deliveries and their attempts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// An endpoint row (its secrets sealed).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Endpoint {
    /// Id.
    pub id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// Ops' note.
    pub description: Option<String>,
    /// Subscribed types (`None`: all).
    pub event_types: Option<Vec<String>>,
    /// Receives events.
    pub enabled: bool,
    /// The sealed current secret.
    pub secret: Vec<u8>,
    /// The sealed previous secret, still signing until `previous_secret_until`.
    pub previous_secret: Option<Vec<u8>>,
    /// End of the rotation's grace period.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Why it was disabled (by us, after failing for the whole retry schedule).
    pub disabled_reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, enabled, secret, \
    previous_secret, previous_secret_until, disabled_reason, created_at, updated_at";

/// Creates an endpoint.
///
/// # Errors
/// Database errors.
pub async fn create_endpoint(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    url: &str,
    description: Option<&str>,
    event_types: Option<&[String]>,
    sealed_secret: &[u8],
) -> Result<Endpoint> {
    let sql = format!(
        "INSERT INTO webhook_endpoints (id, url, description, event_types, secret)
         VALUES ($1, $2, $3, $4, $5) RETURNING {ENDPOINT_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Endpoint>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(url)
        .bind(description)
        .bind(event_types)
        .bind(sealed_secret)
        .fetch_one(conn)
        .await?)
}

/// One endpoint.
///
/// # Errors
/// Database errors.
pub async fn endpoint(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
    Ok(sqlx::query_as::<_, Endpoint>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// Every endpoint, oldest first.
///
/// # Errors
/// Database errors.
pub async fn endpoints(conn: impl PgExecutor<'_>) -> Result<Vec<Endpoint>> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id");
    Ok(sqlx::query_as::<_, Endpoint>(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?)
}

/// What a PATCH changes (`None`: unchanged; `event_types: Some(None)`: every type).
#[derive(Clone, Debug, Default)]
pub struct EndpointChange {
    /// New URL.
    pub url: Option<String>,
    /// New description.
    pub description: Option<Option<String>>,
    /// New subscription.
    pub event_types: Option<Option<Vec<String>>>,
    /// Enable (clears the disabled reason) or disable.
    pub enabled: Option<bool>,
}

/// Applies `change`.
///
/// # Errors
/// Database errors.
pub async fn update_endpoint(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    change: EndpointChange,
) -> Result<Option<Endpoint>> {
    let sql = format!(
        "UPDATE webhook_endpoints SET
             url = COALESCE($2, url),
             description = CASE WHEN $3 THEN $4 ELSE description END,
             event_types = CASE WHEN $5 THEN $6 ELSE event_types END,
             enabled = COALESCE($7, enabled),
             disabled_reason = CASE WHEN $7 IS NULL THEN disabled_reason
                                    WHEN $7 THEN NULL ELSE 'disabled by ops' END,
             updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Endpoint>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(change.url)
        .bind(change.description.is_some())
        .bind(change.description.flatten())
        .bind(change.event_types.is_some())
        .bind(change.event_types.flatten())
        .bind(change.enabled)
        .fetch_optional(conn)
        .await?)
}

/// Deletes an endpoint with its deliveries and their attempts. True when it existed.
///
/// # Errors
/// Database errors.
pub async fn delete_endpoint(conn: impl PgExecutor<'_>, id: Uuid) -> Result<bool> {
    let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the secret; the old one keeps signing until `grace_until`.
///
/// # Errors
/// Database errors.
pub async fn rotate_secret(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    sealed_secret: &[u8],
    grace_until: DateTime<Utc>,
) -> Result<Option<Endpoint>> {
    let sql = format!(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = $3,
             secret = $2, updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT_COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Endpoint>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(sealed_secret)
        .bind(grace_until)
        .fetch_optional(conn)
        .await?)
}

/// A page of endpoint ids after `after`, in id order (what `reseller reseal` walks).
///
/// # Errors
/// Database errors.
pub async fn endpoint_ids_after(
    conn: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM webhook_endpoints WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(conn)
            .await?,
    )
}

/// A page of endpoints' sealed secrets (id, current, previous) after `after`, in id order
/// (`reseal::survey`).
///
/// # Errors
/// Database errors.
pub async fn secrets_after(
    conn: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, Vec<u8>, Option<Vec<u8>>)>> {
    Ok(sqlx::query_as(
        "SELECT id, secret, previous_secret FROM webhook_endpoints WHERE id > $1
          ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The sealed secrets of endpoint `id` (current, previous), the row locked for the
/// transaction; `None` when it was deleted.
///
/// # Errors
/// Database errors.
pub async fn lock_secrets(
    conn: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>> {
    Ok(sqlx::query_as(
        "SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Replaces the sealed secrets of endpoint `id` (the same secrets, sealed again).
///
/// # Errors
/// Database errors.
pub async fn replace_secrets(
    conn: impl PgExecutor<'_>,
    id: Uuid,
    secret: &[u8],
    previous: Option<&[u8]>,
) -> Result<()> {
    sqlx::query("UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1")
        .bind(id)
        .bind(secret)
        .bind(previous)
        .execute(conn)
        .await?;
    Ok(())
}

/// A delivery a dispatcher claimed, with what it needs to send it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Due {
    /// The event (its `webhook-id`).
    pub event_id: Uuid,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    /// The exact body.
    pub body: String,
    /// The endpoint's URL.
    pub url: String,
    /// Sealed secrets that sign it.
    pub secret: Vec<u8>,
    /// The previous secret, while its grace period lasts.
    pub previous_secret: Option<Vec<u8>>,
    /// When the first attempt was made.
    pub first_attempt_at: DateTime<Utc>,
}

/// Claims up to `limit` due deliveries of enabled endpoints for `lease` (skipping those
/// another dispatcher holds), counting the attempt.
///
/// # Errors
/// Database errors.
pub async fn claim_due(
    conn: impl PgExecutor<'_>,
    limit: i64,
    lease: std::time::Duration,
) -> Result<Vec<Due>> {
    Ok(sqlx::query_as::<_, Due>(
        "WITH due AS (
             SELECT d.event_id, d.endpoint_id FROM webhook_deliveries d
             JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.enabled
             WHERE d.state = 'pending' AND d.next_attempt_at <= now()
               AND (d.lease_until IS NULL OR d.lease_until < now())
             ORDER BY d.next_attempt_at LIMIT $1
             FOR UPDATE OF d SKIP LOCKED),
         claimed AS (
             UPDATE webhook_deliveries d
             SET attempts = d.attempts + 1, lease_until = now() + $2 * interval '1 millisecond',
                 first_attempt_at = COALESCE(d.first_attempt_at, now())
             FROM due WHERE d.event_id = due.event_id AND d.endpoint_id = due.endpoint_id
             RETURNING d.event_id, d.endpoint_id, d.attempts, d.first_attempt_at)
         SELECT c.event_id, c.endpoint_id, c.attempts AS attempt, v.body, e.url, e.secret,
                CASE WHEN e.previous_secret_until > now() THEN e.previous_secret END AS previous_secret,
                c.first_attempt_at
         FROM claimed c
         JOIN webhook_events v ON v.id = c.event_id
         JOIN webhook_endpoints e ON e.id = c.endpoint_id",
    )
    .bind(limit)
    .bind(lease.as_millis() as f64)
    .fetch_all(conn)
    .await?)
}

/// One attempt's outcome, for the log.
#[derive(Clone, Debug)]
pub struct AttemptRecord<'a> {
    /// The receiver's status (`None`: no answer).
    pub status: Option<u16>,
    /// How long it took.
    pub duration_ms: i32,
    /// The first bytes of the answer.
    pub response: Option<&'a str>,
    /// Why there was no answer.
    pub error: Option<&'a str>,
}

/// What becomes of the delivery after an attempt.
#[derive(Clone, Copy, Debug)]
pub enum NextStep {
    /// Delivered (2xx).
    Delivered,
    /// Try again then.
    RetryAt(DateTime<Utc>),
    /// The schedule is over.
    GiveUp,
}

/// Logs the attempt and moves the delivery on, in one transaction. With `GiveUp`, disables
/// the endpoint when it has delivered nothing since this delivery's first attempt (it failed
/// for the whole schedule) and returns true then.
///
/// # Errors
/// Database errors.
pub async fn record_attempt(
    pool: &sqlx::PgPool,
    due: &Due,
    attempt: AttemptRecord<'_>,
    next: NextStep,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, status, duration_ms, response, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(due.event_id)
    .bind(due.endpoint_id)
    .bind(due.attempt)
    .bind(attempt.status.map(|s| s as i16))
    .bind(attempt.duration_ms)
    .bind(attempt.response)
    .bind(attempt.error)
    .execute(&mut *tx)
    .await?;
    let (state, next_at) = match next {
        NextStep::Delivered => ("delivered", None),
        NextStep::RetryAt(at) => ("pending", Some(at)),
        NextStep::GiveUp => ("failed", None),
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $3, lease_until = NULL,
             next_attempt_at = COALESCE($4, next_attempt_at),
             delivered_at = CASE WHEN $3 = 'delivered' THEN now() END
         WHERE event_id = $1 AND endpoint_id = $2",
    )
    .bind(due.event_id)
    .bind(due.endpoint_id)
    .bind(state)
    .bind(next_at)
    .execute(&mut *tx)
    .await?;
    let mut disabled = false;
    if matches!(next, NextStep::GiveUp) {
        let reason = format!(
            "no delivery succeeded since {} (the whole retry schedule)",
            due.first_attempt_at.to_rfc3339()
        );
        disabled = sqlx::query(
            "UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = $2, updated_at = now()
             WHERE id = $1 AND enabled AND NOT EXISTS (
                 SELECT 1 FROM webhook_deliveries
                 WHERE endpoint_id = $1 AND delivered_at >= $3)",
        )
        .bind(due.endpoint_id)
        .bind(&reason)
        .bind(due.first_attempt_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if disabled {
            crate::db::alerts::raise(
                &mut *tx,
                "webhook_endpoint_disabled",
                &format!("webhook_endpoint:{}", due.endpoint_id),
                None,
                serde_json::json!({"endpoint": due.endpoint_id, "reason": reason}),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(disabled)
}

/// An event as ops list it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Event {
    /// Id.
    pub id: Uuid,
    /// Type.
    #[sqlx(rename = "type")]
    pub kind: String,
    /// The exact body sent.
    pub body: String,
    /// The agent it is about.
    pub instance_id: Option<Uuid>,
    /// Written.
    pub created_at: DateTime<Utc>,
}

/// Events, newest first, optionally of one type, before `before` (a keyset cursor).
///
/// # Errors
/// Database errors.
pub async fn events(
    conn: impl PgExecutor<'_>,
    kind: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Event>> {
    Ok(sqlx::query_as::<_, Event>(
        "SELECT id, type, body, instance_id, created_at FROM webhook_events
         WHERE ($1::text IS NULL OR type = $1)
           AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(kind)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1))
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// One event.
///
/// # Errors
/// Database errors.
pub async fn event(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Event>> {
    Ok(sqlx::query_as::<_, Event>(
        "SELECT id, type, body, instance_id, created_at FROM webhook_events WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// A delivery of an event, as ops see it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Delivery {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (pending).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// An attempt, as ops see it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Attempt {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its number.
    pub attempt: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// The receiver's status.
    pub status: Option<i16>,
    /// How long it took.
    pub duration_ms: i32,
    /// The first bytes of the answer.
    pub response: Option<String>,
    /// Why there was no answer.
    pub error: Option<String>,
}

/// An event's deliveries and attempts.
///
/// # Errors
/// Database errors.
pub async fn delivery_log(
    conn: &mut sqlx::PgConnection,
    event: Uuid,
) -> Result<(Vec<Delivery>, Vec<Attempt>)> {
    let deliveries = sqlx::query_as::<_, Delivery>(
        "SELECT endpoint_id, state, attempts, next_attempt_at, delivered_at
         FROM webhook_deliveries WHERE event_id = $1 ORDER BY endpoint_id",
    )
    .bind(event)
    .fetch_all(&mut *conn)
    .await?;
    let attempts = sqlx::query_as::<_, Attempt>(
        "SELECT endpoint_id, attempt, at, status, duration_ms, response, error
         FROM webhook_attempts WHERE event_id = $1 ORDER BY id",
    )
    .bind(event)
    .fetch_all(&mut *conn)
    .await?;
    Ok((deliveries, attempts))
}

/// Sends `event` again to every enabled endpoint subscribed to its type now (the same
/// `webhook-id`, a fresh schedule). Returns how many deliveries were queued.
///
/// # Errors
/// Database errors.
pub async fn replay(conn: impl PgExecutor<'_>, event: Uuid) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id)
         SELECT v.id, e.id FROM webhook_events v
         JOIN webhook_endpoints e ON e.enabled AND (e.event_types IS NULL OR v.type = ANY (e.event_types))
         WHERE v.id = $1
         ON CONFLICT (event_id, endpoint_id) DO UPDATE
         SET state = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL,
             first_attempt_at = NULL, delivered_at = NULL",
    )
    .bind(event)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
