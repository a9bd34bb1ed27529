//! One method per Wiro endpoint, grouped by resource.

mod billing;
mod catalog;
mod instances;
mod messaging;
pub(crate) mod my_agents;
mod oauth;
