//! What the benches share: a scratch database, a simulator with added latency, and the
//! services handle of the shipped settings pointing at it.

#![allow(dead_code)] // each bench uses part of this

use std::sync::Arc;
use std::time::Duration;

use domain::sealed::Sealer;
use secrecy::SecretString;
use sqlx::{Connection, Executor, PgPool};
use wiro_sim::{Delays, FaultMode, FaultSpec, SimConfig, SimServer};

/// The simulator account every bench uses.
pub const KEY: &str = "bench-key";

/// A fresh database on the server of `DATABASE_URL`, migrated; dropped by [`Scratch::drop_now`].
pub struct Scratch {
    pub pool: PgPool,
    admin: sqlx::PgConnection,
    name: String,
}

impl Scratch {
    /// Creates `<prefix>_<pid>` with a pool of `connections`.
    pub async fn create(prefix: &str, connections: u32) -> anyhow::Result<Self> {
        let base = std::env::var("DATABASE_URL").expect("set DATABASE_URL to a Postgres server");
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&base).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        if std::env::var_os("BENCH_TABLE_STATS").is_some() {
            // Time and count every PL/pgSQL function (our triggers) for the table-stats report.
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} SET track_functions = 'pl'"
                )))
                .await?;
        }
        let mut url = url::Url::parse(&base)?;
        url.set_path(&format!("/{name}"));
        // The pool a deployment runs with (`domain::db::connect`), not sqlx's defaults.
        let pool = domain::db::connect::pool_options(connections, Duration::from_secs(30))
            .connect(url.as_str())
            .await?;
        domain::migrate(&pool).await?;
        Ok(Self { pool, admin, name })
    }

    /// Closes the pool and drops the database.
    pub async fn drop_now(mut self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await?;
        Ok(())
    }
}

/// A simulator with instant status transitions, `wallet` dollars, and `latency_ms` added to
/// every call (none for 0).
pub async fn simulator(wallet: f64, latency_ms: u64) -> anyhow::Result<SimServer> {
    let mut config = SimConfig::with_account(KEY, wallet);
    config.delays = Delays::uniform(0);
    let sim = SimServer::start(config, "127.0.0.1:0".parse()?).await?;
    if latency_ms > 0 {
        sim.sim()
            .add_fault(FaultSpec {
                endpoint: "*".into(),
                mode: FaultMode::Latency,
                status: None,
                latency_ms: Some(latency_ms),
                probability: None,
                count: None,
                rate_per_s: None,
            })
            .map_err(anyhow::Error::msg)?;
    }
    Ok(sim)
}

/// The shipped settings pointing at `sim`'s account, with no scheduled sweeps.
pub fn settings_for(sim: &SimServer) -> anyhow::Result<domain::Settings> {
    let mut settings = domain::Settings::defaults()?;
    settings.wiro.base_url = sim.base_url();
    settings.wiro.api_key = SecretString::from(KEY.to_owned());
    settings.schedules.enabled = false;
    Ok(settings)
}

/// The shipped settings pointing at `sim`, with no scheduled sweeps during a measurement;
/// `tweak` adjusts them.
pub fn services(
    pool: &PgPool,
    sim: &SimServer,
    tweak: impl FnOnce(&mut domain::Settings),
) -> anyhow::Result<operations::Services> {
    let mut settings = settings_for(sim)?;
    tweak(&mut settings);
    // As `reseller` builds it: every call attempt recorded in the metrics.
    let mut client = settings.wiro_client_config()?;
    client.observer = Some(Arc::new(domain::metrics::UpstreamObserver));
    Ok(operations::Services {
        pool: pool.clone(),
        wiro: wiro_client::Client::new(client)?,
        sealer: Sealer::from_base64(&Sealer::generate_key())?,
        settings: Arc::new(settings),
        worker_name: Arc::from("bench-worker"),
    })
}

/// The real apalis worker on `ctx`; send on the returned channel to stop it.
pub fn spawn_worker(
    ctx: operations::Services,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::runner::run(ctx, async move {
        let _ = stopped.await;
    }));
    (stop, worker)
}
