//! Answers from an upstream operation: "in doubt" while Wiro's answer is lost, then the settled
//! outcome — what a replay of the Idempotency-Key that started it gets.

use actix_web::http::StatusCode;
use domain::db::instances;
use domain::db::operations::Operation;
use domain::ids::OperationId;
use domain::model::{OperationKind, OperationState};
use operations::billing::ActionOutcome;
use operations::messages::Sent;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use wiro_client::WiroError;

use crate::error::{ApiError, ApiResult};
use crate::routes::billing::BillingResult;
use crate::routes::messages::SentMessage;
use crate::state::AppState;

/// Wiro's answer was lost: the call may or may not have happened, and it is being settled from
/// evidence upstream. Replay the same `Idempotency-Key` for the settled answer; the call is never
/// made twice.
#[derive(Debug, Serialize, ToSchema)]
pub struct InDoubt {
    /// The upstream operation.
    pub operation_id: Uuid,
    /// `in_doubt`.
    pub state: String,
    /// What to do.
    pub detail: String,
}

/// The body of a `202 in_doubt` answer.
pub fn in_doubt(operation: OperationId) -> InDoubt {
    InDoubt {
        operation_id: operation.0,
        state: "in_doubt".into(),
        detail:
            "Wiro's answer was lost; the outcome is being settled. Replay the request with the \
                 same Idempotency-Key to learn it; it will not be performed twice."
                .into(),
    }
}

/// The answer `op` settles to (`customer`: the caller's external id, for the agent view).
///
/// # Errors
/// The settled refusal, as the first request would have been refused.
pub async fn answer(
    state: &AppState,
    op: &Operation,
    customer: &str,
) -> ApiResult<(StatusCode, serde_json::Value)> {
    match op.state {
        OperationState::Calling | OperationState::Unknown => {
            Ok((StatusCode::ACCEPTED, json(&in_doubt(op.id))))
        }
        OperationState::Succeeded | OperationState::Adopted => match op.kind {
            OperationKind::MessageSend => {
                let sent: Sent = parse(op)?;
                let view = SentMessage {
                    id: sent.message_id,
                    status: "agent_queue".into(),
                    session: sent.session,
                };
                Ok((StatusCode::CREATED, json(&view)))
            }
            _ => {
                let outcome: ActionOutcome = parse(op)?;
                let instance = instances::get(&state.pool, op.instance_id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("agent"))?;
                let view = BillingResult::new(&outcome, Some(op.id), instance, customer, false);
                Ok((StatusCode::OK, json(&view)))
            }
        },
        OperationState::Refused => {
            let message = op.error.clone().unwrap_or_default();
            Err(ApiError::from_wiro(
                &WiroError::parse(None, &message),
                false,
            ))
        }
        OperationState::NotFound => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "not_applied",
            "Wiro's answer was lost and the call did not take effect; nothing was charged. \
             Send it again with a new Idempotency-Key.",
        )),
        OperationState::NotSent => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_not_sent",
            "the call to Wiro was not sent, so nothing happened; send it again with a new \
             Idempotency-Key",
        )),
    }
}

fn parse<T: serde::de::DeserializeOwned>(op: &Operation) -> ApiResult<T> {
    serde_json::from_value(op.result.clone().unwrap_or_default())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("operation {} result: {e}", op.id)))
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}
