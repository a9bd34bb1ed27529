//! A hook that sees every attempt, so the service can export metrics without this crate
//! depending on a metrics library.

use std::time::Duration;

use crate::endpoint::Endpoint;

/// Receives one call per HTTP attempt.
pub trait CallObserver: Send + Sync {
    /// `outcome` is `ok` or an [`crate::Error::kind_label`].
    fn on_attempt(&self, endpoint: Endpoint, outcome: &'static str, latency: Duration);
}
