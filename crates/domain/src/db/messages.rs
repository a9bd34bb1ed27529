//! Which customer owns which upstream message: Wiro's message guids are global to our API key,
//! so every read of a message goes through this map first.

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
