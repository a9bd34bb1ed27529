//! A simulator keeps its world in a file: a new one loaded from it has the same accounts,
//! instances (still running), messages, charges and a clock that did not go back; a bad file is
//! refused with its reason.

mod common;

use std::time::Duration;

use common::*;
use wiro_client::models::{AgentStatus, MessageRef, SendMessageRequest};
use wiro_sim::{SimServer, Simulator};

fn state_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("wiro-sim-state-{}-{name}.json", std::process::id()))
}

#[tokio::test]
async fn a_restarted_simulator_resumes_from_its_state_file() {
    let path = state_path("resume");
    let _ = std::fs::remove_file(&path);
    let mut first = sim().await;
    first.keep_state(path.clone(), Duration::from_millis(50));
    let c = client(&first);
    let agent = running_seed(&c, "starter").await;
    first.sim().advance_days(3);
    let sent = c
        .send_message(&SendMessageRequest {
            useragentguid: agent.guid.clone(),
            message: "remember me".into(),
            sessionkey: None,
            callbackurl: None,
        })
        .await
        .unwrap();
    let (ledger, accounts, clock) = (
        first.sim().ledger(),
        first.sim().accounts(),
        first.sim().now(),
    );
    first.shutdown().await;
    assert!(path.exists(), "saved on shutdown");

    let restored = Simulator::new(wiro_sim::SimConfig::with_account(KEY, 1000.0));
    assert!(restored.load_state(&path).unwrap());
    assert!(restored.now() >= clock, "the clock never goes back");
    assert_eq!(restored.ledger().len(), ledger.len());
    assert_eq!(
        restored.accounts()[0].wallet,
        accounts[0].wallet,
        "the wallet is the saved one, not the configured 1000"
    );
    let second = SimServer::serve(restored, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let c = client(&second);
    let detail = c.detail(&agent.guid).await.unwrap();
    assert_eq!(detail.status, AgentStatus::Running);
    let message = c
        .message_detail(&MessageRef {
            messageguid: Some(sent.messageguid.clone()),
            agenttoken: None,
        })
        .await
        .unwrap();
    assert_eq!(message.content, "remember me");
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_missing_file_is_a_first_start_and_a_bad_one_is_refused_with_its_reason() {
    let path = state_path("bad");
    let _ = std::fs::remove_file(&path);
    let sim = Simulator::new(wiro_sim::SimConfig::with_account(KEY, 10.0));
    assert!(!sim.load_state(&path).unwrap(), "no file: nothing to load");
    std::fs::write(&path, b"{\"format\": 1, \"now\": \"yesterday\"}").unwrap();
    let error = sim.load_state(&path).unwrap_err();
    assert!(
        error.contains("is not a simulator state file") && error.contains("move it away"),
        "{error}"
    );
    std::fs::write(&path, serde_json::json!({"format": 99}).to_string()).unwrap();
    assert!(
        sim.load_state(&path)
            .unwrap_err()
            .contains("is not a simulator state file")
    );
    let _ = std::fs::remove_file(&path);
}
