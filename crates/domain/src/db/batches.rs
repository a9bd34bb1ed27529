//! Provisioning batches: many orders submitted at once, keyed so a resubmission finds the
//! original, with per-item progress read from the instances.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{BatchId, CustomerId, InstanceId};

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

/// Links orders to the batch.
///
/// # Errors
/// Database errors.
pub async fn insert_items(
    conn: impl PgExecutor<'_>,
    batch: BatchId,
    items: &[(CustomerId, InstanceId)],
) -> Result<()> {
    let positions: Vec<i32> = (0..items.len() as i32).collect();
    let customers: Vec<CustomerId> = items.iter().map(|(c, _)| *c).collect();
    let instances: Vec<InstanceId> = items.iter().map(|(_, i)| *i).collect();
    sqlx::query(
        "INSERT INTO provisioning_batch_items (batch_id, position, customer_id, instance_id)
         SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::uuid[])",
    )
    .bind(batch)
    .bind(&positions)
    .bind(&customers)
    .bind(&instances)
    .execute(conn)
    .await?;
    Ok(())
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
        "SELECT b.position, c.external_id AS customer, b.instance_id, i.state, i.last_error AS error
         FROM provisioning_batch_items b
         JOIN instances i ON i.id = b.instance_id
         JOIN customers c ON c.id = b.customer_id
         WHERE b.batch_id = $1 AND ($2::int IS NULL OR b.position > $2)
         ORDER BY b.position LIMIT $3",
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
        "SELECT i.state, count(*) FROM provisioning_batch_items b
         JOIN instances i ON i.id = b.instance_id WHERE b.batch_id = $1 GROUP BY i.state",
    )
    .bind(batch)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
