//! Signed outbound webhooks, checked by a real receiver in the test process and verified with
//! the Standard Webhooks reference library (`standardwebhooks`), not with our own code.

use std::collections::BTreeSet;
use std::time::Duration;

use api::webhook_events::WebhookEvent;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use standardwebhooks::Webhook;
use testkit::receiver::{Received, Receiver};
use testkit::{TestApp, spawn_app_with};
use wiro_sim::SimConfig;

/// The app (and its worker) with local receivers allowed and a fast retry schedule.
async fn app_with_schedule(pool: PgPool, schedule: &[u64]) -> TestApp {
    let schedule: Vec<Duration> = schedule
        .iter()
        .map(|ms| Duration::from_millis(*ms))
        .collect();
    spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        move |s| {
            s.webhooks.allow_private_targets = true;
            s.webhooks.retry_schedule = schedule;
        },
        true,
    )
    .await
}

/// Registers `receiver` for `types` (all when `None`); returns the endpoint as created.
async fn subscribe(app: &TestApp, receiver: &Receiver, types: Option<&[&str]>) -> Value {
    let mut body = json!({"url": receiver.url, "description": "test receiver"});
    if let Some(types) = types {
        body["event_types"] = json!(types);
    }
    let created = app
        .post("/v1/admin/webhook-endpoints", &app.ops_token(), &body)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body
}

/// The body is a documented `WebhookEvent`: it reads into the schema, with the same fields.
fn assert_documented(request: &Received) {
    let body = request.json();
    let event: WebhookEvent = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("{e}: not a documented event: {body}"));
    let back = serde_json::to_value(&event).unwrap();
    let fields = |v: &Value| -> BTreeSet<String> {
        v["data"].as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(fields(&back), fields(&body), "{body}");
    assert_eq!(back["type"], body["type"]);
}

