//! What every job handler and API request that calls Wiro gets: the database, the Wiro client,
//! the sealer, the settings and a name for the audit log.

use std::sync::Arc;

use domain::Settings;
use domain::sealed::Sealer;
use sqlx::PgPool;

/// Shared, cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    /// The worker's pool (separate from the API's).
    pub pool: PgPool,
    /// The upstream.
    pub wiro: wiro_client::Client,
    /// Opens sealed credentials.
    pub sealer: Sealer,
    /// Settings.
    pub settings: Arc<Settings>,
    /// This process's unique worker name (recorded on operations and audit entries).
    pub worker_name: Arc<str>,
}

impl Services {
    /// The audit actor of this worker.
    pub fn actor(&self) -> String {
        format!("worker:{}", self.worker_name)
    }
}

/// A worker name unique to this process: host, pid and a random suffix. A restarted process
/// must not reuse its predecessor's name, or apalis would consider that predecessor's orphaned
/// jobs alive.
pub fn unique_worker_name(configured: &str) -> String {
    if !configured.trim().is_empty() {
        return configured.trim().to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let suffix: u32 = rand::random();
    format!("{host}-{}-{suffix:08x}", std::process::id())
}
