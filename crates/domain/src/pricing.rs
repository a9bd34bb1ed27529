//! Retail prices: the operator's price list (from `[pricing]` and from ops), what a customer
//! owes per charge (computed by the ledger's trigger at booking time, see the
//! `retail_prices` migration), and a customer's monthly statement.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use serde_json::json;

use crate::config::PricingSettings;
use crate::db::audit;
use crate::db::ledger::{self, LedgerEntry, LedgerFilter};
use crate::db::pricing as db;
use crate::error::{Error, Result};
use crate::ids::CustomerId;
use crate::orders::Actor;

/// Items a template can be priced for.
pub const ITEMS: [&str; 5] = ["starter", "pro", "package1", "package2", "package3"];

/// Checks a price's parts.
///
/// # Errors
/// [`Error::Invalid`] naming the part.
pub fn check_price(template: &str, item: &str, amount_minor: i64, currency: &str) -> Result<()> {
    if template.is_empty() || template.len() > 200 {
        return Err(Error::Invalid(
            "template: a template slug, or * for every template".into(),
        ));
    }
    if !ITEMS.contains(&item) {
        return Err(Error::Invalid(format!(
            "item: {item:?} is not one of {}",
            ITEMS.join(", ")
        )));
    }
    if amount_minor < 0 {
        return Err(Error::Invalid("amount_minor: must be 0 or more".into()));
    }
    check_currency(currency)
}

/// An ISO 4217 code: three capital letters.
///
/// # Errors
/// [`Error::Invalid`].
pub fn check_currency(currency: &str) -> Result<()> {
    if currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "currency: {currency:?} is not a three-letter ISO 4217 code such as USD"
        )))
    }
}

/// Makes the stored price list match `[pricing]`: the rule, and every configured price that
/// ops have not set themselves (config rows no longer configured are removed). Run at startup.
///
/// # Errors
/// Database errors.
pub async fn sync_from_config(pool: &sqlx::PgPool, settings: &PricingSettings) -> Result<()> {
    let mut tx = pool.begin().await?;
    db::set_rule(
        &mut *tx,
        &settings.currency,
        settings.default_markup_percent as i32,
    )
    .await?;
    let configured: Vec<(String, String, i64)> = settings
        .templates
        .iter()
        .flat_map(|(template, items)| {
            items
                .iter()
                .map(move |(item, amount)| (template.clone(), item.clone(), *amount))
        })
        .collect();
    db::replace_config_prices(&mut tx, &configured, &settings.currency).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets one price as ops (it stays until ops remove it), audited.
///
/// # Errors
/// [`Error::Invalid`]; database errors.
pub async fn set_price(
    pool: &sqlx::PgPool,
    price: db::Price,
    actor: Actor<'_>,
) -> Result<db::Price> {
    check_price(
        &price.template,
        &price.item,
        price.amount_minor,
        &price.currency,
    )?;
    let mut tx = pool.begin().await?;
    let rule = db::rule(&mut *tx).await?;
    if price.currency != rule.0 {
        return Err(Error::Invalid(format!(
            "currency: the price list is in {}; every price must be",
            rule.0
        )));
    }
    let saved = db::set_price(&mut *tx, &price).await?;
    let target = format!("price:{}/{}", price.template, price.item);
    let detail = json!({"amount_minor": price.amount_minor, "currency": price.currency});
    audit::record(&mut *tx, actor.audit("price.set", target, detail)).await?;
    tx.commit().await?;
    Ok(saved)
}

/// Removes ops' price of `item` for `template` (the configured one, if any, applies again at
/// the next start; until then the markup rule), audited.
///
/// # Errors
/// [`Error::NotFound`]; database errors.
pub async fn remove_price(
    pool: &sqlx::PgPool,
    template: &str,
    item: &str,
    actor: Actor<'_>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    if !db::remove_price(&mut *tx, template, item).await? {
        return Err(Error::NotFound("price"));
    }
    let target = format!("price:{template}/{item}");
    audit::record(&mut *tx, actor.audit("price.remove", target, json!({}))).await?;
    tx.commit().await?;
    Ok(())
}

/// The price list as one read: what the catalog shows customers.
#[derive(Clone, Debug)]
pub struct PriceBook {
    currency: String,
    markup_percent: i32,
    prices: Vec<db::Price>,
}

