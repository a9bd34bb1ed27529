//! `Idempotency-Key` on POSTs that create or spend. Per caller: the first request runs; a
//! replay gets its answer (`idempotent-replayed: true`); the same key with another request is
//! refused (422); a replay while the first still runs gets 409. Keys expire after
//! `api.idempotency_ttl`.
//!
//! Through doubt: a request that started an upstream operation links the key to it in the
//! intent's transaction. When Wiro's answer is lost the request answers `202` with
//! `{"operation_id", "state": "in_doubt"}`, and every replay answers the same until the
//! operation is settled, then the settled answer (success or refusal) — it never performs the
//! call again. An order stores its answer in the order's own transaction. A request that failed
//! before anything happened is forgotten, so the caller can correct and retry it with the same
//! key; a claim that was never answered nor linked is released after a few minutes (its request
//! died with its process before doing anything).

use ::operations::protocol::KeyClaim;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use domain::db::{idempotency, operations};
use domain::ids::OperationId;
use domain::model::OperationState;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::settled;
use crate::state::AppState;

/// The header.
pub const HEADER: &str = "idempotency-key";

/// A claim without an answer or an operation after this long belongs to a request that died
/// with its process before doing anything: it is released so the caller can retry.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// The key a request runs under.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// The caller (`customer:<ext>`, `ops:<sub>`).
    pub caller: String,
    /// The key.
    pub key: String,
}

impl Claimed {
    /// The claim as the protocol links it to an operation.
    pub fn as_key(&self) -> KeyClaim<'_> {
        KeyClaim {
            caller: &self.caller,
            key: &self.key,
        }
    }
}

/// What a handler answered.
#[derive(Debug)]
pub enum Answer {
    /// Store this as the key's answer and send it.
    Done(StatusCode, serde_json::Value),
    /// The work stored the answer in its own transaction; send it.
    Stored(StatusCode, serde_json::Value),
    /// Wiro's answer was lost: the key stays linked to the operation.
    InDoubt(OperationId),
}

/// Runs `handler` at most once per (caller, key). `customer` is the caller's external id when a
/// customer calls (settled answers show the customer's agent).
///
/// # Errors
/// 400 for a malformed key, 422 for a reused key, 409 for a concurrent duplicate, a settled
/// refusal, or the handler's error.
pub async fn run(
    state: &AppState,
    caller: &str,
    req: &HttpRequest,
    body: &impl Serialize,
    customer: &str,
    handler: impl AsyncFnOnce(Option<Claimed>) -> ApiResult<Answer>,
) -> ApiResult<HttpResponse> {
    let Some(key) = req.headers().get(HEADER) else {
        return respond(handler(None).await?);
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
    let request = canonical_request(req.method().as_str(), req.path(), body)?;
    let sealer = &state.services.sealer;
    let fingerprint = sealer.fingerprint(&request);
    let ttl = state.settings.api.idempotency_ttl;
    for _ in 0..3 {
        if idempotency::claim(&state.pool, caller, &key, &fingerprint, ttl).await? {
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
        if !same_request(sealer, &request, &existing.request_hash) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            ));
        }
        let (status, body) = match (existing.status, existing.response, existing.operation_id) {
            (Some(status), Some(response), _) => (
                StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
                response,
            ),
            (_, _, Some(operation)) => replay_operation(state, operation, customer).await?,
            _ => {
                return Err(ApiError::conflict(
                    "idempotency_in_progress",
                    "a request with this Idempotency-Key is still being processed",
                ));
            }
        };
        return Ok(HttpResponse::build(status)
            .insert_header(("idempotent-replayed", "true"))
            .json(body));
    }
    Err(ApiError::conflict(
        "idempotency_in_progress",
        "could not claim the Idempotency-Key; try again",
    ))
}

/// What a key's fingerprint covers: method, path and the canonical JSON body.
///
/// # Errors
/// Only if the body does not serialise (the request types always do).
pub fn canonical_request(method: &str, path: &str, body: &impl Serialize) -> ApiResult<Vec<u8>> {
    let mut request = format!("{method} {path}\n").into_bytes();
    request.extend(serde_json::to_vec(body).map_err(anyhow::Error::from)?);
    Ok(request)
}

/// The stored fingerprint is `request`'s under a current or previous key. Keys stored before
/// fingerprints were keyed hold a bare SHA-256: still recognised, so a client retrying across
/// the upgrade is not told it sent another request (those rows expire with `idempotency_ttl`).
fn same_request(sealer: &domain::sealed::Sealer, request: &[u8], stored: &[u8]) -> bool {
    sealer.fingerprint_matches(request, stored) || Sha256::digest(request).as_slice() == stored
}

/// The answer of the operation a key started: in doubt, or settled (settling it first when
/// its lease is over).
async fn replay_operation(
    state: &AppState,
    operation: OperationId,
    customer: &str,
) -> ApiResult<(StatusCode, serde_json::Value)> {
    let op = operations::get(&state.pool, operation)
        .await?
        .ok_or_else(|| anyhow::anyhow!("operation {operation} of a stored key is missing"))?;
    if op.state == OperationState::Calling && !op.lease_over {
        // The first request is still waiting on Wiro.
        return Err(ApiError::conflict(
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed",
        ));
    }
    let op = if op.state.is_unresolved() && op.lease_over {
        ::operations::settle::settle_one(&state.services, &op).await?;
        operations::get(&state.pool, operation).await?.unwrap_or(op)
    } else {
        op
    };
    settled::answer(state, &op, customer).await
}

async fn run_claimed(
    state: &AppState,
    caller: &str,
    key: &str,
    handler: impl AsyncFnOnce(Option<Claimed>) -> ApiResult<Answer>,
) -> ApiResult<HttpResponse> {
    let claimed = Claimed {
        caller: caller.to_owned(),
        key: key.to_owned(),
    };
    match handler(Some(claimed)).await {
        Ok(Answer::Done(status, body)) => {
            idempotency::store_answer(&state.pool, caller, key, status.as_u16(), &body).await?;
            Ok(HttpResponse::build(status).json(body))
        }
        Ok(answer) => respond(answer),
        Err(error) => {
            idempotency::forget(&state.pool, caller, key).await?;
            Err(error)
        }
    }
}

fn respond(answer: Answer) -> ApiResult<HttpResponse> {
    Ok(match answer {
        Answer::Done(status, body) | Answer::Stored(status, body) => {
            HttpResponse::build(status).json(body)
        }
        Answer::InDoubt(operation) => HttpResponse::Accepted().json(settled::in_doubt(operation)),
    })
}
