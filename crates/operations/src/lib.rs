//! The calls to Wiro that spend money or act on a customer's behalf — Deploy, renewals,
//! cancellations, upgrades, credit packs and message sends — under one exactly-once protocol
//! (`protocol`), and the services handle (database, Wiro client, sealer, settings) that both the
//! API and the worker run them with. Neither the API nor the worker owns them: both sit on top
//! of this crate.

pub mod billing;
pub mod budget;
pub mod deploy;
pub mod messages;
pub mod observe;
pub mod protocol;
pub mod replies;
pub mod services;
pub mod settle;

pub use services::{Services, unique_worker_name};
