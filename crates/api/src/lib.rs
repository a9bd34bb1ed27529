//! wiro-reseller's REST API (actix-web + utoipa): customers with JWTs, an ops role, RFC 9457
//! problem bodies, Idempotency-Key, cursor pagination, OpenAPI at `/openapi.json` and Swagger
//! UI at `/docs`.

pub mod auth;
pub mod catalog;
pub mod csv_export;
pub mod dto;
pub mod error;
pub mod headers;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod rate_limits;
pub mod request_id;
pub mod routes;
pub mod settled;
pub mod startup;
pub mod state;
pub mod webhook_events;

pub use startup::{Application, openapi};
pub use state::AppState;
