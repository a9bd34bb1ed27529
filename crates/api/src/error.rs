//! One error type for the API, rendered as RFC 9457 `application/problem+json` with a stable
//! `code` — for handler errors, extractor errors (malformed JSON, bad path or query values),
//! oversized bodies, unknown routes and wrong methods alike. Internal errors are logged with
//! the request id and answered without their cause.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;
use wiro_client::WiroError;

use crate::request_id;

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:wiro-reseller:problem:not_found",
    "title": "Not Found",
    "status": 404,
    "detail": "agent not found",
    "code": "not_found",
    "request_id": "01929b0e-8f3c-7c4e-9d7a-0c1b2d3e4f50"
}))]
pub struct Problem {
    /// A URI naming the problem type: `urn:wiro-reseller:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short, human-readable summary of the type (the HTTP reason phrase).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation_failed`, `agent_not_running`.
    pub code: String,
    /// The request id (also in the `x-request-id` header), for support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `limit_exceeded` only: which limit (`max_agents`, `monthly_spend_cents`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_name: Option<String>,
    /// `limit_exceeded` only: the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `limit_exceeded` only: what is used already (agents, or cents this month).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<i64>,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A problem with a status, stable code and detail.
    #[error("{detail}")]
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// Detail for the caller.
        detail: String,
        /// Seconds for `Retry-After`, when it helps.
        retry_after: Option<u64>,
    },
    /// A customer limit would be exceeded: 409 `limit_exceeded` with `limit` and `usage`.
    #[error("the {name} limit ({limit}) would be exceeded: {usage} used")]
    Limit {
        /// `max_agents` or `monthly_spend_cents`.
        name: &'static str,
        /// The limit.
        limit: i64,
        /// What is used already.
        usage: i64,
    },
    /// Anything unexpected: logged, answered as a bare 500.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Shorthand.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A problem with `status`, `code` and `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Status {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 404 — also what another customer's resource answers.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 422 with the field named in `detail`.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
    }

    /// 400 `bad_query`: a query value is malformed or out of range (named in `detail`).
    pub fn bad_query(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", detail)
    }

    /// 409.
    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// An upstream failure as a caller should see it. `ops` callers see wallet amounts.
    pub fn upstream(error: &wiro_client::Error, ops: bool) -> Self {
        use wiro_client::Error as E;
        let status = |s: u16| StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY);
        match error {
            E::Api { error: wiro, .. } => Self::from_wiro(wiro, ops),
            E::RateLimited { retry_after, .. } => ApiError::Status {
                status: status(503),
                code: "upstream_rate_limited",
                detail: "Wiro is rate limiting us; try again shortly".into(),
                retry_after: Some(retry_after.map_or(5, |d| d.as_secs().max(1))),
            },
            E::Timeout { .. } => Self::new(
                status(504),
                "upstream_timeout",
                "Wiro did not answer in time",
            ),
            E::Decode { .. } => {
                tracing::error!(%error, "undecodable upstream answer");
                Self::new(
                    status(502),
                    "upstream_invalid_response",
                    "Wiro sent an answer we could not read",
                )
            }
            E::NotSent { reason, .. } => {
                tracing::error!(%reason, "upstream call not sent");
                Self::new(
                    status(503),
                    "upstream_not_sent",
                    "the call to Wiro was not sent, so nothing happened; try again",
                )
            }
            E::Http { .. } | E::Connect { .. } | E::Transport { .. } => Self::new(
                status(502),
                "upstream_unavailable",
                "Wiro is unavailable; try again shortly",
            ),
        }
    }

    /// The answer to one of Wiro's typed refusals. Customers get a stable code and a sentence
    /// of ours; Wiro's own text (which may name our configuration, wallet or URLs) stays in the
    /// logs and in ops' answers.
    pub(crate) fn from_wiro(error: &WiroError, ops: bool) -> Self {
        use WiroError as W;
        let (status, code, sentence): (StatusCode, &'static str, &str) = match error {
            W::AgentNotRunning { .. } => {
                (CONFLICT, "agent_not_running", "the agent is not running")
            }
            W::AlreadyRunning | W::AlreadyQueued => (
                CONFLICT,
                "agent_already_running",
                "the agent is already running or starting",
            ),
            W::AlreadyStopped => (
                CONFLICT,
                "agent_already_stopped",
                "the agent is already stopped",
            ),
            W::CurrentlyStopping => (
                CONFLICT,
                "agent_stopping",
                "the agent is stopping; try again shortly",
            ),
            W::InErrorState => (CONFLICT, "agent_in_error", "the agent is in an error state"),
            W::SetupIncomplete => (
                CONFLICT,
                "setup_incomplete",
                "the agent needs its credentials before it can start",
            ),
            W::NoCreditsAvailable => (CONFLICT, "no_credits", "the agent has no credits left"),
            W::SubscriptionRequiredToStart | W::SubscriptionRequiredForExtraCredits => (
                CONFLICT,
                "subscription_required",
                "the agent's subscription is not active",
            ),
            W::ExtraCreditsProOnly => (
                CONFLICT,
                "pro_plan_required",
                "extra credits are available on the Pro plan only",
            ),
            W::SubscriptionAlreadyActive => (
                CONFLICT,
                "subscription_already_active",
                "the subscription is already active",
            ),
            W::NoExpiredSubscription => (
                CONFLICT,
                "no_expired_subscription",
                "there is no expired subscription to renew",
            ),
            W::CannotDowngrade => (
                CONFLICT,
                "downgrade_not_supported",
                "a Pro plan cannot be downgraded in place",
            ),
            W::StripeCancelViaPortal => (
                CONFLICT,
                "stripe_subscription",
                "this subscription is managed elsewhere and cannot be changed here",
            ),
            W::MessageNotCancellable { .. } => (
                CONFLICT,
                "message_not_cancellable",
                "the message has finished and can no longer be cancelled",
            ),
            W::InvalidPack | W::PackNotAvailable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "this credit pack is not available for this agent",
            ),
            W::CategoriesEmpty
            | W::InvalidRedirectUrl
            | W::ValidPlanRequired
            | W::PricingNotAvailable
            | W::RenewalPricingNotAvailable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "the request was refused as invalid",
            ),
            W::MessageNotFound => return Self::not_found("message"),
            W::AgentNotFound | W::AgentNotFoundOrInactive => return Self::not_found("template"),
            // Messaging's word for an unknown instance guid (ours is on record, so Wiro lost
            // it): the agent is gone upstream, not the message.
            W::UserAgentNotFound | W::AgentNotFoundOrAccessDenied => (
                StatusCode::BAD_GATEWAY,
                "upstream_instance_missing",
                "the agent no longer exists upstream; the operator is alerted",
            ),
            W::InsufficientWalletBalance { .. } if ops => {
                (StatusCode::PAYMENT_REQUIRED, "insufficient_wallet", "")
            }
            W::InsufficientWalletBalance { .. } => (
                StatusCode::PAYMENT_REQUIRED,
                "payment_unavailable",
                "the service cannot take this payment right now; please contact support",
            ),
            other if other.is_auth() => {
                tracing::error!(error = %other, "Wiro rejected our credentials");
                (
                    StatusCode::BAD_GATEWAY,
                    "upstream_auth_failed",
                    "the service cannot reach its provider right now; please contact support",
                )
            }
            _ => (
                StatusCode::BAD_GATEWAY,
                "upstream_refused",
                "the provider refused the request",
            ),
        };
        if ops {
            return Self::new(status, code, error.to_string());
        }
        tracing::info!(code, wiro = %error, "upstream refusal answered with a stable code");
        Self::new(status, code, sentence)
    }
}

