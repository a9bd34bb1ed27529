//! Ops: a customer's spending limits — how many agents, how many cents a calendar month — and
//! what it uses against them. Customer orders and billing actions over a limit answer
//! `409 limit_exceeded`; ops actions and Wiro's renewals are never refused (ops are alerted).

use actix_web::{HttpResponse, get, put, web};
use domain::ids::CustomerId;
use domain::limits::{self, LimitsView};
use domain::orders::Actor;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::error::{ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::state::AppState;

/// A customer's limits and usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsResponse {
    /// Agents it may have (its own limit, or the default).
    pub max_agents: i64,
    /// Cents it may spend per calendar month (0: no limit).
    pub monthly_spend_cents: i64,
    /// Whether `max_agents` is the customer's own (false: the configured default).
    pub own_max_agents: bool,
    /// Whether `monthly_spend_cents` is the customer's own.
    pub own_monthly_spend_cents: bool,
    /// Agents that count against the limit.
    pub agents: i64,
    /// This month's charges, plus orders not yet deployed and billing calls in flight.
    pub month_spend_cents: i64,
}

impl From<LimitsView> for LimitsResponse {
    fn from(v: LimitsView) -> Self {
        Self {
            max_agents: v.limits.max_agents,
            monthly_spend_cents: v.limits.monthly_spend_cents,
            own_max_agents: v.own_max_agents.is_some(),
            own_monthly_spend_cents: v.own_monthly_spend_cents.is_some(),
            agents: v.usage.agents,
            month_spend_cents: v.usage.month_spend_cents,
        }
    }
}

/// A customer's own limits; `null` (or absent) returns a limit to the configured default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max_agents": 5, "monthly_spend_cents": 20000}))]
pub struct SetLimits {
    /// Agents it may have.
    #[serde(default)]
    pub max_agents: Option<i64>,
    /// Cents it may spend per calendar month (0: no limit).
    #[serde(default)]
    pub monthly_spend_cents: Option<i64>,
}

/// A customer's limits and usage.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id.")),
    responses(
        (status = 200, description = "Limits and usage.", body = LimitsResponse),
        (status = 404, description = "No such customer.", body = Problem),
        AuthErrors,
    )
)]
#[get("/customers/{id}/limits")]
pub async fn get_limits(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let mut conn = state.pool.acquire().await?;
    let view = limits::show(
        &mut conn,
        CustomerId(id.into_inner()),
        &state.settings.limits,
    )
    .await?;
    Ok(HttpResponse::Ok().json(LimitsResponse::from(view)))
}

/// Sets a customer's own limits.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id.")),
    request_body = SetLimits,
    responses(
        (status = 200, description = "The limits now in force, and usage.", body = LimitsResponse),
        (status = 404, description = "No such customer.", body = Problem),
        (status = 422, description = "A value out of range (the field is named).", body = Problem),
        AuthErrors,
    )
)]
#[put("/customers/{id}/limits")]
pub async fn set_limits(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<SetLimits>,
) -> ApiResult<HttpResponse> {
    let actor = ops.actor();
    let view = limits::set(
        &state.pool,
        CustomerId(id.into_inner()),
        body.max_agents,
        body.monthly_spend_cents,
        &state.settings.limits,
        Actor {
            name: &actor,
            request_id: ops.request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(LimitsResponse::from(view)))
}
