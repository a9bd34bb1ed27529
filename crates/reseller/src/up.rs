//! `reseller up`: everything in one process for a laptop or a demo — the local database
//! (created when missing), migrations, the API, the worker with its schedules, and, without a
//! Wiro key, the simulator embedded with the default catalog and a funded demo account.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use domain::Settings;
use secrecy::{ExposeSecret, SecretString};
use wiro_sim::{SimConfig, SimServer};

use crate::{runtime, serve};

/// The demo account of the embedded simulator.
const DEMO_KEY: &str = "demo-key";
/// Where the embedded simulator keeps its world between runs (beside the development keys).
const SIM_STATE: &str = ".reseller/wiro-sim.json";

/// Flags of `up`.
#[derive(Clone, Debug, clap::Args)]
pub struct UpArgs {
    /// Where the API listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the embedded simulator listens (when no WIRO_API_KEY is set).
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub sim_listen: SocketAddr,
    /// Wallet of the simulator's demo account, in dollars.
    #[arg(long, default_value_t = 1000.0)]
    pub sim_wallet: f64,
}

/// Runs until SIGTERM or Ctrl-C.
///
/// # Errors
/// Start-up failures, each naming what to fix.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut settings: Settings = runtime::load()?;
    settings.api.listen = args.listen;
    if std::env::var_os("DATABASE_URL").is_none() {
        runtime::ensure_database(&settings).await?;
    }
    let sim = if settings.wiro_configured() {
        None
    } else {
        let mut config = SimConfig::with_account(DEMO_KEY, args.sim_wallet);
        config.delays = wiro_sim::Delays::default().with_start_delay_ms(1000);
        let sim = wiro_sim::Simulator::new(config);
        // The demo's Wiro outlives a restart: the agents ordered before are still there.
        let state = std::path::PathBuf::from(SIM_STATE);
        if sim.load_state(&state).map_err(anyhow::Error::msg)? {
            eprintln!("the embedded simulator resumed from {SIM_STATE}");
        }
        let mut sim = SimServer::serve(sim, args.sim_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot start the embedded simulator on {} (--sim-listen)",
                    args.sim_listen
                )
            })?;
        sim.keep_state(state, std::time::Duration::from_secs(2));
        settings.wiro.base_url = sim.base_url();
        settings.wiro.api_key = SecretString::from(DEMO_KEY.to_owned());
        Some(sim)
    };
    // The demo, and only the demo, falls back to development secrets it generates (kept
    // under .reseller/ so a restart opens what it sealed and honours the tokens it printed).
    if settings.security.credentials_key.expose_secret().is_empty() {
        settings.security.credentials_key = SecretString::from(runtime::dev_secret(
            runtime::DEV_CREDENTIALS_KEY,
            "credentials key",
            "RESELLER_SECURITY__CREDENTIALS_KEY",
        )?);
    }
    runtime::use_dev_jwt_secret(&mut settings, true)?;
    if settings.connections.allowed_redirect_origins.is_empty() {
        // The demo's customers' apps run on the laptop.
        settings.connections.allowed_redirect_origins =
            vec!["http://localhost:*".into(), "http://127.0.0.1:*".into()];
    }
    // The demo's webhook receivers run on the laptop too.
    settings.webhooks.allow_private_targets = true;
    settings.validate()?;
    let settings = Arc::new(settings);

    // Two pools, as `reseller api` and `reseller worker` have: a burst of requests cannot take
    // the connections job heartbeats need, and the API's requests share a few warm backends
    // (one pool of both sizes spread them over ~46, costing Postgres 40 % more CPU per read).
    let pool = runtime::pool(
        &settings,
        settings.api_connections(),
        settings.database.api_acquire_timeout,
    )
    .await?;
    domain::migrate(&pool).await?;
    domain::pricing::sync_from_config(&pool, &settings.pricing).await?;
    let worker_pool = runtime::pool(
        &settings,
        serve::worker_pool_size(&settings),
        settings.database.worker_acquire_timeout,
    )
    .await?;
    let (app, addr, replica) = serve::start_api(&settings, &pool)?;
    let api = app.handle();
    // One process, one registry: the API's internal listener serves the worker's metrics too.
    let metrics = serve::start_metrics("api.metrics_listen", &settings.api.metrics_listen, &pool)?;
    let server = tokio::spawn(app.run_until_stopped());
    let (stop, stopped) = runtime::shutdown_channel();
    let ctx = runtime::job_context(
        &settings,
        &worker_pool,
        worker::unique_worker_name(&settings.worker.name),
    )?;
    let worker = tokio::spawn(worker::runner::run(ctx, stopped()));

    banner(
        &settings,
        addr,
        metrics.as_ref().map(|(_, a)| *a),
        sim.as_ref(),
    )?;
    runtime::shutdown_signal().await;
    api.stop(true).await;
    let _ = stop.send(true);
    server.await??;
    replica.leave().await;
    worker.await??;
    if let Some((metrics, _)) = metrics {
        metrics.stop(true).await;
    }
    if let Some(sim) = sim {
        sim.shutdown().await;
    }
    println!("wiro-reseller stopped");
    Ok(())
}

fn banner(
    settings: &Settings,
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    sim: Option<&SimServer>,
) -> anyhow::Result<()> {
    let customer = api::auth::mint(settings, "demo-customer", None)?;
    let ops = api::auth::mint(settings, "demo-ops", Some("ops"))?;
    let base = format!("http://{addr}");
    println!("wiro-reseller is up");
    println!("  API:        {base}");
    println!("  Docs:       {base}/docs/");
    if let Some(metrics) = metrics {
        println!("  Metrics:    http://{metrics}/metrics (internal listener)");
    }
    match sim {
        Some(sim) => println!(
            "  Wiro:       {} (embedded simulator, key {DEMO_KEY}; admin at {})",
            sim.base_url(),
            sim.admin_url()
        ),
        None => println!("  Wiro:       {}", settings.wiro.base_url),
    }
    println!();
    println!("Tokens (valid {}s):", settings.auth.token_ttl.as_secs());
    println!("  export CUSTOMER_TOKEN={customer}");
    println!("  export OPS_TOKEN={ops}");
    println!();
    println!("Try:");
    println!("  curl -s {base}/v1/catalog -H \"Authorization: Bearer $CUSTOMER_TOKEN\"");
    println!(
        "  curl -s -X POST {base}/v1/agents -H \"Authorization: Bearer $CUSTOMER_TOKEN\" -H 'content-type: application/json' \\\n       -d '{{\"template\":\"email-assistant\",\"plan\":\"starter\",\"title\":\"My bot\"}}'"
    );
    println!(
        "  (an instagram-manager agent waits in awaiting_connection until POST {base}/v1/agents/{{id}}/connections/instagram\n   with {{\"redirect_url\":\"http://localhost:3000/\"}} and a visit to the authorize_url it answers)"
    );
    println!();
    println!("Press Ctrl-C to stop.");
    use std::io::Write;
    std::io::stdout().flush()?;
    Ok(())
}
