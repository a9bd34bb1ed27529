//! OAuth connections through the API against the simulator: an agent whose template needs an
//! account waits in `awaiting_connection`; connect, follow the consent page, the redirect
//! carries the provider's parameters, the agent runs; Facebook's page choice; a denied consent;
//! an expired state; disconnect puts it back to waiting; redirect URLs outside the allowed
//! origins refused before anything reaches Wiro.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app_with};

const BACK: &str = "http://localhost:5173/integrations/done";

async fn app(pool: PgPool) -> TestApp {
    spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| s.connections.allowed_redirect_origins = vec!["http://localhost:*".into()],
        true,
    )
    .await
}

/// An agent of `template` ordered with `credentials`, once it waits for its accounts.
async fn agent(app: &TestApp, token: &str, template: &str, credentials: Value) -> String {
    let order = app
        .post(
            "/v1/agents",
            token,
            &json!({"template": template, "plan": "starter", "title": "Connected", "credentials": credentials}),
        )
        .await;
    assert_eq!(order.status, StatusCode::ACCEPTED, "{:?}", order.body);
    let id = order.body["id"].as_str().unwrap().to_owned();
    app.wait_for_state(token, &id, "awaiting_connection").await;
    id
}

async fn connect(
    app: &TestApp,
    token: &str,
    id: &str,
    provider: &str,
    body: Value,
) -> testkit::Answer {
    app.post(
        &format!("/v1/agents/{id}/connections/{provider}"),
        token,
        &body,
    )
    .await
}

