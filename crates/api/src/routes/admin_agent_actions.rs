//! Ops act on any agent: the customer's routes mirrored under `/v1/admin/agents/{id}/…` (start,
//! stop, credentials and title, upgrade, cancel, renew, credits), through the same domain
//! functions and the same exactly-once protocol, audited as ops. The operator's `[billing]`
//! policy and the customer's spending limits bind customers, not ops; ops' answers carry Wiro's
//! own refusal text and the wholesale cost.

use actix_web::{HttpRequest, HttpResponse, delete, patch, post, web};
use domain::agents;
use domain::db::customers;
use domain::db::instances::{self, Instance};
use domain::ids::InstanceId;
use domain::model::{CancelSource, DesiredState};
use domain::orders::{self, Actor};
use operations::billing::BillingAction;
use operations::protocol::Requester;
use uuid::Uuid;

use super::agents::{UpdateAgent, change_desired_state};
use super::billing::{BillingResult, BuyCredits, run_action};
use crate::auth::OpsAuth;
use crate::dto::{self, AgentView};
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::settled::InDoubt;
use crate::state::AppState;

/// The agent (any customer's) and its customer's external id.
async fn load_any(state: &AppState, id: Uuid) -> ApiResult<(Instance, String)> {
    let instance = instances::get(&state.pool, InstanceId(id))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let customer = customers::get(&state.pool, instance.customer_id)
        .await?
        .map(|c| c.external_id)
        .unwrap_or_default();
    Ok((instance, customer))
}

async fn set_state(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: Uuid,
    desired: DesiredState,
) -> ApiResult<HttpResponse> {
    let (instance, customer) = load_any(&state, id).await?;
    let caller = ops.actor();
    let actor = Actor {
        name: &caller,
        request_id: ops.request_id.as_deref(),
    };
    let updated = change_desired_state(&state, None, instance.id, desired, actor).await?;
    Ok(HttpResponse::Accepted().json(AgentView::new(updated, &customer)))
}

/// Starts any agent.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 202, description = "Accepted; the agent is starting.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Waiting for credentials or a connection, or failed.", body = Problem),
        AuthErrors,
    )
)]
#[post("/agents/{id}/start")]
pub async fn start_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    set_state(ops, state, id.into_inner(), DesiredState::Running).await
}

/// Stops any agent (it still renews).
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 202, description = "Accepted; the agent is stopping.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent's provisioning failed.", body = Problem),
        AuthErrors,
    )
)]
#[post("/agents/{id}/stop")]
pub async fn stop_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    set_state(ops, state, id.into_inner(), DesiredState::Stopped).await
}

/// Changes any agent's title, credentials or custom skills (only the template's editable
/// fields, as for customers).
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    request_body = UpdateAgent,
    responses(
        (status = 202, description = "Accepted; the agent is being reconfigured.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[patch("/agents/{id}")]
pub async fn update_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateAgent>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let title = body
        .title
        .as_deref()
        .map(orders::validate_title)
        .transpose()?;
    let config = dto::pending_config("", body.credentials, body.custom_skills)?;
    let (instance, customer) = load_any(&state, id.into_inner()).await?;
    state
        .catalog
        .check_editable(state.wiro(), &instance.template_guid, &config, "")
        .await?;
    let caller = ops.actor();
    let updated = agents::update_config(
        &state.pool,
        &state.services.sealer,
        instance.customer_id,
        instance.id,
        title,
        config,
        Actor {
            name: &caller,
            request_id: ops.request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Accepted().json(AgentView::new(updated, &customer)))
}

async fn act(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: Uuid,
    action: BillingAction,
) -> ApiResult<HttpResponse> {
    let caller = ops.actor();
    let who = Requester {
        actor: &caller,
        request_id: ops.request_id.as_deref(),
        capped: false,
    };
    run_action(&state, &req, who, "", action, async || {
        load_any(&state, id).await
    })
    .await
}

/// Upgrades any agent to Pro (prorated charge; no customer limit applies).
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Upgraded.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled.", body = InDoubt),
        (status = 402, description = "The wallet cannot pay for it.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Already Pro, not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/upgrade")]
pub async fn upgrade_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    act(ops, state, req, id.into_inner(), BillingAction::Upgrade).await
}

/// Cancels any agent's subscription at period end, as ops (only ops take it back).
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Cancellation scheduled.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled.", body = InDoubt),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/cancel")]
pub async fn cancel_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let action = BillingAction::Cancel {
        source: CancelSource::Ops,
    };
    act(ops, state, req, id.into_inner(), action).await
}

/// Schedules any Pro agent's downgrade to Starter at the period end, as ops.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Downgrade scheduled.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled.", body = InDoubt),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Not on Pro, a cancellation pending, not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/downgrade")]
pub async fn downgrade_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let action = BillingAction::Downgrade {
        source: CancelSource::Ops,
    };
    act(ops, state, req, id.into_inner(), action).await
}

/// Withdraws any agent's scheduled downgrade before the period ends, as ops.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Downgrade withdrawn.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled.", body = InDoubt),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "No downgrade scheduled, the period already ended, not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[delete("/agents/{id}/subscription/downgrade")]
pub async fn withdraw_downgrade_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    act(
        ops,
        state,
        req,
        id.into_inner(),
        BillingAction::WithdrawDowngrade,
    )
    .await
}

/// Renews any agent's expired subscription, or takes back a pending cancellation.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the action safe to retry.")),
    responses(
        (status = 200, description = "Renewed, or the cancellation taken back.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled.", body = InDoubt),
        (status = 402, description = "The wallet cannot pay for it.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Nothing to renew, not deployed, or another action in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/subscription/renew")]
pub async fn renew_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    act(ops, state, req, id.into_inner(), BillingAction::Renew).await
}

/// Buys a pack for any (Pro) agent.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the purchase safe to retry.")),
    request_body = BuyCredits,
    responses(
        (status = 200, description = "Credits added.", body = BillingResult),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled.", body = InDoubt),
        (status = 402, description = "The wallet cannot pay for it.", body = Problem),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "Starter plan, not deployed, or another purchase in progress.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/credits")]
pub async fn buy_credits_any_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Json<BuyCredits>,
) -> ApiResult<HttpResponse> {
    let pack = body.into_inner().pack()?;
    act(
        ops,
        state,
        req,
        id.into_inner(),
        BillingAction::ExtraCredits { pack },
    )
    .await
}
