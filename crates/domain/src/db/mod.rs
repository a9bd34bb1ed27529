//! Postgres queries, one module per aggregate. Customer-facing reads take the customer id and
//! filter on it, so another customer's rows are indistinguishable from missing ones.

pub mod agent_view;
pub mod alerts;
pub mod audit;
pub mod batches;
pub mod budget;
pub mod clock;
pub mod connect;
pub mod customers;
pub mod deploys;
pub mod gauges;
pub mod idempotency;
pub mod instances;
pub mod ledger;
pub mod messages;
pub mod operations;
pub mod pricing;
pub mod queue;
pub mod replicas;
pub mod retention;
pub mod topups;
pub mod upstream;
pub mod webhooks;

/// The largest page any list returns.
pub const MAX_PAGE: i64 = 500;

/// Clamps a requested page size to 1..=[`MAX_PAGE`].
pub fn page_size(requested: Option<i64>, default: i64) -> i64 {
    requested.unwrap_or(default).clamp(1, MAX_PAGE)
}
