//! The middleware recording HTTP requests by route template and status, and the internal
//! listener that serves `/metrics` (and `/healthz`) off the public port — for the API
//! (`api.metrics_listen`) and the worker (`worker.metrics_listen`) alike.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use domain::metrics::METRICS;
use sqlx::PgPool;

/// Middleware: counts and times every request.
///
/// # Errors
/// Whatever the inner service returns.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    // Methods outside HTTP's common set share one label: a client must not grow our series.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let response = next.call(req).await?;
    // The template, not the path: ids must not explode the label set.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    METRICS
        .http_requests
        .with_label_values(&[&route, method, &status])
        .inc();
    METRICS
        .http_duration
        .with_label_values(&[&route, method])
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn metrics(pool: web::Data<PgPool>) -> HttpResponse {
    match domain::metrics::render(&pool).await {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => {
            tracing::error!(error = %e, "rendering metrics");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("metrics unavailable\n")
        }
    }
}

/// Serves `/metrics` (Prometheus text format) and `/healthz` on an internal `listener`: never
/// on the public API port.
///
/// # Errors
/// When the server cannot start on the listener.
pub fn serve_internal(listener: TcpListener, pool: PgPool) -> std::io::Result<Server> {
    let pool = web::Data::new(pool);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(pool.clone())
            .route("/metrics", web::get().to(metrics))
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}
