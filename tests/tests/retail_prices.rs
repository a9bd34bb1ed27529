//! Retail prices: the operator's price list, the catalog at retail, every ledger row with both
//! amounts, a customer's own charges, and the monthly statement the SaaS bills from.

use std::collections::BTreeMap;

use domain::jobs::SweepKind;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, spawn_app_with};
use wiro_sim::SimConfig;

/// email-assistant's plans are on the list; its packs are not (the 50% markup prices them).
async fn priced_app(pool: PgPool) -> TestApp {
    spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        |s| {
            s.pricing.currency = "USD".into();
            s.pricing.default_markup_percent = 50;
            s.pricing.templates = BTreeMap::from([(
                "email-assistant".to_owned(),
                BTreeMap::from([("starter".to_owned(), 1500), ("pro".to_owned(), 4500)]),
            )]);
        },
        true,
    )
    .await
}

fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_months_statement_sums_to_the_price_list_and_its_wholesale_to_wiros_ledger(pool: PgPool) {
    let app = priced_app(pool).await;
    let token = app.customer_token("billed");

    // The catalog shows what the customer pays.
    let template = app.get("/v1/catalog/email-assistant", &token).await;
    let plans = &template.body["plans"];
    assert_eq!(plans[0]["name"], "starter");
    assert_eq!(plans[0]["price_minor"], 1500);
    assert_eq!(plans[0]["currency"], "USD");
    assert_eq!(plans[1]["price_minor"], 4500);
    assert!(
        plans[0].get("wholesale_cents").is_none(),
        "not for customers"
    );
    let pack = &template.body["extra_credit_packs"][0];
    assert_eq!(pack["price_minor"], 600, "400 wholesale + 50%");

    // A deploy, an upgrade, a pack and a renewal.
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let up = app
        .post(
            &format!("/v1/agents/{id}/subscription/upgrade"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(up.status, StatusCode::OK, "{:?}", up.body);
    let pack = app
        .post(
            &format!("/v1/agents/{id}/credits"),
            &token,
            &json!({"pack": "package1"}),
        )
        .await;
    assert_eq!(pack.status, StatusCode::OK, "{:?}", pack.body);
    app.sim.sim().advance_days(30);
    app.run_sweeps(&[SweepKind::Reconcile]).await;

    let ops = app.ops_token();
    let customer_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM customers WHERE external_id = 'billed'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let statement = app
        .get(
            &format!(
                "/v1/admin/customers/{customer_id}/statement?month={}",
                this_month()
            ),
            &ops,
        )
        .await;
    assert_eq!(statement.status, StatusCode::OK, "{:?}", statement.body);
    let lines = statement.body["lines"].as_array().unwrap();
    let by_kind =
        |kind: &str| -> Vec<&Value> { lines.iter().filter(|l| l["kind"] == kind).collect() };
    assert_eq!(by_kind("deploy").len(), 1);
    assert_eq!(by_kind("upgrade").len(), 1);
    assert_eq!(by_kind("extra_credits").len(), 1);
    assert_eq!(by_kind("renewal").len(), 1);
    let upgrade_wholesale = by_kind("upgrade")[0]["wholesale_cents"].as_i64().unwrap();
    // Prorated at retail the way Wiro prorated wholesale: the same share of the difference.
    let upgrade_retail =
        ((4500 - 1500) as f64 * upgrade_wholesale as f64 / (1900 - 500) as f64).round() as i64;
    assert_eq!(by_kind("deploy")[0]["retail_amount_minor"], 1500);
    assert_eq!(by_kind("upgrade")[0]["retail_amount_minor"], upgrade_retail);
    assert_eq!(by_kind("extra_credits")[0]["retail_amount_minor"], 600);
    assert_eq!(
        by_kind("renewal")[0]["retail_amount_minor"],
        4500,
        "renewed on Pro"
    );
    assert_eq!(
        statement.body["retail_totals"]["USD"],
        1500 + upgrade_retail + 600 + 4500
    );
    // Wholesale totals are Wiro's own ledger.
    let wiro_total: i64 = app
        .sim
        .sim()
        .ledger()
        .iter()
        .map(|c| (c.amount * 100.0).round() as i64)
        .sum();
    assert_eq!(statement.body["wholesale_total_cents"], wiro_total);
    app.assert_ledgers_match().await;

    // The same as CSV, for the SaaS's billing.
    let csv = app
        .request(
            reqwest::Method::GET,
            &format!(
                "/v1/admin/customers/{customer_id}/statement?month={}",
                this_month()
            ),
            Some(&ops),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    assert!(csv.content_type().starts_with("text/csv"));
    let rows: Vec<&str> = csv.body.as_str().unwrap().lines().collect();
    assert!(rows[0].starts_with("created_at,agent_id,kind,reference,retail_amount_minor"));
    assert_eq!(rows.len(), 1 + 4);

    // The customer sees its own charges at retail, nothing of the wholesale side.
    let charges = app.get("/v1/charges", &token).await;
    let items = charges.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let owed: i64 = items
        .iter()
        .map(|c| c["amount_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(owed, 1500 + upgrade_retail + 600 + 4500);
    assert!(items.iter().all(|c| c.get("wholesale_cents").is_none()));
    let other = app.customer_token("someone-else");
    assert_eq!(
        app.get("/v1/charges", &other).await.body["items"],
        json!([]),
        "nobody sees another customer's charges"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn ops_change_the_price_list_and_bad_prices_or_months_are_refused(pool: PgPool) {
    let app = priced_app(pool).await;
    let ops = app.ops_token();
    let list = app.get("/v1/admin/price-list", &ops).await;
    assert_eq!(list.body["currency"], "USD");
    assert_eq!(list.body["default_markup_percent"], 50);
    assert_eq!(list.body["prices"].as_array().unwrap().len(), 2);
    assert_eq!(list.body["prices"][0]["source"], "config");

    let set = app
        .put(
            "/v1/admin/price-list/email-assistant/starter",
            &ops,
            &json!({"amount_minor": 1900, "currency": "USD"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    assert_eq!(set.body["source"], "ops");
    let token = app.customer_token("after-change");
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let charges = app.get("/v1/charges", &token).await;
    assert_eq!(charges.body["items"][0]["amount_minor"], 1900, "{id}");

    for (body, why) in [
        (json!({"amount_minor": -1, "currency": "USD"}), "negative"),
        (json!({"amount_minor": 100, "currency": "usd"}), "not ISO"),
        (
            json!({"amount_minor": 100, "currency": "EUR"}),
            "not the list's currency",
        ),
        (json!({"amount_minor": 10.5, "currency": "USD"}), "a float"),
    ] {
        let refused = app
            .put("/v1/admin/price-list/email-assistant/pro", &ops, &body)
            .await;
        assert!(
            refused.status == StatusCode::UNPROCESSABLE_ENTITY
                || refused.status == StatusCode::BAD_REQUEST,
            "{why}: {:?}",
            refused.body
        );
    }
    let unknown = app
        .put(
            "/v1/admin/price-list/email-assistant/gold",
            &ops,
            &json!({"amount_minor": 100, "currency": "USD"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad_month = app
        .get(
            &format!(
                "/v1/admin/customers/{}/statement?month=2026-13",
                uuid::Uuid::nil()
            ),
            &ops,
        )
        .await;
    assert_eq!(bad_month.status, StatusCode::BAD_REQUEST);
    let removed = app
        .delete("/v1/admin/price-list/email-assistant/starter", &ops)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
}

/// The business clock's `YYYY-MM` now.
async fn business_month(app: &TestApp) -> String {
    domain::db::clock::now(&app.pool)
        .await
        .unwrap()
        .format("%Y-%m")
        .to_string()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn months_follow_the_one_business_clock_that_tests_move_with_wiros(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        SimConfig::with_account(testkit::WIRO_KEY, 100_000.0),
        // One starter order (500 cents) fits this month's limit; a second does not.
        |s| s.limits.monthly_spend_cents = 800,
        true,
    )
    .await;
    let token = app.customer_token("monthly");
    let first_month = business_month(&app).await;
    let id = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    let order = json!({"template": "email-assistant", "plan": "starter", "title": "second"});
    let refused = app.post("/v1/agents", &token, &order).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.body);

    // A month later for Wiro and for us: the plan renews, the renewal is next month's charge,
    // and the month's spending starts again.
    app.advance_days(31).await;
    app.run_sweeps(&[SweepKind::Reconcile]).await;
    let next_month = business_month(&app).await;
    assert_ne!(next_month, first_month);
    let customer_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM customers WHERE external_id = 'monthly'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let ops = app.ops_token();
    let kinds = |statement: &Value| -> Vec<String> {
        statement["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = app
        .get(
            &format!("/v1/admin/customers/{customer_id}/statement?month={first_month}"),
            &ops,
        )
        .await;
    assert_eq!(kinds(&first.body), ["deploy"]);
    let second = app
        .get(
            &format!("/v1/admin/customers/{customer_id}/statement?month={next_month}"),
            &ops,
        )
        .await;
    assert_eq!(kinds(&second.body), ["renewal"], "{id}");
    // The renewal (500) is this month's spending now; another 500 would pass 800.
    let refused = app.post("/v1/agents", &token, &order).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{:?}", refused.body);
    assert_eq!(
        refused.body["usage"], 500,
        "only the new month's renewal counts"
    );
}