fn of_type<'a>(received: &'a [Received], kind: &str) -> Vec<&'a Received> {
    received
        .iter()
        .filter(|r| r.json()["type"] == kind)
        .collect()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn events_verify_with_the_reference_library_and_tampering_does_not(pool: PgPool) {
    let app = app_with_schedule(pool, &[100]).await;
    let receiver = Receiver::start().await;
    let endpoint = subscribe(&app, &receiver, None).await;
    let secret = endpoint["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["event_types"], Value::Null, "every type");
    let listed = app
        .get("/v1/admin/webhook-endpoints", &app.ops_token())
        .await;
    assert_eq!(listed.body["items"][0]["id"], endpoint["id"]);
    assert!(
        listed.body["items"][0].get("secret").is_none(),
        "the secret is shown only once"
    );

    let token = app.customer_token("hooked");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    receiver
        .wait_for(|r| !of_type(r, "agent.running").is_empty())
        .await;

    // The customer cancels: the subscription's event follows.
    let cancel = app
        .post(
            &format!("/v1/agents/{id}/subscription/cancel"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{:?}", cancel.body);
    let received = receiver
        .wait_for(|r| !of_type(r, "subscription.cancelled").is_empty())
        .await;
    let cancelled = of_type(&received, "subscription.cancelled")[0].json();
    assert_eq!(cancelled["data"]["source"], "customer");
    assert!(cancelled["data"]["cancels_at"].is_string());

    let wh = Webhook::new(secret).unwrap();
    for request in &received {
        wh.verify(&request.body, &request.headers)
            .unwrap_or_else(|e| panic!("{e}: {:?}", request.json()));
        assert_documented(request);
        assert!(request.header("webhook-id").starts_with("msg_"));
        assert_eq!(request.header("content-type"), "application/json");
    }
    let running = of_type(&received, "agent.running")[0];
    let event = running.json();
    assert_eq!(event["data"]["agent_id"], id.as_str());
    assert_eq!(event["data"]["customer"], "hooked");
    assert_eq!(event["data"]["template"], "email-assistant");
    assert!(event["timestamp"].is_string());
    // Every step of the order was reported, in order, ending in running.
    let steps: Vec<(String, String)> = of_type(&received, "agent.state_changed")
        .iter()
        .map(|r| {
            let data = &r.json()["data"];
            (
                data["from"].as_str().unwrap().to_owned(),
                data["to"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(steps.first().unwrap().0, "pending");
    assert_eq!(steps.last().unwrap().1, "running");
    for pair in steps.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "no step skipped: {steps:?}");
    }

    // A tampered body, a forged signature and an old timestamp do not verify.
    let mut tampered = running.body.to_vec();
    tampered[10] ^= 1;
    assert!(wh.verify(&tampered, &running.headers).is_err());
    let mut forged = running.headers.clone();
    forged.insert("webhook-signature", "v1,AAAA".parse().unwrap());
    assert!(wh.verify(&running.body, &forged).is_err());
    let old = chrono::Utc::now().timestamp() - 600;
    let mut stale = running.headers.clone();
    let signature = wh
        .sign(running.header("webhook-id"), old, &running.body)
        .unwrap();
    stale.insert("webhook-timestamp", old.to_string().parse().unwrap());
    stale.insert("webhook-signature", signature.parse().unwrap());
    assert!(
        wh.verify(&running.body, &stale).is_err(),
        "a replay from 10 minutes ago"
    );
    // Someone else's secret does not verify either.
    let other = Webhook::new(&domain::webhooks::new_secret()).unwrap();
    assert!(other.verify(&running.body, &running.headers).is_err());
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_receiver_failing_three_times_gets_the_event_once_more_under_the_same_id(pool: PgPool) {
    let app = app_with_schedule(pool, &[100, 100, 100, 100]).await;
    let receiver = Receiver::start().await;
    receiver.script(&[500, 500, 503]);
    subscribe(&app, &receiver, Some(&["agent.running"])).await;
    let token = app.customer_token("flaky-receiver");
    app.running_agent(&token, "email-assistant", "starter")
        .await;

    let received = receiver
        .wait_for(|r| r.iter().any(|r| r.answered == 200))
        .await;
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(received.len(), 4, "three failures, then one delivery");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one webhook-id: {ids:?}"
    );
    assert_eq!(
        received.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 500, 503, 200]
    );

    // The log shows every attempt, and the delivery is done (nothing more is scheduled).
    let log = app
        .get(
            &format!("/v1/admin/webhook-events/{}", ids[0]),
            &app.ops_token(),
        )
        .await;
    assert_eq!(log.status, StatusCode::OK, "{:?}", log.body);
    assert_eq!(log.body["type"], "agent.running");
    assert_eq!(log.body["deliveries"][0]["state"], "delivered");
    assert_eq!(log.body["deliveries"][0]["attempts"], 4);
    let statuses: Vec<i64> = log.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 503, 200]);
    assert_eq!(log.body["attempts"][3]["response"], "answered 200");

    // Replay: the same event, the same id, once more.
    let replay = app
        .post(
            &format!("/v1/admin/webhook-events/{}/replay", ids[0]),
            &app.ops_token(),
            &json!({}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{:?}", replay.body);
    assert_eq!(replay.body["queued"], 1);
    let again = receiver.wait_for(|r| r.len() == 5).await;
    assert_eq!(again[4].header("webhook-id"), ids[0]);
    assert_eq!(again[4].body, again[3].body, "the same bytes");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_committed_state_change_is_delivered_by_a_worker_started_later(pool: PgPool) {
    let mut app = app_with_schedule(pool, &[100]).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver, Some(&["agent.state_changed"])).await;
    let token = app.customer_token("restarts");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    receiver
        .wait_for(|r| r.iter().any(|r| r.json()["data"]["to"] == "running"))
        .await;

    // No worker: the customer's stop commits running → stopping, and its event with it.
    app.stop_worker().await;
    let stop = app
        .post(&format!("/v1/agents/{id}/stop"), &token, &json!({}))
        .await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{:?}", stop.body);
    let stopping = |r: &Received| r.json()["data"]["to"] == "stopping";
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
         WHERE d.state = 'pending' AND e.body::jsonb -> 'data' ->> 'to' = 'stopping'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        pending, 1,
        "written with the change, waiting for a dispatcher"
    );
    assert!(!receiver.received().iter().any(stopping));

    app.start_worker();
    let received = receiver
        .wait_for(|r| r.iter().any(|r| r.json()["data"]["to"] == "stopped"))
        .await;
    assert_eq!(received.iter().filter(|r| stopping(r)).count(), 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_endpoint_failing_for_the_whole_schedule_is_disabled_and_ops_are_alerted(pool: PgPool) {
    let app = app_with_schedule(pool, &[50, 50]).await;
    let receiver = Receiver::start().await;
    receiver.always(500);
    let endpoint = subscribe(&app, &receiver, Some(&["agent.running"])).await;
    let token = app.customer_token("dead-receiver");
    app.running_agent(&token, "email-assistant", "starter")
        .await;

    let id = endpoint["id"].as_str().unwrap();
    let disabled = loop {
        let now = app
            .get(
                &format!("/v1/admin/webhook-endpoints/{id}"),
                &app.ops_token(),
            )
            .await;
        if now.body["enabled"] == false {
            break now.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        disabled["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("retry schedule")
    );
    assert_eq!(
        receiver.received().len(),
        3,
        "the first attempt and two retries"
    );
    let alerts = app
        .get(
            "/v1/admin/alerts?kind=webhook_endpoint_disabled",
            &app.ops_token(),
        )
        .await;
    assert_eq!(alerts.body["items"].as_array().unwrap().len(), 1);

    // Ops turn it back on once the receiver is fixed; a replay then gets through.
    receiver.always(200);
    let enabled = app
        .patch(
            &format!("/v1/admin/webhook-endpoints/{id}"),
            &app.ops_token(),
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(enabled.body["enabled"], true);
    assert_eq!(enabled.body["disabled_reason"], Value::Null);
    let event = receiver.received()[0].header("webhook-id").to_owned();
    app.post(
        &format!("/v1/admin/webhook-events/{event}/replay"),
        &app.ops_token(),
        &json!({}),
    )
    .await;
    receiver
        .wait_for(|r| r.iter().any(|r| r.answered == 200))
        .await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn after_a_rotation_both_secrets_sign_during_the_grace_period(pool: PgPool) {
    let app = app_with_schedule(pool, &[100]).await;
    let receiver = Receiver::start().await;
    let endpoint = subscribe(&app, &receiver, Some(&["agent.running"])).await;
    let old_secret = endpoint["secret"].as_str().unwrap().to_owned();
    let id = endpoint["id"].as_str().unwrap();
    let rotated = app
        .post(
            &format!("/v1/admin/webhook-endpoints/{id}/rotate-secret"),
            &app.ops_token(),
            &json!({}),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new_secret = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    assert!(rotated.body["previous_secret_expires_at"].is_string());

    let token = app.customer_token("rotating");
    app.running_agent(&token, "email-assistant", "starter")
        .await;
    let received = receiver.wait_for(|r| !r.is_empty()).await;
    let request = &received[0];
    assert_eq!(request.header("webhook-signature").split(' ').count(), 2);
    for secret in [&old_secret, &new_secret] {
        Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .expect("both secrets verify during the grace period");
    }
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn private_targets_and_unknown_event_types_are_refused(pool: PgPool) {
    // The shipped default: private and loopback targets refused.
    let app = spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |_| {},
        false,
    )
    .await;
    let ops = app.ops_token();
    for (url, why) in [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.0.0.7/hook", "private"),
        (
            "https://169.254.169.254/latest",
            "link-local (cloud metadata)",
        ),
        ("https://[::1]/hook", "IPv6 loopback"),
        ("http://93.184.216.34/hook", "plain http"),
        (
            "https://user:pw@93.184.216.34/hook",
            "credentials in the URL",
        ),
        ("not a url", "not a URL"),
    ] {
        let refused = app
            .post("/v1/admin/webhook-endpoints", &ops, &json!({"url": url}))
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {:?}",
            refused.body
        );
        assert!(
            refused.body["detail"].as_str().unwrap().starts_with("url:"),
            "{why}"
        );
    }
    let unknown = app
        .post(
            "/v1/admin/webhook-endpoints",
            &ops,
            &json!({"url": "https://93.184.216.34/hook", "event_types": ["agent.exploded"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unknown.body["detail"]
            .as_str()
            .unwrap()
            .contains("agent.exploded")
    );
    let customer = app.customer_token("nosy");
    let denied = app
        .post(
            "/v1/admin/webhook-endpoints",
            &customer,
            &json!({"url": "https://93.184.216.34/hook"}),
        )
        .await;
    assert_eq!(
        denied.status,
        StatusCode::FORBIDDEN,
        "customers cannot add endpoints"
    );
    let listed = app.get("/v1/admin/webhook-endpoints", &ops).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was created");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_bulk_batch_reports_its_completion_once(pool: PgPool) {
    let app = app_with_schedule(pool, &[100]).await;
    let receiver = Receiver::start().await;
    let secret = subscribe(&app, &receiver, Some(&["batch.completed"])).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let batch = app
        .post(
            "/v1/admin/provisioning-batches",
            &app.ops_token(),
            &json!({"key": "webhook-batch", "items": [
                {"customer": "batch-a", "template": "email-assistant", "plan": "starter", "title": "A"},
                {"customer": "batch-b", "template": "email-assistant", "plan": "pro", "title": "B"},
                {"customer": "batch-c", "template": "instagram-manager", "plan": "starter", "title": "C"}
            ]}),
        )
        .await;
    assert!(batch.status.is_success(), "{:?}", batch.body);
    let received = receiver.wait_for(|r| !r.is_empty()).await;
    let event = received[0].json();
    assert_documented(&received[0]);
    Webhook::new(&secret)
        .unwrap()
        .verify(&received[0].body, &received[0].headers)
        .unwrap();
    assert_eq!(event["data"]["batch_id"], batch.body["id"]);
    assert_eq!(event["data"]["total"], 3);
    // Two run; the Instagram order waits for its credentials (the batch carried none).
    assert_eq!(event["data"]["counts"]["running"], 2, "{event}");
    assert_eq!(
        event["data"]["counts"]["awaiting_credentials"], 1,
        "{event}"
    );
    // Later steps of its agents do not complete it again.
    let a = app.customer_token("batch-a");
    let agents = app.get("/v1/agents", &a).await;
    let id = agents.body["items"][0]["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/agents/{id}/stop"), &a, &json!({}))
        .await;
    app.wait_for_state(&a, &id, "stopped").await;
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE type = 'batch.completed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn events_are_written_only_for_types_someone_listens_to(pool: PgPool) {
    let app = app_with_schedule(pool, &[100]).await;
    let count = |kind: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM webhook_events WHERE $1 = '' OR type = $1",
            )
            .bind(kind)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let token = app.customer_token("unheard");
    app.running_agent(&token, "email-assistant", "starter")
        .await;
    assert_eq!(count("").await, 0, "no endpoint: nothing written");

    let receiver = Receiver::start().await;
    subscribe(&app, &receiver, Some(&["agent.running"])).await;
    app.running_agent(&token, "email-assistant", "pro").await;
    receiver.wait_for(|r| !r.is_empty()).await;
    assert_eq!(count("agent.running").await, 1);
    assert_eq!(count("").await, 1, "only the subscribed type");
}
