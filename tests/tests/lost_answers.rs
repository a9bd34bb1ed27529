//! Lost answers on every consequential endpoint, with the caller retrying with the same
//! Idempotency-Key: the first request answers `202 in_doubt`, replays answer the same until the
//! operation is settled from evidence upstream, then the settled answer — and upstream saw
//! exactly one effect, booked once.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app};
use wiro_sim::{FaultMode, FaultSpec};

/// Makes the next call of `endpoint` lose its answer: `drop_response` (applied, then the
/// connection closed) or `late_apply` (the connection closed, applied 400 ms later).
fn lose_next(app: &TestApp, endpoint: &str, mode: FaultMode) {
    app.sim
        .sim()
        .add_fault(FaultSpec {
            endpoint: endpoint.into(),
            mode,
            status: None,
            latency_ms: Some(400),
            probability: None,
            count: Some(1),
            rate_per_s: None,
        })
        .unwrap();
}

/// The request with `key` loses its answer (202 in_doubt), and replays settle it.
async fn in_doubt_then_settled(
    app: &TestApp,
    token: &str,
    path: &str,
    body: &Value,
    key: &str,
) -> testkit::Answer {
    let first = app.post_keyed(path, token, body, key).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    assert_eq!(first.body["state"], "in_doubt");
    assert!(first.body["operation_id"].is_string());
    let again = app.post_keyed(path, token, body, key).await;
    assert_eq!(
        again.status,
        StatusCode::ACCEPTED,
        "a replay during the lease: still in doubt"
    );
    let settled = app.replay_until_settled(path, token, body, key).await;
    assert_eq!(
        settled.headers["idempotent-replayed"], "true",
        "answered from the operation, never performed again"
    );
    settled
}

fn sim_charges(app: &TestApp, kind: &str) -> usize {
    app.sim
        .sim()
        .ledger()
        .iter()
        .filter(|c| c.kind == kind)
        .count()
}

