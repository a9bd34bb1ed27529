//! Talking to an agent: send a message, read it (optionally waiting for the answer), cancel
//! it, list sessions, read a session's history, delete a session.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use domain::db::instances::Instance;
use domain::db::messages as message_map;
use domain::ids::InstanceId;
use operations::messages::{self, SendError};
use operations::protocol::Requester;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wiro_client::WiroError;
use wiro_client::models::{HistoryRequest, Message, MessageRef};

use super::agents::load;
use crate::auth::CustomerAuth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::idempotency::{self, Answer, Claimed};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::pagination::{self, Page};
use crate::settled::InDoubt;
use crate::state::AppState;

/// A message to send.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "Draft three captions for our summer sale", "session": "default"}))]
pub struct SendMessage {
    /// The text, 1–32,000 characters.
    pub message: String,
    /// Conversation key (default `default`): the agent keeps context per session.
    #[serde(default)]
    pub session: Option<String>,
}

/// A message and the agent's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// Message id (Wiro's message guid).
    pub id: String,
    /// `agent_queue`, `agent_start`, `agent_output`, `agent_end`, `agent_error` or `agent_cancel`.
    pub status: String,
    /// The session.
    pub session: Option<String>,
    /// What was sent.
    pub content: String,
    /// The answer (empty until `agent_end`).
    pub response: String,
    /// When it was sent.
    pub created_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        let time = |t: Option<wiro_client::models::UnixTime>| {
            t.and_then(|t| DateTime::from_timestamp(t.0, 0))
        };
        Self {
            id: m.guid,
            status: m.status.as_str().to_owned(),
            session: m.sessionkey,
            content: m.content,
            response: m.response,
            created_at: time(m.createdat),
            ended_at: time(m.endedat),
        }
    }
}

/// The answer to a send.
#[derive(Debug, Serialize, ToSchema)]
pub struct SentMessage {
    /// Message id: read it at `/v1/agents/{id}/messages/{message_id}`.
    pub id: String,
    /// `agent_queue`.
    pub status: String,
    /// The session it went to.
    pub session: String,
}

/// `?wait=` on a message read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the answer (0 = don't; at most `api.message_wait_max`).
    pub wait: Option<u64>,
}

/// A session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Session key.
    pub session: String,
    /// Messages in it.
    pub message_count: i64,
    /// Last activity.
    pub updated_at: Option<DateTime<Utc>>,
    /// The last message sent.
    pub last_message: Option<String>,
}

/// `?before=&limit=` on a history read.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The `next_cursor` of the previous page (older messages follow).
    pub cursor: Option<String>,
    /// Page size, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

fn validate_session(session: &str) -> ApiResult<()> {
    if session.is_empty() || session.chars().count() > 200 || session.chars().any(char::is_control)
    {
        return Err(ApiError::validation(
            "session: must be 1 to 200 characters without control characters",
        ));
    }
    Ok(())
}

/// A session named in the path: a bad one is a bad path (400), like a bad id.
fn validate_session_path(session: &str) -> ApiResult<()> {
    validate_session(session).map_err(|e| {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "bad_path",
            format!("invalid path parameter: {e}"),
        )
    })
}

async fn deployed(state: &AppState, auth: &CustomerAuth, id: Uuid) -> ApiResult<String> {
    deployed_guid(&load(state, auth, id).await?)
}

fn deployed_guid(instance: &Instance) -> ApiResult<String> {
    instance.wiro_guid.clone().ok_or_else(|| {
        ApiError::conflict(
            "agent_not_running",
            format!(
                "the agent is {} and cannot take messages yet",
                instance.state
            ),
        )
    })
}

async fn owned_message(
    state: &AppState,
    auth: &CustomerAuth,
    agent: Uuid,
    message_id: &str,
) -> ApiResult<()> {
    if message_map::is_owned(&state.pool, message_id, InstanceId(agent), auth.customer.id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("message"))
    }
}

/// Sends a message to a running agent, exactly once: with an `Idempotency-Key`, a retried
/// send reaches the agent once, and a send whose answer Wiro lost answers `202` until it is
/// settled (replay the key to learn the message id).
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("Idempotency-Key" = Option<String>, Header, description = "Makes the send safe to retry.")),
    request_body = SendMessage,
    responses(
        (status = 201, description = "Sent; read it for the answer.", body = SentMessage),
        (status = 202, description = "Wiro's answer was lost: in doubt until settled (replay the Idempotency-Key).", body = InDoubt),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent is not running, or the Idempotency-Key is in use.", body = Problem),
        (status = 422, description = "Invalid message, or a reused Idempotency-Key.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/messages")]
pub async fn send_message(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<Uuid>,
    body: web::Json<SendMessage>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let body = body.into_inner();
    state.rate_limits.message(auth.customer.id)?;
    let caller = auth.actor();
    let customer = auth.customer.external_id.clone();
    idempotency::run(&state, &caller, &req, &body, &customer, async |claim| {
        if body.message.trim().is_empty() || body.message.chars().count() > 32_000 {
            return Err(ApiError::validation(
                "message: must be 1 to 32000 characters",
            ));
        }
        let session = body.session.clone().unwrap_or_else(|| "default".to_owned());
        validate_session(&session)?;
        let instance = load(&state, &auth, id).await?;
        let guid = deployed_guid(&instance)?;
        let who = Requester {
            actor: &caller,
            request_id: auth.request_id.as_deref(),
            capped: true,
        };
        let key = claim.as_ref().map(Claimed::as_key);
        match messages::send(
            &state.services,
            &instance,
            &guid,
            &session,
            &body.message,
            who,
            key,
        )
        .await
        {
            Ok((_, sent)) => {
                let view = SentMessage {
                    id: sent.message_id,
                    status: "agent_queue".into(),
                    session: sent.session,
                };
                Ok(Answer::Done(
                    StatusCode::CREATED,
                    serde_json::to_value(view).map_err(anyhow::Error::from)?,
                ))
            }
            Err(SendError::InDoubt(op)) => Ok(Answer::InDoubt(op)),
            Err(SendError::Refused(e) | SendError::Upstream(e)) => {
                if matches!(
                    e.wiro(),
                    Some(WiroError::AgentNotFoundOrAccessDenied | WiroError::UserAgentNotFound)
                ) {
                    // Wiro no longer has the instance: reconcile now, which marks the agent
                    // failed and alerts ops, instead of at the next tick.
                    let now = chrono::Utc::now().timestamp();
                    if let Err(e) = domain::jobs::reconcile_now(&state.pool, now).await {
                        tracing::warn!(error = %e, "cannot enqueue a reconciliation");
                    }
                }
                Err(ApiError::upstream(&e, false))
            }
            Err(SendError::Internal(e)) => Err(e.into()),
        }
    })
    .await
}

