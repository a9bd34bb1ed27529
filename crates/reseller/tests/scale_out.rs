//! Two `api` and two `worker` processes on one database, with the simulator as its own
//! process: 200 orders through both APIs end as 200 instances, none twice, and the metrics
//! each process exposes (valid Prometheus text) add up.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::process::*;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn two_apis_and_two_workers_provision_two_hundred_orders_once_each(pool: PgPool) {
    domain::setup_job_queue(&pool).await.unwrap();
    let sim_port = free_port();
    let mut sim = Guard(spawn(
        env!("CARGO_BIN_EXE_reseller"),
        &[
            "sim",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--api-key",
            "scale-key",
            "--wallet",
            "100000",
            "--start-delay-ms",
            "50",
            "--stop-delay-ms",
            "20",
            "--message-delay-ms",
            "20",
        ],
        &[],
    ));
    let sim_out = lines(sim.0.stdout.take().unwrap());
    line_starting(&sim_out, "wiro-sim listening on", Duration::from_secs(30));

    let key = domain::sealed::Sealer::generate_key();
    let jwt_secret = domain::sealed::Sealer::generate_key();
    let common_env = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("DATABASE_URL", database_url(&pool)),
            ("WIRO_BASE_URL", format!("http://127.0.0.1:{sim_port}/v1")),
            ("WIRO_API_KEY", "scale-key".to_owned()),
            ("RESELLER_SECURITY__CREDENTIALS_KEY", key.clone()),
            ("RESELLER_AUTH__HS256_SECRET", jwt_secret.clone()),
            ("RESELLER_SCHEDULES__ENABLED", "false".to_owned()),
            ("RESELLER_WORKER__HEARTBEAT_INTERVAL", "1s".to_owned()),
            ("RESELLER_WORKER__POLL_INTERVAL", "200ms".to_owned()),
            ("RESELLER_API__WORKERS", "2".to_owned()),
        ];
        env.extend(extra);
        env
    };
    let api_ports = [free_port(), free_port()];
    let api_metric_ports = [free_port(), free_port()];
    let metric_ports = [free_port(), free_port()];
    let mut children = Vec::new();
    for (port, metrics) in api_ports.iter().zip(api_metric_ports) {
        children.push(Guard(spawn(
            env!("CARGO_BIN_EXE_reseller"),
            &["api"],
            &common_env(vec![
                ("RESELLER_API__LISTEN", format!("127.0.0.1:{port}")),
                (
                    "RESELLER_API__METRICS_LISTEN",
                    format!("127.0.0.1:{metrics}"),
                ),
            ]),
        )));
    }
    for port in metric_ports {
        children.push(Guard(spawn(
            env!("CARGO_BIN_EXE_reseller"),
            &["worker"],
            &common_env(vec![(
                "RESELLER_WORKER__METRICS_LISTEN",
                format!("127.0.0.1:{port}"),
            )]),
        )));
    }
    for port in api_ports
        .iter()
        .chain(&api_metric_ports)
        .chain(&metric_ports)
    {
        wait_ok(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(60),
        )
        .await;
    }

    let mut settings = domain::Settings::defaults().unwrap();
    settings.auth.hs256_secret = secrecy::SecretString::from(jwt_secret.clone());
    let ops = api::auth::mint(&settings, "scale-ops", Some("ops")).unwrap();
    let http = reqwest::Client::new();
    let mut batches = Vec::new();
    for n in 0..4 {
        let port = api_ports[n % 2];
        let items: Vec<Value> = (0..50)
            .map(|i| json!({"customer": format!("scale-{n}-{i}"), "template": "email-assistant", "plan": "starter",
                            "title": format!("Scale {n}/{i}")}))
            .collect();
        let response = http
            .post(format!(
                "http://127.0.0.1:{port}/v1/admin/provisioning-batches"
            ))
            .bearer_auth(&ops)
            .json(&json!({"key": format!("scale-{n}"), "items": items}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        batches.push(body["id"].as_str().unwrap().to_owned());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = 'running'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if running == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {running}/200 running"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let upstream: Value = reqwest::get(format!("http://127.0.0.1:{sim_port}/admin/agents"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        upstream.as_array().unwrap().len(),
        200,
        "0 duplicates upstream"
    );
    let calls: Value = reqwest::get(format!("http://127.0.0.1:{sim_port}/admin/calls"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["UserAgent/Deploy"], 200);

    // Metrics: valid exposition on every process, and per-process counters add up.
    let mut api_batches = 0.0;
    for port in api_metric_ports {
        let samples = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
        api_batches += sum(
            &samples,
            "http_requests_total",
            &[
                ("route", "/v1/admin/provisioning-batches"),
                ("method", "POST"),
                ("status", "201"),
            ],
        );
        assert_eq!(sum(&samples, "instances", &[("state", "running")]), 200.0);
    }
    assert_eq!(
        api_batches, 4.0,
        "each batch was counted once, by the process that served it"
    );
    let mut deploys = 0.0;
    let mut jobs = 0.0;
    for port in metric_ports {
        let samples = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
        deploys += sum(
            &samples,
            "upstream_calls_total",
            &[("endpoint", "UserAgent/Deploy"), ("outcome", "ok")],
        );
        jobs += sum(
            &samples,
            "jobs_total",
            &[("queue", "provision-bulk-chunk"), ("outcome", "ok")],
        );
        assert!(
            sum(
                &samples,
                "job_duration_seconds_count",
                &[("queue", "provision-bulk-chunk")]
            ) > 0.0,
            "each worker ran chunks of the batches"
        );
    }
    assert_eq!(
        deploys, 200.0,
        "the workers' Deploy counts add up to the simulator's"
    );
    // 4 batches of 50 in chunks of BULK_CHUNK, each chunk run at least once.
    let chunks = 4 * 50_usize.div_ceil(domain::jobs::BULK_CHUNK);
    assert!(jobs >= chunks as f64, "{jobs} chunk jobs, {chunks} chunks");

    // The two APIs share the request rates: each counts itself and the other (the workers
    // take no part) and, stopped, hands its part back.
    let replicas =
        || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM api_replicas").fetch_one(&pool);
    assert_eq!(replicas().await.unwrap(), 2);
    for child in &mut children {
        let status = terminate(&mut child.0);
        assert!(status.success(), "graceful exit on SIGTERM, got {status}");
    }
    assert_eq!(
        replicas().await.unwrap(),
        0,
        "each API left the count as it stopped"
    );
    terminate(&mut sim.0);
}
