//! wiro-sim: an in-memory Wiro Agents API for tests, demos and CI.
//!
//! It serves Wiro's paths under `/v1` (so a client changes only its base URL) and an admin API
//! under `/admin` for the clock, fault injection, wallets and the charge ledger. Behaviour follows
//! `shared/seed/agent-overview.md` and `wiro-api-notes.md`; where the docs are silent the choice
//! is written down in `crates/wiro-sim/README.md`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use wiro_sim::{SimConfig, SimServer};
//! let server = SimServer::start(SimConfig::with_account("test-key", 1000.0), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("Wiro at {}", server.base_url());
//! server.sim().advance_days(30); // a billing period passes
//! # Ok(()) }
//! ```

pub mod catalog;
pub mod cli;
pub mod clock;
pub mod faults;
mod http;
mod latency;
pub mod money;
mod simulator;
pub mod state;
mod webhooks;
pub mod world;

pub use catalog::Catalog;
pub use clock::{DAY_MS, SimClock, SimTime};
pub use faults::{FaultMode, FaultSpec};
pub use http::SimServer;
pub use simulator::{
    AccountSpec, AccountView, InstanceView, OneInstanceWrite, SimConfig, Simulator, WorldView,
};
pub use world::Delays;
