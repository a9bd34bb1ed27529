//! A customer's own charges, at retail: what it owes the SaaS (never what Wiro charged).

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use domain::db::ledger::{self, LedgerFilter};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::CustomerAuth;
use crate::error::{ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::pagination::{Page, PageQuery};
use crate::state::AppState;

/// One charge.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargeView {
    /// Id (also the cursor order).
    pub id: i64,
    /// The agent.
    pub agent_id: Option<Uuid>,
    /// `deploy`, `renewal`, `upgrade`, `extra_credits` or `duplicate_deploy` (always 0).
    pub kind: String,
    /// What is owed, in minor units of `currency` (cents for USD).
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// When it was booked.
    pub created_at: DateTime<Utc>,
}

/// The customer's charges, oldest first.
#[utoipa::path(
    tag = "billing",
    security(("bearer" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "A page of charges at retail.", body = Page<ChargeView>),
        (status = 400, description = "A bad cursor or limit.", body = Problem),
        AuthErrors,
    )
)]
#[get("/charges")]
pub async fn list_charges(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let limit = page.limit()?;
    let filter = LedgerFilter {
        customer: Some(auth.customer.id),
        ..LedgerFilter::default()
    };
    let rows = ledger::list(&state.pool, &filter, page.after()?, limit).await?;
    let page = Page::new(rows, limit, |e| e.id.to_string());
    Ok(HttpResponse::Ok().json(Page {
        items: page
            .items
            .into_iter()
            .map(|e| ChargeView {
                id: e.id,
                agent_id: e.instance_id.map(|i| i.0),
                kind: e.kind.as_str().to_owned(),
                amount_minor: e.retail_amount_minor.unwrap_or(0),
                currency: e.currency.unwrap_or_else(|| "USD".into()),
                created_at: e.created_at,
            })
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}
