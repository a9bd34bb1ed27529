//! Which customer owns which upstream message: Wiro's message guids are global to our API key,
//! so every read of a message goes through this map first.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{CustomerId, InstanceId};

/// A message just sent, to record.
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    /// Wiro's message guid.
    pub wiro_guid: &'a str,
    /// The agent.
    pub instance: InstanceId,
    /// Its customer.
    pub customer: CustomerId,
    /// The session key.
    pub session: &'a str,
    /// The fingerprint of its callback token, when it carries a callback URL.
    pub callback_fp: Option<&'a [u8]>,
    /// When the reply poller first looks at it.
    pub first_poll: std::time::Duration,
}

/// Records a message we sent.
///
/// # Errors
/// Database errors.
pub async fn record(conn: impl PgExecutor<'_>, new: NewMessage<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages (wiro_guid, instance_id, customer_id, session, callback_fp, next_poll_at)
         VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
         ON CONFLICT (wiro_guid) DO NOTHING",
    )
    .bind(new.wiro_guid)
    .bind(new.instance)
    .bind(new.customer)
    .bind(new.session)
    .bind(new.callback_fp)
    .bind(new.first_poll.as_millis() as f64)
    .execute(conn)
    .await?;
    Ok(())
}

/// The message whose callback token has fingerprint `fp`: `(guid, agent)`.
///
/// # Errors
/// Database errors.
pub async fn by_callback(
    conn: impl PgExecutor<'_>,
    fp: &[u8],
) -> Result<Option<(String, InstanceId)>> {
    Ok(
        sqlx::query_as("SELECT wiro_guid, instance_id FROM messages WHERE callback_fp = $1")
            .bind(fp)
            .fetch_optional(conn)
            .await?,
    )
}

/// How a message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `agent_end`.
    Completed,
    /// `agent_error` or `agent_cancel`.
    Failed,
}

/// Records how `wiro_guid` ended, once (its `message.completed` / `message.failed` event is
/// written with it by the trigger). True when this call recorded it.
///
/// # Errors
/// Database errors.
pub async fn finish(conn: impl PgExecutor<'_>, wiro_guid: &str, outcome: Outcome) -> Result<bool> {
    let outcome = match outcome {
        Outcome::Completed => "completed",
        Outcome::Failed => "failed",
    };
    let done = sqlx::query(
        "UPDATE messages SET outcome = $2, finished_at = now(), next_poll_at = NULL
         WHERE wiro_guid = $1 AND outcome IS NULL",
    )
    .bind(wiro_guid)
    .bind(outcome)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Claims up to `limit` messages due for a poll, pushing their next poll `interval` away;
/// messages older than `give_up` are no longer polled. Returns `(guid, agent)`.
///
/// # Errors
/// Database errors.
pub async fn claim_polls(
    conn: impl PgExecutor<'_>,
    limit: i64,
    interval: std::time::Duration,
    give_up: std::time::Duration,
) -> Result<Vec<(String, InstanceId)>> {
    Ok(sqlx::query_as(
        "WITH due AS (
             SELECT wiro_guid FROM messages
             WHERE next_poll_at IS NOT NULL AND next_poll_at <= now()
             ORDER BY next_poll_at LIMIT $1 FOR UPDATE SKIP LOCKED),
         polled AS (
             UPDATE messages m
             SET next_poll_at = CASE WHEN m.created_at < now() - $3 * interval '1 millisecond'
                                     THEN NULL ELSE now() + $2 * interval '1 millisecond' END
             FROM due WHERE m.wiro_guid = due.wiro_guid
             RETURNING m.wiro_guid, m.instance_id, m.next_poll_at)
         SELECT wiro_guid, instance_id FROM polled WHERE next_poll_at IS NOT NULL",
    )
    .bind(limit)
    .bind(interval.as_millis() as f64)
    .bind(give_up.as_millis() as f64)
    .fetch_all(conn)
    .await?)
}

/// True when `customer` sent `wiro_guid` on `instance`.
///
/// # Errors
/// Database errors.
pub async fn is_owned(
    conn: impl PgExecutor<'_>,
    wiro_guid: &str,
    instance: InstanceId,
    customer: CustomerId,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE wiro_guid = $1 AND instance_id = $2 AND customer_id = $3)",
    )
    .bind(wiro_guid)
    .bind(instance)
    .bind(customer)
    .fetch_one(conn)
    .await?)
}

/// Which of `guids` we already know (sent and recorded).
///
/// # Errors
/// Database errors.
pub async fn known(conn: impl PgExecutor<'_>, guids: &[String]) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT wiro_guid FROM messages WHERE wiro_guid = ANY($1)")
            .bind(guids)
            .fetch_all(conn)
            .await?,
    )
}

/// Forgets a deleted session's messages.
///
/// # Errors
/// Database errors.
pub async fn forget_session(
    conn: impl PgExecutor<'_>,
    instance: InstanceId,
    session: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM messages WHERE instance_id = $1 AND session = $2")
        .bind(instance)
        .bind(session)
        .execute(conn)
        .await?;
    Ok(())
}

/// A message we sent, as the map records it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SentMessage {
    /// Wiro's message guid.
    pub wiro_guid: String,
    /// The agent.
    pub instance_id: InstanceId,
    /// The session key.
    pub session: String,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

/// Every message `customer` sent, oldest first (at most `limit`).
///
/// # Errors
/// Database errors.
pub async fn of_customer(
    conn: impl PgExecutor<'_>,
    customer: CustomerId,
    limit: i64,
) -> Result<Vec<SentMessage>> {
    Ok(sqlx::query_as(
        "SELECT wiro_guid, instance_id, session, created_at FROM messages
         WHERE customer_id = $1 ORDER BY created_at, wiro_guid LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Forgets every message of `customer` (its sessions are gone upstream); returns how many.
///
/// # Errors
/// Database errors.
pub async fn forget_customer(conn: impl PgExecutor<'_>, customer: CustomerId) -> Result<u64> {
    let done = sqlx::query("DELETE FROM messages WHERE customer_id = $1")
        .bind(customer)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
