//! A customer's data: what ops can export, and what closing with erasure removes.
//!
//! Erasure keeps the ledger (what was charged, for the books) and the audit log (who did what);
//! it removes the display name and the sealed credentials still waiting for Wiro at once, and —
//! through the customer job, which needs Wiro — every message session on the customer's agents
//! upstream, then our map of its messages.

use crate::db::audit::{self, AuditEntry, NewAudit};
use crate::db::customers::{self, Customer};
use crate::db::instances::{self, Instance, InstanceFilter};
use crate::db::ledger::{self, LedgerEntry, LedgerFilter};
use crate::db::messages::{self, SentMessage};
use crate::error::Result;
use crate::ids::CustomerId;
use crate::model::CustomerStatus;

/// The most rows of one kind an export holds.
pub const EXPORT_MAX_ROWS: i64 = 100_000;

/// Closes `id` (if it is not yet) and erases its data, in one transaction: status, erasure
/// mark, sealed credentials, the audit entry, and the customer job that stops its agents and
/// deletes its Wiro message sessions. Asking again is harmless. Returns the customer and how
/// many agents' sealed credentials were erased.
///
/// # Errors
/// [`crate::Error::NotFound`] for an unknown customer; database errors.
pub async fn close_and_erase(
    pool: &sqlx::PgPool,
    id: CustomerId,
    actor: &str,
    request_id: Option<&str>,
) -> Result<(Customer, u64)> {
    let mut tx = pool.begin().await?;
    customers::set_status(&mut *tx, id, CustomerStatus::Closed).await?;
    let customer = customers::request_erasure(&mut *tx, id).await?;
    let credentials_erased = instances::erase_pending_config_of_customer(&mut *tx, id).await?;
    crate::jobs::enqueue_customer_status(&mut tx, id).await?;
    audit::record(
        &mut *tx,
        NewAudit {
            actor,
            action: "customer.erase",
            target: Some(format!("customer:{id}")),
            request_id,
            outcome: "ok",
            detail: serde_json::json!({"status": "closed", "credentials_erased": credentials_erased}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((customer, credentials_erased))
}

/// Records the end of an erasure once the Wiro sessions are gone: forgets the customer's
/// messages and marks it erased, with an audit entry.
///
/// # Errors
/// Database errors.
pub async fn finish_erasure(
    pool: &sqlx::PgPool,
    id: CustomerId,
    sessions_deleted: u64,
    actor: &str,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let messages_forgotten = messages::forget_customer(&mut *tx, id).await?;
    customers::mark_erased(&mut *tx, id).await?;
    audit::record(
        &mut *tx,
        NewAudit {
            actor,
            action: "customer.erased",
            target: Some(format!("customer:{id}")),
            request_id: None,
            outcome: "ok",
            detail: serde_json::json!({
                "wiro_sessions_deleted": sessions_deleted,
                "messages_forgotten": messages_forgotten,
            }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Everything we hold about one customer.
#[derive(Debug)]
pub struct CustomerExport {
    /// The customer.
    pub customer: Customer,
    /// Its agents, in id order (sealed credentials are never exported).
    pub agents: Vec<Instance>,
    /// Its charges.
    pub ledger: Vec<LedgerEntry>,
    /// The messages it sent (ids and sessions; the content lives at Wiro).
    pub messages: Vec<SentMessage>,
    /// Audit entries by it, about it and about its agents.
    pub audit: Vec<AuditEntry>,
}

/// The export of `id`, or `None` for an unknown customer. Each list holds at most
/// [`EXPORT_MAX_ROWS`] rows.
///
/// # Errors
/// Database errors.
pub async fn export(pool: &sqlx::PgPool, id: CustomerId) -> Result<Option<CustomerExport>> {
    let Some(customer) = customers::get(pool, id).await? else {
        return Ok(None);
    };
    let filter = InstanceFilter {
        customer: Some(id),
        ..InstanceFilter::default()
    };
    let agents = instances::list(pool, &filter, None, EXPORT_MAX_ROWS).await?;
    let ledger = ledger::list(
        pool,
        &LedgerFilter {
            customer: Some(id),
            ..LedgerFilter::default()
        },
        None,
        EXPORT_MAX_ROWS,
    )
    .await?;
    let messages = messages::of_customer(pool, id, EXPORT_MAX_ROWS).await?;
    let audit = audit::of_customer(pool, id, &customer.external_id, EXPORT_MAX_ROWS).await?;
    Ok(Some(CustomerExport {
        customer,
        agents,
        ledger,
        messages,
        audit,
    }))
}
