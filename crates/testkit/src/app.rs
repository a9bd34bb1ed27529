//! End-to-end tests: the real API on a random port against a fresh database (from
//! `#[sqlx::test]`), the in-process simulator upstream, and the real worker draining the job
//! queue, with one helper per kind of request.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use api::auth::JwtVerifier;
use api::catalog::CatalogCache;
use api::{AppState, Application};
use domain::Settings;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;
use wiro_sim::{Delays, SimConfig, SimServer};

/// A running app.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// `http://127.0.0.1:PORT` of the internal listener (`/metrics`).
    pub metrics_address: String,
    /// The test database.
    pub pool: PgPool,
    /// The app's request buckets (how many apps share them: `replicas()`).
    pub rate_limits: Arc<api::rate_limits::RateLimits>,
    /// Its heartbeat among the apps on the database, stopped when the app is dropped.
    _replica: api::rate_limits::Replica,
    /// Upstream.
    pub sim: SimServer,
    /// Settings in use.
    pub settings: Arc<Settings>,
    http: reqwest::Client,
    worker: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    server: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

/// An answer: status, headers, body as JSON (or `Value::String` for non-JSON).
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body.
    pub body: Value,
}

impl Answer {
    /// The problem `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// The content type.
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// The seed template's credentials: Instagram connects with the customer's own app only.
pub fn instagram_credentials() -> Value {
    serde_json::json!({"instagram": {"authMethod": "own", "appId": "sim-app", "appSecret": "sim-app-secret"}})
}

/// The app with the worker running.
pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(
        pool,
        SimConfig::with_account(crate::WIRO_KEY, 100_000.0),
        |_| {},
        true,
    )
    .await
}

/// The app with a custom simulator, settings tweak and optional worker.
pub async fn spawn_app_with(
    test_pool: PgPool,
    sim_config: SimConfig,
    tweak: impl FnOnce(&mut Settings),
    with_worker: bool,
) -> TestApp {
    spawn(test_pool, sim_config, |s, _| tweak(s), with_worker).await
}

/// The app (with its worker) giving Wiro its own address for message callbacks
/// (`wiro.callback_base_url`), with a settings tweak.
pub async fn spawn_app_calling_back(
    test_pool: PgPool,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let sim = SimConfig::with_account(crate::WIRO_KEY, 100_000.0);
    spawn(
        test_pool,
        sim,
        |s, address| {
            s.wiro.callback_base_url = address.to_owned();
            tweak(s);
        },
        true,
    )
    .await
}