const CONFLICT: StatusCode = StatusCode::CONFLICT;

impl From<domain::Error> for ApiError {
    fn from(e: domain::Error) -> Self {
        match e {
            domain::Error::NotFound(what) => ApiError::not_found(what),
            domain::Error::Conflict(detail) => ApiError::conflict("conflict", detail),
            domain::Error::Invalid(detail) => ApiError::validation(detail),
            domain::Error::LimitExceeded { name, limit, usage } => {
                ApiError::Limit { name, limit, usage }
            }
            domain::Error::Database(db) => db.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if database_busy(&e) {
            return ApiError::database_busy(&e);
        }
        ApiError::Internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let busy = e.chain().find_map(|cause| {
            cause
                .downcast_ref::<sqlx::Error>()
                .or_else(|| match cause.downcast_ref::<domain::Error>() {
                    Some(domain::Error::Database(db)) => Some(db),
                    _ => None,
                })
                .filter(|db| database_busy(db))
        });
        match busy {
            Some(db) => ApiError::database_busy(db),
            None => ApiError::Internal(e),
        }
    }
}

/// No connection free within `database.api_acquire_timeout`, or a statement cancelled by
/// `statement_timeout` (SQLSTATE 57014): the service is overloaded, not broken.
fn database_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().as_deref() == Some("57014"),
        _ => false,
    }
}

impl ApiError {
    /// 503 `database_busy` with `Retry-After`, so clients back off instead of piling on.
    fn database_busy(e: &sqlx::Error) -> Self {
        tracing::warn!(error = %e, "database busy: answering 503");
        ApiError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "database_busy",
            detail: "the service is busy; retry after the delay in Retry-After".to_owned(),
            retry_after: Some(1),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Status { status, .. } => *status,
            ApiError::Limit { .. } => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let request_id = request_id::current();
        let (status, code, detail, retry_after) = match self {
            ApiError::Status {
                status,
                code,
                detail,
                retry_after,
            } => (*status, *code, detail.clone(), *retry_after),
            ApiError::Limit { name, limit, usage } => {
                let mut body = problem(StatusCode::CONFLICT, "limit_exceeded", self.to_string());
                body.request_id = request_id;
                body.limit_name = Some((*name).to_owned());
                body.limit = Some(*limit);
                body.usage = Some(*usage);
                return problem_body(StatusCode::CONFLICT, &body);
            }
            ApiError::Internal(e) => {
                tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = ?e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; quote the request id to support".to_owned(),
                    None,
                )
            }
        };
        let mut response = problem_response(status, code, detail, request_id);
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A problem body without a request id or extension members.
fn problem(status: StatusCode, code: &str, detail: String) -> Problem {
    Problem {
        problem_type: format!("urn:wiro-reseller:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code: code.to_owned(),
        request_id: None,
        limit_name: None,
        limit: None,
        usage: None,
    }
}

fn problem_body(status: StatusCode, body: &Problem) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .json(body)
}

/// Renders a problem body.
pub fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    request_id: Option<String>,
) -> HttpResponse {
    let mut body = problem(status, code, detail);
    body.request_id = request_id;
    problem_body(status, &body)
}

/// Malformed or invalid JSON bodies.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature actix's error_handler takes"
)]
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    let error = match &err {
        J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than this API accepts",
        ),
        J::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        J::Deserialize(e) if e.is_data() => ApiError::validation(format!("invalid body: {e}")),
        J::Deserialize(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("malformed JSON: {e}"),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.to_string()),
    };
    error.into()
}

/// Bad path segments (e.g. an id that is not a UUID).
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature actix's error_handler takes"
)]
pub fn path_error(
    err: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_path",
        format!("invalid path parameter: {err}"),
    )
    .into()
}

/// Bad query strings.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature actix's error_handler takes"
)]
pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad_query",
        format!("invalid query parameter: {err}"),
    )
    .into()
}