async fn a_pack_bought_once_through_a_lost_answer(pool: PgPool, mode: FaultMode) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-pack");
    let id = app.running_agent(&token, "email-assistant", "pro").await;
    lose_next(&app, "UserAgent/CreateExtraCreditCheckout", mode);
    let path = format!("/v1/agents/{id}/credits");
    let settled =
        in_doubt_then_settled(&app, &token, &path, &json!({"pack": "package1"}), "pack-1").await;
    assert_eq!(settled.status, StatusCode::OK, "{:?}", settled.body);
    assert_eq!(settled.body["result"], "credits_added");
    assert!(settled.body.get("charged_cents").is_none(), "ops-only");
    assert_eq!(sim_charges(&app, "extra_credits"), 1, "one pack upstream");
    assert_eq!(app.sim.sim().instances()[0].extra_credits, 800);
    app.assert_ledgers_match().await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_pack_whose_answer_is_dropped_and_retried_with_the_same_key_is_bought_once(pool: PgPool) {
    a_pack_bought_once_through_a_lost_answer(pool, FaultMode::DropResponse).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_pack_applied_late_and_retried_with_the_same_key_is_bought_once(pool: PgPool) {
    a_pack_bought_once_through_a_lost_answer(pool, FaultMode::LateApply).await;
}

async fn an_upgrade_once_through_a_lost_answer(pool: PgPool, mode: FaultMode) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-upgrade");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    lose_next(&app, "UserAgent/UpgradePlan", mode);
    let path = format!("/v1/agents/{id}/subscription/upgrade");
    let settled = in_doubt_then_settled(&app, &token, &path, &json!({}), "up-1").await;
    assert_eq!(settled.status, StatusCode::OK, "{:?}", settled.body);
    assert_eq!(settled.body["result"], "upgraded");
    assert_eq!(
        settled.body["agent"]["plan"], "pro",
        "the agent's plan reads pro"
    );
    assert_eq!(sim_charges(&app, "upgrade"), 1);
    app.assert_ledgers_match().await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_upgrade_whose_answer_is_dropped_is_charged_once_at_wiros_amount(pool: PgPool) {
    an_upgrade_once_through_a_lost_answer(pool, FaultMode::DropResponse).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_upgrade_applied_late_is_charged_once(pool: PgPool) {
    an_upgrade_once_through_a_lost_answer(pool, FaultMode::LateApply).await;
}

async fn a_cancel_and_its_undo_through_lost_answers(pool: PgPool, mode: FaultMode) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-cancel");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    lose_next(&app, "UserAgent/CancelSubscription", mode);
    let cancel = format!("/v1/agents/{id}/subscription/cancel");
    let settled = in_doubt_then_settled(&app, &token, &cancel, &json!({}), "cancel-1").await;
    assert_eq!(settled.status, StatusCode::OK, "{:?}", settled.body);
    assert_eq!(settled.body["result"], "cancelled");
    assert!(settled.body["cancels_at"].is_string());
    assert!(app.sim.sim().instances()[0].cancel_at_period_end);
    let agent = app.get(&format!("/v1/agents/{id}"), &token).await;
    assert_eq!(agent.body["subscription"]["cancel_at_period_end"], true);

    lose_next(&app, "UserAgent/RenewSubscription", mode);
    let renew = format!("/v1/agents/{id}/subscription/renew");
    let undone = in_doubt_then_settled(&app, &token, &renew, &json!({}), "undo-1").await;
    assert_eq!(undone.status, StatusCode::OK, "{:?}", undone.body);
    assert_eq!(undone.body["result"], "cancel_undone");
    assert!(!app.sim.sim().instances()[0].cancel_at_period_end);
    assert_eq!(
        sim_charges(&app, "renewal"),
        0,
        "undoing a cancel charges nothing"
    );
    app.assert_ledgers_match().await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_cancel_and_its_undo_whose_answers_are_dropped_each_take_effect_once(pool: PgPool) {
    a_cancel_and_its_undo_through_lost_answers(pool, FaultMode::DropResponse).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_cancel_and_its_undo_applied_late_each_take_effect_once(pool: PgPool) {
    a_cancel_and_its_undo_through_lost_answers(pool, FaultMode::LateApply).await;
}

async fn a_renewal_once_through_a_lost_answer(pool: PgPool, mode: FaultMode) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-renew");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    // The wallet cannot pay at the period end: the subscription expires.
    app.sim.sim().set_wallet(testkit::WIRO_KEY, 0.0).unwrap();
    app.sim.sim().advance_days(31);
    app.sim.sim().set_wallet(testkit::WIRO_KEY, 1000.0).unwrap();
    lose_next(&app, "UserAgent/RenewSubscription", mode);
    let renew = format!("/v1/agents/{id}/subscription/renew");
    let settled = in_doubt_then_settled(&app, &token, &renew, &json!({}), "renew-1").await;
    assert_eq!(settled.status, StatusCode::OK, "{:?}", settled.body);
    assert_eq!(settled.body["result"], "renewed");
    assert_eq!(sim_charges(&app, "renewal"), 1);
    app.assert_ledgers_match().await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_renewal_whose_answer_is_dropped_is_charged_and_booked_once(pool: PgPool) {
    a_renewal_once_through_a_lost_answer(pool, FaultMode::DropResponse).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_renewal_applied_late_is_charged_and_booked_once(pool: PgPool) {
    a_renewal_once_through_a_lost_answer(pool, FaultMode::LateApply).await;
}

async fn a_message_sent_once_through_a_lost_answer(pool: PgPool, mode: FaultMode) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-msg");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    lose_next(&app, "UserAgent/Message/Send", mode);
    let path = format!("/v1/agents/{id}/messages");
    let body = json!({"message": "post our summer sale", "session": "s1"});
    let settled = in_doubt_then_settled(&app, &token, &path, &body, "msg-1").await;
    assert_eq!(settled.status, StatusCode::CREATED, "{:?}", settled.body);
    let message_id = settled.body["id"].as_str().unwrap().to_owned();
    let sent: Vec<_> = app
        .sim
        .sim()
        .world()
        .messages
        .values()
        .filter(|m| m.content == "post our summer sale")
        .map(|m| m.guid.clone())
        .collect();
    assert_eq!(sent, vec![message_id.clone()], "the agent got it once");
    let read = app
        .get(&format!("/v1/agents/{id}/messages/{message_id}"), &token)
        .await;
    assert_eq!(
        read.status,
        StatusCode::OK,
        "the customer owns the adopted message"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_message_whose_answer_is_dropped_and_retried_with_the_same_key_reaches_the_agent_once(
    pool: PgPool,
) {
    a_message_sent_once_through_a_lost_answer(pool, FaultMode::DropResponse).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_message_applied_late_reaches_the_agent_once(pool: PgPool) {
    a_message_sent_once_through_a_lost_answer(pool, FaultMode::LateApply).await;
}

async fn an_order_deployed_once_through_a_lost_answer(pool: PgPool, mode: FaultMode) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("cust-deploy");
    lose_next(&app, "UserAgent/Deploy", mode);
    let body = json!({"template": "email-assistant", "plan": "starter", "title": "Inbox"});
    let first = app.post_keyed("/v1/agents", &token, &body, "order-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let id = first.body["id"].as_str().unwrap().to_owned();
    app.wait_for_state(&token, &id, "running").await;
    let again = app.post_keyed("/v1/agents", &token, &body, "order-1").await;
    assert_eq!(
        again.body["id"],
        id.as_str(),
        "the same order, not a second one"
    );
    assert_eq!(app.sim.sim().instances().len(), 1, "one instance upstream");
    assert_eq!(sim_charges(&app, "deploy"), 1);
    let states: Vec<String> = sqlx::query_scalar(
        "SELECT state FROM operations WHERE kind = 'deploy' ORDER BY started_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        states,
        ["adopted"],
        "found upstream after the lost answer, never sent twice"
    );
    app.assert_ledgers_match().await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_whose_deploy_answer_is_dropped_is_deployed_once(pool: PgPool) {
    an_order_deployed_once_through_a_lost_answer(pool, FaultMode::DropResponse).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_whose_deploy_is_applied_late_is_deployed_once(pool: PgPool) {
    an_order_deployed_once_through_a_lost_answer(pool, FaultMode::LateApply).await;
}
