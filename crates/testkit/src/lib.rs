//! The one test harness every crate's tests share:
//!
//! - [`settings_for`] and [`services`]: settings pointing at an in-process simulator with short
//!   timeouts, and the services handle built from them;
//! - [`harness`]: a fresh database (from `#[sqlx::test]`), the simulator and a services handle,
//!   with helpers to order, drive and wait (worker-level tests);
//! - [`app`]: the real API on a random port with the real worker (end-to-end tests);
//! - [`process`]: the built `reseller` binary as a child process (crash and scale tests).

pub mod app;
pub mod harness;
pub mod process;
pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use domain::Settings;
use domain::sealed::Sealer;
use operations::Services;
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use wiro_sim::SimServer;

pub use app::{
    Answer, TestApp, instagram_credentials, spawn_app, spawn_app_calling_back, spawn_app_with,
};
pub use harness::*;

/// The simulator account every harness uses.
pub const WIRO_KEY: &str = "test-key";

/// Settings pointing at `sim`: short timeouts and leases, fast job timings, schedules off.
pub fn settings_for(sim: &SimServer) -> Settings {
    let mut s = Settings::defaults().expect("the shipped defaults are valid");
    s.wiro.base_url = sim.base_url();
    s.wiro.api_key = SecretString::from(WIRO_KEY.to_owned());
    s.wiro.timeout = Duration::from_secs(2);
    s.wiro.connect_timeout = Duration::from_secs(1);
    s.provisioning.deploy_lease = Duration::from_secs(3);
    s.operations.lease = Duration::from_secs(3);
    s.operations.quiet_period = Duration::from_millis(500);
    s.provisioning.backoff_base = Duration::from_millis(50);
    s.provisioning.backoff_max = Duration::from_millis(400);
    s.provisioning.wait_running_inline = Duration::from_secs(5);
    s.api.catalog_cache_ttl = Duration::from_secs(2);
    // Tests run many requests and a worker on one pool.
    s.database.api_max_connections = 40;
    s.security.credentials_key = SecretString::from(Sealer::generate_key());
    s.auth.hs256_secret = SecretString::from(Sealer::generate_key());
    // Tests make requests fast; the tests of the buckets set their own rates.
    s.limits.mutations_per_minute = 0;
    s.limits.messages_per_minute = 0;
    // The simulated consent page sends the browser to the customer's app on localhost.
    s.connections.allowed_redirect_origins = vec!["http://localhost:*".into()];
    worker::runner::fast_timings(&mut s);
    s.validate().expect("test settings are valid");
    s
}

/// The services handle `settings` describe, on `pool`, recording upstream metrics.
pub fn services(pool: &PgPool, settings: Settings, name: &str) -> Services {
    services_shared(pool, &Arc::new(settings), name)
}

/// Like [`services`] with settings already shared.
pub fn services_shared(pool: &PgPool, settings: &Arc<Settings>, name: &str) -> Services {
    let mut config = settings.wiro_client_config().expect("wiro client config");
    config.observer = Some(Arc::new(domain::metrics::UpstreamObserver));
    Services {
        pool: pool.clone(),
        wiro: wiro_client::Client::new(config).expect("wiro client"),
        sealer: settings.sealer().expect("credentials key"),
        settings: settings.clone(),
        worker_name: Arc::from(name),
    }
}

/// A pool of its own on the test database (the test's own pool allows only a few connections).
pub async fn own_pool(pool: &PgPool, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("a pool on the test database")
}
