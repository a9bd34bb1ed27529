//! Ops: signed webhook endpoints (Standard Webhooks), the events written for them, each
//! event's delivery log, replay and secret rotation.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use domain::db::webhooks::{self as db, Endpoint, EndpointChange};
use domain::orders::Actor;
use domain::webhooks::{self, NewEndpoint};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::OpsAuth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::AuthErrors;
use crate::pagination::{Page, PageQuery, decode, encode};
use crate::state::AppState;

/// An endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// Id.
    pub id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// Ops' note.
    pub description: Option<String>,
    /// Subscribed event types; `null`: every type.
    pub event_types: Option<Vec<String>>,
    /// Receives events. A delivery failing for the whole retry schedule disables its endpoint
    /// (`disabled_reason`, and a `webhook_endpoint_disabled` alert); PATCH `enabled: true`
    /// turns it back on.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Until then the previous secret signs too (after a rotation).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The signing secret, `whsec_…`: only in the answers of create and rotate-secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl EndpointView {
    fn new(endpoint: Endpoint, secret: Option<String>) -> Self {
        let grace = endpoint
            .previous_secret_until
            .filter(|until| *until > Utc::now());
        Self {
            id: endpoint.id,
            url: endpoint.url,
            description: endpoint.description,
            event_types: endpoint.event_types,
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason,
            previous_secret_expires_at: grace,
            secret,
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/wiro", "event_types": ["agent.running", "agent.failed"], "description": "billing app"}))]
pub struct CreateEndpoint {
    /// `https://…` (private, loopback and link-local targets are refused unless
    /// `webhooks.allow_private_targets`).
    pub url: String,
    /// Event types to receive; absent: every type.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// A note for ops.
    #[serde(default)]
    pub description: Option<String>,
}

/// Present and `null` (clear) is not the same as absent (unchanged).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Changes to an endpoint; absent fields stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true}))]
pub struct UpdateEndpoint {
    /// New URL.
    #[serde(default)]
    pub url: Option<String>,
    /// New subscription; `null`: every type.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub event_types: Option<Option<Vec<String>>>,
    /// New note; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Turn deliveries on or off.
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn actor(ops: &OpsAuth) -> (String, Option<String>) {
    (ops.actor(), ops.request_id.clone())
}

/// Adds an endpoint; the answer carries its secret, shown only this once.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created, with its `secret`.", body = EndpointView),
        (status = 422, description = "A bad URL, a refused target (private address, http), an unknown event type.", body = Problem),
        AuthErrors,
    )
)]
#[post("/webhook-endpoints")]
pub async fn create_endpoint(
    ops: OpsAuth,
    state: web::Data<AppState>,
    body: web::Json<CreateEndpoint>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let (name, request_id) = actor(&ops);
    let (endpoint, secret) = webhooks::create_endpoint(
        &state.pool,
        &state.services.sealer,
        &state.settings.webhooks,
        NewEndpoint {
            url: body.url,
            event_types: body.event_types,
            description: body.description,
        },
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(EndpointView::new(endpoint, Some(secret))))
}

/// Every endpoint.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    responses((status = 200, description = "All endpoints, oldest first (no secrets).", body = Page<EndpointView>), AuthErrors)
)]
#[get("/webhook-endpoints")]
pub async fn list_endpoints(_ops: OpsAuth, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let items = db::endpoints(&state.pool)
        .await?
        .into_iter()
        .map(|e| EndpointView::new(e, None))
        .collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

/// One endpoint.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id.")),
    responses(
        (status = 200, description = "The endpoint (no secret).", body = EndpointView),
        (status = 404, description = "No such endpoint.", body = Problem),
        AuthErrors,
    )
)]
#[get("/webhook-endpoints/{id}")]
pub async fn get_endpoint(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let endpoint = db::endpoint(&state.pool, id.into_inner())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    Ok(HttpResponse::Ok().json(EndpointView::new(endpoint, None)))
}

/// Changes an endpoint (URL, subscription, note, on/off).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id.")),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "The endpoint now.", body = EndpointView),
        (status = 404, description = "No such endpoint.", body = Problem),
        (status = 422, description = "A bad URL, a refused target, an unknown event type.", body = Problem),
        AuthErrors,
    )
)]
#[patch("/webhook-endpoints/{id}")]
pub async fn update_endpoint(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<UpdateEndpoint>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let (name, request_id) = actor(&ops);
    let endpoint = webhooks::update_endpoint(
        &state.pool,
        &state.settings.webhooks,
        id.into_inner(),
        EndpointChange {
            url: body.url,
            description: body.description,
            event_types: body.event_types,
            enabled: body.enabled,
        },
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(EndpointView::new(endpoint, None)))
}

/// Deletes an endpoint and its delivery log.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such endpoint.", body = Problem),
        AuthErrors,
    )
)]
#[delete("/webhook-endpoints/{id}")]
pub async fn delete_endpoint(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let (name, request_id) = actor(&ops);
    webhooks::delete_endpoint(
        &state.pool,
        id.into_inner(),
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Gives an endpoint a new secret (in the answer, shown only now); the old one keeps signing
/// next to it for `webhooks.rotation_grace`, so receivers can switch without losing events.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Endpoint id.")),
    responses(
        (status = 200, description = "The endpoint with its new `secret`.", body = EndpointView),
        (status = 404, description = "No such endpoint.", body = Problem),
        AuthErrors,
    )
)]
#[post("/webhook-endpoints/{id}/rotate-secret")]
pub async fn rotate_secret(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let (name, request_id) = actor(&ops);
    let (endpoint, secret) = webhooks::rotate_secret(
        &state.pool,
        &state.services.sealer,
        &state.settings.webhooks,
        id.into_inner(),
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(EndpointView::new(endpoint, Some(secret))))
}

