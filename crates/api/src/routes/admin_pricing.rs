//! Ops: the retail price list (from `[pricing]`, overridden here) and a customer's monthly
//! statement — what the SaaS bills its customer from (JSON, or CSV with `Accept: text/csv`).

use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use chrono::{DateTime, Utc};
use domain::db::pricing::{self as db, Price};
use domain::ids::CustomerId;
use domain::orders::Actor;
use domain::pricing;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::admin_records::wants_csv;
use crate::auth::OpsAuth;
use crate::csv_export::{self, Cell};
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::state::AppState;

/// One price of the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListedPrice {
    /// Template slug, or `*` for every template.
    pub template: String,
    /// `starter`, `pro`, `package1`, `package2` or `package3`.
    pub item: String,
    /// In minor units of `currency` (cents for USD).
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// `config` (from `[pricing]`) or `ops` (set here).
    pub source: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Price> for ListedPrice {
    fn from(p: Price) -> Self {
        Self {
            template: p.template,
            item: p.item,
            amount_minor: p.amount_minor,
            currency: p.currency,
            source: p.source,
            updated_at: p.updated_at,
        }
    }
}

/// The price list and the rule for what it does not price.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceList {
    /// The list's currency.
    pub currency: String,
    /// Where the list has no price: Wiro's wholesale amount plus this percent.
    pub default_markup_percent: i32,
    /// The prices, by template and item.
    pub prices: Vec<ListedPrice>,
}

/// A price to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount_minor": 4900, "currency": "USD"}))]
pub struct SetPrice {
    /// In minor units (cents for USD); never a float.
    pub amount_minor: i64,
    /// ISO 4217 code: the list's currency.
    pub currency: String,
}

/// The price list.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    responses((status = 200, description = "The list and its rule.", body = PriceList), AuthErrors)
)]
#[get("/price-list")]
pub async fn get_price_list(_ops: OpsAuth, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let (currency, default_markup_percent) = db::rule(&state.pool).await?;
    let prices = db::prices(&state.pool).await?;
    Ok(HttpResponse::Ok().json(PriceList {
        currency,
        default_markup_percent,
        prices: prices.into_iter().map(ListedPrice::from).collect(),
    }))
}

/// Sets the retail price of a plan or pack of a template (`*`: every template without its
/// own). Charges booked from now on use it; booked ones keep theirs.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(
        ("template" = String, Path, description = "Template slug, or `*`."),
        ("item" = String, Path, description = "`starter`, `pro`, `package1`, `package2` or `package3`."),
    ),
    request_body = SetPrice,
    responses(
        (status = 200, description = "The price now.", body = ListedPrice),
        (status = 422, description = "An unknown item, a negative amount, another currency than the list's.", body = Problem),
        AuthErrors,
    )
)]
#[put("/price-list/{template}/{item}")]
pub async fn set_price(
    ops: OpsAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Json<SetPrice>,
) -> ApiResult<HttpResponse> {
    let (template, item) = path.into_inner();
    let body = body.into_inner();
    let (name, request_id) = (ops.actor(), ops.request_id.clone());
    let saved = pricing::set_price(
        &state.pool,
        Price {
            template,
            item,
            amount_minor: body.amount_minor,
            currency: body.currency,
            source: "ops".into(),
            updated_at: Utc::now(),
        },
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(ListedPrice::from(saved)))
}

/// Removes a price ops set (the configured one applies again from the next start; the markup
/// rule until then).
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(
        ("template" = String, Path, description = "Template slug, or `*`."),
        ("item" = String, Path, description = "The item."),
    ),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "Ops set no such price.", body = Problem),
        AuthErrors,
    )
)]
#[delete("/price-list/{template}/{item}")]
pub async fn remove_price(
    ops: OpsAuth,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (template, item) = path.into_inner();
    let (name, request_id) = (ops.actor(), ops.request_id.clone());
    pricing::remove_price(
        &state.pool,
        &template,
        &item,
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `?month=YYYY-MM`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// The calendar month (UTC), `YYYY-MM`.
    pub month: String,
}

/// One charge on a statement.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementLine {
    /// When it was booked.
    pub created_at: DateTime<Utc>,
    /// The agent.
    pub agent_id: Option<Uuid>,
    /// `deploy`, `renewal`, `upgrade`, `extra_credits` or `duplicate_deploy` (retail 0).
    pub kind: String,
    /// The ledger reference.
    pub reference: String,
    /// What the customer owes, in minor units of `currency`.
    pub retail_amount_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// What Wiro charged the operator, in cents (USD).
    pub wholesale_cents: i64,
}

/// A customer's month.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    /// The customer.
    pub customer_id: Uuid,
    /// `YYYY-MM`.
    pub month: String,
    /// Its charges, oldest first.
    pub lines: Vec<StatementLine>,
    /// What it owes, by currency, in minor units.
    pub retail_totals: std::collections::BTreeMap<String, i64>,
    /// What Wiro charged for them, in cents.
    pub wholesale_total_cents: i64,
}

/// A customer's statement for a month: every charge with the retail amount (what the customer
/// owes) and the wholesale amount (what Wiro charged). `Accept: text/csv` for CSV.
#[utoipa::path(
    tag = "pricing",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id."), MonthQuery),
    responses(
        (status = 200, description = "The statement (JSON), or its lines (CSV).", content(
            (StatementView = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`month` is not YYYY-MM.", body = Problem),
        AuthErrors,
    )
)]
#[get("/customers/{id}/statement")]
pub async fn customer_statement(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    query: web::Query<MonthQuery>,
) -> ApiResult<HttpResponse> {
    let statement = pricing::statement(&state.pool, CustomerId(id.into_inner()), &query.month)
        .await
        .map_err(|e| match e {
            domain::Error::Invalid(why) => ApiError::bad_query(why),
            other => other.into(),
        })?;
    let lines: Vec<StatementLine> = statement
        .lines
        .iter()
        .map(|l| StatementLine {
            created_at: l.created_at,
            agent_id: l.instance_id.map(|i| i.0),
            kind: l.kind.as_str().to_owned(),
            reference: l.reference.clone(),
            retail_amount_minor: l.retail_amount_minor.unwrap_or(0),
            currency: l.currency.clone().unwrap_or_else(|| "USD".into()),
            wholesale_cents: l.amount_cents,
        })
        .collect();
    if wants_csv(&req) {
        let text: Vec<[String; 2]> = lines
            .iter()
            .map(|l| {
                [
                    l.created_at.to_rfc3339(),
                    l.agent_id.map(|a| a.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        let out = csv_export::document(
            &[
                "created_at",
                "agent_id",
                "kind",
                "reference",
                "retail_amount_minor",
                "currency",
                "wholesale_cents",
            ],
            lines.iter().zip(&text).map(|(l, [at, agent])| {
                vec![
                    Cell::Text(at),
                    Cell::Text(agent),
                    Cell::Text(&l.kind),
                    Cell::Text(&l.reference),
                    Cell::Number(l.retail_amount_minor),
                    Cell::Text(&l.currency),
                    Cell::Number(l.wholesale_cents),
                ]
            }),
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(out));
    }
    Ok(HttpResponse::Ok().json(StatementView {
        customer_id: statement.customer_id.0,
        month: statement.month,
        lines,
        retail_totals: statement.retail_totals,
        wholesale_total_cents: statement.wholesale_total_cents,
    }))
}
