//! What we know of upstream instances that are not an order's own: duplicates a Deploy made
//! (contained: cancelled and charged to us) and the operator's own instances (foreign).

use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{InstanceId, OperationId};

/// Records `wiro_guid` as a duplicate of `instance`'s order. True when it is new.
///
/// # Errors
/// Database errors.
pub async fn record_duplicate(
    conn: impl PgExecutor<'_>,
    wiro_guid: &str,
    instance: InstanceId,
    operation: Option<OperationId>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO upstream_duplicates (wiro_guid, instance_id, operation_id) VALUES ($1, $2, $3)
         ON CONFLICT (wiro_guid) DO NOTHING",
    )
    .bind(wiro_guid)
    .bind(instance)
    .bind(operation)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Notes that the duplicate's subscription was cancelled at Wiro.
///
/// # Errors
/// Database errors.
pub async fn duplicate_cancelled(conn: impl PgExecutor<'_>, wiro_guid: &str) -> Result<()> {
    sqlx::query("UPDATE upstream_duplicates SET cancelled_at = now() WHERE wiro_guid = $1")
        .bind(wiro_guid)
        .execute(conn)
        .await?;
    Ok(())
}

/// Duplicates whose cancellation has not been confirmed yet, with their instance.
///
/// # Errors
/// Database errors.
pub async fn uncancelled_duplicates(
    conn: impl PgExecutor<'_>,
) -> Result<Vec<(String, InstanceId)>> {
    Ok(sqlx::query_as(
        "SELECT wiro_guid, instance_id FROM upstream_duplicates WHERE cancelled_at IS NULL ORDER BY found_at",
    )
    .fetch_all(conn)
    .await?)
}

/// Records an upstream instance that carries no correlator of ours.
///
/// # Errors
/// Database errors.
pub async fn record_foreign(conn: impl PgExecutor<'_>, wiro_guid: &str) -> Result<()> {
    sqlx::query("INSERT INTO upstream_foreign (wiro_guid) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(wiro_guid)
        .execute(conn)
        .await?;
    Ok(())
}

/// Which of `guids` we know: mapped to an order, an agent's earlier instance (before a
/// downgrade), a contained duplicate, or foreign.
///
/// # Errors
/// Database errors.
pub async fn known(conn: impl PgExecutor<'_>, guids: &[String]) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT wiro_guid FROM instances WHERE wiro_guid = ANY($1)
         UNION SELECT wiro_guid FROM instance_generations WHERE wiro_guid = ANY($1)
         UNION SELECT wiro_guid FROM upstream_duplicates WHERE wiro_guid = ANY($1)
         UNION SELECT wiro_guid FROM upstream_foreign WHERE wiro_guid = ANY($1)",
    )
    .bind(guids)
    .fetch_all(conn)
    .await?)
}
