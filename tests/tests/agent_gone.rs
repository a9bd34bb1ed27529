//! Chatting with an agent that is not running, or that Wiro no longer has, says which — never
//! "message not found" — and an agent gone upstream is reconciled (failed, ops alerted) at once.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_message_to_a_stopped_agent_is_409_agent_not_running(pool: PgPool) {
    let app = testkit::spawn_app(pool).await;
    let token = app.customer_token("stopped-chat");
    let agent = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let stop = app
        .post(&format!("/v1/agents/{agent}/stop"), &token, &json!({}))
        .await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{:?}", stop.body);
    app.wait_for_state(&token, &agent, "stopped").await;

    let sent = app
        .post(
            &format!("/v1/agents/{agent}/messages"),
            &token,
            &json!({"message": "are you there?"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CONFLICT, "{:?}", sent.body);
    assert_eq!(sent.code(), "agent_not_running");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_message_to_an_agent_gone_upstream_is_502_and_reconciles_it(pool: PgPool) {
    let app = testkit::spawn_app(pool).await;
    let token = app.customer_token("gone-chat");
    let agent = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let view = app.get(&format!("/v1/agents/{agent}"), &token).await;
    let guid = view.body["wiro_guid"].as_str().unwrap().to_owned();
    app.sim.sim().delete_instance(&guid).unwrap();

    let sent = app
        .post(
            &format!("/v1/agents/{agent}/messages"),
            &token,
            &json!({"message": "hello?"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::BAD_GATEWAY, "{:?}", sent.body);
    assert_eq!(sent.code(), "upstream_instance_missing");
    assert!(
        !sent.body.to_string().contains(&guid),
        "no upstream detail for customers: {:?}",
        sent.body
    );

    // The reconciliation it asked for marks the agent failed and alerts ops, without a tick.
    let failed = app.wait_for_state(&token, &agent, "failed").await;
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer exists at Wiro")),
        "{failed}"
    );
    let alerts = app
        .get("/v1/admin/alerts?kind=upstream_missing", &app.ops_token())
        .await;
    assert_eq!(alerts.status, StatusCode::OK);
    assert_eq!(
        alerts.body["items"].as_array().unwrap().len(),
        1,
        "{:?}",
        alerts.body
    );
}
