//! Deleting an agent: gone for its customer at once; the job stops it and cancels its
//! subscription at the period end exactly once; ops still see it, and its charges stay.

use reqwest::StatusCode;
use sqlx::PgPool;
use testkit::spawn_app;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_deleted_agent_is_gone_for_its_customer_stopped_and_not_renewed(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("tidy");
    let id = app
        .running_agent(&token, "instagram-manager", "starter")
        .await;
    let kept = app
        .running_agent(&token, "email-assistant", "starter")
        .await;

    let deleted = app.delete(&format!("/v1/agents/{id}"), &token).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED, "{:?}", deleted.body);
    assert_eq!(deleted.body["desired_state"], "stopped");
    assert!(deleted.body["deleted_at"].is_string());

    // Gone for the customer, at once and for every route.
    assert_eq!(
        app.get(&format!("/v1/agents/{id}"), &token).await.status,
        StatusCode::NOT_FOUND
    );
    let list = app.get("/v1/agents", &token).await;
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.as_str()]);
    assert_eq!(
        app.delete(&format!("/v1/agents/{id}"), &token).await.status,
        StatusCode::NOT_FOUND,
        "deleted once"
    );
    assert_eq!(
        app.post(
            &format!("/v1/agents/{id}/start"),
            &token,
            &serde_json::json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND,
        "nor started again"
    );
    let other = app.customer_token("someone-else");
    assert_eq!(
        app.delete(&format!("/v1/agents/{kept}"), &other)
            .await
            .status,
        StatusCode::NOT_FOUND,
        "nobody deletes another customer's agent"
    );

    // Ops see the job stop it and cancel its renewal, once.
    let done = app
        .wait_for_ops_view(&id, |a| {
            a["state"] == "stopped" && a["subscription"]["cancel_at_period_end"] == true
        })
        .await;
    assert!(done["deleted_at"].is_string());
    let guid = done["wiro_guid"].as_str().unwrap();
    let upstream = app
        .sim
        .sim()
        .instances()
        .into_iter()
        .find(|i| i.guid == guid)
        .unwrap();
    assert_eq!(upstream.status, 0);
    assert!(upstream.cancel_at_period_end);
    assert!(
        upstream.subscription_active,
        "it runs out at the period end"
    );
    assert_eq!(
        app.sim
            .sim()
            .call_counts()
            .get("UserAgent/CancelSubscription"),
        Some(&1)
    );
    // The kept agent runs on; the books keep both deploys.
    let still = app.get(&format!("/v1/agents/{kept}"), &token).await;
    assert_eq!(still.body["state"], "running");
    app.assert_ledgers_match().await;
    let audit = app
        .get(
            &format!("/v1/admin/audit?target=instance:{id}&action=agent.delete"),
            &app.ops_token(),
        )
        .await;
    assert_eq!(audit.body["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_deleted_before_it_was_deployed_is_never_deployed_nor_charged(pool: PgPool) {
    // No worker: the order stays pending until the test drives its job.
    let app = testkit::spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |_| {},
        false,
    )
    .await;
    let token = app.customer_token("changed-mind");
    let order = app
        .post(
            "/v1/agents",
            &token,
            &serde_json::json!({"template": "email-assistant", "plan": "starter", "title": "Oops"}),
        )
        .await;
    assert_eq!(order.status, StatusCode::ACCEPTED);
    let id = order.body["id"].as_str().unwrap().to_owned();
    let deleted = app.delete(&format!("/v1/agents/{id}"), &token).await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);

    let ctx = testkit::services_shared(&app.pool, &app.settings, "deletion-test");
    testkit::drive(&ctx, domain::ids::InstanceId(id.parse().unwrap())).await;
    let agent = app
        .get(&format!("/v1/admin/agents/{id}"), &app.ops_token())
        .await;
    assert_eq!(agent.body["state"], "stopped");
    assert!(agent.body["wiro_guid"].is_null());
    assert!(app.sim.sim().instances().is_empty(), "never deployed");
    assert!(app.sim.sim().ledger().is_empty(), "never charged");
    let retry = app
        .post(
            &format!("/v1/admin/agents/{id}/retry"),
            &app.ops_token(),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::CONFLICT);
}
