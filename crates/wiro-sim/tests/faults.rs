//! Fault injection as the client sees it: "applied then dropped" is an unknown outcome and is
//! never retried; read-only calls retry through 5xx bursts; 429 is a refusal.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wiro_client::models::{AgentListRequest, DeployRequest};
use wiro_client::{Error, Outcome};
use wiro_sim::{FaultMode, FaultSpec};

fn fault(endpoint: &str, mode: FaultMode, status: Option<u16>, count: Option<u64>) -> FaultSpec {
    FaultSpec {
        endpoint: endpoint.into(),
        mode,
        status,
        latency_ms: None,
        probability: None,
        count,
        rate_per_s: None,
    }
}

#[tokio::test]
async fn a_deploy_applied_but_dropped_is_unknown_not_retried_and_charged_once() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(fault(
            "UserAgent/Deploy",
            FaultMode::DropResponse,
            None,
            Some(1),
        ))
        .unwrap();
    let err = c
        .deploy(&DeployRequest::prepaid(SEED_GUID, "order-42", "starter"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), Outcome::Unknown, "{err:?}");
    assert!(
        matches!(err, Error::Transport { .. } | Error::Timeout { .. }),
        "{err:?}"
    );
    assert_eq!(
        server.sim().call_counts()["UserAgent/Deploy"],
        1,
        "never retried"
    );
    // Upstream did it: one instance, one charge.
    let instances = server.sim().instances();
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].title, "order-42");
    assert_eq!(server.sim().ledger().len(), 1);
}

#[tokio::test]
async fn read_only_calls_retry_through_an_injected_5xx_burst() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(fault("Agent/List", FaultMode::Error, Some(503), Some(2)))
        .unwrap();
    server
        .sim()
        .add_fault(fault(
            "UserAgent/Detail",
            FaultMode::Error,
            Some(502),
            Some(3),
        ))
        .unwrap();
    let page = c.list_agents(&AgentListRequest::default()).await.unwrap();
    assert!(!page.agents.is_empty());
    assert_eq!(server.sim().call_counts()["Agent/List"], 3);
    let agent = deploy_seed(&c, "starter").await;
    assert!(c.detail(&agent.guid).await.is_ok());
    assert_eq!(server.sim().call_counts()["UserAgent/Detail"], 4);
}

#[tokio::test]
async fn a_5xx_on_deploy_is_unknown_and_a_429_is_not_applied_neither_is_retried() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(fault(
            "UserAgent/Deploy",
            FaultMode::Error,
            Some(503),
            Some(1),
        ))
        .unwrap();
    let err = c
        .deploy(&DeployRequest::prepaid(SEED_GUID, "x", "starter"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { status: 503, .. }));
    assert_eq!(err.outcome(), Outcome::Unknown);
    server
        .sim()
        .add_fault(fault(
            "UserAgent/Deploy",
            FaultMode::Error,
            Some(429),
            Some(1),
        ))
        .unwrap();
    let err = c
        .deploy(&DeployRequest::prepaid(SEED_GUID, "x", "starter"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }));
    assert_eq!(err.outcome(), Outcome::NotApplied);
    assert_eq!(server.sim().call_counts()["UserAgent/Deploy"], 2);
    assert!(server.sim().ledger().is_empty());
}

#[tokio::test]
async fn a_read_only_call_gives_up_after_its_attempt_budget() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(fault("Agent/List", FaultMode::Error, Some(500), None))
        .unwrap();
    let err = c
        .list_agents(&AgentListRequest::default())
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(server.sim().call_counts()["Agent/List"], 4);
}

