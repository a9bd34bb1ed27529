//! Every error is a problem document with a stable code: bad JSON, bad path and query values,
//! validation (naming the field), oversized bodies, unknown routes, wrong methods.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use testkit::spawn_app_with;

fn problem(answer: &testkit::Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.content_type(), "application/problem+json");
    assert_eq!(answer.code(), code, "{:?}", answer.body);
    assert_eq!(
        answer.body["type"],
        format!("urn:wiro-reseller:problem:{code}")
    );
    assert_eq!(answer.body["status"], status.as_u16());
    assert!(answer.body["title"].is_string() && answer.body["detail"].is_string());
    let header = answer
        .headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(
        answer.body["request_id"], header,
        "the body quotes the request id"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn malformed_and_invalid_requests_get_problem_bodies_with_stable_codes(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |s| s.api.body_limit_bytes = 4096,
        false,
    )
    .await;
    let token = app.customer_token("errors");

    let raw = reqwest::Client::new()
        .post(format!("{}/v1/agents", app.address))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = raw.status();
    let headers = raw.headers().clone();
    let body = raw.json().await.unwrap();
    problem(
        &testkit::Answer {
            status,
            headers,
            body,
        },
        StatusCode::BAD_REQUEST,
        "malformed_json",
    );

    let missing = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "instagram-manager"}),
        )
        .await;
    problem(
        &missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(
        missing.body["detail"].as_str().unwrap().contains("plan"),
        "{:?}",
        missing.body
    );
    let typo = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "x", "plan": "starter", "title": "t", "credentails": {}}),
        )
        .await;
    problem(&typo, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(
        typo.body["detail"]
            .as_str()
            .unwrap()
            .contains("credentails")
    );
    let plan = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "instagram-manager", "plan": "gold", "title": "t"}),
        )
        .await;
    problem(&plan, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(plan.body["detail"].as_str().unwrap().starts_with("plan:"));
    let title = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "instagram-manager", "plan": "starter", "title": ""}),
        )
        .await;
    problem(
        &title,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(title.body["detail"].as_str().unwrap().contains("title"));
    let unpriced = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "sales-prospector", "plan": "starter", "title": "t"}),
        )
        .await;
    problem(
        &unpriced,
        StatusCode::UNPROCESSABLE_ENTITY,
        "plan_not_available",
    );

    let big = json!({"template": "x".repeat(8000), "plan": "starter", "title": "t"});
    problem(
        &app.post("/v1/agents", &token, &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    problem(
        &app.get("/v1/agents/not-a-uuid", &token).await,
        StatusCode::BAD_REQUEST,
        "bad_path",
    );
    problem(
        &app.get("/v1/agents?limit=lots", &token).await,
        StatusCode::BAD_REQUEST,
        "bad_query",
    );
    problem(
        &app.get("/v1/agents?cursor=%21%21", &token).await,
        StatusCode::BAD_REQUEST,
        "bad_query",
    );
    // Out-of-range numbers are bad queries, never a 404 or a silent clamp.
    let ops = app.ops_token();
    for (path, token, named) in [
        ("/v1/agents?limit=0", &token, "limit"),
        ("/v1/agents?limit=501", &token, "limit"),
        (
            "/v1/admin/ledger?customer=&limit=-9223372036854775808",
            &ops,
            "limit",
        ),
        ("/v1/admin/forecast?wallet_cents=-1", &ops, "wallet_cents"),
        ("/v1/admin/forecast?days=366", &ops, "days"),
        ("/v1/admin/customers?status=", &ops, "status"),
    ] {
        let answer = app.get(path, token).await;
        problem(&answer, StatusCode::BAD_REQUEST, "bad_query");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{named}:")),
            "{path}: {:?}",
            answer.body
        );
    }
    // A body that is not JSON is 415, as the spec says.
    let no_body = app
        .request(Method::POST, "/v1/agents", Some(&token), None, &[])
        .await;
    problem(
        &no_body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    problem(
        &app.get("/v1/nothing-here", &token).await,
        StatusCode::NOT_FOUND,
        "route_not_found",
    );
    let wrong = app
        .request(
            Method::PUT,
            "/v1/agents",
            Some(&token),
            Some(&json!({})),
            &[],
        )
        .await;
    problem(&wrong, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(wrong.headers.get("allow").unwrap(), "GET, POST");
    let unknown = app
        .get(&format!("/v1/agents/{}", uuid::Uuid::now_v7()), &token)
        .await;
    problem(&unknown, StatusCode::NOT_FOUND, "not_found");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn request_ids_are_echoed_or_generated(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let given = app
        .request(
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", "trace-abc-123")],
        )
        .await;
    assert_eq!(given.headers.get("x-request-id").unwrap(), "trace-abc-123");
    let generated = app.request(Method::GET, "/healthz", None, None, &[]).await;
    assert!(!generated.headers.get("x-request-id").unwrap().is_empty());
    let junk = app
        .request(
            Method::GET,
            "/healthz",
            None,
            None,
            &[("x-request-id", &"x".repeat(500))],
        )
        .await;
    assert_ne!(
        junk.headers.get("x-request-id").unwrap().len(),
        500,
        "an unreasonable id is replaced"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_docs_spec_health_and_metrics_are_served(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let spec = app
        .request(Method::GET, "/openapi.json", None, None, &[])
        .await;
    assert_eq!(spec.status, StatusCode::OK);
    assert_eq!(spec.body["openapi"], "3.1.0");
    assert_eq!(
        spec.body,
        serde_json::to_value(api::openapi()).unwrap(),
        "the served spec is the finished one"
    );
    // The address people type: one redirect to the page.
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(bare.headers()["location"], "docs/");
    let docs = app.request(Method::GET, "/docs/", None, None, &[]).await;
    assert_eq!(docs.status, StatusCode::OK);
    let policy = docs.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    for answer in [&docs, &spec] {
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
        assert_eq!(answer.headers["referrer-policy"], "no-referrer");
    }
    assert!(
        spec.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'")
    );
    assert!(
        docs.body.as_str().unwrap().contains("swagger-ui"),
        "Swagger UI HTML"
    );
    assert_eq!(
        app.request(Method::GET, "/healthz", None, None, &[])
            .await
            .body["status"],
        "ok"
    );
    let ready = app.request(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(ready.body["checks"]["database"], "ok");
    assert!(
        ready.body["checks"].get("upstream").is_none(),
        "a Wiro outage must not take the process out of rotation"
    );
    // Metrics are not on the public port, but on the internal listener.
    let public = app.request(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);
    let weird = app
        .request(
            Method::from_bytes(b"BREW").unwrap(),
            "/healthz",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(weird.status, StatusCode::METHOD_NOT_ALLOWED);
    let text = reqwest::get(format!("{}/metrics", app.metrics_address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("http_requests_total{"), "{text}");
    assert!(text.contains("instances{state=\"running\"} 0"), "{text}");
    assert!(
        text.contains("method=\"OTHER\""),
        "unknown methods share one label"
    );
    assert!(!text.contains("BREW"), "{text}");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn credentials_the_template_does_not_let_customers_edit_are_refused_naming_the_field(
    pool: PgPool,
) {
    let app = testkit::spawn_app(pool).await;
    let token = app.customer_token("editable");
    let order = |credentials: serde_json::Value| {
        json!({"template": "instagram-manager", "plan": "starter", "title": "Shop bot",
               "credentials": credentials})
    };

    // The platform's own OpenAI key is not the customer's to set.
    let platform = app
        .post(
            "/v1/agents",
            &token,
            &order(json!({"instagram": {"authMethod": "wiro"}, "openai": {"apiKey": "sk-mine"}})),
        )
        .await;
    problem(
        &platform,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(
        platform.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("credentials.openai.apiKey: not an editable field"),
        "{:?}",
        platform.body
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "a refused order stores nothing");

    let agent = app.order_instagram(&token).await;
    let id = agent["id"].as_str().unwrap();
    for (credentials, named) in [
        (
            json!({"instagram": {"_editable": {"igUsername": true}}}),
            "credentials.instagram._editable",
        ),
        (
            json!({"instagram": {"igUsername": "me"}}),
            "credentials.instagram.igUsername",
        ),
        (json!({"telegram": {"botToken": "1"}}), "credentials"),
    ] {
        let answer = app
            .patch(
                &format!("/v1/agents/{id}"),
                &token,
                &json!({"credentials": credentials}),
            )
            .await;
        problem(
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{named}:")),
            "{:?}",
            answer.body
        );
    }
    let skill = app
        .patch(
            &format!("/v1/agents/{id}"),
            &token,
            &json!({"custom_skills": [{"key": "not-a-skill", "value": "x"}]}),
        )
        .await;
    problem(
        &skill,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(
        skill.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("custom_skills[0].key:"),
        "{:?}",
        skill.body
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn ten_thousand_bulk_orders_fit_the_batch_route_while_other_routes_keep_the_small_limit(
    pool: PgPool,
) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let ops = app.ops_token();
    // 10,000 orders (~1.3 MB, five times the general limit); the last one is invalid, so the
    // whole body is read and checked and nothing is ordered.
    let mut items: Vec<serde_json::Value> = (0..10_000)
        .map(|i| {
            json!({"customer": format!("bulk-{i:05}"), "template": "instagram-manager",
                   "plan": "starter", "title": "Bot",
                   "credentials": {"instagram": {"authMethod": "wiro"}}})
        })
        .collect();
    items[9_999]["plan"] = json!("gold");
    let body = json!({"items": items});
    assert!(serde_json::to_vec(&body).unwrap().len() > 4 * app.settings.api.body_limit_bytes);
    let answer = app
        .post("/v1/admin/provisioning-batches", &ops, &body)
        .await;
    problem(
        &answer,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("items[9999].plan"),
        "{:?}",
        answer.body
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    // The same size anywhere else is refused.
    let token = app.customer_token("big-body");
    let too_big = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "instagram-manager", "plan": "starter", "title": "x",
                    "padding": "x".repeat(app.settings.api.body_limit_bytes)}),
        )
        .await;
    problem(&too_big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_exhausted_pool_answers_503_with_retry_after_quickly_and_statements_are_bounded(
    pool: PgPool,
) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |s| {
            s.database.api_max_connections = 1;
            s.database.api_acquire_timeout = std::time::Duration::from_millis(300);
        },
        false,
    )
    .await;
    let token = app.customer_token("busy");
    let mut lock = app.pool.begin().await.unwrap();
    let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(&mut *lock)
        .await
        .unwrap();
    assert_eq!(
        timeout, "30s",
        "every pooled connection has the statement timeout"
    );

    // The API's worker thread has one connection of its own: a request whose read waits for a
    // lock holds it, and the next request gives up after the acquire timeout.
    sqlx::query("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let options = app.pool.connect_options();
    let first = app.get("/v1/agents", &token);
    tokio::pin!(first);
    tokio::select! {
        answer = &mut first => panic!("a read went through a locked table: {answer:?}"),
        () = a_statement_waits_for_a_lock(&options) => {}
    }
    let busy = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.get("/v1/agents", &token),
    )
    .await
    .expect("a busy pool must not hang the request");
    problem(&busy, StatusCode::SERVICE_UNAVAILABLE, "database_busy");
    assert_eq!(busy.headers["retry-after"], "1");

    lock.commit().await.unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), first)
        .await
        .expect("the waiting read goes on once the lock is gone");
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    let served = app.get("/v1/agents", &token).await;
    assert_eq!(served.status, StatusCode::OK, "{:?}", served.body);
}

/// Resolves once a backend of this database waits for a lock (within 10 s, or panics); watches
/// on a connection of its own (the test's pool has one, taken by the lock).
async fn a_statement_waits_for_a_lock(options: &sqlx::postgres::PgConnectOptions) {
    use sqlx::Connection as _;
    let mut watcher = sqlx::PgConnection::connect_with(options).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no statement came to wait for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
