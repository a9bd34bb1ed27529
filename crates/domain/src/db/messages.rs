//! Which customer owns which upstream message: Wiro's message guids are global to our API key,
//! so every read of a message goes through this map first.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{CustomerId, InstanceId};

/// Records a message we sent for `customer` on `instance`.
///
/// # Errors
/// Database errors.
pub async fn record(
    conn: impl PgExecutor<'_>,
    wiro_guid: &str,
    instance: InstanceId,
    customer: CustomerId,
    session: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO messages (wiro_guid, instance_id, customer_id, session) VALUES ($1, $2, $3, $4)
         ON CONFLICT (wiro_guid) DO NOTHING",
    )
    .bind(wiro_guid)
    .bind(instance)
    .bind(customer)
    .bind(session)
    .execute(conn)
    .await?;
    Ok(())
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
