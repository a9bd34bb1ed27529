//! The customer's agents: order, list, read, change, start, stop.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use domain::agents;
use domain::db::idempotency::AnswerIn;
use domain::db::instances::{self, Instance, InstanceFilter};
use domain::db::{agent_view, customers};
use domain::ids::InstanceId;
use domain::model::DesiredState;
use domain::orders::{self, Actor, Order};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{CustomerAuth, CustomerToken, refused};
use crate::dto::{self, AgentView, CredentialsInput, CustomSkillInput};
use crate::error::{ApiError, ApiResult, Problem};
use crate::idempotency::{self, Answer};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// An order for one agent.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "template": "instagram-manager",
    "plan": "starter",
    "title": "My shop's Instagram",
    "credentials": {"instagram": {"authMethod": "wiro"}}
}))]
pub struct CreateAgent {
    /// Template slug or guid from the catalog.
    pub template: String,
    /// `starter` or `pro`.
    pub plan: String,
    /// Display title, 1–200 characters.
    pub title: String,
    /// Credentials in Wiro's shape `{group: {field: value}}`; may come later with PATCH.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<CredentialsInput>,
    /// Custom skill content.
    #[serde(default)]
    pub custom_skills: Option<Vec<CustomSkillInput>>,
}

/// A change to an agent.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"credentials": {"wordpress": {"url": "https://blog.example.com", "user": "editor", "appPassword": "abcd efgh"}}}))]
pub struct UpdateAgent {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// Credentials to set (merged per group and field).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<CredentialsInput>,
    /// Custom skill changes.
    #[serde(default)]
    pub custom_skills: Option<Vec<CustomSkillInput>>,
}

pub(crate) async fn load(state: &AppState, auth: &CustomerAuth, id: Uuid) -> ApiResult<Instance> {
    instances::get_for_customer(&state.pool, auth.customer.id, InstanceId(id))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))
}

fn actor<'a>(name: &'a str, auth: &'a CustomerAuth) -> Actor<'a> {
    Actor {
        name,
        request_id: auth.request_id.as_deref(),
    }
}

/// The customer's agents, oldest first.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "A page of agents.", body = Page<AgentView>), AuthErrors)
)]
#[get("/agents")]
pub async fn list_agents(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let limit = query.limit()?;
    let filter = InstanceFilter {
        customer: Some(auth.customer.id),
        hide_deleted: true,
        ..InstanceFilter::default()
    };
    let rows = instances::list(&state.pool, &filter, query.after()?, limit).await?;
    let external = auth.customer.external_id.clone();
    let page = Page::new(rows, limit, |i| i.id.to_string());
    Ok(HttpResponse::Ok().json(Page {
        items: page
            .items
            .into_iter()
            .map(|i| AgentView::new(i, &external))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Orders an agent. Answers at once with the agent in `pending`; provisioning runs in the
/// background (deploy, credentials, start). Send an `Idempotency-Key` to order safely twice.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    request_body = CreateAgent,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the order safe to retry.")),
    responses(
        (status = 202, description = "Accepted; provisioning has begun.", body = AgentView),
        (status = 409, description = "Over a limit of the customer (`limit_exceeded`, with `limit_name`, `limit` and `usage`; nothing is ordered), or the Idempotency-Key is still in use by a running request.", body = Problem),
        (status = 422, description = "Invalid order (the field is named), unknown template or plan, or a reused Idempotency-Key.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents")]
pub async fn create_agent(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<CreateAgent>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let caller = auth.actor();
    let customer = auth.customer.external_id.clone();
    idempotency::run(&state, &caller, &req, &body, &customer, async |claim| {
        let plan = dto::plan("plan", &body.plan)?;
        let title = orders::validate_title(&body.title)?;
        let config = dto::pending_config("", body.credentials.clone(), body.custom_skills.clone())?;
        let template = state
            .catalog
            .resolve(state.wiro(), &body.template, plan, "order")
            .await?;
        state
            .catalog
            .check_editable(state.wiro(), &template.guid, &config, "")
            .await?;
        let order = Order {
            plan,
            title,
            config,
        };
        let render = |i: &Instance| {
            serde_json::to_value(AgentView::new(i.clone(), &customer)).unwrap_or_default()
        };
        let answer = claim.as_ref().map(|c| AnswerIn {
            caller: &c.caller,
            key: &c.key,
            status: StatusCode::ACCEPTED.as_u16(),
            render: &render,
        });
        let instance = orders::place_order(
            &state.pool,
            &state.services.sealer,
            auth.customer.id,
            orders::Purchase {
                order: &order,
                template: &template,
            },
            actor(&caller, &auth),
            &state.settings.limits,
            answer.as_ref(),
        )
        .await?;
        Ok(Answer::Stored(StatusCode::ACCEPTED, render(&instance)))
    })
    .await
}

/// One agent: our state, Wiro status, what credentials are missing, subscription and credits.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 200, description = "The agent.", body = AgentView),
        (status = 404, description = "No such agent (or not yours).", body = Problem),
        AuthErrors,
    )
)]
#[get("/agents/{id}")]
pub async fn get_agent(
    token: CustomerToken,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    // One round trip: the customer is found in the instance's own query.
    let found =
        agent_view::for_external_customer(&state.pool, &token.sub, InstanceId(id.into_inner()))
            .await?;
    let Some(found) = found else {
        // Not found (the cold path): a suspended or closed customer still hears why.
        if let Some(customer) = customers::by_external_id(&state.pool, &token.sub).await?
            && let Some(refusal) = refused(customer.status)
        {
            return Err(refusal);
        }
        return Err(ApiError::not_found("agent"));
    };
    if let Some(refusal) = refused(found.customer_status) {
        return Err(refusal);
    }
    Ok(HttpResponse::Ok().json(AgentView::new(found.agent, &token.sub)))
}

/// Changes the title, credentials or custom skills. The change is sent to Wiro in the
/// background; a running agent restarts to apply new credentials, as Wiro does.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    request_body = UpdateAgent,
    responses(
        (status = 202, description = "Accepted; the agent is being reconfigured.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 422, description = "Invalid change (the field is named).", body = Problem),
        AuthErrors,
    )
)]
#[patch("/agents/{id}")]
pub async fn update_agent(
    auth: CustomerAuth,
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
    let instance = load(&state, &auth, id.into_inner()).await?;
    state
        .catalog
        .check_editable(state.wiro(), &instance.template_guid, &config, "")
        .await?;
    let caller = auth.actor();
    let updated = agents::update_config(
        &state.pool,
        &state.services.sealer,
        auth.customer.id,
        instance.id,
        title,
        config,
        actor(&caller, &auth),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(AgentView::new(updated, &auth.customer.external_id)))
}

