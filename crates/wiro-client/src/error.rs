//! What can go wrong calling Wiro, and — for money-moving calls — whether it may have happened.

use std::time::Duration;

use crate::endpoint::{Endpoint, Safety};
use crate::wiro_error::WiroError;

/// Whether a failed call can have changed anything upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing happened upstream: Wiro refused the call, or it never left this process.
    NotApplied,
    /// The request was (or may have been) delivered and no answer tells us what happened.
    /// A Deploy or payment in this state must be checked upstream before it is tried again.
    Unknown,
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wiro answered `result:false`. `error` is the first entry, `others` the rest.
    #[error("{endpoint}: Wiro refused the call: {error}")]
    Api {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The HTTP status of the answer (Wiro uses 200 for most refusals, 401 for auth).
        status: u16,
        /// The first error Wiro listed.
        error: WiroError,
        /// Any further errors Wiro listed.
        others: Vec<WiroError>,
    },
    /// Wiro (or something in front of it) answered 429.
    #[error("{endpoint}: rate limited by Wiro")]
    RateLimited {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The `Retry-After` delay, when one was sent.
        retry_after: Option<Duration>,
    },
    /// A non-2xx answer without a Wiro error envelope (a proxy page, a 502, ...).
    #[error("{endpoint}: HTTP {status} from Wiro: {body}")]
    Http {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// No connection could be made, so nothing was sent.
    #[error("{endpoint}: could not connect to Wiro: {source}")]
    Connect {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer within the timeout, after the request may have been sent.
    #[error("{endpoint}: no answer from Wiro within {timeout:?}")]
    Timeout {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection failed after the request was sent (reset, truncated answer).
    #[error("{endpoint}: connection to Wiro failed mid-call: {source}")]
    Transport {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A 2xx answer whose body does not have the documented shape.
    #[error("{endpoint}: undecodable answer from Wiro (HTTP {status}): {reason}; body: {body}")]
    Decode {
        /// The endpoint called.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// What did not match.
        reason: String,
        /// The start of the body, for diagnosis.
        body: String,
    },
    /// The call was never attempted (e.g. an authenticated endpoint without credentials).
    #[error("{endpoint}: {reason}")]
    NotSent {
        /// The endpoint called.
        endpoint: Endpoint,
        /// Why it was not sent.
        reason: String,
    },
}

impl Error {
    /// The endpoint that failed.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Error::Api { endpoint, .. }
            | Error::RateLimited { endpoint, .. }
            | Error::Http { endpoint, .. }
            | Error::Connect { endpoint, .. }
            | Error::Timeout { endpoint, .. }
            | Error::Transport { endpoint, .. }
            | Error::Decode { endpoint, .. }
            | Error::NotSent { endpoint, .. } => *endpoint,
        }
    }

    /// Whether the call may have taken effect upstream. Callers of Deploy and the money endpoints
    /// must reconcile before retrying when this is [`Outcome::Unknown`].
    pub fn outcome(&self) -> Outcome {
        match self {
            // `result:false` with a 5xx is a server failure reported in Wiro's envelope: the
            // work may have started before it failed.
            Error::Api { status, .. } if *status >= 500 => Outcome::Unknown,
            // On a spending endpoint only a refusal we recognise (the documented business
            // errors, auth failures) proves nothing happened: an unknown message may report a
            // failure after the work began.
            Error::Api {
                endpoint,
                status,
                error: WiroError::Other { .. },
                ..
            } if endpoint.safety() == Safety::Spending && *status != 401 => Outcome::Unknown,
            Error::Api { .. }
            | Error::RateLimited { .. }
            | Error::Connect { .. }
            | Error::NotSent { .. } => Outcome::NotApplied,
            // A 4xx without an envelope is a refusal by something in the path; a 5xx may come
            // after the upstream did the work (a gateway timing out on a slow Deploy).
            Error::Http { status, .. } if *status < 500 => Outcome::NotApplied,
            Error::Http { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::Decode { .. } => Outcome::Unknown,
        }
    }

    /// True when trying again later may succeed (network, 5xx, 429). Refusals by Wiro's business
    /// rules are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::RateLimited { .. }
            | Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. } => true,
            Error::Http { status, .. } | Error::Api { status, .. } => {
                *status >= 500 || *status == 408
            }
            Error::Decode { .. } | Error::NotSent { .. } => false,
        }
    }

    /// The typed Wiro error, when Wiro refused the call.
    pub fn wiro(&self) -> Option<&WiroError> {
        match self {
            Error::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// A short label for metrics: `refused`, `rate_limited`, `http_5xx`, `timeout`, ...
    pub fn kind_label(&self) -> &'static str {
        match self {
            Error::Api { .. } => "refused",
            Error::RateLimited { .. } => "rate_limited",
            Error::Http { status, .. } if *status >= 500 => "http_5xx",
            Error::Http { .. } => "http_4xx",
            Error::Connect { .. } => "connect",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Decode { .. } => "decode",
            Error::NotSent { .. } => "not_sent",
        }
    }
}

/// A [`crate::ClientConfig`] that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL is not a usable http(s) URL.
    #[error("WIRO_BASE_URL / base_url {value:?} is invalid: {reason}")]
    BaseUrl {
        /// What was given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A secret without a key cannot sign anything.
    #[error("WIRO_API_SECRET is set but WIRO_API_KEY is not; signature auth needs both")]
    SecretWithoutKey,
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_not_applied_and_gateway_errors_are_unknown() {
        let refused = Error::Api {
            endpoint: Endpoint::Deploy,
            status: 200,
            error: WiroError::AgentNotFound,
            others: vec![],
        };
        assert_eq!(refused.outcome(), Outcome::NotApplied);
        assert!(!refused.is_transient());

        let gateway = Error::Http {
            endpoint: Endpoint::Deploy,
            status: 502,
            body: String::new(),
        };
        assert_eq!(gateway.outcome(), Outcome::Unknown);
        assert!(gateway.is_transient());

        let timeout = Error::Timeout {
            endpoint: Endpoint::Deploy,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(timeout.outcome(), Outcome::Unknown);
    }

    #[test]
    fn an_unrecognised_refusal_is_in_doubt_on_a_spending_endpoint_only() {
        let unknown = |endpoint, status| Error::Api {
            endpoint,
            status,
            error: WiroError::Other {
                code: Some(0),
                message: "Something went wrong".into(),
            },
            others: vec![],
        };
        assert_eq!(
            unknown(Endpoint::UpgradePlan, 200).outcome(),
            Outcome::Unknown
        );
        assert_eq!(
            unknown(Endpoint::MessageSend, 200).outcome(),
            Outcome::Unknown
        );
        assert_eq!(
            unknown(Endpoint::Deploy, 401).outcome(),
            Outcome::NotApplied
        );
        assert_eq!(unknown(Endpoint::Start, 200).outcome(), Outcome::NotApplied);
        let known = Error::Api {
            endpoint: Endpoint::UpgradePlan,
            status: 200,
            error: WiroError::CannotDowngrade,
            others: vec![],
        };
        assert_eq!(known.outcome(), Outcome::NotApplied);
    }
}
