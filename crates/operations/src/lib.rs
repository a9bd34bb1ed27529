//! The calls to Wiro that spend money or act on a customer's behalf — Deploy, renewals,
//! cancellations, upgrades, credit packs and message sends — and the services handle (database,
//! Wiro client, sealer, settings) that both the API and the worker run them with. Neither the
//! API nor the worker owns them: both sit on top of this crate.

pub mod billing;
pub mod observe;
pub mod services;

pub use services::{Services, unique_worker_name};
