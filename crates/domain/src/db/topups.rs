//! Packs bought automatically: the monthly cap per customer counts them.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{CustomerId, InstanceId};
use crate::model::Pack;

/// Automatic packs bought for `customer` since `since`.
///
/// # Errors
/// Database errors.
pub async fn count_since(
    conn: impl PgExecutor<'_>,
    customer: CustomerId,
    since: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM auto_topups WHERE customer_id = $1 AND created_at >= $2",
    )
    .bind(customer)
    .bind(since)
    .fetch_one(conn)
    .await?)
}

/// Records an automatic pack.
///
/// # Errors
/// Database errors.
pub async fn record(
    conn: impl PgExecutor<'_>,
    customer: CustomerId,
    instance: InstanceId,
    pack: Pack,
    charged_cents: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO auto_topups (customer_id, instance_id, pack, charged_cents) VALUES ($1, $2, $3, $4)",
    )
    .bind(customer)
    .bind(instance)
    .bind(pack.as_str())
    .bind(charged_cents)
    .execute(conn)
    .await?;
    Ok(())
}
