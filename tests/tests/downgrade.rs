//! Downgrade as a workflow (Wiro: "cancel and re-deploy"): scheduled now, switched at the
//! period end to a new Starter instance under the same agent id, or withdrawn before it.

use domain::jobs::SweepKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app};

/// The simulator's clock moves past the period end; the sweeps that would run on schedule
/// run now.
async fn past_the_period_end(app: &TestApp) {
    app.sim.sim().advance_days(30);
    app.run_sweeps(&[SweepKind::Reconcile, SweepKind::Renewals])
        .await;
}

fn sim_charges(app: &TestApp, kind: &str) -> Vec<(String, i64)> {
    app.sim
        .sim()
        .ledger()
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| (c.instance_guid.clone(), (c.amount * 100.0).round() as i64))
        .collect()
}

fn calls(app: &TestApp, endpoint: &str) -> u64 {
    app.sim
        .sim()
        .call_counts()
        .get(endpoint)
        .copied()
        .unwrap_or(0)
}

async fn downgrade(app: &TestApp, id: &str, token: &str) -> Value {
    let path = format!("/v1/agents/{id}/subscription/downgrade");
    let answer = app.post(&path, token, &json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_downgrade_deploys_starter_once_at_the_period_end_under_the_same_agent_id(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("thrifty");
    let id = app.running_agent(&token, "email-assistant", "pro").await;

    let scheduled = downgrade(&app, &id, &token).await;
    assert_eq!(scheduled["result"], "downgrade_scheduled");
    assert!(scheduled["cancels_at"].is_string());
    let subscription = &scheduled["agent"]["subscription"];
    assert_eq!(subscription["downgrade_to"], "starter");
    assert_eq!(subscription["cancel_at_period_end"], true);
    assert_eq!(
        scheduled["agent"]["plan"], "pro",
        "Pro until the period ends"
    );
    let pro_guid = scheduled["agent"]["wiro_guid"].as_str().unwrap().to_owned();
    // Asking again changes nothing; a plain cancel must first withdraw the downgrade.
    assert_eq!(
        downgrade(&app, &id, &token).await["result"],
        "downgrade_scheduled"
    );
    let cancel = app
        .post(
            &format!("/v1/agents/{id}/subscription/cancel"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::CONFLICT);
    assert_eq!(cancel.body["code"], "downgrade_pending");
    assert_eq!(calls(&app, "UserAgent/CancelSubscription"), 1);

    past_the_period_end(&app).await;
    let switched = app
        .wait_for_ops_view(&id, |a| {
            a["plan"] == "starter" && a["state"] == "running" && a["wiro_guid"] != pro_guid
        })
        .await;
    let starter_guid = switched["wiro_guid"].as_str().unwrap().to_owned();
    let agent = app.get(&format!("/v1/agents/{id}"), &token).await;
    assert_eq!(
        agent.body["id"],
        id.as_str(),
        "the customer's agent id is unchanged"
    );
    assert_eq!(agent.body["plan"], "starter");
    assert_eq!(agent.body["subscription"]["downgrade_to"], Value::Null);
    assert_eq!(agent.body["subscription"]["cancel_at_period_end"], false);

    // Upstream: the Pro instance expired (stopped, not renewed); one Starter instance runs.
    let upstream = app.sim.sim().instances();
    let pro = upstream.iter().find(|i| i.guid == pro_guid).unwrap();
    assert!(!pro.subscription_active);
    assert_eq!(pro.status, 0);
    let starter = upstream.iter().find(|i| i.guid == starter_guid).unwrap();
    assert_eq!(starter.plan.as_deref(), Some("starter"));
    assert_eq!(starter.status, 4);
    assert_eq!(calls(&app, "UserAgent/Deploy"), 2, "one Starter deploy");

    // The sweeps coming round again find nothing to do: no third deploy, the old instance is
    // known (not a duplicate nor an orphan), nothing renewed.
    app.run_sweeps(&[SweepKind::Reconcile, SweepKind::Renewals])
        .await;
    assert_eq!(calls(&app, "UserAgent/Deploy"), 2);
    let alerts = app.get("/v1/admin/alerts", &app.ops_token()).await;
    assert_eq!(alerts.body["items"], json!([]), "{:?}", alerts.body);

    // One charge each side of the switch, the same in our books as in Wiro's.
    let deploys = sim_charges(&app, "deploy");
    assert_eq!(deploys.len(), 2);
    assert_eq!(deploys[0].0, pro_guid);
    assert_eq!(deploys[1].0, starter_guid);
    assert!(deploys[1].1 < deploys[0].1, "Starter costs less than Pro");
    assert!(sim_charges(&app, "renewal").is_empty());
    app.assert_ledgers_match().await;
    let audit = app
        .get(
            &format!("/v1/admin/audit?target=instance:{id}&action=subscription.downgrade"),
            &app.ops_token(),
        )
        .await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0]["detail"]["previous_wiro_guid"],
        pro_guid.as_str()
    );
    assert_eq!(entries[0]["detail"]["generation"], 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_withdrawn_downgrade_leaves_the_pro_plan_renewing_as_before(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("undecided");
    let id = app.running_agent(&token, "email-assistant", "pro").await;
    let before = serde_json::to_value(app.sim.sim().instances()).unwrap();

    // Ops schedule it (the mirror of the customer route); the customer takes it back.
    let scheduled = app
        .post(
            &format!("/v1/admin/agents/{id}/subscription/downgrade"),
            &app.ops_token(),
            &json!({}),
        )
        .await;
    assert_eq!(scheduled.status, StatusCode::OK, "{:?}", scheduled.body);
    assert_eq!(scheduled.body["result"], "downgrade_scheduled");
    let path = format!("/v1/agents/{id}/subscription/downgrade");
    let withdrawn = app.delete(&path, &token).await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{:?}", withdrawn.body);
    assert_eq!(withdrawn.body["result"], "downgrade_withdrawn");
    let subscription = &withdrawn.body["agent"]["subscription"];
    assert_eq!(subscription["downgrade_to"], Value::Null);
    assert_eq!(subscription["cancel_at_period_end"], false);
    let again = app.delete(&path, &token).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["code"], "no_downgrade");

    // Upstream is as it was: the cancel undone, nothing charged.
    assert_eq!(
        serde_json::to_value(app.sim.sim().instances()).unwrap(),
        before
    );
    assert_eq!(sim_charges(&app, "deploy").len(), 1);

    // The period ends: Wiro renews Pro by itself, and nothing of ours deploys.
    past_the_period_end(&app).await;
    let renewed = app
        .wait_for_ops_view(&id, |a| a["state"] == "running")
        .await;
    assert_eq!(renewed["plan"], "pro");
    assert_eq!(renewed["wiro_guid"], before[0]["guid"]);
    assert_eq!(calls(&app, "UserAgent/Deploy"), 1);
    assert_eq!(sim_charges(&app, "renewal").len(), 1);
    app.assert_ledgers_match().await;
    let audit = app
        .get(
            &format!("/v1/admin/audit?target=instance:{id}&action=subscription.cancel"),
            &app.ops_token(),
        )
        .await;
    assert_eq!(
        audit.body["items"][0]["actor"], "ops:ops-alice",
        "{:?}",
        audit.body
    );
}