/// An event as written.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The `webhook-id` receivers see (`msg_…`), the same on every attempt and replay.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent it is about.
    pub agent_id: Option<Uuid>,
    /// The body sent: `{"type", "timestamp", "data"}` (see the `WebhookEvent` schema).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Written (in the transaction of the change it reports).
    pub created_at: DateTime<Utc>,
}

impl From<db::Event> for EventView {
    fn from(e: db::Event) -> Self {
        Self {
            id: webhooks::message_id(e.id),
            kind: e.kind,
            agent_id: e.instance_id,
            payload: serde_json::from_str(&e.body).unwrap_or(serde_json::Value::Null),
            created_at: e.created_at,
        }
    }
}

/// A delivery of an event to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// `pending`, `delivered` or `failed` (the schedule ran out).
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (pending).
    pub next_attempt_at: DateTime<Utc>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its number (1 for the first).
    pub attempt: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; absent when it did not answer.
    pub status: Option<i16>,
    /// How long it took, in milliseconds.
    pub duration_ms: i32,
    /// The first bytes of the answer.
    pub response: Option<String>,
    /// Why there was no answer (refused, timed out, a blocked address).
    pub error: Option<String>,
}

/// An event with its delivery log.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    /// The event.
    #[serde(flatten)]
    pub event: EventView,
    /// One per endpoint it was (or is being) delivered to.
    pub deliveries: Vec<DeliveryView>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

/// `?type=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
}

fn event_id(raw: &str) -> ApiResult<Uuid> {
    let hex = raw.strip_prefix("msg_").unwrap_or(raw);
    Uuid::try_parse(hex).map_err(|_| ApiError::not_found("webhook event"))
}

/// Events, newest first.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(EventQuery, PageQuery),
    responses(
        (status = 200, description = "A page of events.", body = Page<EventView>),
        (status = 400, description = "A bad cursor or limit.", body = Problem),
        AuthErrors,
    )
)]
#[get("/webhook-events")]
pub async fn list_events(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    filter: web::Query<EventQuery>,
    page: web::Query<PageQuery>,
) -> ApiResult<HttpResponse> {
    let limit = page.limit()?;
    let before = page
        .cursor
        .as_deref()
        .map(|c| {
            let text: String = decode(c)?;
            let (at, id) = text.split_once('|').ok_or_else(bad_cursor)?;
            let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad_cursor())?;
            let id = Uuid::try_parse(id).map_err(|_| bad_cursor())?;
            Ok::<_, ApiError>((at.with_timezone(&Utc), id))
        })
        .transpose()?;
    let events = db::events(&state.pool, filter.kind.as_deref(), before, limit).await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last())
        .flatten()
        .map(|e| encode(&format!("{}|{}", e.created_at.to_rfc3339(), e.id)));
    Ok(HttpResponse::Ok().json(Page {
        items: events.into_iter().map(EventView::from).collect::<Vec<_>>(),
        next_cursor,
    }))
}

fn bad_cursor() -> ApiError {
    ApiError::bad_query("cursor: not a cursor this API issued")
}

/// One event and its delivery log (attempts, statuses, response times, first bytes).
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Event id (`msg_…`).")),
    responses(
        (status = 200, description = "The event and its deliveries.", body = EventDetail),
        (status = 404, description = "No such event.", body = Problem),
        AuthErrors,
    )
)]
#[get("/webhook-events/{id}")]
pub async fn get_event(
    _ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = event_id(&id)?;
    let mut conn = state.pool.acquire().await?;
    let event = db::event(&mut *conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook event"))?;
    let (deliveries, attempts) = db::delivery_log(&mut conn, id).await?;
    Ok(HttpResponse::Ok().json(EventDetail {
        event: event.into(),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView {
                endpoint_id: d.endpoint_id,
                state: d.state,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                delivered_at: d.delivered_at,
            })
            .collect(),
        attempts: attempts
            .into_iter()
            .map(|a| AttemptView {
                endpoint_id: a.endpoint_id,
                attempt: a.attempt,
                at: a.at,
                status: a.status,
                duration_ms: a.duration_ms,
                response: a.response,
                error: a.error,
            })
            .collect(),
    }))
}

/// How many deliveries a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries queued (one per enabled endpoint subscribed to the type).
    pub queued: u64,
}

/// Sends an event again — same `webhook-id`, fresh schedule — to every enabled endpoint
/// subscribed to its type now.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Event id (`msg_…`).")),
    responses(
        (status = 202, description = "Queued.", body = Replayed),
        (status = 404, description = "No such event.", body = Problem),
        AuthErrors,
    )
)]
#[post("/webhook-events/{id}/replay")]
pub async fn replay_event(
    ops: OpsAuth,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = event_id(&id)?;
    let (name, request_id) = actor(&ops);
    let queued = webhooks::replay_event(
        &state.pool,
        id,
        Actor {
            name: &name,
            request_id: request_id.as_deref(),
        },
    )
    .await?;
    Ok(HttpResponse::Accepted().json(Replayed { queued }))
}