/// Opens the consent page as a browser would and returns the redirect's parameters.
async fn follow(authorize_url: &str) -> BTreeMap<String, String> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = browser.get(authorize_url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(BACK), "{location}");
    reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn connection(app: &TestApp, token: &str, id: &str, provider: &str) -> Value {
    let list = app
        .get(&format!("/v1/agents/{id}/connections"), token)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    list.body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["provider"] == provider)
        .cloned()
        .unwrap_or_else(|| panic!("no {provider} in {:?}", list.body))
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_instagram_agent_connects_through_the_consent_page_and_disconnects(pool: PgPool) {
    let app = app(pool).await;
    let token = app.customer_token("ig-owner");
    let id = agent(
        &app,
        &token,
        "instagram-manager",
        json!({"instagram": {"authMethod": "own", "appId": "app-1", "appSecret": "secret-1"}}),
    )
    .await;
    let waiting = app.get(&format!("/v1/agents/{id}"), &token).await;
    assert_eq!(waiting.body["missing_connections"], json!(["instagram"]));
    let start = app
        .post(&format!("/v1/agents/{id}/start"), &token, &json!({}))
        .await;
    assert_eq!(
        start.status,
        StatusCode::CONFLICT,
        "cannot start without the account"
    );
    let before = connection(&app, &token, &id, "instagram").await;
    assert_eq!(before["connected"], false);
    assert_eq!(before["required"], true);

    let started = connect(
        &app,
        &token,
        &id,
        "instagram",
        json!({"redirect_url": BACK}),
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{:?}", started.body);
    assert_eq!(
        started.body["auth_method"], "own",
        "Instagram has no Wiro app"
    );
    let params = follow(started.body["authorize_url"].as_str().unwrap()).await;
    assert_eq!(params["ig_connected"], "true");
    assert_eq!(params["ig_username"], "sim_ig_user");

    // The job polls Wiro's Status after the Connect and starts the agent by itself.
    let running = app.wait_for_state(&token, &id, "running").await;
    assert_eq!(running["missing_connections"], json!([]));
    let after = connection(&app, &token, &id, "instagram").await;
    assert_eq!(after["connected"], true);
    assert_eq!(after["account"], "sim_ig_user");
    assert!(after["token_expires_at"].is_string());

    // Another customer cannot see or touch it.
    let other = app.customer_token("someone-else");
    let theirs = connect(
        &app,
        &other,
        &id,
        "instagram",
        json!({"redirect_url": BACK}),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    let gone = app
        .delete(&format!("/v1/agents/{id}/connections/instagram"), &token)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        connection(&app, &token, &id, "instagram").await["connected"],
        false
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn refusals_say_what_was_wrong_and_nothing_unsafe_reaches_wiro(pool: PgPool) {
    let app = app(pool).await;
    let token = app.customer_token("careful");
    // The default test order: Instagram in Wiro mode, no app credentials.
    let id = agent(
        &app,
        &token,
        "instagram-manager",
        json!({"instagram": {"authMethod": "wiro"}}),
    )
    .await;

    for (url, why) in [
        ("https://evil.example.com/steal", "allowed_redirect_origins"),
        ("http://localhost.evil.example.com/x", "https"),
        ("not a url", "absolute URL"),
    ] {
        let refused = connect(&app, &token, &id, "instagram", json!({"redirect_url": url})).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert!(
            refused.body["detail"].as_str().unwrap().contains(why),
            "{url}: {:?}",
            refused.body
        );
    }
    let wiro_mode = connect(
        &app,
        &token,
        &id,
        "instagram",
        json!({"redirect_url": BACK, "auth_method": "wiro"}),
    )
    .await;
    assert_eq!(wiro_mode.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.sim.sim().call_counts().get("UserAgentOAuth/IGConnect"),
        None,
        "refused before any call to Wiro"
    );

    let no_app = connect(
        &app,
        &token,
        &id,
        "instagram",
        json!({"redirect_url": BACK}),
    )
    .await;
    assert_eq!(no_app.status, StatusCode::CONFLICT);
    assert_eq!(no_app.code(), "app_credentials_missing");

    let unknown = connect(&app, &token, &id, "myspace", json!({"redirect_url": BACK})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let not_in_template =
        connect(&app, &token, &id, "twitter", json!({"redirect_url": BACK})).await;
    assert_eq!(not_in_template.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_denied_consent_and_an_expired_state_leave_the_agent_unconnected(pool: PgPool) {
    let app = app(pool).await;
    let token = app.customer_token("hesitant");
    let id = agent(
        &app,
        &token,
        "instagram-manager",
        json!({"instagram": {"authMethod": "own", "appId": "a", "appSecret": "s"}}),
    )
    .await;
    let started = connect(
        &app,
        &token,
        &id,
        "instagram",
        json!({"redirect_url": BACK}),
    )
    .await;
    let url = started.body["authorize_url"].as_str().unwrap();
    let denied = follow(&format!("{url}&decision=deny")).await;
    assert_eq!(denied["ig_error"], "authorization_denied");

    let started = connect(
        &app,
        &token,
        &id,
        "instagram",
        json!({"redirect_url": BACK}),
    )
    .await;
    app.sim.sim().advance_ms(15 * 60 * 1000 + 1);
    let expired = follow(started.body["authorize_url"].as_str().unwrap()).await;
    assert_eq!(expired["ig_error"], "session_expired");
    assert_eq!(
        connection(&app, &token, &id, "instagram").await["connected"],
        false
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_facebook_connection_is_complete_once_a_page_is_chosen(pool: PgPool) {
    let app = app(pool).await;
    let token = app.customer_token("publisher");
    let id = agent(
        &app,
        &token,
        "social-publisher",
        json!({"twitter": {"authMethod": "wiro"},
               "facebook": {"authMethod": "own", "appId": "fb-app", "appSecret": "fb-secret"}}),
    )
    .await;
    let started = connect(&app, &token, &id, "facebook", json!({"redirect_url": BACK})).await;
    assert_eq!(started.status, StatusCode::OK, "{:?}", started.body);
    let params = follow(started.body["authorize_url"].as_str().unwrap()).await;
    let pages: Vec<Value> = serde_json::from_str(&params["fb_pages"]).unwrap();
    assert_eq!(
        connection(&app, &token, &id, "facebook").await["connected"],
        false
    );

    let wrong = app
        .post(
            &format!("/v1/agents/{id}/connections/facebook/page"),
            &token,
            &json!({"page_id": "not-offered"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let chosen = app
        .post(
            &format!("/v1/agents/{id}/connections/facebook/page"),
            &token,
            &json!({"page_id": pages[1]["id"]}),
        )
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{:?}", chosen.body);
    let facebook = connection(&app, &token, &id, "facebook").await;
    assert_eq!(facebook["connected"], true);
    assert_eq!(facebook["account"], pages[1]["name"]);
    // X uses Wiro's app by default.
    let x = connect(&app, &token, &id, "twitter", json!({"redirect_url": BACK})).await;
    assert_eq!(x.body["auth_method"], "wiro");
    assert_eq!(
        follow(x.body["authorize_url"].as_str().unwrap()).await["x_connected"],
        "true"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_catalog_says_which_groups_connect_and_how_and_filters_like_wiro(pool: PgPool) {
    let app = app(pool).await;
    let token = app.customer_token("browsing");
    let detail = app.get("/v1/catalog/instagram-manager", &token).await;
    assert_eq!(detail.status, StatusCode::OK);
    let instagram = detail.body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "instagram")
        .unwrap()
        .clone();
    assert_eq!(instagram["connection"]["auth_methods"], json!(["own"]));
    assert_eq!(
        instagram["connection"]["own_app_fields"],
        json!(["appId", "appSecret"])
    );
    let social = app.get("/v1/catalog/social-publisher", &token).await;
    let twitter = social.body["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "twitter")
        .unwrap()
        .clone();
    assert_eq!(
        twitter["connection"]["auth_methods"],
        json!(["wiro", "own"])
    );
    let email = app.get("/v1/catalog/email-assistant", &token).await;
    assert!(
        email.body["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g.get("connection").is_none()),
        "API-key groups connect nothing"
    );

    let slugs = |answer: &testkit::Answer| -> Vec<String> {
        answer
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap().to_owned())
            .collect()
    };
    let found = app.get("/v1/catalog?search=INSTAGRAM", &token).await;
    assert_eq!(slugs(&found), ["instagram-manager"]);
    let ads = app.get("/v1/catalog?category=advertising", &token).await;
    assert_eq!(slugs(&ads), ["ads-manager"]);
    let none = app.get("/v1/catalog?search=no-such-thing", &token).await;
    assert!(slugs(&none).is_empty());

    // Paging as Wiro's `start` and `limit`: the pages add up to the whole list, in order.
    let all = app.get("/v1/catalog", &token).await;
    let total: usize = all.headers["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(total, slugs(&all).len());
    assert!(total > 2);
    let first = app.get("/v1/catalog?limit=2", &token).await;
    let rest = app.get("/v1/catalog?start=2&limit=1000", &token).await;
    assert_eq!(first.headers["x-total-count"], total.to_string().as_str());
    assert_eq!([slugs(&first), slugs(&rest)].concat(), slugs(&all));
    for bad in ["limit=0", "limit=1001", "start=-1"] {
        let refused = app.get(&format!("/v1/catalog?{bad}"), &token).await;
        assert_eq!(refused.status, reqwest::StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(refused.code(), "bad_query");
    }
}
