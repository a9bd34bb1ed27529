//! Building and running the HTTP server: `Application::build` binds (port 0 works),
//! `run_until_stopped` serves. The same route table feeds the OpenAPI document, which also
//! drives the 404/405 fallback.

use std::net::TcpListener;
use std::sync::{Arc, LazyLock};

use actix_web::dev::{ResourceDef, Server, ServerHandle};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use utoipa::OpenApi;
use utoipa_actix_web::{AppExt, scope};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{json_error, path_error, problem_response, query_error};
use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::{request_id, routes};

/// Registers every documented route on a utoipa app.
fn register<T>(app: utoipa_actix_web::UtoipaApp<T>) -> utoipa_actix_web::UtoipaApp<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    app.service(
        scope::scope("/v1")
            .configure(routes::customer)
            .service(scope::scope("/admin").configure(routes::admin)),
    )
    .configure(routes::health)
}

/// The OpenAPI document (no database or server needed).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = register(App::new().into_utoipa_app().openapi(ApiDoc::openapi()))
        .split_for_parts()
        .1;
    // Path-level additions need the collected paths, so they run after collection.
    crate::openapi::finish(&mut doc);
    doc
}

/// Route templates and their methods, from the document: tells 405 from 404.
static ROUTES: LazyLock<Vec<(ResourceDef, Vec<Method>)>> = LazyLock::new(|| {
    openapi()
        .paths
        .paths
        .iter()
        .map(|(path, item)| {
            let methods = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
                (Method::PATCH, item.patch.is_some()),
                (Method::DELETE, item.delete.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(m, _)| m)
            .collect();
            (ResourceDef::new(path.as_str()), methods)
        })
        .collect()
});

async fn fallback(req: HttpRequest) -> HttpResponse {
    let request_id = request_id::current();
    let allowed: Vec<&Method> = ROUTES
        .iter()
        .filter(|(def, _)| def.is_match(req.path()))
        .flat_map(|(_, methods)| methods)
        .collect();
    if allowed.is_empty() {
        return problem_response(
            StatusCode::NOT_FOUND,
            "route_not_found",
            format!("no route {} {}", req.method(), req.path()),
            request_id,
        );
    }
    let allow = allowed
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; use {allow}",
            req.method(),
            req.path()
        ),
        request_id,
    );
    if let Ok(value) = header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// A bound, running server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Builds the server on `listener` (bind to port 0 in tests). `workers` 0 = one per CPU.
    ///
    /// Each worker thread has a pool of its own ([`AppState::for_worker_thread`]) of
    /// `DatabaseSettings::api_connections_per_thread` connections; `state`'s pool is the
    /// template they are made from.
    ///
    /// # Errors
    /// When the server cannot start on the listener.
    pub fn build(state: AppState, listener: TcpListener, workers: usize) -> std::io::Result<Self> {
        let port = listener.local_addr()?.port();
        let settings = state.settings.clone();
        let threads = domain::config::api_threads(workers);
        let per_thread = settings.database.api_connections_per_thread(threads);
        let spec = Arc::new(openapi());
        let body_limit = settings.api.body_limit_bytes;
        let server = HttpServer::new(move || {
            // Runs once on each worker thread: its pool opens its connections there.
            let data = web::Data::new(state.for_worker_thread(per_thread));
            let spec = (*spec).clone();
            register(
                App::new()
                    .into_utoipa_app()
                    .openapi(ApiDoc::openapi())
                    .app_data(data.clone())
                    .app_data(
                        web::JsonConfig::default()
                            .limit(body_limit)
                            .error_handler(json_error),
                    )
                    .app_data(web::PathConfig::default().error_handler(path_error))
                    .app_data(web::QueryConfig::default().error_handler(query_error))
                    .app_data(web::PayloadConfig::default().limit(body_limit)),
            )
            .map(|app| {
                app.wrap(from_fn(crate::headers::middleware))
                    .wrap(from_fn(crate::metrics::middleware))
                    .wrap(from_fn(request_id::middleware))
                    .route("/docs", web::get().to(docs_redirect))
                    .default_service(web::to(fallback))
            })
            // Serve the finished document, not the one collected per worker.
            .openapi_service(move |_| SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", spec))
            .into_app()
        })
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(settings.api.shutdown_timeout.as_secs())
        .workers(threads);
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped through the handle.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// `/docs` → `/docs/`, where Swagger UI is served. The target is relative, so it also holds
/// behind a proxy that mounts the API under a path prefix.
async fn docs_redirect() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "docs/"))
        .finish()
}
