//! `/metrics` and the middleware recording HTTP requests by route template and status.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use domain::metrics::METRICS;

use crate::state::AppState;

/// Middleware: counts and times every request.
///
/// # Errors
/// Whatever the inner service returns.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await?;
    // The template, not the path: ids must not explode the label set.
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16().to_string();
    METRICS
        .http_requests
        .with_label_values(&[&route, &method, &status])
        .inc();
    METRICS
        .http_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match domain::metrics::render(&state.pool).await {
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

/// Registers `/metrics` (Prometheus text format, not part of the JSON API).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}
