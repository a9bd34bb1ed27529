//! Shared setup for the conformance tests: an in-process simulator with fast timings and a
//! client pointed at it.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use wiro_client::models::{AgentStatus, DeployRequest, UserAgent};
use wiro_client::{Auth, Client, ClientConfig, RetryPolicy};
use wiro_sim::{Delays, SimConfig, SimServer};

pub const KEY: &str = "test-key";
pub const SEED_GUID: &str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890";
/// Every simulated transition takes this long in these tests.
pub const STEP_MS: i64 = 20;

/// A simulator with one funded account and 20 ms transitions.
pub async fn sim() -> SimServer {
    sim_with(SimConfig::with_account(KEY, 1000.0)).await
}

pub async fn sim_with(mut config: SimConfig) -> SimServer {
    config.delays = Delays::uniform(STEP_MS);
    config.webhook_retry_delay = Duration::from_millis(50);
    SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("simulator starts")
}

pub fn client_for(server: &SimServer, auth: Option<Auth>) -> Client {
    let mut config = ClientConfig::new(&server.base_url(), auth).unwrap();
    config.timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    Client::new(config).unwrap()
}

pub fn client(server: &SimServer) -> Client {
    client_for(server, Some(Auth::ApiKey(KEY.to_owned().into())))
}

/// Polls Detail until `status` (the simulator moves statuses on its own clock).
pub async fn wait_for_status(client: &Client, guid: &str, status: AgentStatus) -> UserAgent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let detail = client.detail(guid).await.expect("detail");
        if detail.status == status {
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{guid} stuck in status {} waiting for {status}",
            detail.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Deploys the seed template (prepaid starter) and returns the instance.
pub async fn deploy_seed(client: &Client, plan: &str) -> UserAgent {
    client
        .deploy(&DeployRequest::prepaid(SEED_GUID, "Conformance bot", plan))
        .await
        .expect("deploy")
}

/// Sets the seed template's one required credential.
pub async fn complete_setup(client: &Client, guid: &str) -> UserAgent {
    use wiro_client::models::{CredentialValues, UpdateConfiguration, UpdateRequest};
    let mut fields = std::collections::BTreeMap::new();
    fields.insert("authMethod".to_owned(), serde_json::json!("wiro"));
    client
        .update(&UpdateRequest {
            guid: guid.to_owned(),
            configuration: Some(UpdateConfiguration {
                credentials: CredentialValues([("instagram".to_owned(), fields)].into()),
                custom_skills: vec![],
            }),
            ..Default::default()
        })
        .await
        .expect("update")
}

/// Deploys, configures and starts the seed template, waiting for Running.
pub async fn running_seed(client: &Client, plan: &str) -> UserAgent {
    let agent = deploy_seed(client, plan).await;
    complete_setup(client, &agent.guid).await;
    client.start(&agent.guid).await.expect("start");
    wait_for_status(client, &agent.guid, AgentStatus::Running).await
}
