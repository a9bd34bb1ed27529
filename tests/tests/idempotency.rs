//! Idempotency-Key: replays return the stored answer and do nothing again; another body with
//! the same key is refused; a duplicate arriving while the first runs gets 409.

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;
use testkit::{spawn_app, spawn_app_with};
use wiro_sim::{FaultMode, FaultSpec};

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_replayed_order_returns_the_same_agent_and_orders_nothing_more(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("idem-1");
    let order = json!({"template": "instagram-manager", "plan": "starter", "title": "Once"});
    let key = [("idempotency-key", "order-123")];
    let first = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&order), &key)
        .await;
    let second = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&order), &key)
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);

    let other = json!({"template": "instagram-manager", "plan": "pro", "title": "Once"});
    let reused = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&other), &key)
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");

    // Keys are per caller: another customer may use the same key.
    let someone_else = app.customer_token("idem-2");
    let theirs = app
        .request(
            Method::POST,
            "/v1/agents",
            Some(&someone_else),
            Some(&order),
            &key,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::ACCEPTED);
    assert_ne!(theirs.body["id"], first.body["id"]);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_replayed_message_reaches_the_agent_once_and_a_concurrent_duplicate_gets_409(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("idem-msg");
    let id = app.order_instagram(&token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_state(&token, &id, "running").await;
    // Slow the upstream Send so the duplicate arrives while the first is still running.
    app.sim
        .sim()
        .add_fault(FaultSpec {
            endpoint: "UserAgent/Message/Send".into(),
            mode: FaultMode::Latency,
            status: None,
            latency_ms: Some(1500),
            probability: None,
            count: Some(1),
            rate_per_s: None,
        })
        .unwrap();
    let path = format!("/v1/agents/{id}/messages");
    let body = json!({"message": "exactly once please"});
    let key = [("idempotency-key", "msg-1")];
    let (first, duplicate) = tokio::join!(
        app.request(Method::POST, &path, Some(&token), Some(&body), &key),
        async {
            // Send the duplicate once the first request holds the key (and before it answers:
            // its upstream Send is slowed by 1.5 s).
            loop {
                let claimed: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM idempotency_keys WHERE key = 'msg-1' AND status IS NULL",
                )
                .fetch_one(&app.pool)
                .await
                .unwrap();
                if claimed == 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            app.request(Method::POST, &path, Some(&token), Some(&body), &key)
                .await
        }
    );
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(
        duplicate.status,
        StatusCode::CONFLICT,
        "{:?}",
        duplicate.body
    );
    assert_eq!(duplicate.code(), "idempotency_in_progress");

    let replay = app
        .request(Method::POST, &path, Some(&token), Some(&body), &key)
        .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(
        app.sim.sim().call_counts()["UserAgent/Message/Send"],
        1,
        "one upstream message"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_failed_request_frees_its_key_for_a_corrected_retry(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("idem-3");
    let key = [("idempotency-key", "retry-me")];
    let bad = json!({"template": "no-such-template", "plan": "starter", "title": "x"});
    let refused = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&bad), &key)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let good = json!({"template": "instagram-manager", "plan": "starter", "title": "x"});
    let accepted = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&good), &key)
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_key_left_in_progress_by_a_dead_process_is_released_after_a_while(pool: PgPool) {
    let app = spawn_app(pool).await;
    let token = app.customer_token("idem-dead");
    let order =
        json!({"template": "instagram-manager", "plan": "starter", "title": "After a crash"});
    // A request that claimed the key and died with its process: no answer, long ago.
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request_hash, created_at, expires_at)
         VALUES ('customer:idem-dead', 'dead-1', '\\x00', now() - interval '10 minutes', now() + interval '1 day')",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let key = [("idempotency-key", "dead-1")];
    let answer = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&order), &key)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    let replay = app
        .request(Method::POST, "/v1/agents", Some(&token), Some(&order), &key)
        .await;
    assert_eq!(replay.body["id"], answer.body["id"]);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_stored_fingerprint_is_keyed_and_a_rotated_key_still_recognises_the_retry(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    let token = app.customer_token("idem-fp");
    let order = json!({
        "template": "instagram-manager", "plan": "starter", "title": "Keyed",
        "credentials": {"instagram": {"authMethod": "wiro"}}
    });
    let first = app.post_keyed("/v1/agents", &token, &order, "fp-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT request_hash FROM idempotency_keys WHERE key = 'fp-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let typed: api::routes::agents::CreateAgent = serde_json::from_value(order.clone()).unwrap();
    let canonical = api::idempotency::canonical_request("POST", "/v1/agents", &typed).unwrap();
    let sealer = app.settings.sealer().unwrap();
    assert_eq!(
        stored,
        sealer.fingerprint(&canonical),
        "HMAC under the server key"
    );

    // Rotate the credentials key (the fingerprint key derives from it): the old one is previous.
    let old_key = app
        .settings
        .security
        .credentials_key
        .expose_secret()
        .to_owned();
    let rotated = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| {
            s.security.credentials_key = SecretString::from(domain::sealed::Sealer::generate_key());
            s.security.previous_credentials_keys = SecretString::from(old_key);
        },
        false,
    )
    .await;
    let token = rotated.customer_token("idem-fp");
    let replay = rotated
        .post_keyed("/v1/agents", &token, &order, "fp-1")
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{:?}", replay.body);
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    let other = json!({"template": "instagram-manager", "plan": "starter", "title": "Other"});
    let reused = rotated
        .post_keyed("/v1/agents", &token, &other, "fp-1")
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");
}
