//! Packs bought automatically: the monthly cap per customer counts them.

use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{CustomerId, InstanceId};
use crate::model::Pack;

/// Automatic packs bought for `customer` in the current calendar month of the business
/// clock (`business_now()`, which tests move with the simulator's clock).
///
/// # Errors
/// Database errors.
pub async fn count_this_month(conn: impl PgExecutor<'_>, customer: CustomerId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM auto_topups
         WHERE customer_id = $1 AND created_at >= date_trunc('month', business_now())",
    )
    .bind(customer)
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
