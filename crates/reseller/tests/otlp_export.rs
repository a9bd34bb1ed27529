//! With the standard `OTEL_EXPORTER_OTLP_*` variables set, `reseller api` exports its spans
//! over OTLP/HTTP (protobuf) to the collector they name, and flushes them when it stops.
//! Without them it sends nothing.

use std::time::Duration;

use sqlx::PgPool;
use testkit::process::*;
use testkit::receiver::Receiver;

fn api_env(pool: &PgPool, port: u16, sim: &wiro_sim::SimServer) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url(pool)),
        ("WIRO_BASE_URL", sim.base_url()),
        ("WIRO_API_KEY", testkit::WIRO_KEY.to_owned()),
        (
            "RESELLER_SECURITY__CREDENTIALS_KEY",
            domain::sealed::Sealer::generate_key(),
        ),
        (
            "RESELLER_AUTH__HS256_SECRET",
            domain::sealed::Sealer::generate_key(),
        ),
        ("RESELLER_API__LISTEN", format!("127.0.0.1:{port}")),
        ("RESELLER_API__METRICS_LISTEN", String::new()),
        // Quiet logs: traces keep their spans whatever the log level.
        ("RUST_LOG", "warn".to_owned()),
    ]
}

/// A migrated database, a simulator, a collector and a free port for the API.
async fn setup(pool: &PgPool) -> (wiro_sim::SimServer, Receiver, u16) {
    domain::migrate(pool).await.unwrap();
    let sim = wiro_sim::SimServer::start(
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    (sim, Receiver::start().await, free_port())
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_api_exports_its_spans_to_the_configured_collector(pool: PgPool) {
    let (sim, collector, port) = setup(&pool).await;
    let mut env = api_env(&pool, port, &sim);
    env.push(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url.clone()));
    env.push(("OTEL_SERVICE_NAME", "reseller-under-test".to_owned()));
    let mut api = Guard(spawn(env!("CARGO_BIN_EXE_reseller"), &["api"], &env));
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{base}/readyz"), Duration::from_secs(30)).await;
    let answer = reqwest::get(format!("{base}/v1/catalog")).await.unwrap();
    assert_eq!(answer.status(), 401);
    // Stopped off this thread: the collector (on this runtime) must answer the final flush.
    let stopped = tokio::task::spawn_blocking(move || terminate(&mut api.0))
        .await
        .unwrap();
    assert!(stopped.success());

    let exported = collector
        .wait_for(|got| {
            got.iter()
                .any(|r| r.body.windows(11).any(|w| w == b"/v1/catalog"))
        })
        .await;
    let batch = exported
        .iter()
        .find(|r| r.body.windows(11).any(|w| w == b"/v1/catalog"))
        .unwrap();
    assert_eq!(batch.header("content-type"), "application/x-protobuf");
    let name = b"reseller-under-test";
    assert!(
        batch.body.windows(name.len()).any(|w| w == name),
        "the resource carries OTEL_SERVICE_NAME"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn without_an_endpoint_nothing_is_exported(pool: PgPool) {
    let (sim, collector, port) = setup(&pool).await;
    // The collector's address is known but not configured: nothing may reach it.
    let mut api = Guard(spawn(
        env!("CARGO_BIN_EXE_reseller"),
        &["api"],
        &api_env(&pool, port, &sim),
    ));
    let base = format!("http://127.0.0.1:{port}");
    wait_ok(&format!("{base}/readyz"), Duration::from_secs(30)).await;
    let _ = reqwest::get(format!("{base}/v1/catalog")).await.unwrap();
    assert!(terminate(&mut api.0).success());
    assert!(collector.received().is_empty());
}