async fn set_state(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: Uuid,
    desired: DesiredState,
) -> ApiResult<HttpResponse> {
    let caller = auth.actor();
    let updated = change_desired_state(
        &state,
        Some(auth.customer.id),
        InstanceId(id),
        desired,
        actor(&caller, &auth),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(AgentView::new(updated, &auth.customer.external_id)))
}

/// Sets what the agent should be (scoped to `customer` when given: another customer's agent is
/// not found); a refusal (waiting for credentials or a connection, failed) is a 409.
pub(crate) async fn change_desired_state(
    state: &AppState,
    customer: Option<domain::ids::CustomerId>,
    id: InstanceId,
    desired: DesiredState,
    actor: Actor<'_>,
) -> ApiResult<Instance> {
    agents::set_desired_state(&state.pool, customer, id, desired, actor)
        .await
        .map_err(|e| match e {
            domain::Error::Conflict(detail) => ApiError::conflict("agent_not_ready", detail),
            other => other.into(),
        })
}

/// Starts the agent (and keeps it running).
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 202, description = "Accepted; the agent is starting.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent cannot start yet (missing credentials, failed).", body = Problem),
        AuthErrors,
    )
)]
#[post("/agents/{id}/start")]
pub async fn start_agent(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    set_state(auth, state, id.into_inner(), DesiredState::Running).await
}

/// Stops the agent (and keeps it stopped). A stopped agent still renews.
#[utoipa::path(
    tag = "agents",
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
pub async fn stop_agent(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    set_state(auth, state, id.into_inner(), DesiredState::Stopped).await
}

/// Deletes the agent: it is stopped, its subscription is cancelled at the period end (Wiro has
/// no immediate cancel, so it is not renewed), and it no longer exists for the customer. Its
/// charges stay in the ledger.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 202, description = "Deleted; stopping and cancelling follow.", body = AgentView),
        (status = 404, description = "No such agent (or already deleted).", body = Problem),
        AuthErrors,
    )
)]
#[delete("/agents/{id}")]
pub async fn delete_agent(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let caller = auth.actor();
    let deleted = agents::delete(
        &state.pool,
        auth.customer.id,
        InstanceId(id.into_inner()),
        actor(&caller, &auth),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(AgentView::new(deleted, &auth.customer.external_id)))
}