/// Reads a message; with `?wait=N`, holds the request up to N seconds for the answer.
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("message_id" = String, Path, description = "Message id."), WaitQuery),
    responses(
        (status = 200, description = "The message (finished or not).", body = MessageView),
        (status = 404, description = "No such message on this agent.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/agents/{id}/messages/{message_id}")]
pub async fn get_message(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    query: web::Query<WaitQuery>,
) -> ApiResult<HttpResponse> {
    let (id, message_id) = path.into_inner();
    load(&state, &auth, id).await?;
    owned_message(&state, &auth, id, &message_id).await?;
    let max = state.settings.api.message_wait_max;
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(max);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let message = state
            .wiro()
            .message_detail(&MessageRef::guid(&message_id))
            .await
            .map_err(|e| ApiError::upstream(&e, false))?;
        // What the customer sees is recorded too (its end, and a credit-limit reply).
        operations::replies::record(&state.pool, &message, InstanceId(id)).await?;
        if message.status.is_terminal() || tokio::time::Instant::now() >= deadline {
            return Ok(HttpResponse::Ok().json(MessageView::from(message)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Cancels a message that is still queued or being answered.
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("message_id" = String, Path, description = "Message id.")),
    responses(
        (status = 200, description = "Cancelled.", body = MessageView),
        (status = 404, description = "No such message.", body = Problem),
        (status = 409, description = "Already finished.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/messages/{message_id}/cancel")]
pub async fn cancel_message(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let (id, message_id) = path.into_inner();
    load(&state, &auth, id).await?;
    owned_message(&state, &auth, id, &message_id).await?;
    let reference = MessageRef::guid(&message_id);
    state
        .wiro()
        .cancel_message(&reference)
        .await
        .map_err(|e| ApiError::upstream(&e, false))?;
    let message = state
        .wiro()
        .message_detail(&reference)
        .await
        .map_err(|e| ApiError::upstream(&e, false))?;
    Ok(HttpResponse::Ok().json(MessageView::from(message)))
}

/// The agent's sessions, most recent first.
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 200, description = "Sessions.", body = Vec<SessionView>),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent is not deployed yet.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/agents/{id}/sessions")]
pub async fn list_sessions(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let guid = deployed(&state, &auth, id.into_inner()).await?;
    let sessions = state
        .wiro()
        .message_sessions(&guid)
        .await
        .map_err(|e| ApiError::upstream(&e, false))?;
    let views: Vec<SessionView> = sessions
        .sessions
        .into_iter()
        .map(|s| SessionView {
            session: s.sessionkey,
            message_count: s.messagecount.0,
            updated_at: s.updatedat.and_then(|t| DateTime::from_timestamp(t.0, 0)),
            last_message: s.lastmessage,
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// A session's messages, newest first; follow `next_cursor` for older ones.
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("session" = String, Path, description = "Session key."), HistoryQuery),
    responses(
        (status = 200, description = "A page of messages.", body = Page<MessageView>),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent is not deployed yet.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/agents/{id}/sessions/{session}/messages")]
pub async fn session_history(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    query: web::Query<HistoryQuery>,
) -> ApiResult<HttpResponse> {
    let (id, session) = path.into_inner();
    validate_session_path(&session)?;
    let guid = deployed(&state, &auth, id).await?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_query("limit: must be 1 to 200"));
    }
    let before = query
        .cursor
        .as_deref()
        .map(pagination::decode::<String>)
        .transpose()?;
    let history = state
        .wiro()
        .message_history(&HistoryRequest {
            useragentguid: guid,
            sessionkey: Some(session),
            limit: Some(limit),
            before,
        })
        .await
        .map_err(|e| ApiError::upstream(&e, false))?;
    let next_cursor = history
        .hasmore
        .then(|| history.messages.last().map(|m| pagination::encode(&m.guid)))
        .flatten();
    let items: Vec<MessageView> = history
        .messages
        .into_iter()
        .map(MessageView::from)
        .collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

/// Deletes a session's messages (cannot be undone).
#[utoipa::path(
    tag = "messages",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), ("session" = String, Path, description = "Session key.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such agent.", body = Problem),
        (status = 409, description = "The agent is not deployed yet.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[delete("/agents/{id}/sessions/{session}")]
pub async fn delete_session(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let (id, session) = path.into_inner();
    validate_session_path(&session)?;
    let guid = deployed(&state, &auth, id).await?;
    state
        .wiro()
        .delete_session(&guid, &session)
        .await
        .map_err(|e| ApiError::upstream(&e, false))?;
    message_map::forget_session(&state.pool, InstanceId(id), &session).await?;
    Ok(HttpResponse::NoContent().finish())
}
