//! Wiro's message callbacks. Wiro signs nothing (its docs say so), so the request only says
//! "look at this message now": it is accepted only for an unguessable per-message token we put
//! in the `callbackurl` (we keep its fingerprint, not the token), its body is ignored, and
//! Message/Detail — read by us — is what gets recorded.

use actix_web::{HttpResponse, post, web};
use domain::db::messages;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

/// What a callback came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAnswer {
    /// `completed`, `failed`, or `pending` (Detail does not show it ended yet; the poller
    /// follows it).
    pub outcome: String,
}

/// A message callback from Wiro (not for customers: the URL is ours to hand to Wiro).
#[utoipa::path(
    tag = "wiro",
    params(("token" = String, Path, description = "The message's callback token.")),
    responses(
        (status = 200, description = "Looked at (Message/Detail) and recorded.", body = CallbackAnswer),
        (status = 404, description = "No message has this token; nothing changes.", body = Problem),
        (status = 503, description = "Wiro's Detail could not be read; Wiro retries the callback.", body = Problem),
    )
)]
#[post("/wiro/callbacks/{token}")]
pub async fn message_callback(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> ApiResult<HttpResponse> {
    // The body (Wiro's copy of the message) is not read: nothing in it is trusted.
    let token = token.into_inner();
    let unknown = || ApiError::not_found("callback");
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let fp = state.services.sealer.fingerprint(token.as_bytes());
    let (guid, instance) = messages::by_callback(&state.pool, &fp)
        .await?
        .ok_or_else(unknown)?;
    let outcome = operations::replies::observe(&state.services, &guid, instance)
        .await
        .map_err(|e| {
            tracing::warn!(message = %guid, error = %e, "could not confirm a callback with Detail");
            ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "the message could not be read from Wiro; try again",
            )
        })?;
    let outcome = match outcome {
        Some(messages::Outcome::Completed) => "completed",
        Some(messages::Outcome::Failed) => "failed",
        None => "pending",
    };
    Ok(HttpResponse::Ok().json(CallbackAnswer {
        outcome: outcome.to_owned(),
    }))
}
