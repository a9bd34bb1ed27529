//! A customer's data: ops export everything we hold about one customer; closing with erasure
//! removes its sealed credentials and its Wiro message sessions and keeps the ledger and audit.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app};

async fn customer_id(app: &TestApp, external: &str) -> String {
    let answer = app
        .post(
            "/v1/admin/customers",
            &app.ops_token(),
            &json!({"external_id": external, "display_name": format!("{external} Ltd")}),
        )
        .await;
    assert!(answer.status.is_success(), "{:?}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, token: &str, agent: &str, session: &str) {
    let sent = app
        .post(
            &format!("/v1/agents/{agent}/messages"),
            token,
            &json!({"message": "hello", "session": session}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
}

fn sim_sessions(app: &TestApp, wiro_guid: &str) -> Vec<String> {
    let world = app.sim.sim().world();
    let mut sessions: Vec<String> = world
        .messages
        .values()
        .filter(|m| m.instance_guid == wiro_guid)
        .map(|m| m.session.clone())
        .collect();
    sessions.sort();
    sessions.dedup();
    sessions
}

async fn wiro_guid(app: &TestApp, agent: &str) -> String {
    let agent = app
        .get(&format!("/v1/admin/agents/{agent}"), &app.ops_token())
        .await;
    agent.body["wiro_guid"].as_str().unwrap().to_owned()
}

async fn wait_erased(app: &TestApp, customer: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app
            .get(&format!("/v1/admin/customers/{customer}"), &app.ops_token())
            .await;
        if !answer.body["erased_at"].is_null() {
            return answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never erased: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn ops_export_a_customers_data_without_its_sealed_credentials(pool: PgPool) {
    let app = spawn_app(pool).await;
    let customer = customer_id(&app, "exported").await;
    let token = app.customer_token("exported");
    let agent = app
        .running_agent(&token, "instagram-manager", "starter")
        .await;
    send(&app, &token, &agent, "support").await;

    let export = app
        .get(
            &format!("/v1/admin/customers/{customer}/export"),
            &app.ops_token(),
        )
        .await;
    assert_eq!(export.status, StatusCode::OK, "{:?}", export.body);
    let body = &export.body;
    assert_eq!(body["customer"]["external_id"], "exported");
    assert_eq!(body["customer"]["display_name"], "exported Ltd");
    assert_eq!(body["agents"].as_array().unwrap().len(), 1);
    assert_eq!(body["agents"][0]["id"], agent.as_str());
    let ledger = body["ledger"].as_array().unwrap();
    assert!(ledger.iter().any(|e| e["kind"] == "deploy"), "{ledger:?}");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(body["messages"][0]["session"], "support");
    let audit = body["audit"].as_array().unwrap();
    assert!(
        audit
            .iter()
            .any(|e| e["actor"] == "customer:exported" && e["action"] == "order.create"),
        "{audit:?}"
    );
    assert!(
        !body.to_string().contains("pending_config"),
        "sealed credentials never leave"
    );

    let unknown = app
        .get(
            &format!("/v1/admin/customers/{}/export", uuid::Uuid::new_v4()),
            &app.ops_token(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let as_customer = app
        .get(&format!("/v1/admin/customers/{customer}/export"), &token)
        .await;
    assert_eq!(as_customer.status, StatusCode::FORBIDDEN);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn closing_with_erasure_deletes_credentials_and_wiro_sessions_and_keeps_the_books(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let leaving = customer_id(&app, "leaving").await;
    let leaving_token = app.customer_token("leaving");
    let theirs = app
        .running_agent(&leaving_token, "instagram-manager", "starter")
        .await;
    send(&app, &leaving_token, &theirs, "support").await;
    send(&app, &leaving_token, &theirs, "sales").await;
    // Credentials waiting for Wiro, as a PATCH leaves them until the job sends them.
    sqlx::query("UPDATE instances SET pending_config = '\\x02deadbeef' WHERE id = $1::uuid")
        .bind(&theirs)
        .execute(&app.pool)
        .await
        .unwrap();

    let staying_token = app.customer_token("staying");
    let other = app
        .running_agent(&staying_token, "instagram-manager", "starter")
        .await;
    send(&app, &staying_token, &other, "support").await;

    let (their_guid, other_guid) = (
        wiro_guid(&app, &theirs).await,
        wiro_guid(&app, &other).await,
    );
    assert_eq!(sim_sessions(&app, &their_guid), ["sales", "support"]);
    let charges_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries WHERE customer_id = $1::uuid")
            .bind(&leaving)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(charges_before > 0);

    let closed = app
        .request(
            Method::POST,
            &format!("/v1/admin/customers/{leaving}/close?erase_data=true"),
            Some(&app.ops_token()),
            None,
            &[],
        )
        .await;
    assert_eq!(closed.status, StatusCode::ACCEPTED, "{:?}", closed.body);
    assert_eq!(closed.body["status"], "closed");
    assert!(!closed.body["erase_requested_at"].is_null());
    assert!(
        closed.body["display_name"].is_null(),
        "the name goes at once"
    );
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT pending_config FROM instances WHERE id = $1::uuid")
            .bind(&theirs)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        sealed, None,
        "sealed credentials erased in the close's transaction"
    );

    let erased = wait_erased(&app, &leaving).await;
    assert_eq!(erased["status"], "closed");
    assert!(
        sim_sessions(&app, &their_guid).is_empty(),
        "Wiro sessions deleted"
    );
    assert_eq!(
        sim_sessions(&app, &other_guid),
        ["support"],
        "another customer's sessions are untouched"
    );
    let export = app
        .get(
            &format!("/v1/admin/customers/{leaving}/export"),
            &app.ops_token(),
        )
        .await;
    assert_eq!(export.body["messages"], json!([]));
    assert_eq!(
        export.body["ledger"].as_array().unwrap().len() as i64,
        charges_before,
        "the ledger is kept"
    );
    let audit = export.body["audit"].as_array().unwrap();
    for action in ["order.create", "customer.erase", "customer.erased"] {
        assert!(
            audit.iter().any(|e| e["action"] == action),
            "{action}: {audit:?}"
        );
    }
    let erased_entry = audit
        .iter()
        .find(|e| e["action"] == "customer.erased")
        .unwrap();
    assert_eq!(erased_entry["detail"]["wiro_sessions_deleted"], 2);

    let refused = app.get("/v1/agents", &leaving_token).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "customer_closed");
}
