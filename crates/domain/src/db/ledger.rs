//! The money ledger: every wallet charge we cause, exactly once per `reference`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;
use crate::ids::{CustomerId, InstanceId, OperationId};
use crate::model::ChargeKind;

/// A ledger row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct LedgerEntry {
    /// Sequence.
    pub id: i64,
    /// Customer charged for.
    pub customer_id: CustomerId,
    /// Instance.
    pub instance_id: Option<InstanceId>,
    /// What was bought.
    #[sqlx(try_from = "String")]
    pub kind: ChargeKind,
    /// Cents.
    pub amount_cents: i64,
    /// Idempotency reference (unique).
    pub reference: String,
    /// Upstream guid.
    pub wiro_guid: Option<String>,
    /// The operation that caused it (automatic renewals have none).
    pub operation_id: Option<OperationId>,
    /// The amount is our computation, not Wiro's answer.
    pub estimated: bool,
    /// What the customer owes for it (retail, from the price list when it was booked), in
    /// minor units of `currency`.
    pub retail_amount_minor: Option<i64>,
    /// ISO 4217 code of the retail amount.
    pub currency: Option<String>,
    /// When recorded.
    pub created_at: DateTime<Utc>,
}

/// A charge to record.
#[derive(Clone, Debug)]
pub struct NewCharge<'a> {
    /// Customer.
    pub customer_id: CustomerId,
    /// Instance.
    pub instance_id: InstanceId,
    /// Kind.
    pub kind: ChargeKind,
    /// Cents (never negative).
    pub amount_cents: i64,
    /// Names the charge so it is recorded once: `deploy:<instance>`, ...
    pub reference: String,
    /// Upstream guid.
    pub wiro_guid: Option<&'a str>,
    /// The operation that caused it.
    pub operation_id: Option<OperationId>,
    /// The amount is our computation, not Wiro's answer.
    pub estimated: bool,
}

/// The reference of the deploy charge of an agent's `generation`-th Wiro instance (the first
/// is `deploy:<instance>`; one after a downgrade `deploy:<instance>:<generation>`).
pub fn deploy_reference(instance: InstanceId, generation: i32) -> String {
    if generation == 0 {
        format!("deploy:{instance}")
    } else {
        format!("deploy:{instance}:{generation}")
    }
}

/// The reference of the renewal that paid for the period ending at `period_end`: whoever first
/// sees that period end books it, and nobody can book it twice.
pub fn renewal_reference(instance: InstanceId, period_end: DateTime<Utc>) -> String {
    format!("renewal:{instance}:{}", period_end.timestamp())
}

/// The reference of an instance's (one) upgrade.
pub fn upgrade_reference(instance: InstanceId) -> String {
    format!("upgrade:{instance}")
}

/// The reference of a pack bought by `operation`.
pub fn pack_reference(operation: OperationId) -> String {
    format!("extra_credits:{operation}")
}

/// The reference of a duplicate instance's Deploy charge.
pub fn duplicate_reference(wiro_guid: &str) -> String {
    format!("duplicate_deploy:{wiro_guid}")
}

/// Records the charge unless its reference is already there. True when this call recorded it.
///
/// # Errors
/// Database errors (including a negative amount, refused by the table).
pub async fn record(conn: impl PgExecutor<'_>, charge: NewCharge<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO ledger_entries
             (customer_id, instance_id, kind, amount_cents, reference, wiro_guid, operation_id, estimated)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (reference) DO NOTHING",
    )
    .bind(charge.customer_id)
    .bind(charge.instance_id)
    .bind(charge.kind.as_str())
    .bind(charge.amount_cents)
    .bind(&charge.reference)
    .bind(charge.wiro_guid)
    .bind(charge.operation_id)
    .bind(charge.estimated)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Filters for reading the ledger.
#[derive(Clone, Debug, Default)]
pub struct LedgerFilter {
    /// One customer.
    pub customer: Option<CustomerId>,
    /// From (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// To (exclusive).
    pub to: Option<DateTime<Utc>>,
}

/// A page ordered by id after `after`.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: impl PgExecutor<'_>,
    filter: &LedgerFilter,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerEntry>> {
    Ok(sqlx::query_as::<_, LedgerEntry>(
        "SELECT id, customer_id, instance_id, kind, amount_cents, reference, wiro_guid, operation_id,
                estimated, retail_amount_minor, currency, created_at
         FROM ledger_entries
         WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::timestamptz IS NULL OR created_at >= $2)
           AND ($3::timestamptz IS NULL OR created_at < $3) AND ($4::bigint IS NULL OR id > $4)
         ORDER BY id LIMIT $5",
    )
    .bind(filter.customer)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Totals in cents by kind.
///
/// # Errors
/// Database errors.
pub async fn totals(conn: impl PgExecutor<'_>) -> Result<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT kind, count(*), COALESCE(sum(amount_cents), 0)::bigint FROM ledger_entries GROUP BY kind ORDER BY kind",
    )
    .fetch_all(conn)
    .await?)
}