/// The app; `tweak` sees the settings and the address the API will listen on.
async fn spawn(
    test_pool: PgPool,
    mut sim_config: SimConfig,
    tweak: impl FnOnce(&mut Settings, &str),
    with_worker: bool,
) -> TestApp {
    domain::setup_job_queue(&test_pool)
        .await
        .expect("apalis schema");
    sim_config.delays = Delays::uniform(20);
    let sim = SimServer::start(sim_config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    let mut settings = crate::settings_for(&sim);
    tweak(&mut settings, &address);
    let settings = Arc::new(settings);
    // Sized and timed like `reseller api`'s pool, on the test's database.
    let pool = domain::db::connect::pool_options(
        settings.api_connections(),
        settings.database.api_acquire_timeout,
    )
    .connect_with(domain::db::connect::with_statement_timeout(
        (*test_pool.connect_options()).clone(),
        settings.database.statement_timeout,
    ))
    .await
    .expect("pool");
    domain::pricing::sync_from_config(&pool, &settings.pricing)
        .await
        .expect("price list");
    let rate_limits = Arc::new(api::rate_limits::RateLimits::new(&settings.limits));
    // As `reseller api` does: this app takes its part of the request rates among the apps on
    // the test's database (each under a name of its own).
    let replica = api::rate_limits::Replica::join(
        &pool,
        format!("api-test-{}", operations::unique_worker_name("")),
        rate_limits.clone(),
    );
    let state = AppState {
        pool: pool.clone(),
        services: crate::services_shared(&pool, &settings, "api-test"),
        jwt: JwtVerifier::new(&settings).expect("jwt"),
        catalog: Arc::new(CatalogCache::new(settings.api.catalog_cache_ttl)),
        rate_limits: rate_limits.clone(),
        settings: settings.clone(),
    };
    let app = Application::build(state, listener, 1).expect("app");
    let server = app.handle();
    tokio::spawn(app.run_until_stopped());
    let metrics_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let metrics_address = format!("http://{}", metrics_listener.local_addr().unwrap());
    let metrics = api::metrics::serve_internal(metrics_listener, pool.clone()).expect("metrics");
    tokio::spawn(metrics);
    let worker = with_worker.then(|| spawn_worker(&pool, &settings));
    TestApp {
        address,
        metrics_address,
        rate_limits,
        _replica: replica,
        pool,
        sim,
        settings,
        http: reqwest::Client::new(),
        worker,
        server,
    }
}

/// The real worker (every queue, the webhook dispatcher) on `pool`, until told to stop.
fn spawn_worker(
    pool: &PgPool,
    settings: &Arc<Settings>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let ctx = crate::services_shared(pool, settings, "e2e-worker");
    let handle = tokio::spawn(async move {
        let _ = worker::runner::run(ctx, async move {
            let _ = stopped.await;
        })
        .await;
    });
    (stop, handle)
}

impl TestApp {
    /// Stops the worker and waits until it has stopped (a crash as far as unfinished work is
    /// concerned: what it had not done is left in the database).
    pub async fn stop_worker(&mut self) {
        if let Some((stop, handle)) = self.worker.take() {
            let _ = stop.send(());
            let _ = handle.await;
        }
    }

    /// Starts a (new) worker.
    pub fn start_worker(&mut self) {
        if self.worker.is_none() {
            self.worker = Some(spawn_worker(&self.pool, &self.settings));
        }
    }

    /// A customer token for `sub`.
    pub fn customer_token(&self, sub: &str) -> String {
        api::auth::mint(&self.settings, sub, None).expect("token")
    }

    /// An ops token.
    pub fn ops_token(&self) -> String {
        api::auth::mint(&self.settings, "ops-alice", Some("ops")).expect("token")
    }

    /// Sends a request; `body` as JSON when given.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request(Method::GET, path, Some(token), None, &[])
            .await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.request(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    /// PUT with a JSON body.
    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.request(Method::PUT, path, Some(token), Some(body), &[])
            .await
    }

    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.request(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: &str) -> Answer {
        self.request(Method::DELETE, path, Some(token), None, &[])
            .await
    }

    /// Orders the seed template with its credentials (the customer's own Instagram app);
    /// returns the agent JSON (202 asserted).
    pub async fn order_instagram(&self, token: &str) -> Value {
        let answer = self
            .post(
                "/v1/agents",
                token,
                &serde_json::json!({"template": "instagram-manager", "plan": "starter", "title": "Shop bot",
                                    "credentials": instagram_credentials()}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        answer.body
    }

    /// Polls `GET /v1/agents/{id}` until `state` (fails after 30 s with the last answer).
    /// Waiting for `running`, an agent that asks for an account connection gets it: the test
    /// plays the customer connecting through the consent page (once per provider).
    pub async fn wait_for_state(&self, token: &str, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut connected = std::collections::BTreeSet::new();
        loop {
            let answer = self.get(&format!("/v1/agents/{id}"), token).await;
            if answer.body["state"] == state {
                return answer.body;
            }
            if state == "running" && answer.body["state"] == "awaiting_connection" {
                for provider in answer.body["missing_connections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let provider = provider.as_str().unwrap_or_default().to_owned();
                    if connected.insert(provider.clone()) {
                        self.connect(token, id, &provider).await;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent {id} never reached {state}: {:?}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls ops' view of an agent (`GET /v1/admin/agents/{id}`) until `done` holds (fails after
    /// 30 s with the last answer).
    pub async fn wait_for_ops_view(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let ops = self.ops_token();
        loop {
            let agent = self.get(&format!("/v1/admin/agents/{id}"), &ops).await;
            if done(&agent.body) {
                return agent.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent {id} never got there: {:?}",
                agent.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Connects `provider` for the agent as its customer would: Connect, then the consent page
    /// (approving). Returns the redirect's query parameters.
    pub async fn connect(
        &self,
        token: &str,
        id: &str,
        provider: &str,
    ) -> std::collections::BTreeMap<String, String> {
        let started = self
            .post(
                &format!("/v1/agents/{id}/connections/{provider}"),
                token,
                &serde_json::json!({"redirect_url": crate::CONSENT_REDIRECT}),
            )
            .await;
        assert_eq!(started.status, StatusCode::OK, "{:?}", started.body);
        crate::consent(
            started.body["authorize_url"]
                .as_str()
                .expect("authorize_url"),
        )
        .await
    }

    /// POST with a JSON body and an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, token: &str, body: &Value, key: &str) -> Answer {
        self.request(
            Method::POST,
            path,
            Some(token),
            Some(body),
            &[("idempotency-key", key)],
        )
        .await
    }

    /// Replays a keyed POST while it answers `202 in_doubt`; the settled answer (fails after
    /// 30 s).
    pub async fn replay_until_settled(
        &self,
        path: &str,
        token: &str,
        body: &Value,
        key: &str,
    ) -> Answer {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self.post_keyed(path, token, body, key).await;
            if answer.status != StatusCode::ACCEPTED || answer.body["state"] != "in_doubt" {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never settled: {:?}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Orders `template` on `plan` for the customer of `token` and waits for Running; returns
    /// the agent id.
    pub async fn running_agent(&self, token: &str, template: &str, plan: &str) -> String {
        let credentials = if template == "instagram-manager" {
            instagram_credentials()
        } else {
            serde_json::json!({})
        };
        let answer = self
            .post(
                "/v1/agents",
                token,
                &serde_json::json!({"template": template, "plan": plan, "title": format!("{template} bot"),
                                    "credentials": credentials}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        let id = answer.body["id"].as_str().unwrap().to_owned();
        self.wait_for_state(token, &id, "running").await;
        id
    }

    /// Moves time `days` forward for Wiro (the simulator's clock) and for our business rules
    /// (the business clock: calendar months of charges and caps, key retention) together.
    pub async fn advance_days(&self, days: i64) {
        self.sim.sim().advance_days(days);
        let by = std::time::Duration::from_secs(u64::try_from(days).expect("forward") * 86_400);
        domain::db::clock::advance(&self.pool, by)
            .await
            .expect("business clock");
    }

    /// Runs `kinds` of scheduled sweeps now, in order, as the worker's schedule would.
    pub async fn run_sweeps(&self, kinds: &[domain::jobs::SweepKind]) {
        let ctx = crate::services_shared(&self.pool, &self.settings, "sweep-test");
        for kind in kinds {
            worker::sweeps::run(&ctx, *kind).await.expect("sweep");
        }
    }

    /// Our ledger must equal the simulator's, per instance and kind.
    pub async fn assert_ledgers_match(&self) {
        crate::assert_ledgers_equal(&self.pool, &self.sim).await;
    }
}
