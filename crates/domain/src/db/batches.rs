//! Provisioning batches: many orders submitted at once, keyed so a resubmission finds the
//! original, with per-item progress read from the instances.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{BatchId, InstanceId};

/// A batch row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Batch {
    /// Id.
    pub id: BatchId,
    /// Caller's key.
    pub key: Option<String>,
    /// Who submitted it.
    pub created_by: String,
    /// Number of orders.
    pub total: i32,
    /// Submitted.
    pub created_at: DateTime<Utc>,
}

/// One order of a batch with its instance's current state.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct BatchItem {
    /// Position in the submission.
    pub position: i32,
    /// The customer's external id.
    pub customer: String,
    /// The instance created for it.
    pub instance_id: InstanceId,
    /// Its state.
    pub state: String,
    /// Its error, if failed.
    pub error: Option<String>,
}

/// Inserts the batch unless `key` exists. `None` when the key was taken (by this or a
/// concurrent submission). `shard_span` consecutive positions share a progress shard: the
/// batch's chunk size, so a chunk's orders settle in one shard (migration
/// `20261202000002_batch_shard_span`).
///
/// # Errors
/// Database errors.
pub async fn insert(
    conn: impl PgExecutor<'_>,
    key: Option<&str>,
    created_by: &str,
    total: i32,
    shard_span: i16,
) -> Result<Option<Batch>> {
    Ok(sqlx::query_as::<_, Batch>(
        "INSERT INTO provisioning_batches (id, key, created_by, total, shard_span)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO NOTHING RETURNING id, key, created_by, total, created_at",
    )
    .bind(BatchId::new())
    .bind(key)
    .bind(created_by)
    .bind(total)
    .bind(shard_span)
    .fetch_optional(conn)
    .await?)
}

/// By key.
///
/// # Errors
/// Database errors.
pub async fn by_key(conn: impl PgExecutor<'_>, key: &str) -> Result<Option<Batch>> {
    Ok(sqlx::query_as::<_, Batch>(
        "SELECT id, key, created_by, total, created_at FROM provisioning_batches WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// By id.
///
/// # Errors
/// Database errors.
pub async fn get(conn: impl PgExecutor<'_>, id: BatchId) -> Result<Option<Batch>> {
    Ok(sqlx::query_as::<_, Batch>(
        "SELECT id, key, created_by, total, created_at FROM provisioning_batches WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// A batch's progress as of one moment: its counts per state and the page of items from
/// `after_position` on, read in one snapshot (read apart, a page could show an order still
/// starting beside counts that have it running).
///
/// # Errors
/// Database errors.
pub async fn progress(
    pool: &sqlx::PgPool,
    batch: BatchId,
    after_position: Option<i32>,
    limit: i64,
) -> Result<(BTreeMap<String, i64>, Vec<BatchItem>)> {
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let counts = counts(&mut *tx, batch).await?;
    let items = items(&mut *tx, batch, after_position, limit).await?;
    tx.commit().await?;
    Ok((counts, items))
}

/// Items from `after_position` on, with their instances' states.
///
/// # Errors
/// Database errors.
pub async fn items(
    conn: impl PgExecutor<'_>,
    batch: BatchId,
    after_position: Option<i32>,
    limit: i64,
) -> Result<Vec<BatchItem>> {
    Ok(sqlx::query_as::<_, BatchItem>(
        "SELECT i.batch_position AS position, c.external_id AS customer, i.id AS instance_id,
                i.state, i.last_error AS error
         FROM instances i JOIN customers c ON c.id = i.customer_id
         WHERE i.batch_id = $1 AND ($2::int IS NULL OR i.batch_position > $2)
         ORDER BY i.batch_position LIMIT $3",
    )
    .bind(batch)
    .bind(after_position)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Number of items per instance state.
///
/// # Errors
/// Database errors.
pub async fn counts(conn: impl PgExecutor<'_>, batch: BatchId) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT i.state, count(*) FROM instances i WHERE i.batch_id = $1 GROUP BY i.state",
    )
    .bind(batch)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
