//! Spending limits and request rates: an order or a billing action over a customer's limit is
//! refused before anything is charged (409 `limit_exceeded`, naming the limit), ops can read
//! and change a customer's limits, charges we cannot refuse raise an alert, and a customer
//! over its request rate gets 429 with `Retry-After` without slowing anyone else, however many
//! API processes serve it.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use testkit::spawn_app_with;

fn sim_charges(app: &testkit::TestApp) -> Vec<(String, i64)> {
    app.sim
        .sim()
        .ledger()
        .iter()
        .map(|c| (c.kind.to_owned(), (c.amount * 100.0).round() as i64))
        .collect()
}

async fn customer_id(pool: &PgPool, external: &str) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM customers WHERE external_id = $1")
        .bind(external)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn limit_exceeded(answer: &testkit::Answer, name: &str, limit: i64, usage: i64) {
    assert_eq!(answer.status, StatusCode::CONFLICT, "{:?}", answer.body);
    assert_eq!(answer.code(), "limit_exceeded", "{:?}", answer.body);
    assert_eq!(answer.body["limit_name"], name);
    assert_eq!(answer.body["limit"], limit);
    assert_eq!(answer.body["usage"], usage);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_over_max_agents_is_refused_until_ops_raise_the_limit(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| s.limits.max_agents = 1,
        true,
    )
    .await;
    let token = app.customer_token("limited-agents");
    app.running_agent(&token, "instagram-manager", "starter")
        .await;

    let order = json!({"template": "instagram-manager", "plan": "starter", "title": "Second",
                       "credentials": {"instagram": {"authMethod": "wiro"}}});
    let refused = app.post("/v1/agents", &token, &order).await;
    limit_exceeded(&refused, "max_agents", 1, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instances")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "a refused order writes no row");
    assert_eq!(sim_charges(&app).len(), 1, "and charges nothing");

    // Another customer has its own count.
    let other = app.customer_token("other-customer");
    app.running_agent(&other, "instagram-manager", "starter")
        .await;

    let id = customer_id(&app.pool, "limited-agents").await;
    let ops = app.ops_token();
    let path = format!("/v1/admin/customers/{id}/limits");
    let before = app.get(&path, &ops).await;
    assert_eq!(before.status, StatusCode::OK, "{:?}", before.body);
    assert_eq!(before.body["max_agents"], 1);
    assert_eq!(before.body["own_max_agents"], false);
    assert_eq!(before.body["agents"], 1);

    let raised = app
        .request(
            Method::PUT,
            &path,
            Some(&ops),
            Some(&json!({"max_agents": 2})),
            &[],
        )
        .await;
    assert_eq!(raised.status, StatusCode::OK, "{:?}", raised.body);
    assert_eq!(raised.body["max_agents"], 2);
    assert_eq!(raised.body["own_max_agents"], true);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'customer.limits'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 1, "a limit change is audited");

    let second = app.post("/v1/agents", &token, &order).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{:?}", second.body);

    // Customers cannot read or change limits; bad values name the field.
    let forbidden = app.get(&path, &token).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let negative = app
        .request(
            Method::PUT,
            &path,
            Some(&ops),
            Some(&json!({"max_agents": -1})),
            &[],
        )
        .await;
    assert_eq!(negative.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        negative.body["detail"]
            .as_str()
            .unwrap()
            .contains("max_agents"),
        "{:?}",
        negative.body
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn billing_over_the_monthly_limit_is_refused_before_wiro_charges(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        // The starter plan costs 900 cents: one fits, an upgrade does not.
        |s| s.limits.monthly_spend_cents = 1000,
        true,
    )
    .await;
    let token = app.customer_token("limited-spend");
    let agent = app
        .running_agent(&token, "instagram-manager", "starter")
        .await;
    assert_eq!(sim_charges(&app), vec![("deploy".to_owned(), 900)]);

    let upgrade = app
        .post(
            &format!("/v1/agents/{agent}/subscription/upgrade"),
            &token,
            &json!({}),
        )
        .await;
    limit_exceeded(&upgrade, "monthly_spend_cents", 1000, 900);
    assert_eq!(sim_charges(&app).len(), 1, "Wiro was never called");
    let shown = app.get(&format!("/v1/agents/{agent}"), &token).await;
    assert_ne!(
        shown.body["subscription"]["plan"], "agent-pro",
        "{:?}",
        shown.body
    );

    let second = app
        .post(
            "/v1/agents",
            &token,
            &json!({"template": "instagram-manager", "plan": "starter", "title": "Second",
                    "credentials": {"instagram": {"authMethod": "wiro"}}}),
        )
        .await;
    limit_exceeded(&second, "monthly_spend_cents", 1000, 900);

    // Ops lift the limit (0: none); the upgrade goes through.
    let id = customer_id(&app.pool, "limited-spend").await;
    let path = format!("/v1/admin/customers/{id}/limits");
    let lifted = app
        .request(
            Method::PUT,
            &path,
            Some(&app.ops_token()),
            Some(&json!({"monthly_spend_cents": 0})),
            &[],
        )
        .await;
    assert_eq!(lifted.status, StatusCode::OK, "{:?}", lifted.body);
    let upgraded = app
        .post(
            &format!("/v1/agents/{agent}/subscription/upgrade"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(upgraded.status, StatusCode::OK, "{:?}", upgraded.body);
    app.assert_ledgers_match().await;

    // A limit set below what was already charged (as a renewal we cannot refuse would leave
    // it) raises one alert for ops, however often reconciliation looks.
    let lowered = app
        .request(
            Method::PUT,
            &path,
            Some(&app.ops_token()),
            Some(&json!({"monthly_spend_cents": 500})),
            &[],
        )
        .await;
    assert_eq!(lowered.status, StatusCode::OK, "{:?}", lowered.body);
    let mut conn = app.pool.acquire().await.unwrap();
    for _ in 0..2 {
        let over = domain::limits::alert_all_over(&mut conn, &app.settings.limits)
            .await
            .unwrap();
        assert_eq!(over, 1);
    }
    let alerts: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, subject FROM alerts WHERE resolved_at IS NULL")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        alerts,
        vec![("spend_over_limit".to_owned(), format!("customer:{id}"))]
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_customer_over_its_request_rate_gets_429_with_retry_after(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| {
            s.limits.mutations_per_minute = 1;
            s.limits.mutation_burst = 2;
        },
        false,
    )
    .await;
    let token = app.customer_token("chatty");
    let patch = json!({"title": "renamed"});
    let path = "/v1/agents/00000000-0000-0000-0000-000000000000";
    for _ in 0..2 {
        let within = app.patch(path, &token, &patch).await;
        assert_eq!(within.status, StatusCode::NOT_FOUND, "{:?}", within.body);
    }
    let over = app.patch(path, &token, &patch).await;
    assert_eq!(
        over.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        over.body
    );
    assert_eq!(over.code(), "rate_limited");
    let retry_after: u64 = over.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // Reads are not counted; other customers have their own bucket.
    let read = app.get("/v1/agents", &token).await;
    assert_eq!(read.status, StatusCode::OK);
    let other = app.customer_token("quiet");
    let theirs = app.patch(path, &other, &patch).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_request_rate_is_the_deployments_however_many_api_processes_serve_it(pool: PgPool) {
    let tweak = |s: &mut domain::Settings| {
        s.limits.mutations_per_minute = 1;
        s.limits.mutation_burst = 6;
    };
    let sim = || wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 100_000.0);
    let first = spawn_app_with(pool.clone(), sim(), tweak, false).await;
    let second = spawn_app_with(pool, sim(), tweak, false).await;
    // Each counts the other at its next heartbeat (every 2 s).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while first.rate_limits.replicas() != 2 || second.rate_limits.replicas() != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the two API processes did not count each other: {} and {}",
            first.rate_limits.replicas(),
            second.rate_limits.replicas()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A customer spreading its requests over both (as a load balancer would) gets the burst of
    // 6 in all, 3 from each, not 6 from each.
    let patch = json!({"title": "renamed"});
    let path = "/v1/agents/00000000-0000-0000-0000-000000000000";
    let mut answered = Vec::new();
    for i in 0..12 {
        let app = if i % 2 == 0 { &first } else { &second };
        // Each test app signs with its own secret: the same customer, each app's token.
        let token = app.customer_token("spread");
        answered.push(app.patch(path, &token, &patch).await.status);
    }
    let within = answered
        .iter()
        .filter(|s| **s == StatusCode::NOT_FOUND)
        .count();
    let refused = answered
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((within, refused), (6, 6), "{answered:?}");

    // When one stops, the other takes the whole rate back once the stopped one's last
    // heartbeat is older than the live window (6 s).
    drop(second);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while first.rate_limits.replicas() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stopped process still counts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let token = first.customer_token("spread");
    for _ in 0..6 {
        let within = first.patch(path, &token, &patch).await;
        assert_eq!(within.status, StatusCode::NOT_FOUND, "{:?}", within.body);
    }
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_api_process_that_stopped_saying_it_is_alive_stops_counting(pool: PgPool) {
    use domain::db::replicas::heartbeat;
    let live = std::time::Duration::from_secs(6);
    assert_eq!(heartbeat(&pool, "a", live).await.unwrap(), 1);
    assert_eq!(heartbeat(&pool, "b", live).await.unwrap(), 2);
    assert_eq!(
        heartbeat(&pool, "a", live).await.unwrap(),
        2,
        "a counts once"
    );
    // b falls silent: after the live window it no longer counts; after a minute it is gone.
    sqlx::query(
        "UPDATE api_replicas SET seen_at = now() - interval '10 seconds' WHERE member = 'b'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(heartbeat(&pool, "a", live).await.unwrap(), 1);
    sqlx::query(
        "UPDATE api_replicas SET seen_at = now() - interval '2 minutes' WHERE member = 'b'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(heartbeat(&pool, "a", live).await.unwrap(), 1);
    let members: Vec<String> = sqlx::query_scalar("SELECT member FROM api_replicas")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(members, vec!["a".to_owned()]);
}
