//! The HTTP front: raw hyper rather than a framework, because "drop the response" must close the
//! connection without answering, and returning an error from a hyper service does exactly that.

mod admin;
mod auth;
mod v1;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::simulator::{SimConfig, Simulator};

/// Largest request body accepted.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// How often due transitions are applied and webhooks sent without a request arriving.
const TICK: Duration = Duration::from_millis(50);

/// The connection is closed without an answer (fault injection).
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) type HttpResult = Result<Response<Full<Bytes>>, DropConnection>;

/// A simulator listening on a TCP port. Dropping it stops the server.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    sim: Simulator,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `listen` (port 0 picks a free port) and serves in the background.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<Self> {
        Self::serve(Simulator::new(config), listen).await
    }

    /// Keeps the world in `path`: saved every `every` while it changes and once more at
    /// [`SimServer::shutdown`]. Load it first with [`Simulator::load_state`].
    pub fn keep_state(&mut self, path: std::path::PathBuf, every: std::time::Duration) {
        let stop = self.shutdown.subscribe();
        self.tasks.push(tokio::spawn(crate::state::keep(
            self.sim.clone(),
            path,
            every,
            stop,
        )));
    }

    /// Serves an existing simulator.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn serve(sim: Simulator, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, sim.clone(), stop.clone()));
        let ticker = tokio::spawn(crate::webhooks::tick_loop(sim.clone(), TICK, stop));
        Ok(Self {
            addr,
            sim,
            shutdown,
            tasks: vec![accept, ticker],
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/v1`: what a Wiro client takes as its base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://ADDR/admin`.
    pub fn admin_url(&self) -> String {
        format!("http://{}/admin", self.addr)
    }

    /// In-process controls.
    pub fn sim(&self) -> &Simulator {
        &self.sim
    }

    /// Stops accepting and waits for the background tasks.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn accept_loop(listener: TcpListener, sim: Simulator, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let sim = sim.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(sim.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

async fn handle(sim: Simulator, req: Request<Incoming>) -> HttpResult {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let headers = req.headers().clone();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(wiro_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                0,
                "Request body too large",
            ));
        }
    };
    if let Some(rest) = path.strip_prefix("/admin") {
        return Ok(admin::handle(&sim, &method, rest, &body));
    }
    if let Some(code) = path
        .strip_prefix("/oauth/")
        .and_then(|p| p.strip_suffix("/authorize"))
        && method == hyper::Method::GET
    {
        return Ok(consent(&sim, code, query.as_deref()));
    }
    match path.strip_prefix("/v1/") {
        Some(endpoint) if method == hyper::Method::POST => {
            v1::handle(&sim, endpoint, &headers, &body).await
        }
        _ => Ok(wiro_error(StatusCode::NOT_FOUND, 0, "Error parsing url.")),
    }
}

/// A JSON response.
/// The provider's consent page, answered at once: approve (or deny with `decision=deny`), then
/// Wiro's callback sends the browser to the redirect URL.
fn consent(sim: &Simulator, code: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let state = get("state").unwrap_or_default();
    let deny = get("decision") == Some("deny");
    let now = sim.now();
    let location = crate::world::oauth::authorize(&mut sim.world(), code, state, deny, now);
    if location.is_empty() {
        return text_response(StatusCode::BAD_REQUEST, "unknown or used OAuth state");
    }
    Response::builder()
        .status(StatusCode::FOUND)
        .header(hyper::header::LOCATION, location)
        .body(Full::new(Bytes::new()))
        .expect("a valid redirect")
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A plain-text response (what a gateway in front of Wiro sends).
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Wiro's failure envelope.
pub(crate) fn wiro_error(status: StatusCode, code: i64, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"result": false, "errors": [{"code": code, "message": message}]}),
    )
}

pub(crate) fn parse_json(body: &Bytes) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))
}
