//! Per-customer spending limits: how many agents, and how many cents a calendar month. Money
//! rules, not rate limits: they are checked inside the transaction that records the order or
//! the intent, under the customer's row lock, so two concurrent requests cannot both pass.
//! Charges we cannot refuse (Wiro's renewals, ops actions) are never blocked; when they take a
//! customer over its limit, ops get a `spend_over_limit` alert.

use serde::Serialize;
use sqlx::PgConnection;

use crate::config::LimitSettings;
use crate::db::{alerts, customers};
use crate::error::{Error, Result};
use crate::ids::CustomerId;

/// A customer's effective limits (its own, or the configured defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Agents it may have.
    pub max_agents: i64,
    /// Cents it may spend this month (0: no limit).
    pub monthly_spend_cents: i64,
}

/// What a customer uses against its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Usage {
    /// Agents that count (every order but those that failed before deploying or were deleted).
    pub agents: i64,
    /// This month's charges, plus orders not yet deployed and billing calls in flight.
    pub month_spend_cents: i64,
}

/// The limits of `customer` (locked for the rest of the transaction) and its usage.
///
/// # Errors
/// [`Error::NotFound`] for an unknown customer; database errors.
pub async fn locked(
    conn: &mut PgConnection,
    customer: CustomerId,
    defaults: &LimitSettings,
) -> Result<(Limits, Usage)> {
    let (max_agents, spend) = customers::lock_limits(&mut *conn, customer)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let limits = Limits {
        max_agents: max_agents.map_or(defaults.max_agents, i64::from),
        monthly_spend_cents: spend.unwrap_or(defaults.monthly_spend_cents),
    };
    Ok((limits, usage(&mut *conn, customer).await?))
}

/// What `customer` uses now.
///
/// # Errors
/// Database errors.
pub async fn usage(conn: &mut PgConnection, customer: CustomerId) -> Result<Usage> {
    Ok(sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM instances
             WHERE customer_id = $1 AND NOT (state = 'failed' AND wiro_guid IS NULL)
               AND deleted_at IS NULL) AS agents,
           ((SELECT COALESCE(sum(amount_cents), 0) FROM ledger_entries
              WHERE customer_id = $1 AND created_at >= date_trunc('month', business_now()))
            + (SELECT COALESCE(sum(price_cents), 0) FROM instances
                WHERE customer_id = $1 AND wiro_guid IS NULL AND state <> 'failed'
                  AND NOT (deleted_at IS NOT NULL AND state = 'stopped'))
            + (SELECT COALESCE(sum((o.detail ->> 'expected_cents')::bigint), 0)
                 FROM operations o JOIN instances i ON i.id = o.instance_id
                WHERE i.customer_id = $1 AND o.state IN ('calling', 'unknown')
                  AND o.kind <> 'deploy'))::bigint AS month_spend_cents",
    )
    .bind(customer)
    .fetch_one(conn)
    .await?)
}

/// Refuses an order of `price_cents` that would exceed the customer's limits.
///
/// # Errors
/// [`Error::LimitExceeded`]; database errors.
pub async fn check_order(
    conn: &mut PgConnection,
    customer: CustomerId,
    defaults: &LimitSettings,
    price_cents: i64,
) -> Result<()> {
    let (limits, usage) = locked(conn, customer, defaults).await?;
    if usage.agents + 1 > limits.max_agents {
        return Err(Error::LimitExceeded {
            name: "max_agents",
            limit: limits.max_agents,
            usage: usage.agents,
        });
    }
    check(limits, usage, price_cents)
}

/// Refuses a billing call expected to charge `cents` that would exceed the month's limit.
///
/// # Errors
/// [`Error::LimitExceeded`]; database errors.
pub async fn check_spend(
    conn: &mut PgConnection,
    customer: CustomerId,
    defaults: &LimitSettings,
    cents: i64,
) -> Result<()> {
    let (limits, usage) = locked(conn, customer, defaults).await?;
    check(limits, usage, cents)
}

