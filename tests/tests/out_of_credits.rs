//! Out of credits: a reply carrying `[SYSTEM_CREDIT_LIMIT_REACHED]`, or Start refused with
//! `No credits available`, puts the agent in `out_of_credits`; the top-up policy acts at once,
//! and the agent runs again as soon as Wiro shows credits.

use domain::jobs::SweepKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app, spawn_app_with};
use wiro_sim::SimConfig;

/// Spends every credit of the agent's instance, then sends it a message and reads the reply
/// (the runtime's credit-limit marker).
async fn drain_and_ask(app: &TestApp, token: &str, id: &str) -> Value {
    let agent = app.get(&format!("/v1/agents/{id}"), token).await;
    let guid = agent.body["wiro_guid"].as_str().unwrap();
    app.sim.sim().consume_credits(guid, 1_000_000).unwrap();
    let sent = app
        .post(
            &format!("/v1/agents/{id}/messages"),
            token,
            &json!({"message": "Draft the newsletter"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let message = sent.body["id"].as_str().unwrap();
    let read = app
        .get(
            &format!("/v1/agents/{id}/messages/{message}?wait=10"),
            token,
        )
        .await;
    assert_eq!(read.body["status"], "agent_end", "{:?}", read.body);
    assert_eq!(read.body["response"], "[SYSTEM_CREDIT_LIMIT_REACHED]");
    read.body
}

fn sim_packs(app: &TestApp) -> usize {
    app.sim
        .sim()
        .ledger()
        .iter()
        .filter(|c| c.kind == "extra_credits")
        .count()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_pro_agent_out_of_credits_gets_one_pack_at_once_and_runs_again(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("chatty");
    let id = app.running_agent(&token, "email-assistant", "pro").await;

    drain_and_ask(&app, &token, &id).await;
    // The policy bought one pack (no sweep ran): the agent is back with credits.
    let back = app
        .wait_for_ops_view(&id, |a| {
            a["state"] == "running" && a["credits"]["extra"].as_i64().unwrap_or(0) > 0
        })
        .await;
    assert_eq!(back["last_error"], Value::Null);
    assert_eq!(sim_packs(&app), 1, "one pack, bought once");
    app.assert_ledgers_match().await;
    let sent = app
        .post(
            &format!("/v1/agents/{id}/messages"),
            &token,
            &json!({"message": "Now draft it again"}),
        )
        .await;
    let message = sent.body["id"].as_str().unwrap();
    let read = app
        .get(
            &format!("/v1/agents/{id}/messages/{message}?wait=10"),
            &token,
        )
        .await;
    assert!(
        read.body["response"]
            .as_str()
            .unwrap()
            .contains("Now draft it again"),
        "it answers again: {:?}",
        read.body
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn over_the_cap_the_agent_rests_out_of_credits_until_ops_buy_a_pack(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| s.billing.topup_monthly_cap = 0,
        true,
    )
    .await;
    let token = app.customer_token("capped");
    let id = app.running_agent(&token, "email-assistant", "pro").await;

    drain_and_ask(&app, &token, &id).await;
    // Once the policy has acted, the job records what Wiro shows: nothing left.
    app.wait_for_ops_view(&id, |a| {
        a["state"] == "out_of_credits" && a["credits"]["monthly"] == 0
    })
    .await;
    let resting = app.get(&format!("/v1/agents/{id}"), &token).await;
    assert_eq!(
        resting.body["state"], "out_of_credits",
        "the customer sees why"
    );
    let alerts = app
        .get("/v1/admin/alerts?kind=topup_cap_reached", &app.ops_token())
        .await;
    assert_eq!(alerts.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(sim_packs(&app), 0, "nothing bought past the cap");

    // Ops buy a pack by hand; the next reconciliation hands the agent back to its job.
    let bought = app
        .post(
            &format!("/v1/admin/agents/{id}/credits"),
            &app.ops_token(),
            &json!({"pack": "package1"}),
        )
        .await;
    assert_eq!(bought.status, StatusCode::OK, "{:?}", bought.body);
    app.run_sweeps(&[SweepKind::Reconcile]).await;
    app.wait_for_state(&token, &id, "running").await;
    app.assert_ledgers_match().await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_starter_agent_whose_start_is_refused_for_credits_waits_with_an_alert(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("frugal");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let stop = app
        .post(&format!("/v1/agents/{id}/stop"), &token, &json!({}))
        .await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{:?}", stop.body);
    let stopped = app.wait_for_state(&token, &id, "stopped").await;
    let guid = stopped["wiro_guid"].as_str().unwrap();
    app.sim.sim().consume_credits(guid, 1_000_000).unwrap();

    let start = app
        .post(&format!("/v1/agents/{id}/start"), &token, &json!({}))
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED, "{:?}", start.body);
    let waiting = app
        .wait_for_ops_view(&id, |a| {
            a["state"] == "out_of_credits" && a["credits"]["monthly"] == 0
        })
        .await;
    assert_eq!(waiting["desired_state"], "running");
    // Starter's policy here is `alert`: ops hear of it, nothing is bought or upgraded.
    let alerts = app
        .get("/v1/admin/alerts?kind=credits_low", &app.ops_token())
        .await;
    assert_eq!(alerts.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.sim.sim().ledger().len(), 1, "only the deploy");
    // The customer can still stop it.
    let stop = app
        .post(&format!("/v1/agents/{id}/stop"), &token, &json!({}))
        .await;
    assert_eq!(stop.status, StatusCode::ACCEPTED, "{:?}", stop.body);
    app.wait_for_state(&token, &id, "stopped").await;
}
