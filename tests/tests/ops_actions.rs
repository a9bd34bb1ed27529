//! Ops act on any agent through the customer's paths, mirrored under `/v1/admin/agents/{id}`:
//! the same domain functions and exactly-once protocol, not bound by the customer's limits,
//! audited as ops.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use testkit::spawn_app_with;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn ops_act_on_any_agent_past_the_customers_limits_and_are_audited_as_ops(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        // Room for the order (500 cents), not for an upgrade.
        |s| s.limits.monthly_spend_cents = 600,
        true,
    )
    .await;
    let token = app.customer_token("managed");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let ops = app.ops_token();

    let refused = app
        .post(
            &format!("/v1/agents/{id}/subscription/upgrade"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "limit_exceeded");
    let upgraded = app
        .post(
            &format!("/v1/admin/agents/{id}/subscription/upgrade"),
            &ops,
            &json!({}),
        )
        .await;
    assert_eq!(upgraded.status, StatusCode::OK, "{:?}", upgraded.body);
    assert_eq!(upgraded.body["result"], "upgraded");
    assert!(
        upgraded.body["charged_cents"].as_i64().unwrap() > 0,
        "ops see the cost"
    );

    let stopped = app
        .post(&format!("/v1/admin/agents/{id}/stop"), &ops, &json!({}))
        .await;
    assert_eq!(stopped.status, StatusCode::ACCEPTED);
    app.wait_for_ops_view(&id, |a| a["state"] == "stopped")
        .await;
    let started = app
        .post(&format!("/v1/admin/agents/{id}/start"), &ops, &json!({}))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    app.wait_for_ops_view(&id, |a| a["state"] == "running")
        .await;

    let renamed = app
        .patch(
            &format!("/v1/admin/agents/{id}"),
            &ops,
            &json!({"title": "Managed by ops"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::ACCEPTED, "{:?}", renamed.body);
    let pack = app
        .post(
            &format!("/v1/admin/agents/{id}/credits"),
            &ops,
            &json!({"pack": "package1"}),
        )
        .await;
    assert_eq!(pack.status, StatusCode::OK, "{:?}", pack.body);
    let cancelled = app
        .post(
            &format!("/v1/admin/agents/{id}/subscription/cancel"),
            &ops,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["result"], "cancelled");

    // A customer token is not ops.
    let not_ops = app
        .post(&format!("/v1/admin/agents/{id}/stop"), &token, &json!({}))
        .await;
    assert_eq!(not_ops.status, StatusCode::FORBIDDEN);

    let audit = app
        .get(
            &format!("/v1/admin/audit?target=instance:{id}&limit=100"),
            &ops,
        )
        .await;
    let by_ops: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("ops:"))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["agent.stop", "agent.start", "agent.update"] {
        assert!(by_ops.contains(&action), "{action}: {by_ops:?}");
    }
    let ops_ops: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM operations WHERE instance_id = $1::uuid AND actor LIKE 'ops:%'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        ops_ops, 3,
        "upgrade, pack and cancel went through the protocol as ops"
    );
    app.assert_ledgers_match().await;
}
