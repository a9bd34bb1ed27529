//! Long-running roles: the API and the worker, alone (`api`, `worker`) or together (`up`).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use domain::Settings;
use sqlx::PgPool;

use crate::runtime;

/// Binds and starts the API; returns it and its address.
///
/// # Errors
/// When the address cannot be bound or the state cannot be built.
pub fn start_api(
    settings: &Arc<Settings>,
    pool: &PgPool,
) -> anyhow::Result<(api::Application, std::net::SocketAddr)> {
    let listener = TcpListener::bind(settings.api.listen)
        .with_context(|| format!("cannot listen on {} (api.listen)", settings.api.listen))?;
    let addr = listener.local_addr()?;
    let app = api::Application::build(
        runtime::api_state(settings, pool)?,
        listener,
        settings.api.workers,
    )?;
    Ok((app, addr))
}

/// Serves `/healthz` and `/metrics` for a worker process on `worker.metrics_listen`.
///
/// # Errors
/// When the address cannot be bound.
pub fn start_worker_metrics(
    settings: &Settings,
    pool: &PgPool,
) -> anyhow::Result<Option<(actix_web::dev::Server, std::net::SocketAddr)>> {
    if settings.worker.metrics_listen.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(&settings.worker.metrics_listen).with_context(|| {
        format!(
            "cannot listen on {} (worker.metrics_listen)",
            settings.worker.metrics_listen
        )
    })?;
    let addr = listener.local_addr()?;
    let pool = web::Data::new(pool.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/metrics",
                web::get().to(|pool: web::Data<PgPool>| async move {
                    match domain::metrics::render(&pool).await {
                        Ok(text) => HttpResponse::Ok()
                            .content_type("text/plain; version=0.0.4; charset=utf-8")
                            .body(text),
                        Err(_) => HttpResponse::ServiceUnavailable().finish(),
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(Some((server, addr)))
}

/// The worker's pool size: job slots, the NOTIFY listeners and heartbeats.
pub fn worker_pool_size(settings: &Settings) -> u32 {
    settings.database.worker_max_connections
        + settings.worker.provision_concurrency as u32
        + 2 * settings.worker.ops_concurrency as u32
        + 6
}

/// `reseller api`: the API alone until SIGTERM, then a graceful drain.
///
/// # Errors
/// Start-up failures.
pub async fn api_only(settings: Settings) -> anyhow::Result<()> {
    // Configuration first: no published or missing secret ever verifies a token.
    settings.require_signing_secret()?;
    let settings = Arc::new(settings);
    let pool = runtime::pool(&settings, settings.database.api_max_connections).await?;
    runtime::require_migrated(&pool).await?;
    let (app, addr) = start_api(&settings, &pool)?;
    let handle = app.handle();
    println!("wiro-reseller API listening on http://{addr} (docs at http://{addr}/docs/)");
    let server = tokio::spawn(app.run_until_stopped());
    runtime::shutdown_signal().await;
    handle.stop(true).await;
    server.await??;
    Ok(())
}

/// `reseller worker`: the job queues and schedules until SIGTERM, then a graceful stop.
///
/// # Errors
/// Start-up failures.
pub async fn worker_only(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let pool = runtime::pool(&settings, worker_pool_size(&settings)).await?;
    runtime::require_migrated(&pool).await?;
    let ctx = runtime::job_context(
        &settings,
        &pool,
        worker::unique_worker_name(&settings.worker.name),
    )?;
    let metrics = start_worker_metrics(&settings, &pool)?;
    if let Some((_, addr)) = &metrics {
        println!(
            "wiro-reseller worker {} (metrics at http://{addr}/metrics)",
            ctx.worker_name
        );
    }
    let metrics_handle = metrics.map(|(server, _)| {
        let handle = server.handle();
        tokio::spawn(server);
        handle
    });
    worker::runner::run(ctx, runtime::shutdown_signal()).await?;
    if let Some(handle) = metrics_handle {
        handle.stop(true).await;
    }
    Ok(())
}
