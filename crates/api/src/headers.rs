//! Security headers on every answer: no MIME sniffing, no framing, no referrer, and a content
//! policy — none at all for the JSON API, and for the docs page only what Swagger UI needs
//! (its own scripts and styles, inline styles, `data:` images, calls to this origin).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

/// The JSON API serves no documents: nothing may load from it.
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Swagger UI: its bundled scripts and styles, inline style attributes, `data:` icons, and
/// requests to this API.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// Middleware: adds the headers (a handler that set its own keeps it).
///
/// # Errors
/// Whatever the inner service returns.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let docs = req.path().starts_with("/docs");
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    let policy = if docs { DOCS_POLICY } else { API_POLICY };
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    Ok(response)
}
