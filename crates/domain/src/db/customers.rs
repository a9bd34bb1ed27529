//! Customers: the SaaS's end users, keyed by its external id.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::{Error, Result};
use crate::ids::CustomerId;
use crate::model::CustomerStatus;

/// A customer row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Customer {
    /// Our id.
    pub id: CustomerId,
    /// The SaaS's id (the JWT `sub`).
    pub external_id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Active, suspended or closed.
    #[sqlx(try_from = "String")]
    pub status: CustomerStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When ops asked to erase its data (with the close).
    pub erase_requested_at: Option<DateTime<Utc>>,
    /// When the erasure finished (Wiro message sessions deleted).
    pub erased_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, external_id, display_name, status, created_at, updated_at, erase_requested_at, erased_at";

/// Checks an external id: 1–200 printable characters.
///
/// # Errors
/// [`Error::Invalid`] naming the problem.
pub fn validate_external_id(external_id: &str) -> Result<()> {
    if external_id.is_empty() || external_id.len() > 200 {
        return Err(Error::Invalid(
            "customer external id must be 1 to 200 characters".into(),
        ));
    }
    if external_id.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "customer external id must not contain control characters".into(),
        ));
    }
    Ok(())
}

/// Creates the customer or updates its display name (when given); returns the row.
///
/// # Errors
/// Database errors; [`Error::Invalid`] for a bad external id.
pub async fn upsert(
    conn: impl PgExecutor<'_>,
    external_id: &str,
    display_name: Option<&str>,
) -> Result<Customer> {
    validate_external_id(external_id)?;
    let sql = format!(
        "INSERT INTO customers (id, external_id, display_name) VALUES ($1, $2, $3)
         ON CONFLICT (external_id) DO UPDATE
           SET display_name = COALESCE(EXCLUDED.display_name, customers.display_name),
               updated_at = CASE WHEN EXCLUDED.display_name IS NULL THEN customers.updated_at ELSE now() END
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(sql))
        .bind(CustomerId::new())
        .bind(external_id)
        .bind(display_name)
        .fetch_one(conn)
        .await?)
}

/// Creates the customers that do not exist yet (display names untouched for the others).
///
/// # Errors
/// Database errors.
pub async fn ensure_all(conn: impl PgExecutor<'_>, external_ids: &[String]) -> Result<u64> {
    let ids: Vec<CustomerId> = external_ids.iter().map(|_| CustomerId::new()).collect();
    let done = sqlx::query(
        "INSERT INTO customers (id, external_id)
         SELECT * FROM unnest($1::uuid[], $2::text[])
         ON CONFLICT (external_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(external_ids)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// By external id.
///
/// # Errors
/// Database errors.
pub async fn by_external_id(
    conn: impl PgExecutor<'_>,
    external_id: &str,
) -> Result<Option<Customer>> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE external_id = $1");
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(sql))
        .bind(external_id)
        .fetch_optional(conn)
        .await?)
}

