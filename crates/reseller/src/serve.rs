//! Long-running roles: the API and the worker, alone (`api`, `worker`) or together (`up`).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use anyhow::Context;
use domain::Settings;
use sqlx::PgPool;

use crate::runtime;

/// Binds and starts the API; returns it, its address and its place among the API processes
/// sharing the request rates (leave it when the API has stopped).
///
/// # Errors
/// When the address cannot be bound or the state cannot be built.
pub fn start_api(
    settings: &Arc<Settings>,
    pool: &PgPool,
) -> anyhow::Result<(
    api::Application,
    std::net::SocketAddr,
    api::rate_limits::Replica,
)> {
    let listener = TcpListener::bind(settings.api.listen)
        .with_context(|| format!("cannot listen on {} (api.listen)", settings.api.listen))?;
    let addr = listener.local_addr()?;
    let state = runtime::api_state(settings, pool)?;
    // The request rates are the deployment's: this process takes its part of them.
    let replica = api::rate_limits::Replica::join(
        pool,
        state.services.worker_name.to_string(),
        state.rate_limits.clone(),
    );
    let app = api::Application::build(state, listener, settings.api.workers)?;
    Ok((app, addr, replica))
}

/// Serves `/metrics` and `/healthz` on the internal address of `key` (`api.metrics_listen`,
/// `worker.metrics_listen`); `None` when it is empty.
///
/// # Errors
/// When the address cannot be bound.
pub fn start_metrics(
    key: &str,
    listen: &str,
    pool: &PgPool,
) -> anyhow::Result<Option<(ServerHandle, std::net::SocketAddr)>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen} ({key})"))?;
    let addr = listener.local_addr()?;
    let server = api::metrics::serve_internal(listener, pool.clone())?;
    let handle = server.handle();
    tokio::spawn(server);
    Ok(Some((handle, addr)))
}

/// The worker's pool size: job slots (a chunk's orders each), the NOTIFY listeners and
/// heartbeats.
pub fn worker_pool_size(settings: &Settings) -> u32 {
    let chunk_orders =
        domain::jobs::chunk_slots(settings.worker.provision_concurrency) * domain::jobs::BULK_CHUNK;
    settings.database.worker_max_connections
        + settings.worker.provision_concurrency as u32
        + chunk_orders as u32
        + 2 * settings.worker.ops_concurrency as u32
        + 8
}

/// `reseller api`: the API alone until SIGTERM, then a graceful drain.
///
/// # Errors
/// Start-up failures.
pub async fn api_only(settings: Settings) -> anyhow::Result<()> {
    // Configuration first: no published or missing secret ever verifies a token.
    settings.require_signing_secret()?;
    let settings = Arc::new(settings);
    let pool = runtime::pool(
        &settings,
        settings.api_connections(),
        settings.database.api_acquire_timeout,
    )
    .await?;
    runtime::require_migrated(&pool).await?;
    // The configured price list is what the ledger's trigger prices charges with.
    domain::pricing::sync_from_config(&pool, &settings.pricing).await?;
    let (app, addr, replica) = start_api(&settings, &pool)?;
    let handle = app.handle();
    let metrics = start_metrics("api.metrics_listen", &settings.api.metrics_listen, &pool)?;
    println!("wiro-reseller API listening on http://{addr} (docs at http://{addr}/docs/)");
    if let Some((_, addr)) = &metrics {
        println!("metrics at http://{addr}/metrics");
    }
    let server = tokio::spawn(app.run_until_stopped());
    runtime::shutdown_signal().await;
    handle.stop(true).await;
    server.await??;
    replica.leave().await;
    if let Some((metrics, _)) = metrics {
        metrics.stop(true).await;
    }
    Ok(())
}

/// `reseller worker`: the job queues and schedules until SIGTERM, then a graceful stop.
///
/// # Errors
/// Start-up failures.
pub async fn worker_only(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let pool = runtime::pool(
        &settings,
        worker_pool_size(&settings),
        settings.database.worker_acquire_timeout,
    )
    .await?;
    runtime::require_migrated(&pool).await?;
    // The configured price list is what the ledger's trigger prices charges with.
    domain::pricing::sync_from_config(&pool, &settings.pricing).await?;
    let ctx = runtime::job_context(
        &settings,
        &pool,
        worker::unique_worker_name(&settings.worker.name),
    )?;
    let metrics = start_metrics(
        "worker.metrics_listen",
        &settings.worker.metrics_listen,
        &pool,
    )?;
    if let Some((_, addr)) = &metrics {
        println!(
            "wiro-reseller worker {} (metrics at http://{addr}/metrics)",
            ctx.worker_name
        );
    }
    worker::runner::run(ctx, runtime::shutdown_signal()).await?;
    if let Some((handle, _)) = metrics {
        handle.stop(true).await;
    }
    Ok(())
}
