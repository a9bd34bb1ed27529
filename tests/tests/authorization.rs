//! Who may call what: another customer's ids answer 404 on every customer route; a customer
//! token gets 403 on every ops route; every malformed or wrong JWT gets 401 with a problem body.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app_with};

/// Every customer-scoped route, with `{id}` / `{message_id}` / `{session}` placeholders.
const CUSTOMER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/agents/{id}"),
    ("PATCH", "/v1/agents/{id}"),
    ("POST", "/v1/agents/{id}/start"),
    ("POST", "/v1/agents/{id}/stop"),
    ("POST", "/v1/agents/{id}/messages"),
    ("GET", "/v1/agents/{id}/messages/{message_id}"),
    ("POST", "/v1/agents/{id}/messages/{message_id}/cancel"),
    ("GET", "/v1/agents/{id}/sessions"),
    ("GET", "/v1/agents/{id}/sessions/{session}/messages"),
    ("DELETE", "/v1/agents/{id}/sessions/{session}"),
    ("GET", "/v1/agents/{id}/subscription"),
    ("POST", "/v1/agents/{id}/subscription/upgrade"),
    ("POST", "/v1/agents/{id}/subscription/cancel"),
    ("POST", "/v1/agents/{id}/subscription/renew"),
    ("POST", "/v1/agents/{id}/credits"),
];

const ADMIN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/admin/customers"),
    ("POST", "/v1/admin/customers"),
    ("GET", "/v1/admin/customers/{uuid}"),
    ("POST", "/v1/admin/customers/{uuid}/suspend"),
    ("POST", "/v1/admin/customers/{uuid}/reactivate"),
    ("POST", "/v1/admin/customers/{uuid}/close"),
    ("GET", "/v1/admin/agents"),
    ("GET", "/v1/admin/agents/{uuid}"),
    ("POST", "/v1/admin/agents/{uuid}/retry"),
    ("POST", "/v1/admin/provisioning-batches"),
    ("GET", "/v1/admin/provisioning-batches/{uuid}"),
    ("GET", "/v1/admin/ledger"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/jobs/failed"),
    ("POST", "/v1/admin/jobs/{job}/retry"),
    ("GET", "/v1/admin/alerts"),
    ("POST", "/v1/admin/alerts/1/resolve"),
    ("GET", "/v1/admin/forecast"),
];

fn body_for(path: &str) -> Option<Value> {
    if path.ends_with("/messages") {
        Some(json!({"message": "hi"}))
    } else if path.ends_with("/credits") {
        Some(json!({"pack": "package1"}))
    } else if path.ends_with("/customers") {
        Some(json!({"external_id": "x"}))
    } else if path.ends_with("/provisioning-batches") {
        Some(
            json!({"items": [{"customer": "x", "template": "instagram-manager", "plan": "starter", "title": "t"}]}),
        )
    } else {
        Some(json!({}))
    }
}

async fn call(app: &TestApp, method: &str, path: &str, token: &str) -> testkit::Answer {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let body = (method != Method::GET && method != Method::DELETE)
        .then(|| body_for(path))
        .flatten();
    app.request(method, path, Some(token), body.as_ref(), &[])
        .await
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn another_customers_resources_are_indistinguishable_from_missing_ones(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10_000.0),
        |_| {},
        true,
    )
    .await;
    let alice = app.customer_token("alice");
    let bob = app.customer_token("bob");
    let id = app.order_instagram(&alice).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_state(&alice, &id, "running").await;
    let sent = app
        .post(
            &format!("/v1/agents/{id}/messages"),
            &alice,
            &json!({"message": "mine", "session": "s"}),
        )
        .await;
    let message_id = sent.body["id"].as_str().unwrap().to_owned();

    for (method, template) in CUSTOMER_ROUTES {
        let path = template
            .replace("{id}", &id)
            .replace("{message_id}", &message_id)
            .replace("{session}", "s");
        let answer = call(&app, method, &path, &bob).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {template} as another customer: {:?}",
            answer.body
        );
        assert_eq!(answer.code(), "not_found");
        assert_eq!(answer.content_type(), "application/problem+json");
    }
    // And Alice still has her agent, untouched.
    let mine = app.get(&format!("/v1/agents/{id}"), &alice).await;
    assert_eq!(mine.body["state"], "running");
    assert!(
        app.get("/v1/agents", &bob).await.body["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_customer_token_is_refused_on_every_ops_route_and_an_ops_token_on_customer_routes(
    pool: PgPool,
) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let customer = app.customer_token("carol");
    let uuid = uuid::Uuid::now_v7().to_string();
    for (method, template) in ADMIN_ROUTES {
        let path = template.replace("{uuid}", &uuid).replace("{job}", "01JOB");
        let answer = call(&app, method, &path, &customer).await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{method} {template}: {:?}",
            answer.body
        );
        assert_eq!(answer.code(), "ops_role_required");
    }
    let ops = app.ops_token();
    let answer = app.get("/v1/agents", &ops).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.code(), "customer_token_required");
}

