//! A customer's whole journey, and ops bulk-ordering, through the real API.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use testkit::spawn_app;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_customer_orders_an_agent_chats_with_it_sets_credentials_and_stops_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-journey");

    let catalog = app.get("/v1/catalog", &token).await;
    assert_eq!(catalog.status, StatusCode::OK);
    assert!(
        catalog
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["slug"] == "instagram-manager")
    );
    let template = app.get("/v1/catalog/instagram-manager", &token).await;
    assert_eq!(template.body["credentials"][0]["group"], "instagram");
    assert_eq!(template.body["plans"][0]["price_minor"], 900);
    assert_eq!(template.body["plans"][0]["currency"], "USD");

    let agent = app.order_instagram(&token).await;
    assert_eq!(agent["state"], "pending");
    assert_eq!(agent["customer"], "cust-journey");
    let id = agent["id"].as_str().unwrap().to_owned();
    let running = app.wait_for_state(&token, &id, "running").await;
    assert_eq!(running["wiro_status"], 4);
    assert!(running["wiro_guid"].is_string());
    assert_eq!(running["subscription"]["status"], "active");
    assert_eq!(running["credits"]["monthly"], 1000);

    let sent = app
        .post(
            &format!("/v1/agents/{id}/messages"),
            &token,
            &json!({"message": "Write a caption", "session": "s1"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let message_id = sent.body["id"].as_str().unwrap().to_owned();
    let read = app
        .get(
            &format!("/v1/agents/{id}/messages/{message_id}?wait=10"),
            &token,
        )
        .await;
    assert_eq!(read.body["status"], "agent_end", "{:?}", read.body);
    assert!(
        read.body["response"]
            .as_str()
            .unwrap()
            .contains("Write a caption")
    );
    let sessions = app.get(&format!("/v1/agents/{id}/sessions"), &token).await;
    assert_eq!(sessions.body[0]["session"], "s1");
    let history = app
        .get(&format!("/v1/agents/{id}/sessions/s1/messages"), &token)
        .await;
    assert_eq!(history.body["items"][0]["id"], message_id.as_str());

    // New credentials on a running agent: Wiro restarts it, and it comes back.
    let patched = app
        .patch(
            &format!("/v1/agents/{id}"),
            &token,
            &json!({"title": "Renamed bot", "credentials": {"instagram": {"authMethod": "own", "appId": "app-1", "appSecret": "secret-1"}}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{:?}", patched.body);
    assert_eq!(patched.body["title"], "Renamed bot");
    app.wait_for_state(&token, &id, "running").await;
    let upstream = app.sim.sim().instances();
    assert_eq!(
        upstream[0].title, "Renamed bot",
        "the customer's title, untouched"
    );

    let stopped = app
        .post(&format!("/v1/agents/{id}/stop"), &token, &json!({}))
        .await;
    assert_eq!(stopped.status, StatusCode::ACCEPTED);
    let stopped = app.wait_for_state(&token, &id, "stopped").await;
    assert_eq!(stopped["wiro_status"], 0);
    assert_eq!(stopped["desired_state"], "stopped");
    let list = app.get("/v1/agents", &token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_agent_missing_credentials_says_which_and_runs_once_they_are_patched_in(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-creds");
    let agent = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "wordpress-blogger", "plan": "starter", "title": "Blog"}),
        )
        .await;
    let id = agent.body["id"].as_str().unwrap().to_owned();
    let waiting = app
        .wait_for_state(&token, &id, "awaiting_credentials")
        .await;
    assert_eq!(waiting["setup_required"], true);
    assert_eq!(
        waiting["missing_credentials"],
        json!(["wordpress.appPassword", "wordpress.url", "wordpress.user"])
    );
    let start = app
        .post(&format!("/v1/agents/{id}/start"), &token, &json!({}))
        .await;
    assert_eq!(start.status, StatusCode::CONFLICT);
    assert_eq!(start.code(), "agent_not_ready");
    app.patch(
        &format!("/v1/agents/{id}"),
        &token,
        &json!({"credentials": {"wordpress": {"url": "https://b.example", "user": "u", "appPassword": "p"}}}),
    )
    .await;
    let running = app.wait_for_state(&token, &id, "running").await;
    assert_eq!(running["missing_credentials"], json!([]));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn ops_bulk_orders_fifty_agents_and_watches_the_batch_complete(pool: PgPool) {
    let app = spawn_app(pool).await;
    let ops = app.ops_token();
    let items: Vec<_> = (0..50)
        .map(|i| {
            // A template that needs no account connection: the batch runs by itself.
            json!({"customer": format!("bulk-{i}"), "template": "email-assistant", "plan": "starter",
                   "title": format!("Bulk {i}")})
        })
        .collect();
    let created = app
        .post(
            "/v1/admin/provisioning-batches",
            &ops,
            &json!({"key": "wave-1", "items": items}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["total"], 50);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let again = app
        .post(
            "/v1/admin/provisioning-batches",
            &ops,
            &json!({"key": "wave-1", "items": items}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the same key is the same batch"
    );
    assert_eq!(again.body["id"], id.as_str());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let batch = app
            .get(&format!("/v1/admin/provisioning-batches/{id}"), &ops)
            .await;
        if batch.body["counts"]["running"] == 50 {
            break batch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch never completed: {:?}",
            batch.body["counts"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done.body["items"].as_array().unwrap().len(), 50);
    let items = done.body["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .all(|i| i["state"] == "running" && i["error"].is_null()),
        "{items:?}"
    );
    assert_eq!(app.sim.sim().instances().len(), 50);
    let customers = app.get("/v1/admin/customers?limit=100", &ops).await;
    assert_eq!(customers.body["items"].as_array().unwrap().len(), 50);

    let ledger = app.get("/v1/admin/ledger?limit=100", &ops).await;
    assert_eq!(ledger.body["items"].as_array().unwrap().len(), 50);
    let csv = app
        .request(
            reqwest::Method::GET,
            "/v1/admin/ledger",
            Some(&ops),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    assert!(csv.content_type().starts_with("text/csv"));
    let text = csv.body.as_str().unwrap();
    assert_eq!(text.lines().count(), 51, "header + 50 charges");
    assert!(text.starts_with(
        "id,created_at,customer_id,instance_id,kind,amount_cents,reference,wiro_guid"
    ));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn billing_actions_charge_once_and_follow_the_operator_policy(pool: PgPool) {
    let app = testkit::spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 1000.0),
        |s| s.billing.allow_cancel = false,
        true,
    )
    .await;
    let token = app.customer_token("cust-billing");
    let id = app.order_instagram(&token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_state(&token, &id, "running").await;

    let sub = app
        .get(&format!("/v1/agents/{id}/subscription"), &token)
        .await;
    assert_eq!(
        sub.body["allowed_actions"],
        json!(["upgrade", "downgrade", "renew", "credits"])
    );
    let starter_pack = app
        .post(
            &format!("/v1/agents/{id}/credits"),
            &token,
            &json!({"pack": "package1"}),
        )
        .await;
    assert_eq!(starter_pack.status, StatusCode::CONFLICT);
    assert_eq!(starter_pack.code(), "pro_plan_required");
    assert_eq!(
        starter_pack.body["detail"], "extra credits are available on the Pro plan only",
        "our sentence, not Wiro's text"
    );
    let upgraded = app
        .post(
            &format!("/v1/agents/{id}/subscription/upgrade"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(upgraded.status, StatusCode::OK, "{:?}", upgraded.body);
    assert_eq!(upgraded.body["result"], "upgraded");
    assert_eq!(upgraded.body["agent"]["subscription"]["plan"], "agent-pro");
    let pack = app
        .post(
            &format!("/v1/agents/{id}/credits"),
            &token,
            &json!({"pack": "package1"}),
        )
        .await;
    assert_eq!(pack.status, StatusCode::OK, "{:?}", pack.body);
    assert!(
        pack.body.get("charged_cents").is_none(),
        "the wholesale cost is for ops only"
    );
    assert_eq!(pack.body["agent"]["credits"]["extra"], 1000);
    let cancel = app
        .post(
            &format!("/v1/agents/{id}/subscription/cancel"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::FORBIDDEN);
    assert_eq!(cancel.code(), "billing_action_disabled");
    let renew = app
        .post(
            &format!("/v1/agents/{id}/subscription/renew"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(renew.status, StatusCode::CONFLICT);
    assert_eq!(renew.code(), "subscription_already_active");

    // Our ledger equals the simulator's: deploy, upgrade, pack.
    let ours: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, amount_cents FROM ledger_entries ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let theirs: Vec<(String, i64)> = app
        .sim
        .sim()
        .ledger()
        .iter()
        .map(|c| (c.kind.to_owned(), (c.amount * 100.0).round() as i64))
        .collect();
    assert_eq!(ours, theirs);
    let audit = app
        .get("/v1/admin/audit?action=subscription.", &app.ops_token())
        .await;
    let actions: Vec<_> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"subscription.upgrade".to_owned()),
        "{actions:?}"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn suspending_stops_the_agent_and_cancels_renewal_and_reactivating_undoes_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-suspend");
    let id = app.order_instagram(&token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_state(&token, &id, "running").await;
    let ops = app.ops_token();
    let agent = app.get(&format!("/v1/admin/agents/{id}"), &ops).await;
    let customer_id: String =
        sqlx::query_scalar("SELECT id::text FROM customers WHERE external_id = 'cust-suspend'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(agent.body["state"], "running");

    let suspended = app
        .post(
            &format!("/v1/admin/customers/{customer_id}/suspend"),
            &ops,
            &json!({}),
        )
        .await;
    assert_eq!(suspended.status, StatusCode::ACCEPTED);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agent = app.get(&format!("/v1/admin/agents/{id}"), &ops).await;
        if agent.body["state"] == "stopped"
            && agent.body["subscription"]["cancel_at_period_end"] == true
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "suspension not applied: {:?}",
            agent.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.get("/v1/agents", &token).await.code(),
        "customer_suspended"
    );

    app.post(
        &format!("/v1/admin/customers/{customer_id}/reactivate"),
        &ops,
        &json!({}),
    )
    .await;
    let running = app.wait_for_state(&token, &id, "running").await;
    assert_eq!(
        running["subscription"]["cancel_at_period_end"], false,
        "the cancellation was taken back"
    );
    let upstream = app.sim.sim().instances();
    assert!(!upstream[0].cancel_at_period_end);
    assert_eq!(app.sim.sim().ledger().len(), 1, "undoing a cancel is free");
}
