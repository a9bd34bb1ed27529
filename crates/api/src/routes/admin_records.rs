//! Ops: the money ledger (JSON, or CSV with `Accept: text/csv`), the audit log, and failed jobs.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use domain::db::{audit, customers, ledger, queue};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::csv_export::{self, Cell};
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// A wallet charge we caused.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntryView {
    /// Sequence number.
    pub id: i64,
    /// Customer id.
    pub customer_id: Uuid,
    /// Agent id.
    pub instance_id: Option<Uuid>,
    /// `deploy`, `upgrade`, `renewal` or `extra_credits`.
    pub kind: String,
    /// Cents.
    pub amount_cents: i64,
    /// What the charge was for (unique).
    pub reference: String,
    /// Wiro instance guid.
    pub wiro_guid: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl From<ledger::LedgerEntry> for LedgerEntryView {
    fn from(e: ledger::LedgerEntry) -> Self {
        Self {
            id: e.id,
            customer_id: e.customer_id.0,
            instance_id: e.instance_id.map(|i| i.0),
            kind: e.kind.as_str().to_owned(),
            amount_cents: e.amount_cents,
            reference: e.reference,
            wiro_guid: e.wiro_guid,
            created_at: e.created_at,
        }
    }
}

/// Filters for the ledger.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// Only this customer's (external id).
    pub customer: Option<String>,
    /// From this time (RFC 3339, inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Until this time (RFC 3339, exclusive).
    pub to: Option<DateTime<Utc>>,
}

/// The most rows one CSV export holds.
const CSV_MAX_ROWS: i64 = 100_000;

pub(crate) fn wants_csv(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

/// The ledger, oldest first. `Accept: text/csv` exports every matching row as CSV.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(LedgerQuery, PageQuery),
    responses(
        (status = 200, description = "A page of charges (JSON), or all matching charges (CSV).", content(
            (Page<LedgerEntryView> = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Bad filter value.", body = Problem),
        AuthErrors,
    )
)]
#[get("/ledger")]
pub async fn list_ledger(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    filter: web::Query<LedgerQuery>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let customer = match &filter.customer {
        Some(external) => match customers::by_external_id(&state.pool, external).await? {
            Some(c) => Some(c.id),
            // Like the agents list: an unknown customer has no charges (nil matches no row).
            None => Some(domain::ids::CustomerId(Uuid::nil())),
        },
        None => None,
    };
    let query = ledger::LedgerFilter {
        customer,
        from: filter.from,
        to: filter.to,
    };
    let view = LedgerEntryView::from;
    if wants_csv(&req) {
        let rows: Vec<LedgerEntryView> = ledger::list(&state.pool, &query, None, CSV_MAX_ROWS)
            .await?
            .into_iter()
            .map(view)
            .collect();
        let cells: Vec<[String; 4]> = rows
            .iter()
            .map(|e| {
                [
                    e.created_at.to_rfc3339(),
                    e.customer_id.to_string(),
                    e.instance_id.map(|i| i.to_string()).unwrap_or_default(),
                    e.wiro_guid.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let out = csv_export::document(
            &[
                "id",
                "created_at",
                "customer_id",
                "instance_id",
                "kind",
                "amount_cents",
                "reference",
                "wiro_guid",
            ],
            rows.iter()
                .zip(&cells)
                .map(|(e, [at, customer, instance, guid])| {
                    vec![
                        Cell::Number(e.id),
                        Cell::Text(at),
                        Cell::Text(customer),
                        Cell::Text(instance),
                        Cell::Text(&e.kind),
                        Cell::Number(e.amount_cents),
                        Cell::Text(&e.reference),
                        Cell::Text(guid),
                    ]
                }),
        )
        .map_err(|e| ApiError::Internal(e.into()))?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(out));
    }
    let limit = page.limit()?;
    let rows = ledger::list(&state.pool, &query, page.after()?, limit).await?;
    let page = Page::new(rows, limit, |e| e.id.to_string());
    Ok(HttpResponse::Ok().json(Page {
        items: page.items.into_iter().map(view).collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

/// An audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// `customer:<id>`, `ops:<sub>` or `worker:<name>`.
    pub actor: String,
    /// What was done, e.g. `order.create`.
    pub action: String,
    /// What it was done to.
    pub target: Option<String>,
    /// Request or job id.
    pub request_id: Option<String>,
    /// `ok`, `refused: ...`, `failed`, `alert`.
    pub outcome: String,
    /// Facts (never secrets).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<audit::AuditEntry> for AuditEntryView {
    fn from(e: audit::AuditEntry) -> Self {
        Self {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            target: e.target,
            request_id: e.request_id,
            outcome: e.outcome,
            detail: e.detail,
        }
    }
}

/// Filters for the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Actions starting with this, e.g. `subscription.`.
    pub action: Option<String>,
    /// One target, e.g. `instance:<id>`.
    pub target: Option<String>,
}

/// The audit log, oldest first.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(AuditQuery, PageQuery),
    responses((status = 200, description = "A page of entries.", body = Page<AuditEntryView>), AuthErrors)
)]
#[get("/audit")]
pub async fn list_audit(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    filter: web::Query<AuditQuery>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let limit = page.limit()?;
    let rows = audit::list(
        &state.pool,
        filter.action.as_deref(),
        filter.target.as_deref(),
        page.after()?,
        limit,
    )
    .await?;
    let page = Page::new(rows, limit, |e| e.id.to_string());
    let items = page
        .items
        .into_iter()
        .map(AuditEntryView::from)
        .collect::<Vec<_>>();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// A job that failed for good (or is failing).
#[derive(Debug, Serialize, ToSchema)]
pub struct FailedJobView {
    /// Job id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// `Failed` (will retry) or `Killed` (out of attempts).
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// Attempt budget.
    pub max_attempts: i32,
    /// The last error.
    pub last_result: Option<String>,
    /// When it was due.
    pub run_at: DateTime<Utc>,
}

impl From<queue::FailedJob> for FailedJobView {
    fn from(j: queue::FailedJob) -> Self {
        Self {
            id: j.id,
            queue: j.queue,
            status: j.status,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            last_result: j.last_result,
            run_at: j.run_at,
        }
    }
}

/// Jobs that failed.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, description = "Failed and killed jobs, newest first (at most 500).", body = Vec<FailedJobView>), AuthErrors)
)]
#[get("/jobs/failed")]
pub async fn failed_jobs(_ops: OpsAuth, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let jobs: Vec<FailedJobView> = queue::failed(&state.pool, 500)
        .await?
        .into_iter()
        .map(FailedJobView::from)
        .collect();
    Ok(HttpResponse::Ok().json(jobs))
}

/// The answer to a job retry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetriedJob {
    /// Job id.
    pub id: String,
    /// `Pending`.
    pub status: String,
}

/// Puts a failed job back on its queue with a fresh attempt budget.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Job id.")),
    responses(
        (status = 202, description = "Queued again.", body = RetriedJob),
        (status = 404, description = "No failed job with this id.", body = Problem),
        AuthErrors,
    )
)]
#[post("/jobs/{id}/retry")]
pub async fn retry_job(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    if !queue::retry(&state.pool, &id).await? {
        return Err(ApiError::not_found("failed job"));
    }
    audit::record(
        &state.pool,
        audit::NewAudit {
            actor: &ops.actor(),
            action: "job.retry",
            target: Some(format!("job:{id}")),
            request_id: ops.request_id.as_deref(),
            outcome: "ok",
            detail: serde_json::json!({}),
        },
    )
    .await?;
    Ok(HttpResponse::Accepted().json(RetriedJob {
        id,
        status: "Pending".into(),
    }))
}
