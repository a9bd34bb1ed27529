//! Ops: open alerts (parked renewals, drift, credits) and the wallet forecast.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use domain::db::alerts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// An alert for ops.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Id.
    pub id: i64,
    /// `renewal_parked`, `upstream_orphan`, `upstream_missing`, `upstream_duplicate`,
    /// `error_restarts_exhausted`, `credits_low`, `topup_cap_reached` or `topup_failed`.
    pub kind: String,
    /// What it is about: `instance:<id>` or `wiro:<guid>`.
    pub subject: String,
    /// The agent, when known.
    pub instance_id: Option<Uuid>,
    /// Facts, e.g. `required_cents` and `available_cents` of a parked renewal.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// First raised.
    pub created_at: DateTime<Utc>,
    /// Last seen.
    pub updated_at: DateTime<Utc>,
}

/// `?kind=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// Only this kind.
    pub kind: Option<String>,
}

/// Open alerts, oldest first.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(AlertQuery, PageQuery),
    responses((status = 200, description = "A page of open alerts.", body = Page<AlertView>), AuthErrors)
)]
#[get("/alerts")]
pub async fn list_alerts(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    filter: web::Query<AlertQuery>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let limit = page.limit()?;
    let rows = alerts::open(&state.pool, filter.kind.as_deref(), page.after()?, limit).await?;
    let page = Page::new(rows, limit, |a| a.id.to_string());
    let items = page
        .items
        .into_iter()
        .map(|a| AlertView {
            id: a.id,
            kind: a.kind,
            subject: a.subject,
            instance_id: a.instance_id.map(|i| i.0),
            detail: a.detail,
            created_at: a.created_at,
            updated_at: a.updated_at,
        })
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// Closes an alert (it is raised again if the condition persists).
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "Alert id.")),
    responses(
        (status = 204, description = "Resolved."),
        (status = 404, description = "No open alert with this id.", body = Problem),
        AuthErrors,
    )
)]
#[post("/alerts/{id}/resolve")]
pub async fn resolve_alert(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    if !alerts::resolve_by_id(&state.pool, id.into_inner()).await? {
        return Err(ApiError::not_found("open alert"));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// `?days=&wallet_cents=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastQuery {
    /// Look-ahead in days, 1–365 (default 30).
    #[param(minimum = 1, maximum = 365)]
    pub days: Option<i64>,
    /// The Wiro wallet balance in cents (Wiro has no balance endpoint): with it, the shortfall.
    #[param(minimum = 0)]
    pub wallet_cents: Option<i64>,
}

/// The wallet draw ahead.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastView {
    /// Look-ahead in days.
    pub days: i64,
    /// Renewals due in the window (each period of each subscription).
    pub renewals: i64,
    /// Their total in cents.
    pub renewals_cents: i64,
    /// Expired subscriptions waiting for renewal.
    pub parked: i64,
    /// Their total in cents.
    pub parked_cents: i64,
    /// Everything the wallet must cover.
    pub total_cents: i64,
    /// Cents short of `wallet_cents` (when given).
    pub shortfall_cents: Option<i64>,
    /// The first renewal the wallet would not cover (when given).
    pub first_uncovered: Option<DateTime<Utc>>,
    /// Cents due per day (UTC date).
    pub by_day: BTreeMap<String, i64>,
}

/// Renewals due in the next N days and what the wallet must hold for them.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(ForecastQuery),
    responses(
        (status = 200, description = "The forecast.", body = ForecastView),
                AuthErrors,
    )
)]
#[get("/forecast")]
pub async fn forecast(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    query: web::Query<ForecastQuery>,
) -> ApiResult<HttpResponse> {
    let days = query.days.unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(ApiError::bad_query("days: must be 1 to 365"));
    }
    if query.wallet_cents.is_some_and(|c| c < 0) {
        return Err(ApiError::bad_query("wallet_cents: must not be negative"));
    }
    let f = domain::forecast::forecast(&state.pool, days, query.wallet_cents).await?;
    let mut by_day = BTreeMap::new();
    for item in f.renewals.iter().chain(&f.parked) {
        *by_day
            .entry(item.due.format("%Y-%m-%d").to_string())
            .or_insert(0) += item.amount_cents;
    }
    Ok(HttpResponse::Ok().json(ForecastView {
        days,
        renewals: f.renewals.len() as i64,
        renewals_cents: f.renewals_cents,
        parked: f.parked.len() as i64,
        parked_cents: f.parked_cents,
        total_cents: f.total_cents,
        shortfall_cents: f.shortfall_cents,
        first_uncovered: f.first_uncovered,
        by_day,
    }))
}
