//! The wallet draw ahead: every renewal due within N days (repeating each 30-day period), plus
//! the expired subscriptions waiting to be renewed — so a shortfall is seen before plans expire.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::ids::{CustomerId, InstanceId};

/// Length of a Wiro billing period.
pub const PERIOD_DAYS: i64 = 30;

/// One renewal expected.
#[derive(Clone, Debug, Serialize)]
pub struct ForecastItem {
    /// Instance.
    pub instance_id: InstanceId,
    /// Its customer.
    pub customer_id: CustomerId,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// What it will cost, in cents.
    pub amount_cents: i64,
}

/// The draw ahead.
#[derive(Clone, Debug, Serialize)]
pub struct Forecast {
    /// Look-ahead in days.
    pub days: i64,
    /// Renewals due, in due order.
    pub renewals: Vec<ForecastItem>,
    /// Their sum in cents.
    pub renewals_cents: i64,
    /// Expired subscriptions of active customers, waiting for a renewal (due now).
    pub parked: Vec<ForecastItem>,
    /// Their sum in cents.
    pub parked_cents: i64,
    /// Everything the wallet must cover in the window.
    pub total_cents: i64,
    /// The wallet balance given, if any.
    pub wallet_cents: Option<i64>,
    /// How much the wallet is short (0 when it covers everything).
    pub shortfall_cents: Option<i64>,
    /// The first renewal the wallet would not cover, in due order.
    pub first_uncovered: Option<DateTime<Utc>>,
}

/// Instance, customer, period end, price per period, subscription status.
type Row = (
    InstanceId,
    CustomerId,
    Option<DateTime<Utc>>,
    i64,
    Option<String>,
);

/// Renewals of active customers' active, not-cancelled subscriptions due within `days`, and
/// the parked (expired) ones; with `wallet_cents`, the shortfall.
///
/// # Errors
/// Database errors.
pub async fn forecast(
    pool: &sqlx::PgPool,
    days: i64,
    wallet_cents: Option<i64>,
) -> Result<Forecast> {
    let now = Utc::now();
    let horizon = now + Duration::days(days);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT i.id, i.customer_id, i.subscription_period_end,
                COALESCE(i.subscription_amount_cents, i.price_cents), i.subscription_status
         FROM instances i JOIN customers c ON c.id = i.customer_id
         WHERE c.status = 'active' AND i.wiro_guid IS NOT NULL AND i.state <> 'failed'
           AND NOT i.cancel_at_period_end
           AND (i.subscription_status = 'expired'
                OR (i.subscription_status = 'active' AND i.subscription_period_end <= $1))",
    )
    .bind(horizon)
    .fetch_all(pool)
    .await?;
    let mut renewals = Vec::new();
    let mut parked = Vec::new();
    for (instance_id, customer_id, end, amount_cents, status) in rows {
        if status.as_deref() == Some("expired") {
            parked.push(ForecastItem {
                instance_id,
                customer_id,
                due: now,
                amount_cents,
            });
            continue;
        }
        let Some(mut due) = end else { continue };
        while due <= horizon {
            renewals.push(ForecastItem {
                instance_id,
                customer_id,
                due,
                amount_cents,
            });
            due += Duration::days(PERIOD_DAYS);
        }
    }
    renewals.sort_by_key(|r| (r.due, r.instance_id));
    let renewals_cents = renewals.iter().map(|r| r.amount_cents).sum::<i64>();
    let parked_cents = parked.iter().map(|r| r.amount_cents).sum::<i64>();
    let total_cents = renewals_cents + parked_cents;
    let first_uncovered = wallet_cents.and_then(|wallet| {
        let mut left = wallet - parked_cents;
        renewals.iter().find_map(|r| {
            left -= r.amount_cents;
            (left < 0).then_some(r.due)
        })
    });
    Ok(Forecast {
        days,
        renewals,
        renewals_cents,
        parked,
        parked_cents,
        total_cents,
        wallet_cents,
        shortfall_cents: wallet_cents.map(|w| (total_cents - w).max(0)),
        first_uncovered,
    })
}
