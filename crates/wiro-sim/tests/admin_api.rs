//! The simulator's admin HTTP API and its command line.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Value, json};

async fn admin(
    server: &wiro_sim::SimServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}{path}", server.admin_url()));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn faults_clock_wallets_and_the_ledger_are_driven_over_http() {
    let server = sim().await;
    let c = client(&server);
    use reqwest::Method;
    let (status, body) = admin(
        &server,
        Method::POST,
        "/faults",
        Some(json!({
            "endpoint": "UserAgent/Deploy", "mode": "drop_response", "count": 1
        })),
    )
    .await;
    assert_eq!((status, body["id"].as_u64().is_some()), (200, true));
    let (_, rules) = admin(&server, Method::GET, "/faults", None).await;
    assert_eq!(rules[0]["endpoint"], "UserAgent/Deploy");
    assert!(
        c.deploy(&wiro_client::models::DeployRequest::prepaid(
            SEED_GUID, "t", "starter"
        ))
        .await
        .is_err()
    );
    let (_, ledger) = admin(&server, Method::GET, "/ledger", None).await;
    assert_eq!(ledger[0]["kind"], "deploy");
    assert_eq!(ledger[0]["amount"], 9.0);
    assert_eq!(ledger[0]["account"], KEY);
    assert!(ledger[0]["instance_guid"].is_string() && ledger[0]["at"].is_number());

    let (status, _) = admin(
        &server,
        Method::POST,
        &format!("/accounts/{KEY}/wallet"),
        Some(json!({"balance": 500})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, accounts) = admin(&server, Method::GET, "/accounts", None).await;
    assert_eq!(accounts[0]["wallet"], 500.0);

    let (_, before) = admin(&server, Method::GET, "/clock", None).await;
    let (_, after) = admin(
        &server,
        Method::POST,
        "/clock/advance",
        Some(json!({"days": 30})),
    )
    .await;
    assert!(after["now"].as_i64().unwrap() - before["now"].as_i64().unwrap() >= 30 * 86_400);
    let (_, ledger) = admin(&server, Method::GET, "/ledger", None).await;
    assert_eq!(
        ledger.as_array().unwrap().len(),
        2,
        "the period end renewed from the wallet"
    );

    let (status, _) = admin(&server, Method::DELETE, "/faults", None).await;
    assert_eq!(status, 200);
    let (_, rules) = admin(&server, Method::GET, "/faults", None).await;
    assert_eq!(rules, json!([]));
}

#[tokio::test]
async fn bad_admin_input_is_refused_with_the_field_named() {
    let server = sim().await;
    use reqwest::Method;
    let (status, body) = admin(
        &server,
        Method::POST,
        "/faults",
        Some(json!({
            "endpoint": "*", "mode": "error", "probability": 3
        })),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("probability"),
        "{body}"
    );
    let (status, body) = admin(
        &server,
        Method::POST,
        "/faults",
        Some(json!({"endpoint": "*", "mode": "explode"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("mode"), "{body}");
    let (status, _) = admin(
        &server,
        Method::POST,
        "/accounts/nobody/wallet",
        Some(json!({"balance": 5})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = admin(
        &server,
        Method::POST,
        &format!("/accounts/{KEY}/wallet"),
        Some(json!({"balance": -5})),
    )
    .await;
    assert_eq!(status, 400);
}

#[test]
fn the_binary_prints_where_it_listens_and_serves_the_catalog() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wiro-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "k1",
            "--api-key",
            "k2",
            "--wallet",
            "250",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    // Keep the pipe open until the child is killed, so its later lines have a reader.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    let base = first
        .trim()
        .strip_prefix("wiro-sim listening on ")
        .expect(&first)
        .to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listed: Value = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/v1/Agent/List"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let accounts: Value = runtime.block_on(async {
        reqwest::get(format!("{base}/admin/accounts"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    child.kill().unwrap();
    let _ = child.wait();
    drop(stdout);
    assert_eq!(listed["result"], true);
    assert_eq!(accounts.as_array().unwrap().len(), 2);
    assert_eq!(accounts[1]["wallet"], 250.0);
}

#[test]
fn a_bad_catalog_file_stops_the_binary_with_the_file_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_wiro-sim"))
        .args(["--api-key", "k", "--catalog", "/nonexistent/catalog.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/catalog.json"), "{stderr}");
}
