//! Ops: bulk orders. One call creates up to 10,000 orders (and the customers that do not exist
//! yet); the same `key` again returns the first batch. Progress is read per state and per item.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use domain::db::batches::{self, Batch};
use domain::ids::BatchId;
use domain::orders::{self, Actor, BatchOrder, MAX_BATCH, Order, ResolvedTemplate};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::dto::{self, CredentialsInput, CustomSkillInput};
use crate::error::{ApiError, ApiResult, Problem};
use crate::idempotency::{self, Answer};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::pagination;
use crate::state::AppState;

/// A bulk order.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "key": "spring-onboarding-2026-11-29",
    "items": [
        {"customer": "acme-42", "template": "instagram-manager", "plan": "starter", "title": "Acme Instagram",
         "credentials": {"instagram": {"authMethod": "wiro"}}},
        {"customer": "globex-7", "template": "email-assistant", "plan": "pro", "title": "Globex inbox"}
    ]
}))]
pub struct CreateBatch {
    /// Idempotency key of the batch: the same key returns the same batch.
    #[serde(default)]
    pub key: Option<String>,
    /// 1 to 10,000 orders.
    pub items: Vec<BatchItemInput>,
}

/// One order of a batch.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItemInput {
    /// The customer's external id (created when unknown).
    pub customer: String,
    /// Template slug or guid.
    pub template: String,
    /// `starter` or `pro`.
    pub plan: String,
    /// Title.
    pub title: String,
    /// Credentials `{group: {field: value}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<CredentialsInput>,
    /// Custom skill content.
    #[serde(default)]
    pub custom_skills: Option<Vec<CustomSkillInput>>,
}

/// A batch and its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    /// Batch id.
    pub id: Uuid,
    /// The batch's key, if any.
    pub key: Option<String>,
    /// Orders in it.
    pub total: i32,
    /// Orders per state (`pending`, `running`, `failed`...).
    pub counts: BTreeMap<String, i64>,
    /// Per-order state (a page of them; follow `next_cursor`).
    pub items: Vec<BatchItemView>,
    /// Cursor of the next page of items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One order's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemView {
    /// The customer's external id.
    pub customer: String,
    /// The agent created for it.
    pub instance_id: Uuid,
    /// Its state.
    pub state: String,
    /// Its error, if it failed.
    pub error: Option<String>,
}

/// `?cursor=&limit=` on items.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// The `next_cursor` of the previous page of items.
    pub cursor: Option<String>,
    /// Items per page, 1–500 (default 100).
    pub limit: Option<i64>,
}

async fn view(state: &AppState, batch: Batch, query: &ItemsQuery) -> ApiResult<BatchView> {
    let limit = domain::db::page_size(query.limit, 100);
    let after = query
        .cursor
        .as_deref()
        .map(pagination::decode::<i32>)
        .transpose()?;
    let (counts, items) = batches::progress(&state.pool, batch.id, after, limit).await?;
    let next_cursor = (items.len() as i64 == limit)
        .then(|| {
            items
                .last()
                .map(|i| pagination::encode(&i.position.to_string()))
        })
        .flatten();
    Ok(BatchView {
        id: batch.id.0,
        key: batch.key,
        total: batch.total,
        counts,
        items: items
            .into_iter()
            .map(|i| BatchItemView {
                customer: i.customer,
                instance_id: i.instance_id.0,
                state: i.state,
                error: i.error,
            })
            .collect(),
        next_cursor,
    })
}

/// Submits a bulk order.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    request_body = CreateBatch,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the submission safe to retry (the batch `key` does too).")),
    responses(
        (status = 201, description = "The batch was created; provisioning has begun.", body = BatchView),
        (status = 200, description = "A batch with this key already exists; nothing new was ordered.", body = BatchView),
        (status = 422, description = "Invalid items (the item and field are named).", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/provisioning-batches")]
pub async fn create_batch(
    ops: OpsAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    dto::BulkJson(body): dto::BulkJson<CreateBatch>,
) -> ApiResult<HttpResponse> {
    let caller = ops.actor();
    idempotency::run(&state, &caller, &req, &body, "", async |claim| {
        if body.items.is_empty() || body.items.len() > MAX_BATCH {
            return Err(ApiError::validation(format!(
                "items: must hold 1 to {MAX_BATCH} orders"
            )));
        }
        if let Some(key) = &body.key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(ApiError::validation("key: must be 1 to 200 characters"));
        }
        let mut templates: HashMap<(String, domain::model::Plan), ResolvedTemplate> =
            HashMap::new();
        let mut orders = Vec::with_capacity(body.items.len());
        for (i, item) in body.items.iter().enumerate() {
            let field = format!("items[{i}]");
            let plan = dto::plan(&format!("{field}.plan"), &item.plan)?;
            let title = orders::validate_title(&item.title)
                .map_err(|e| ApiError::validation(format!("{field}.{e}")))?;
            let config =
                dto::pending_config(&field, item.credentials.clone(), item.custom_skills.clone())?;
            let template = match templates.get(&(item.template.clone(), plan)) {
                Some(t) => t.clone(),
                None => {
                    let t = state
                        .catalog
                        .resolve(state.wiro(), &item.template, plan, &field)
                        .await?;
                    templates.insert((item.template.clone(), plan), t.clone());
                    t
                }
            };
            state
                .catalog
                .check_editable(state.wiro(), &template.guid, &config, &field)
                .await?;
            orders.push(BatchOrder {
                customer: item.customer.clone(),
                order: Order {
                    plan,
                    title,
                    config,
                },
                template,
            });
        }
        let actor = Actor {
            name: &caller,
            request_id: ops.request_id.as_deref(),
        };
        // Without a batch key of its own, the Idempotency-Key keys the batch: a retry whose first
        // request committed finds the batch (even after the claim was released) and orders
        // nothing twice.
        let key = body
            .key
            .clone()
            .or_else(|| claim.as_ref().map(|c| batch_key_of(&c.caller, &c.key)));
        let (batch, created) = orders::submit_batch(
            &state.pool,
            &state.services.sealer,
            key.as_deref(),
            &orders,
            actor,
        )
        .await?;
        let view = view(
            &state,
            batch,
            &ItemsQuery {
                cursor: None,
                limit: Some(100),
            },
        )
        .await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(Answer::Done(
            status,
            serde_json::to_value(view).map_err(anyhow::Error::from)?,
        ))
    })
    .await
}

/// The batch key standing for an Idempotency-Key (keys are per caller; batch keys are global).
fn batch_key_of(caller: &str, key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{caller}\n{key}").as_bytes());
    format!(
        "idempotency:{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, digest)
    )
}

/// A batch's progress: counts per state and a page of per-order states.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Batch id."), ItemsQuery),
    responses(
        (status = 200, description = "The batch.", body = BatchView),
        (status = 404, description = "No such batch.", body = Problem),
        AuthErrors,
    )
)]
#[get("/provisioning-batches/{id}")]
pub async fn get_batch(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<ItemsQuery>,
) -> ApiResult<HttpResponse> {
    let batch = batches::get(&state.pool, BatchId(id.into_inner()))
        .await?
        .ok_or_else(|| ApiError::not_found("batch"))?;
    Ok(HttpResponse::Ok().json(view(&state, batch, &query).await?))
}
