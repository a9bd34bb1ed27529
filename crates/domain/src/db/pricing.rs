//! The price list and the markup rule (the ledger's trigger reads them when it books a charge).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;

use crate::error::Result;

/// One price.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Price {
    /// Template slug, or `*` for every template.
    pub template: String,
    /// `starter`, `pro`, `package1`, `package2` or `package3`.
    pub item: String,
    /// Minor units of `currency`.
    pub amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// `config` or `ops`.
    pub source: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The rule for what the list does not price: `(currency, markup percent)`.
///
/// # Errors
/// Database errors.
pub async fn rule(conn: impl PgExecutor<'_>) -> Result<(String, i32)> {
    Ok(
        sqlx::query_as("SELECT currency, markup_percent FROM pricing_rule")
            .fetch_one(conn)
            .await?,
    )
}

/// Sets the rule.
///
/// # Errors
/// Database errors.
pub async fn set_rule(
    conn: impl PgExecutor<'_>,
    currency: &str,
    markup_percent: i32,
) -> Result<()> {
    sqlx::query("UPDATE pricing_rule SET currency = $1, markup_percent = $2")
        .bind(currency)
        .bind(markup_percent)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces the configured prices with `prices` (`(template, item, amount)` in `currency`),
/// leaving ops' own prices alone.
///
/// # Errors
/// Database errors.
pub async fn replace_config_prices(
    conn: &mut sqlx::PgConnection,
    prices: &[(String, String, i64)],
    currency: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM price_list WHERE source = 'config'")
        .execute(&mut *conn)
        .await?;
    for (template, item, amount) in prices {
        sqlx::query(
            "INSERT INTO price_list (template, item, amount_minor, currency, source)
             VALUES ($1, $2, $3, $4, 'config') ON CONFLICT (template, item) DO NOTHING",
        )
        .bind(template)
        .bind(item)
        .bind(amount)
        .bind(currency)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Sets a price as ops.
///
/// # Errors
/// Database errors.
pub async fn set_price(conn: impl PgExecutor<'_>, price: &Price) -> Result<Price> {
    Ok(sqlx::query_as(
        "INSERT INTO price_list (template, item, amount_minor, currency, source)
         VALUES ($1, $2, $3, $4, 'ops')
         ON CONFLICT (template, item) DO UPDATE
         SET amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,
             source = 'ops', updated_at = now()
         RETURNING template, item, amount_minor, currency, source, updated_at",
    )
    .bind(&price.template)
    .bind(&price.item)
    .bind(price.amount_minor)
    .bind(&price.currency)
    .fetch_one(conn)
    .await?)
}

/// Removes ops' price. True when there was one.
///
/// # Errors
/// Database errors.
pub async fn remove_price(conn: impl PgExecutor<'_>, template: &str, item: &str) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM price_list WHERE template = $1 AND item = $2 AND source = 'ops'")
            .bind(template)
            .bind(item)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// The whole list, by template and item.
///
/// # Errors
/// Database errors.
pub async fn prices(conn: impl PgExecutor<'_>) -> Result<Vec<Price>> {
    Ok(sqlx::query_as(
        "SELECT template, item, amount_minor, currency, source, updated_at FROM price_list
         ORDER BY template, item",
    )
    .fetch_all(conn)
    .await?)
}

/// The prices that apply to `template` (its own over `*`), by item.
///
/// # Errors
/// Database errors.
pub async fn prices_for(
    conn: impl PgExecutor<'_>,
    template: &str,
) -> Result<BTreeMap<String, (i64, String)>> {
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (item) item, amount_minor, currency FROM price_list
         WHERE template IN ($1, '*') ORDER BY item, (template = '*')",
    )
    .bind(template)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(item, amount, currency)| (item, (amount, currency)))
        .collect())
}
