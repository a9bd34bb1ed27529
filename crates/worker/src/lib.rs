//! wiro-reseller's background work on apalis + Postgres. Each job is idempotent and safe to run
//! twice at once: side effects are fenced in the database, never trusted to the queue.

pub mod fetch_gate;
pub mod jobs;
pub mod provision;
pub mod replies;
pub mod runner;
pub mod sweeps;
pub mod webhooks;

pub use operations::{Services, unique_worker_name};