/// By our id.
///
/// # Errors
/// Database errors.
pub async fn get(conn: impl PgExecutor<'_>, id: CustomerId) -> Result<Option<Customer>> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE id = $1");
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// Which of `ids` are active (one statement for a chunk of orders' customers).
///
/// # Errors
/// Database errors.
pub async fn active_among(
    conn: impl PgExecutor<'_>,
    ids: &[CustomerId],
) -> Result<std::collections::HashSet<CustomerId>> {
    let rows: Vec<(CustomerId,)> =
        sqlx::query_as("SELECT id FROM customers WHERE id = ANY($1) AND status = 'active'")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The statuses of those of `ids` that exist, in one statement (a sweep's customers).
///
/// # Errors
/// Database errors; [`Error::Corrupt`] for a status no release writes.
pub async fn statuses(
    conn: impl PgExecutor<'_>,
    ids: &[CustomerId],
) -> Result<Vec<(CustomerId, CustomerStatus)>> {
    let rows: Vec<(CustomerId, String)> =
        sqlx::query_as("SELECT id, status FROM customers WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    rows.into_iter()
        .map(|(id, status)| {
            CustomerStatus::try_from(status)
                .map(|status| (id, status))
                .map_err(|e| Error::Corrupt(format!("customer {id}: {e}")))
        })
        .collect()
}

/// A page of customers ordered by id, after `after`, optionally one status.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: impl PgExecutor<'_>,
    status: Option<CustomerStatus>,
    after: Option<CustomerId>,
    limit: i64,
) -> Result<Vec<Customer>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customers
         WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    );
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(sql))
        .bind(status.map(CustomerStatus::as_str))
        .bind(after)
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Sets the status; returns the updated row.
///
/// # Errors
/// [`Error::NotFound`] for an unknown id.
pub async fn set_status(
    conn: impl PgExecutor<'_>,
    id: CustomerId,
    status: CustomerStatus,
) -> Result<Customer> {
    let sql = format!(
        "UPDATE customers SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(status.as_str())
        .fetch_optional(conn)
        .await?
        .ok_or(Error::NotFound("customer"))
}

/// Sets the status, records it in the audit log and enqueues the job that applies it to the
/// customer's agents — in one transaction.
///
/// # Errors
/// [`Error::NotFound`] for an unknown id.
pub async fn change_status(
    pool: &sqlx::PgPool,
    id: CustomerId,
    status: CustomerStatus,
    actor: &str,
    request_id: Option<&str>,
) -> Result<Customer> {
    let mut tx = pool.begin().await?;
    let customer = set_status(&mut *tx, id, status).await?;
    crate::jobs::enqueue_customer_status(&mut tx, id).await?;
    crate::db::audit::record(
        &mut *tx,
        crate::db::audit::NewAudit {
            actor,
            action: "customer.status",
            target: Some(format!("customer:{id}")),
            request_id,
            outcome: "ok",
            detail: serde_json::json!({"status": status}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(customer)
}

/// External ids of `ids` (for views that list several customers' rows).
///
/// # Errors
/// Database errors.
pub async fn external_ids(
    conn: impl PgExecutor<'_>,
    ids: &[CustomerId],
) -> Result<std::collections::HashMap<CustomerId, String>> {
    let pairs: Vec<(CustomerId, String)> =
        sqlx::query_as("SELECT id, external_id FROM customers WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(conn)
            .await?;
    Ok(pairs.into_iter().collect())
}

/// The customer's own limits (`max_agents`, `monthly_spend_cents`; `None`: the default), its row
/// locked for the rest of the transaction.
///
/// # Errors
/// Database errors.
pub async fn lock_limits(
    conn: impl PgExecutor<'_>,
    id: CustomerId,
) -> Result<Option<(Option<i32>, Option<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT max_agents, monthly_spend_cents FROM customers WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Sets the customer's own limits (`None`: back to the default).
///
/// # Errors
/// Database errors; [`Error::NotFound`] for an unknown customer.
pub async fn set_limits(
    conn: impl PgExecutor<'_>,
    id: CustomerId,
    max_agents: Option<i32>,
    monthly_spend_cents: Option<i64>,
) -> Result<()> {
    let done = sqlx::query(
        "UPDATE customers SET max_agents = $2, monthly_spend_cents = $3, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(max_agents)
    .bind(monthly_spend_cents)
    .execute(conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NotFound("customer"));
    }
    Ok(())
}

/// Marks a closed customer's data for erasure and drops its display name; the first request's
/// time is kept. Returns the row.
///
/// # Errors
/// [`Error::NotFound`] for an unknown id; [`Error::Invalid`] when the customer is not closed.
pub async fn request_erasure(conn: impl PgExecutor<'_>, id: CustomerId) -> Result<Customer> {
    let sql = format!(
        "UPDATE customers SET erase_requested_at = COALESCE(erase_requested_at, now()),
                display_name = NULL, updated_at = now()
         WHERE id = $1 AND status = 'closed' RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::Invalid("only a closed customer's data can be erased".into()))
}

/// Records that the erasure asked for is done.
///
/// # Errors
/// Database errors.
pub async fn mark_erased(conn: impl PgExecutor<'_>, id: CustomerId) -> Result<()> {
    sqlx::query(
        "UPDATE customers SET erased_at = now(), updated_at = now()
         WHERE id = $1 AND erase_requested_at IS NOT NULL AND erased_at IS NULL",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
