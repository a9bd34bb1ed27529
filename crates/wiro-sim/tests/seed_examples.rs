//! The overview's own curl and Python examples, run against the simulator with only the base
//! URL, the key and the placeholder instance guid replaced.

mod common;

use common::*;
use serde_json::Value;
use wiro_sim::{Delays, SimConfig, SimServer};

const SEED_BASE: &str = "https://api.wiro.ai/v1";
const PLACEHOLDER_GUID: &str = "f8e7d6c5-b4a3-2190-fedc-ba0987654321";

/// Zero delays: the Python example polls every 5 s, and Running is reached at once.
async fn instant_sim() -> SimServer {
    let mut config = SimConfig::with_account(KEY, 1000.0);
    config.delays = Delays::uniform(0);
    SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn fixture(name: &str, server: &SimServer, guid: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("{}/tests/seed/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace(SEED_BASE, &server.base_url())
        .replace("YOUR_API_KEY", KEY)
        .replace(PLACEHOLDER_GUID, guid);
    let path = std::env::temp_dir().join(format!("wiro-seed-{}-{name}", uuid::Uuid::new_v4()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn the_python_example_runs_unchanged_to_running_and_stopping() {
    let server = instant_sim().await;
    let script = fixture("example.py", &server, PLACEHOLDER_GUID);
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .output()
        .await
        .expect("python3 with requests is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Instagram Manager (instagram-manager)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Credentials needed: ['instagram', 'openai']"),
        "{stdout}"
    );
    assert!(stdout.contains("Agent is running!"), "{stdout}");
    assert!(stdout.contains("My Instagram Bot - status: 4"), "{stdout}");
    let instances = server.sim().instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(
        instances[0].status, 0,
        "the final Stop was applied (zero delays: Stopped at once)"
    );
    let _ = std::fs::remove_file(script);
}

#[tokio::test]
async fn the_curl_examples_get_the_documented_answers_in_order() {
    let server = instant_sim().await;
    let c = client(&server);
    let mine = deploy_seed(&c, "starter").await; // the instance the examples' guid stands for
    let script = fixture("curl_examples.sh", &server, &mine.guid);
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(answers.len(), 12);
    let ok = |i: usize| assert_eq!(answers[i]["result"], true, "answer {i}: {}", answers[i]);
    let refused = |i: usize, msg: &str| {
        assert_eq!(answers[i]["result"], false, "answer {i}");
        assert_eq!(answers[i]["errors"][0]["message"], msg, "answer {i}");
    };
    ok(0);
    assert!(answers[0]["agents"].as_array().unwrap().len() <= 10);
    ok(1);
    assert_eq!(answers[1]["agents"][0]["slug"], "instagram-manager");
    ok(2);
    assert_eq!(
        answers[2]["useragents"][0]["pinned"], true,
        "pinned by default"
    );
    ok(3);
    assert_eq!(answers[3]["useragents"][0]["pinned"], false);
    ok(4);
    assert!(answers[4]["cancelsAt"].is_number());
    ok(5);
    assert_eq!(answers[5]["plan"], "agent-pro");
    ok(6);
    assert_eq!(
        answers[6]["action"], "undo-cancel",
        "renew after cancel undoes it"
    );
    ok(7);
    assert!(answers[7]["url"].is_null());
    refused(
        8,
        "Agent setup is not complete. Please fill in your credentials before starting.",
    );
    ok(9);
    assert_eq!(answers[9]["useragents"][0]["guid"], mine.guid.as_str());
    ok(10);
    assert_eq!(
        answers[10]["useragents"][0]["status"], 0,
        "credentials complete: 6 → 0"
    );
    refused(11, "Agent is already stopped");
    let _ = std::fs::remove_file(script);
}
