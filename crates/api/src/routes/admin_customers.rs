//! Ops: customers — list, create or update by external id, read, suspend, reactivate, close
//! (optionally erasing the customer's data), export everything we hold about one.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use domain::customer_data;
use domain::db::customers::{self, Customer};
use domain::ids::CustomerId;
use domain::model::CustomerStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::dto::AgentView;
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::pagination::{Page, PageQuery};
use crate::routes::admin_records::{AuditEntryView, LedgerEntryView};
use crate::state::AppState;

/// A customer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerView {
    /// Our id.
    pub id: Uuid,
    /// The SaaS's id for the customer (the JWT `sub`).
    pub external_id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// `active`, `suspended` or `closed`.
    pub status: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When ops closed it with `erase_data=true`.
    pub erase_requested_at: Option<DateTime<Utc>>,
    /// When that erasure finished (Wiro message sessions deleted).
    pub erased_at: Option<DateTime<Utc>>,
}

impl From<Customer> for CustomerView {
    fn from(c: Customer) -> Self {
        Self {
            id: c.id.0,
            external_id: c.external_id,
            display_name: c.display_name,
            status: c.status.as_str().to_owned(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            erase_requested_at: c.erase_requested_at,
            erased_at: c.erased_at,
        }
    }
}

/// Create or update a customer.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"external_id": "acme-42", "display_name": "Acme Corp"}))]
pub struct UpsertCustomer {
    /// The SaaS's id, 1–200 characters.
    pub external_id: String,
    /// Display name, up to 200 characters.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Filters for the customer list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustomerFilter {
    /// Only this status.
    pub status: Option<String>,
}

/// Customers, oldest first.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(CustomerFilter, PageQuery),
    responses((status = 200, description = "A page of customers.", body = Page<CustomerView>), AuthErrors)
)]
#[get("/customers")]
pub async fn list_customers(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    filter: web::Query<CustomerFilter>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let status = filter
        .status
        .as_deref()
        .map(|s| {
            s.parse::<CustomerStatus>()
                .map_err(|e| ApiError::bad_query(format!("status: {e}")))
        })
        .transpose()?;
    let limit = page.limit()?;
    let rows = customers::list(&state.pool, status, page.after()?, limit).await?;
    let page = Page::new(rows, limit, |c| c.id.to_string());
    Ok(HttpResponse::Ok().json(Page {
        items: page
            .items
            .into_iter()
            .map(CustomerView::from)
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

/// Creates the customer, or updates its display name.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    request_body = UpsertCustomer,
    responses(
        (status = 200, description = "The customer.", body = CustomerView),
        (status = 422, description = "Invalid external id or name.", body = Problem),
        AuthErrors,
    )
)]
#[post("/customers")]
pub async fn upsert_customer(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    body: web::Json<UpsertCustomer>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    if body
        .display_name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 200)
    {
        return Err(ApiError::validation("display_name: at most 200 characters"));
    }
    let customer = customers::upsert(&state.pool, &body.external_id, body.display_name.as_deref())
        .await
        .map_err(|e| match e {
            domain::Error::Invalid(detail) => {
                ApiError::validation(format!("external_id: {detail}"))
            }
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(CustomerView::from(customer)))
}

/// One customer.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id.")),
    responses(
        (status = 200, description = "The customer.", body = CustomerView),
        (status = 404, description = "No such customer.", body = Problem),
        AuthErrors,
    )
)]
#[get("/customers/{id}")]
pub async fn get_customer(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let customer = customers::get(&state.pool, CustomerId(id.into_inner()))
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    Ok(HttpResponse::Ok().json(CustomerView::from(customer)))
}

async fn change(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: Uuid,
    status: CustomerStatus,
) -> ApiResult<HttpResponse> {
    let id = CustomerId(id);
    let current = customers::get(&state.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    if current.status == CustomerStatus::Closed && status != CustomerStatus::Closed {
        return Err(ApiError::conflict(
            "customer_closed",
            "a closed customer cannot be reopened",
        ));
    }
    let customer = customers::change_status(
        &state.pool,
        id,
        status,
        &ops.actor(),
        ops.request_id.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(CustomerView::from(customer)))
}

/// Suspends: agents are stopped, renewals cancelled at period end, customer calls refused.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id.")),
    responses(
        (status = 202, description = "Suspended; agents are being stopped.", body = CustomerView),
        (status = 404, description = "No such customer.", body = Problem),
        (status = 409, description = "The customer is closed.", body = Problem),
        AuthErrors,
    )
)]
#[post("/customers/{id}/suspend")]
pub async fn suspend_customer(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    change(ops, state, id.into_inner(), CustomerStatus::Suspended).await
}

