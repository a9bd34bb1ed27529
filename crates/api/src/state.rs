//! Shared application state: one per process, cloned into every worker thread.

use std::sync::Arc;

use domain::Settings;
use operations::Services;
use sqlx::PgPool;

use crate::auth::JwtVerifier;
use crate::catalog::CatalogCache;
use crate::rate_limits::RateLimits;

/// What handlers need.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Database (the API's own pool).
    pub pool: PgPool,
    /// Database, Wiro client and sealer for the operations that call Wiro.
    pub services: Services,
    /// Verifies bearer tokens.
    pub jwt: JwtVerifier,
    /// The upstream catalog, cached briefly.
    pub catalog: Arc<CatalogCache>,
    /// Per-customer request rates.
    pub rate_limits: Arc<RateLimits>,
    /// Settings.
    pub settings: Arc<Settings>,
}

impl AppState {
    /// The Wiro client.
    pub fn wiro(&self) -> &wiro_client::Client {
        &self.services.wiro
    }
}
