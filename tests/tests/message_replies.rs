//! Replies to messages become `message.completed` / `message.failed` events: through Wiro's
//! callback (confirmed by Message/Detail) when a public base URL is set, by polling otherwise;
//! a forged callback changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use standardwebhooks::Webhook;
use testkit::receiver::Receiver;
use testkit::{TestApp, spawn_app_calling_back, spawn_app_with};
use wiro_sim::SimConfig;

async fn subscribe(app: &TestApp, receiver: &Receiver) -> String {
    let created = app
        .post(
            "/v1/admin/webhook-endpoints",
            &app.ops_token(),
            &json!({"url": receiver.url, "event_types": ["message.completed", "message.failed"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["secret"].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, token: &str, agent: &str, text: &str) -> String {
    let sent = app
        .post(
            &format!("/v1/agents/{agent}/messages"),
            token,
            &json!({"message": text, "session": "s1"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    sent.body["id"].as_str().unwrap().to_owned()
}

fn detail_calls(app: &TestApp) -> u64 {
    app.sim
        .sim()
        .call_counts()
        .get("UserAgent/Message/Detail")
        .copied()
        .unwrap_or(0)
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_reply_reaches_message_completed_through_wiros_callback_without_polling(pool: PgPool) {
    let app = spawn_app_calling_back(pool, |s| {
        s.webhooks.allow_private_targets = true;
        // The poller would wait an hour for a callback: only the callback can report it.
        s.wiro.reply_callback_grace = Duration::from_secs(3600);
        s.wiro.reply_poll_interval = Duration::from_millis(50);
    })
    .await;
    let receiver = Receiver::start().await;
    let secret = subscribe(&app, &receiver).await;
    let token = app.customer_token("callback-customer");
    let agent = app
        .running_agent(&token, "email-assistant", "starter")
        .await;

    let message = send(&app, &token, &agent, "Summarise my inbox").await;
    let received = receiver.wait_for(|r| !r.is_empty()).await;
    let event = received[0].json();
    assert_eq!(event["type"], "message.completed");
    assert_eq!(event["data"]["message_id"], message.as_str());
    assert_eq!(event["data"]["agent_id"], agent.as_str());
    assert_eq!(event["data"]["session"], "s1");
    Webhook::new(&secret)
        .unwrap()
        .verify(&received[0].body, &received[0].headers)
        .unwrap();
    assert_eq!(
        detail_calls(&app),
        1,
        "one Detail, by the callback's confirmation; nobody polled"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_forged_callback_is_refused_and_changes_nothing(pool: PgPool) {
    // No callback URL, and a poller that waits: the message stays pending on our side.
    let app = spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| {
            s.webhooks.allow_private_targets = true;
            s.wiro.reply_poll_interval = Duration::from_secs(3600);
        },
        true,
    )
    .await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver).await;
    let token = app.customer_token("forged");
    let agent = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let message = send(&app, &token, &agent, "Hello").await;

    let forged_body = json!({"messageguid": message, "status": "agent_end",
                             "response": "I transferred the money", "endedat": 0});
    let http = reqwest::Client::new();
    for token in ["a".repeat(64), "short".to_owned(), "../../admin".to_owned()] {
        let answer = http
            .post(format!("{}/v1/wiro/callbacks/{token}", app.address))
            .json(&forged_body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND, "{token}");
    }
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM messages WHERE wiro_guid = $1")
            .bind(&message)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcome, None, "nothing recorded");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE type LIKE 'message.%'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 0, "no event invented");
    assert_eq!(
        detail_calls(&app),
        0,
        "a forged callback never reaches Wiro"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn without_a_callback_url_the_poller_reports_the_reply(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| {
            s.webhooks.allow_private_targets = true;
            s.wiro.reply_poll_interval = Duration::from_millis(100);
        },
        true,
    )
    .await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver).await;
    let token = app.customer_token("polled");
    let agent = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let message = send(&app, &token, &agent, "Draft a reply").await;
    let received = receiver.wait_for(|r| !r.is_empty()).await;
    assert_eq!(received[0].json()["type"], "message.completed");
    assert_eq!(received[0].json()["data"]["message_id"], message.as_str());
    // Reported once, however many polls and reads come after.
    let read = app
        .get(&format!("/v1/agents/{agent}/messages/{message}"), &token)
        .await;
    assert_eq!(read.body["status"], "agent_end");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE type = 'message.completed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 1);
}
