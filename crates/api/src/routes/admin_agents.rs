//! Ops: agents across customers — list with filters, read, retry a failed provisioning.

use actix_web::{HttpResponse, get, post, web};
use domain::agents;
use domain::db::customers;
use domain::db::instances::{self, InstanceFilter};
use domain::ids::InstanceId;
use domain::model::InstanceState;
use domain::orders::Actor;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::dto::AgentView;
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// Filters for the agent list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentFilter {
    /// Only this state (`running`, `failed`, `awaiting_credentials`...).
    pub state: Option<String>,
    /// Only this observed Wiro status (0–6).
    #[param(minimum = 0, maximum = 6)]
    pub wiro_status: Option<i16>,
    /// Only this customer's (external id).
    pub customer: Option<String>,
}

async fn external_ids(
    state: &AppState,
    rows: &[instances::Instance],
) -> ApiResult<std::collections::HashMap<domain::ids::CustomerId, String>> {
    let ids: Vec<domain::ids::CustomerId> = rows.iter().map(|i| i.customer_id).collect();
    Ok(customers::external_ids(&state.pool, &ids).await?)
}

/// Agents of every customer, oldest first.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(AgentFilter, PageQuery),
    responses(
        (status = 200, description = "A page of agents.", body = Page<AgentView>),
        (status = 422, description = "Unknown state.", body = Problem),
        AuthErrors,
    )
)]
#[get("/agents")]
pub async fn list_all_agents(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    filter: web::Query<AgentFilter>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let state_filter = filter
        .state
        .as_deref()
        .map(|s| {
            s.parse::<InstanceState>()
                .map_err(|e| ApiError::bad_query(format!("state: {e}")))
        })
        .transpose()?;
    if filter.wiro_status.is_some_and(|s| !(0..=6).contains(&s)) {
        return Err(ApiError::bad_query("wiro_status: must be 0 to 6"));
    }
    let customer = match &filter.customer {
        Some(external) => match customers::by_external_id(&state.pool, external).await? {
            Some(c) => Some(c.id),
            None => {
                return Ok(HttpResponse::Ok().json(Page::<AgentView> {
                    items: vec![],
                    next_cursor: None,
                }));
            }
        },
        None => None,
    };
    let limit = page.limit()?;
    let query = InstanceFilter {
        customer,
        state: state_filter,
        wiro_status: filter.wiro_status,
        hide_deleted: false,
    };
    let rows = instances::list(&state.pool, &query, page.after()?, limit).await?;
    let names = external_ids(&state, &rows).await?;
    let page = Page::new(rows, limit, |i| i.id.to_string());
    let items = page
        .items
        .into_iter()
        .map(|i| {
            let name = names.get(&i.customer_id).cloned().unwrap_or_default();
            AgentView::new(i, &name)
        })
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// One agent.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 200, description = "The agent.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        AuthErrors,
    )
)]
#[get("/agents/{id}")]
pub async fn get_any_agent(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let instance = instances::get(&state.pool, InstanceId(id.into_inner()))
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let names = external_ids(&state, std::slice::from_ref(&instance)).await?;
    let name = names
        .get(&instance.customer_id)
        .cloned()
        .unwrap_or_default();
    Ok(HttpResponse::Ok().json(AgentView::new(instance, &name)))
}

/// Resumes a failed provisioning from the step that failed.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 202, description = "Provisioning resumed.", body = AgentView),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent has not failed.", body = Problem),
        AuthErrors,
    )
)]
#[post("/agents/{id}/retry")]
pub async fn retry_agent(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let actor = ops.actor();
    let instance = agents::retry_failed(
        &state.pool,
        InstanceId(id.into_inner()),
        Actor {
            name: &actor,
            request_id: ops.request_id.as_deref(),
        },
    )
    .await
    .map_err(|e| match e {
        domain::Error::Conflict(detail) => ApiError::conflict("not_failed", detail),
        other => other.into(),
    })?;
    let names = external_ids(&state, std::slice::from_ref(&instance)).await?;
    let name = names
        .get(&instance.customer_id)
        .cloned()
        .unwrap_or_default();
    Ok(HttpResponse::Accepted().json(AgentView::new(instance, &name)))
}