#[tokio::test]
async fn latency_is_added_to_every_call_of_a_wildcard_rule() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(FaultSpec {
            latency_ms: Some(150),
            ..fault("*", FaultMode::Latency, None, None)
        })
        .unwrap();
    let started = Instant::now();
    c.list_agents(&AgentListRequest::default()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_probability_of_zero_never_fires_and_one_always_fires() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(FaultSpec {
            probability: Some(0.0),
            ..fault("Agent/List", FaultMode::Error, Some(500), None)
        })
        .unwrap();
    for _ in 0..5 {
        c.list_agents(&AgentListRequest::default()).await.unwrap();
    }
    server.sim().clear_faults();
    server
        .sim()
        .add_fault(FaultSpec {
            probability: Some(1.0),
            ..fault("Agent/List", FaultMode::Error, Some(500), None)
        })
        .unwrap();
    assert!(c.list_agents(&AgentListRequest::default()).await.is_err());
}

/// Polls until `check` holds (fails after 5 s).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_late_apply_drops_the_answer_and_applies_the_deploy_later() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(FaultSpec {
            latency_ms: Some(300),
            ..fault("UserAgent/Deploy", FaultMode::LateApply, None, Some(1))
        })
        .unwrap();
    let err = c
        .deploy(&DeployRequest::prepaid(SEED_GUID, "late one", "starter"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), Outcome::Unknown, "{err:?}");
    // Right after the lost answer nothing exists upstream yet...
    assert!(server.sim().instances().is_empty());
    assert!(server.sim().ledger().is_empty());
    // ...and then it does: once.
    eventually("the late Deploy applies", || {
        server.sim().instances().len() == 1
    })
    .await;
    assert_eq!(server.sim().ledger().len(), 1);
    assert_eq!(server.sim().call_counts()["UserAgent/Deploy"], 1);
}

#[tokio::test]
async fn a_list_lag_hides_young_instances_from_my_agents_but_not_from_detail() {
    let server = sim().await;
    let c = client(&server);
    server
        .sim()
        .add_fault(FaultSpec {
            latency_ms: Some(400),
            ..fault("UserAgent/MyAgents", FaultMode::ListLag, None, None)
        })
        .unwrap();
    let agent = deploy_seed(&c, "starter").await;
    assert!(c.my_agents(&Default::default()).await.unwrap().is_empty());
    assert!(c.detail(&agent.guid).await.is_ok());
    tokio::time::sleep(Duration::from_millis(450)).await;
    let listed = c.my_agents(&Default::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].guid, agent.guid);
}

#[tokio::test]
async fn a_client_past_its_deadline_sends_nothing_and_says_so() {
    let server = sim().await;
    let c = client(&server).until(tokio::time::Instant::now());
    let err = c
        .deploy(&DeployRequest::prepaid(SEED_GUID, "too late", "starter"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotSent { .. }), "{err:?}");
    assert_eq!(err.outcome(), Outcome::NotApplied);
    assert!(!server.sim().call_counts().contains_key("UserAgent/Deploy"));
    assert!(server.sim().ledger().is_empty());
}

#[tokio::test]
async fn a_deadline_bounds_the_whole_call_and_a_late_answer_is_in_doubt() {
    let server = sim().await;
    server
        .sim()
        .add_fault(FaultSpec {
            latency_ms: Some(1_000),
            ..fault("UserAgent/Deploy", FaultMode::StallResponse, None, Some(1))
        })
        .unwrap();
    let started = Instant::now();
    let c = client(&server).until(tokio::time::Instant::now() + Duration::from_millis(300));
    let err = c
        .deploy(&DeployRequest::prepaid(SEED_GUID, "slow", "starter"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(err.outcome(), Outcome::Unknown);
    assert_eq!(server.sim().ledger().len(), 1, "Wiro did the work");
}

#[tokio::test]
async fn an_answer_larger_than_the_cap_is_abandoned_not_buffered() {
    let server = sim().await;
    let mut config =
        wiro_client::ClientConfig::new(&server.base_url(), None).expect("client config");
    config.max_response_bytes = 256;
    let capped = wiro_client::Client::new(config).unwrap();
    let err = capped
        .list_agents(&AgentListRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Decode { reason, .. } if reason.contains("larger than the 256-byte limit")),
        "{err:?}"
    );
    // The same call under the default cap reads the whole catalog.
    let whole = client(&server)
        .list_agents(&AgentListRequest::default())
        .await
        .unwrap();
    assert!(!whole.agents.is_empty());
}