/// Reactivates: renewals are restored and agents return to their desired state.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id.")),
    responses(
        (status = 202, description = "Active again; agents are being restored.", body = CustomerView),
        (status = 404, description = "No such customer.", body = Problem),
        (status = 409, description = "The customer is closed.", body = Problem),
        AuthErrors,
    )
)]
#[post("/customers/{id}/reactivate")]
pub async fn reactivate_customer(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    change(ops, state, id.into_inner(), CustomerStatus::Active).await
}

/// How to close.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CloseQuery {
    /// Also erase the customer's data: its display name and the sealed credentials waiting for
    /// Wiro now, then every Wiro message session on its agents (the ledger and the audit log are
    /// kept). Cannot be undone.
    #[serde(default)]
    pub erase_data: bool,
}

/// Closes: subscriptions cancelled and agents stopped for good; the ledger is kept. With
/// `erase_data=true` the customer's data is erased too (see the parameter); asking again on a
/// closed customer is how to erase it later.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id."), CloseQuery),
    responses(
        (status = 202, description = "Closed; agents are being stopped (and the data erased).", body = CustomerView),
        (status = 404, description = "No such customer.", body = Problem),
        AuthErrors,
    )
)]
#[post("/customers/{id}/close")]
pub async fn close_customer(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<CloseQuery>,
) -> ApiResult<HttpResponse> {
    if !query.erase_data {
        return change(ops, state, id.into_inner(), CustomerStatus::Closed).await;
    }
    let (customer, _) = customer_data::close_and_erase(
        &state.pool,
        CustomerId(id.into_inner()),
        &ops.actor(),
        ops.request_id.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Accepted().json(CustomerView::from(customer)))
}

/// A message the customer sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentMessageView {
    /// Wiro's message guid.
    pub message_id: String,
    /// The agent.
    pub agent_id: Uuid,
    /// The session key.
    pub session: String,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
}

/// Everything we hold about one customer (sealed credentials excepted: they never leave).
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerExportView {
    /// When this export was made.
    pub exported_at: DateTime<Utc>,
    /// The customer.
    pub customer: CustomerView,
    /// Its agents.
    pub agents: Vec<AgentView>,
    /// Its charges.
    pub ledger: Vec<LedgerEntryView>,
    /// The messages it sent (ids and sessions; the conversation itself is at Wiro).
    pub messages: Vec<SentMessageView>,
    /// Audit entries by it, about it and about its agents.
    pub audit: Vec<AuditEntryView>,
}

/// Exports everything we hold about one customer, as one JSON document.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Customer id.")),
    responses(
        (status = 200, description = "The customer's data.", body = CustomerExportView),
        (status = 404, description = "No such customer.", body = Problem),
        AuthErrors,
    )
)]
#[get("/customers/{id}/export")]
pub async fn export_customer(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let export = customer_data::export(&state.pool, CustomerId(id.into_inner()))
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let name = export.customer.external_id.clone();
    let view = CustomerExportView {
        exported_at: Utc::now(),
        customer: export.customer.into(),
        agents: export
            .agents
            .into_iter()
            .map(|i| AgentView::new(i, &name))
            .collect(),
        ledger: export
            .ledger
            .into_iter()
            .map(LedgerEntryView::from)
            .collect(),
        messages: export
            .messages
            .into_iter()
            .map(|m| SentMessageView {
                message_id: m.wiro_guid,
                agent_id: m.instance_id.0,
                session: m.session,
                created_at: m.created_at,
            })
            .collect(),
        audit: export.audit.into_iter().map(AuditEntryView::from).collect(),
    };
    Ok(HttpResponse::Ok().json(view))
}
