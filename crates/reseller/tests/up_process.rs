//! `reseller up` as a new user runs it: ready, the printed token orders an agent and chats
//! with it, `reseller provision` bulk-orders from a CSV (twice, ordering once), SIGTERM stops
//! everything cleanly, and a restart finds the agent still running (the simulator's state
//! file) — or, with that file gone, failed within seconds and saying so.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::process::*;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn up_serves_the_api_with_its_printed_tokens_and_stops_cleanly_on_sigterm(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("reseller-up-{}", uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (mut up, out) = start_up(&dir, port, &pool, false);
    let customer = line_starting(&out, "export CUSTOMER_TOKEN=", Duration::from_secs(60))
        .replace("export CUSTOMER_TOKEN=", "");
    let ops = line_starting(&out, "export OPS_TOKEN=", Duration::from_secs(5))
        .replace("export OPS_TOKEN=", "");
    wait_ok(&format!("{base}/readyz"), Duration::from_secs(30)).await;

    let http = reqwest::Client::new();
    let order: Value = http
        .post(format!("{base}/v1/agents"))
        .bearer_auth(&customer)
        .json(
            &json!({"template": "instagram-manager", "plan": "starter", "title": "Up bot",
                      "credentials": testkit::instagram_credentials()}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().expect("an order id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut connected = false;
    loop {
        let agent: Value = http
            .get(format!("{base}/v1/agents/{id}"))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if agent["state"] == "running" {
            break;
        }
        if agent["state"] == "awaiting_connection" && !connected {
            // The demo allows redirects to localhost: connect Instagram as the customer would.
            let started: Value = http
                .post(format!("{base}/v1/agents/{id}/connections/instagram"))
                .bearer_auth(&customer)
                .json(&json!({"redirect_url": testkit::CONSENT_REDIRECT}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let back =
                testkit::consent(started["authorize_url"].as_str().expect("authorize_url")).await;
            assert_eq!(back["ig_connected"], "true");
            connected = true;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ran: {agent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    chat(&base, &customer, &id, "hello from up").await;

    // `reseller token` beside `up` signs with the development secret `up` generated: the bare
    // token on stdout, its expiry on stderr, and this API accepts it.
    let minted = std::process::Command::new(env!("CARGO_BIN_EXE_reseller"))
        .args([
            "token", "--sub", "tour-ops", "--role", "ops", "--ttl", "10m",
        ])
        .current_dir(&dir)
        .env_remove("RESELLER_AUTH__HS256_SECRET")
        .env_remove("RESELLER_CONFIG")
        .output()
        .unwrap();
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let beside = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    assert_eq!(beside.split('.').count(), 3, "a bare JWT: {beside}");
    assert!(String::from_utf8_lossy(&minted.stderr).contains("expires"));
    let ledger = reqwest::Client::new()
        .get(format!("{base}/v1/admin/ledger"))
        .bearer_auth(&beside)
        .send()
        .await
        .unwrap();
    assert_eq!(ledger.status(), 200);

    // Bulk orders from a CSV through this API, twice: the second run orders nothing.
    let csv = dir.join("customers.csv");
    let mut text = String::from("customer,template,plan,title,credentials\n");
    for i in 0..5 {
        text.push_str(&format!("csv-{i},email-assistant,starter,CSV {i},\n"));
    }
    std::fs::write(&csv, text).unwrap();
    for run in ["submitted", "already submitted"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_reseller"))
            .args([
                "provision",
                "--file",
                csv.to_str().unwrap(),
                "--api",
                &base,
                "--token",
                &ops,
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("batch 1 of 5 orders {run}")),
            "{stdout}"
        );
        assert!(
            stdout.contains("settled 5/5 (0 failed)"),
            "plain progress lines off a terminal: {stdout}"
        );
    }
    let agents: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(agents, 6, "one from the API, five from the CSV, none twice");

    let status = terminate(&mut up.0);
    assert!(status.success(), "up exits 0 on SIGTERM, got {status}");

    // Restarted, the demo's Wiro still has the agent (.reseller/wiro-sim.json): it runs and
    // answers, and the tokens printed before still work.
    assert!(dir.join(".reseller/wiro-sim.json").exists());
    let (mut up, _out) = start_up(&dir, port, &pool, true);
    wait_ok(&format!("{base}/readyz"), Duration::from_secs(30)).await;
    assert_eq!(agent(&base, &customer, &id).await["state"], "running");
    chat(&base, &customer, &id, "still there after a restart?").await;
    assert!(terminate(&mut up.0).success());

    // Without the state file the agents are gone upstream: the reconciliation every worker
    // runs at start marks them failed within seconds, and a message says what happened.
    std::fs::remove_file(dir.join(".reseller/wiro-sim.json")).unwrap();
    let (mut up, _out) = start_up(&dir, port, &pool, true);
    wait_ok(&format!("{base}/readyz"), Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let view = agent(&base, &customer, &id).await;
        if view["state"] == "failed" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reconciled at start: {view}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = reqwest::Client::new()
        .post(format!("{base}/v1/agents/{id}/messages"))
        .bearer_auth(&customer)
        .json(&json!({"message": "hello?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 502);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "upstream_instance_missing", "{problem}");
    assert!(terminate(&mut up.0).success());
    let _ = std::fs::remove_dir_all(dir);
}

/// Starts `reseller up` in `dir` on `port`, stdout piped; `schedules` on or off.
fn start_up(
    dir: &std::path::Path,
    port: u16,
    pool: &PgPool,
    schedules: bool,
) -> (Guard, std::sync::mpsc::Receiver<String>) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_reseller"));
    command
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--sim-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .env("DATABASE_URL", database_url(pool))
        .env("RUST_LOG", "warn")
        .env("RESELLER_SCHEDULES__ENABLED", schedules.to_string())
        .env("RESELLER_API__METRICS_LISTEN", "127.0.0.1:0")
        .env_remove("WIRO_API_KEY")
        .env_remove("RESELLER_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let mut up = Guard(command.spawn().unwrap());
    let out = lines(up.0.stdout.take().unwrap());
    (up, out)
}

async fn agent(base: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/v1/agents/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sends `text` and waits for the agent's answer, which echoes it.
async fn chat(base: &str, token: &str, id: &str, text: &str) {
    let http = reqwest::Client::new();
    let sent: Value = http
        .post(format!("{base}/v1/agents/{id}/messages"))
        .bearer_auth(token)
        .json(&json!({"message": text}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reply: Value = http
        .get(format!(
            "{base}/v1/agents/{id}/messages/{}?wait=15",
            sent["id"]
                .as_str()
                .unwrap_or_else(|| panic!("not sent: {sent}"))
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["status"], "agent_end", "{reply}");
    assert!(
        reply["response"].as_str().unwrap().contains(text),
        "{reply}"
    );
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
