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
    /// This state for one HTTP worker thread: the same caches, limits and settings, with a pool
    /// of its own of at most `connections`, opened lazily, so on first use by this thread.
    ///
    /// Each actix worker is a single-threaded runtime, and a tokio socket is polled by the
    /// runtime that opened it: a connection of a shared pool opened by the other worker
    /// thread is read only when that thread next turns to its I/O, busy as it may be. Measured
    /// with `scripts/bench-read`: 1.27–1.37× the requests a second of one shared pool, at a lower
    /// CPU cost per read (`BENCHMARKS.md`, stop 26).
    pub fn for_worker_thread(&self, connections: u32) -> AppState {
        let pool = self
            .pool
            .options()
            .clone()
            .max_connections(connections.max(1))
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let mut state = self.clone();
        state.services.pool = pool.clone();
        state.pool = pool;
        state
    }

    /// The Wiro client.
    pub fn wiro(&self) -> &wiro_client::Client {
        &self.services.wiro
    }
}