fn token(header: &Header, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn every_bad_token_gets_401_with_a_problem_body(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let secret = secrecy::ExposeSecret::expose_secret(&app.settings.auth.hs256_secret)
        .as_bytes()
        .to_vec();
    let now = chrono::Utc::now().timestamp();
    let good = json!({"sub": "dave", "iss": app.settings.auth.issuer, "aud": app.settings.auth.audience, "exp": now + 600});
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    let hs = Header::new(Algorithm::HS256);
    let none_token = {
        use base64::Engine;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good)
        )
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("not.a.jwt".into())),
        (
            "bad signature",
            Some(token(&hs, &good, b"another-secret-of-at-least-32-bytes!!")),
        ),
        ("alg none", Some(none_token)),
        (
            "another algorithm",
            Some(token(&Header::new(Algorithm::HS512), &good, &secret)),
        ),
        (
            "expired",
            Some(token(&hs, &with("exp", json!(now - 3600)), &secret)),
        ),
        (
            "wrong aud",
            Some(token(&hs, &with("aud", json!("someone-else")), &secret)),
        ),
        (
            "wrong iss",
            Some(token(&hs, &with("iss", json!("evil")), &secret)),
        ),
        ("missing sub", Some(token(&hs, &without("sub"), &secret))),
        ("missing exp", Some(token(&hs, &without("exp"), &secret))),
        (
            "nbf in the future",
            Some(token(&hs, &with("nbf", json!(now + 600)), &secret)),
        ),
        (
            "lifetime over auth.max_token_lifetime",
            Some(token(
                &hs,
                &json!({"sub": "dave", "iss": app.settings.auth.issuer, "aud": app.settings.auth.audience,
                        "iat": now, "exp": now + 48 * 3600}),
                &secret,
            )),
        ),
        (
            "no iat, expiring past the cap",
            Some(token(&hs, &with("exp", json!(now + 48 * 3600)), &secret)),
        ),
    ];
    for (case, token) in cases {
        let answer = app
            .request(Method::GET, "/v1/agents", token.as_deref(), None, &[])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {:?}",
            answer.body
        );
        assert_eq!(answer.code(), "unauthorized", "{case}");
        assert_eq!(answer.content_type(), "application/problem+json", "{case}");
        assert_eq!(answer.body["status"], 401);
        assert!(
            answer.body["detail"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{case}"
        );
    }
    // The good one passes.
    let ok = app
        .request(
            Method::GET,
            "/v1/agents",
            Some(&token(&hs, &good, &secret)),
            None,
            &[],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_ops_token_is_not_a_customer_token_with_a_claim(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let secret = secrecy::ExposeSecret::expose_secret(&app.settings.auth.hs256_secret)
        .as_bytes()
        .to_vec();
    let now = chrono::Utc::now().timestamp();
    let hs = Header::new(Algorithm::HS256);
    // A customer-audience token claiming the role: forged (or a customer's own, edited).
    let forged = token(
        &hs,
        &json!({"sub": "mallory", "iss": app.settings.auth.issuer, "aud": app.settings.auth.audience,
                "exp": now + 600, "role": "ops"}),
        &secret,
    );
    let answer = app.get("/v1/admin/ledger", &forged).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer.body);
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("ops audience")
    );
    // An ops-audience token without the role is no customer either.
    let no_role = token(
        &hs,
        &json!({"sub": "mallory", "iss": app.settings.auth.issuer, "aud": app.settings.auth.ops_audience,
                "exp": now + 600}),
        &secret,
    );
    assert_eq!(
        app.get("/v1/agents", &no_role).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The real thing: the ops audience and the role.
    let ops = app.ops_token();
    assert_eq!(
        app.get("/v1/admin/ledger", &ops).await.status,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_suspended_customer_is_refused_with_a_clear_code(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 10.0),
        |_| {},
        false,
    )
    .await;
    let ops = app.ops_token();
    let customer = app
        .post(
            "/v1/admin/customers",
            &ops,
            &json!({"external_id": "erin", "display_name": "Erin"}),
        )
        .await;
    assert_eq!(customer.status, StatusCode::OK);
    let id = customer.body["id"].as_str().unwrap();
    let suspended = app
        .post(
            &format!("/v1/admin/customers/{id}/suspend"),
            &ops,
            &json!({}),
        )
        .await;
    assert_eq!(suspended.body["status"], "suspended");
    let answer = app.get("/v1/agents", &app.customer_token("erin")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.code(), "customer_suspended");
    // The one-round-trip read of one agent says so too.
    let one = app
        .get(
            &format!("/v1/agents/{}", uuid::Uuid::nil()),
            &app.customer_token("erin"),
        )
        .await;
    assert_eq!(one.status, StatusCode::FORBIDDEN);
    assert_eq!(one.code(), "customer_suspended");
}