impl PriceBook {
    /// Reads the list and its rule.
    ///
    /// # Errors
    /// Database errors.
    pub async fn load(pool: &sqlx::PgPool) -> Result<Self> {
        let (currency, markup_percent) = db::rule(pool).await?;
        let prices = db::prices(pool).await?;
        Ok(Self {
            currency,
            markup_percent,
            prices,
        })
    }

    /// The retail price of `item` (`starter`, `pro`, `package1`...) of `template` whose
    /// wholesale price is `wholesale_cents`: `(minor units, currency)`, as the ledger's trigger
    /// computes it (the template's price, else `*`'s, else the markup).
    pub fn retail(&self, template: &str, item: &str, wholesale_cents: i64) -> (i64, String) {
        let listed = |t: &str| {
            self.prices
                .iter()
                .find(|p| p.template == t && p.item == item)
        };
        match listed(template).or_else(|| listed("*")) {
            Some(p) => (p.amount_minor, p.currency.clone()),
            None => (
                (wholesale_cents as f64 * (100.0 + f64::from(self.markup_percent)) / 100.0).round()
                    as i64,
                self.currency.clone(),
            ),
        }
    }
}

/// A month `YYYY-MM` as its first instant and the next month's.
///
/// # Errors
/// [`Error::Invalid`] for anything else.
pub fn month_range(month: &str) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let bad = || Error::Invalid(format!("month: {month:?} is not YYYY-MM"));
    let (year, m) = month.split_once('-').ok_or_else(bad)?;
    if year.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let start = NaiveDate::from_ymd_opt(
        year.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        1,
    )
    .ok_or_else(bad)?;
    let next = if start.month() == 12 {
        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
    }
    .ok_or_else(bad)?;
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
    Ok((at(start), at(next)))
}

/// A customer's month: its charges with both amounts, and the totals.
#[derive(Clone, Debug, Serialize)]
pub struct Statement {
    /// The customer.
    pub customer_id: CustomerId,
    /// `YYYY-MM`.
    pub month: String,
    /// The charges, oldest first.
    pub lines: Vec<LedgerEntry>,
    /// What the customer owes, by currency (minor units).
    pub retail_totals: BTreeMap<String, i64>,
    /// What Wiro charged the operator for them, in cents.
    pub wholesale_total_cents: i64,
}

/// The statement of `customer` for `month` (`YYYY-MM`).
///
/// # Errors
/// [`Error::Invalid`] for a bad month; database errors.
pub async fn statement(
    pool: &sqlx::PgPool,
    customer: CustomerId,
    month: &str,
) -> Result<Statement> {
    let (from, to) = month_range(month)?;
    let filter = LedgerFilter {
        customer: Some(customer),
        from: Some(from),
        to: Some(to),
    };
    let mut lines = Vec::new();
    let mut after = None;
    loop {
        let page = ledger::list(pool, &filter, after, crate::db::MAX_PAGE).await?;
        let done = (page.len() as i64) < crate::db::MAX_PAGE;
        after = page.last().map(|e| e.id);
        lines.extend(page);
        if done {
            break;
        }
    }
    let mut retail_totals = BTreeMap::new();
    for line in &lines {
        *retail_totals
            .entry(line.currency.clone().unwrap_or_else(|| "USD".into()))
            .or_insert(0) += line.retail_amount_minor.unwrap_or(0);
    }
    let wholesale_total_cents = lines.iter().map(|l| l.amount_cents).sum();
    Ok(Statement {
        customer_id: customer,
        month: month.to_owned(),
        lines,
        retail_totals,
        wholesale_total_cents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_whole_calendar_months() {
        let (from, to) = month_range("2026-12").unwrap();
        assert_eq!(from.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(month_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prices_name_a_known_item_and_an_iso_currency() {
        assert!(check_price("instagram-manager", "pro", 4500, "EUR").is_ok());
        assert!(check_price("*", "package1", 0, "USD").is_ok());
        assert!(check_price("x", "gold", 1, "USD").is_err());
        assert!(check_price("x", "pro", -1, "USD").is_err());
        assert!(check_price("x", "pro", 1, "usd").is_err());
        assert!(check_price("", "pro", 1, "USD").is_err());
    }
}