fn check(limits: Limits, usage: Usage, cents: i64) -> Result<()> {
    if limits.monthly_spend_cents > 0
        && cents > 0
        && usage.month_spend_cents + cents > limits.monthly_spend_cents
    {
        return Err(Error::LimitExceeded {
            name: "monthly_spend_cents",
            limit: limits.monthly_spend_cents,
            usage: usage.month_spend_cents,
        });
    }
    Ok(())
}

/// Alerts ops about every customer over its monthly limit (charges we could not refuse — Wiro's
/// renewals, ops actions — can take one over). Run by reconciliation. Returns how many.
///
/// # Errors
/// Database errors.
pub async fn alert_all_over(conn: &mut PgConnection, defaults: &LimitSettings) -> Result<usize> {
    let over: Vec<(CustomerId, i64, i64)> = sqlx::query_as(
        "SELECT c.id, COALESCE(c.monthly_spend_cents, $1) AS limit_cents, spent.cents
           FROM customers c
           JOIN (SELECT customer_id, sum(amount_cents)::bigint AS cents FROM ledger_entries
                  WHERE created_at >= date_trunc('month', business_now()) GROUP BY customer_id) spent
             ON spent.customer_id = c.id
          WHERE COALESCE(c.monthly_spend_cents, $1) > 0
            AND spent.cents > COALESCE(c.monthly_spend_cents, $1)",
    )
    .bind(defaults.monthly_spend_cents)
    .fetch_all(&mut *conn)
    .await?;
    for (customer, limit, usage) in &over {
        alerts::raise(
            &mut *conn,
            "spend_over_limit",
            &format!("customer:{customer}"),
            None,
            serde_json::json!({"limit": limit, "usage": usage}),
        )
        .await?;
    }
    Ok(over.len())
}

/// A customer's limits as ops see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LimitsView {
    /// The limits in force.
    pub limits: Limits,
    /// The customer's own `max_agents` (`None`: the default applies).
    pub own_max_agents: Option<i64>,
    /// The customer's own `monthly_spend_cents` (`None`: the default applies).
    pub own_monthly_spend_cents: Option<i64>,
    /// What it uses.
    pub usage: Usage,
}

/// Sets `customer`'s own limits (`None`: back to the default) and returns them with its usage,
/// with an audit entry.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::Invalid`] for a negative or out-of-range value; database
/// errors.
pub async fn set(
    pool: &sqlx::PgPool,
    customer: CustomerId,
    max_agents: Option<i64>,
    monthly_spend_cents: Option<i64>,
    defaults: &LimitSettings,
    actor: crate::orders::Actor<'_>,
) -> Result<LimitsView> {
    let agents = max_agents
        .map(|n| {
            i32::try_from(n)
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::Invalid("max_agents: must be 0 to 2147483647".into()))
        })
        .transpose()?;
    if monthly_spend_cents.is_some_and(|c| c < 0) {
        return Err(Error::Invalid(
            "monthly_spend_cents: must not be negative".into(),
        ));
    }
    let mut tx = pool.begin().await?;
    customers::set_limits(&mut *tx, customer, agents, monthly_spend_cents).await?;
    crate::db::audit::record(
        &mut *tx,
        crate::db::audit::NewAudit {
            actor: actor.name,
            action: "customer.limits",
            target: Some(format!("customer:{customer}")),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({"max_agents": max_agents, "monthly_spend_cents": monthly_spend_cents}),
        },
    )
    .await?;
    let view = show(&mut tx, customer, defaults).await?;
    tx.commit().await?;
    Ok(view)
}

/// `customer`'s limits and usage.
///
/// # Errors
/// [`Error::NotFound`]; database errors.
pub async fn show(
    conn: &mut PgConnection,
    customer: CustomerId,
    defaults: &LimitSettings,
) -> Result<LimitsView> {
    let (own_agents, own_spend) = customers::lock_limits(&mut *conn, customer)
        .await?
        .ok_or(Error::NotFound("customer"))?;
    let (limits, usage) = locked(conn, customer, defaults).await?;
    Ok(LimitsView {
        limits,
        own_max_agents: own_agents.map(i64::from),
        own_monthly_spend_cents: own_spend,
        usage,
    })
}
