//! `Idempotency-Key` on POSTs that create or spend. Per caller: the first request runs and its
//! answer is stored; a replay gets the stored answer (`idempotent-replayed: true`); the same
//! key with another request is refused (422); a replay while the first still runs gets 409.
//! Keys expire after `api.idempotency_ttl`. A request that fails is forgotten so the caller can
//! retry it with the same key (the money operations keep their own intent rows, so a retry
//! cannot spend twice).

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use domain::db::idempotency;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The header.
pub const HEADER: &str = "idempotency-key";

/// A claim still without an answer after this long belongs to a request that died with its
/// process (no request runs nearly this long); it is released so the caller can retry.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs `handler` at most once per (caller, key).
///
/// # Errors
/// 400 for a malformed key, 422 for a reused key, 409 for a concurrent duplicate, or the
/// handler's error.
pub async fn run<F, Fut>(
    state: &AppState,
    caller: &str,
    req: &HttpRequest,
    body: &impl Serialize,
    handler: F,
) -> ApiResult<HttpResponse>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<(StatusCode, serde_json::Value)>>,
{
    let Some(key) = req.headers().get(HEADER) else {
        let (status, body) = handler().await?;
        return Ok(HttpResponse::build(status).json(body));
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?
        .to_owned();
    let mut hasher = Sha256::new();
    hasher.update(req.method().as_str());
    hasher.update(b" ");
    hasher.update(req.path());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(body).map_err(anyhow::Error::from)?);
    let hash = hasher.finalize().to_vec();

    let ttl = state.settings.api.idempotency_ttl;
    for _ in 0..3 {
        if idempotency::claim(&state.pool, caller, &key, &hash, ttl).await? {
            return run_claimed(state, caller, &key, handler).await;
        }
        let Some(existing) = idempotency::find(&state.pool, caller, &key, ABANDONED_AFTER).await?
        else {
            continue; // deleted meanwhile: try to claim again
        };
        if existing.expired || existing.abandoned {
            idempotency::release_stale(&state.pool, caller, &key, ABANDONED_AFTER).await?;
            continue;
        }
        if existing.request_hash != hash {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ));
        }
        let (Some(status), Some(response)) = (existing.status, existing.response) else {
            return Err(ApiError::conflict(
                "idempotency_in_progress",
                "a request with this Idempotency-Key is still being processed",
            ));
        };
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok(HttpResponse::build(status)
            .insert_header(("idempotent-replayed", "true"))
            .json(response));
    }
    Err(ApiError::conflict(
        "idempotency_in_progress",
        "could not claim the Idempotency-Key; try again",
    ))
}

async fn run_claimed<F, Fut>(
    state: &AppState,
    caller: &str,
    key: &str,
    handler: F,
) -> ApiResult<HttpResponse>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<(StatusCode, serde_json::Value)>>,
{
    match handler().await {
        Ok((status, body)) => {
            idempotency::store_answer(&state.pool, caller, key, status.as_u16(), &body).await?;
            Ok(HttpResponse::build(status).json(body))
        }
        Err(error) => {
            idempotency::forget(&state.pool, caller, key).await?;
            Err(error)
        }
    }
}
