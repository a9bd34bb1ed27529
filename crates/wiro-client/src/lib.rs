//! A typed async client for the Wiro Agents API.
//!
//! One method per endpoint on [`Client`]; requests and answers follow Wiro's JSON in
//! [`models`]. Failures are an [`Error`] that says whether the call may have taken effect
//! ([`Error::outcome`]) — the distinction every caller of Deploy and the money endpoints needs.
//! Read-only calls retry with backoff and jitter; spending calls are attempted exactly once.

mod api;
mod client;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod models;
pub mod observer;
pub mod retry;
pub mod signature;
pub mod throttle;
pub mod wiro_error;

pub use api::my_agents::MY_AGENTS_MAX_PAGE;
pub use client::Client;
pub use config::{Auth, ClientConfig, DEFAULT_BASE_URL, DEFAULT_MAX_RESPONSE_BYTES};
pub use endpoint::{Endpoint, Safety};
pub use error::{ConfigError, Error, Outcome};
pub use observer::CallObserver;
pub use retry::RetryPolicy;
pub use throttle::{Permit, Throttle, ThrottleView};
pub use wiro_error::WiroError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
