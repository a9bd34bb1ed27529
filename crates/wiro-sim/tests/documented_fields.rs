//! The simulator renders only what Wiro documents: no `subscription.cancelatperiodend` (a
//! pending cancel shows nowhere in the documented API) and no `pricing.extracredits` (the packs'
//! prices are not in any documented response). An opt-in flag adds them for experiments.

mod common;

use common::*;
use serde_json::{Value, json};
use wiro_sim::SimConfig;

async fn raw(server: &wiro_sim::SimServer, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}/{path}", server.base_url()))
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every object key anywhere in `value`.
fn keys(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

async fn rendered_keys(server: &wiro_sim::SimServer) -> Vec<String> {
    let c = client(server);
    let agent = deploy_seed(&c, "pro").await;
    c.cancel_subscription(&agent.guid).await.unwrap();
    let mut out = Vec::new();
    for (path, body) in [
        ("Agent/List", json!({})),
        (
            "Agent/Detail",
            json!({"slug": "instagram-manager", "type": "full"}),
        ),
        ("UserAgent/MyAgents", json!({})),
        ("UserAgent/Detail", json!({"guid": agent.guid})),
    ] {
        keys(&raw(server, path, body).await, &mut out);
    }
    out
}

#[tokio::test]
async fn responses_carry_no_undocumented_cancel_flag_or_pack_prices() {
    let server = sim().await;
    let keys = rendered_keys(&server).await;
    assert!(keys.iter().any(|k| k == "currentperiodend"));
    assert!(!keys.iter().any(|k| k == "cancelatperiodend"), "{keys:?}");
    let list = raw(&server, "Agent/List", json!({})).await;
    for agent in list["agents"].as_array().unwrap() {
        assert!(agent["pricing"].get("extracredits").is_none(), "{agent}");
    }
}

#[tokio::test]
async fn the_opt_in_flag_adds_the_undocumented_fields_for_experiments() {
    let mut config = SimConfig::with_account(KEY, 1000.0);
    config.undocumented_fields = true;
    let server = sim_with(config).await;
    let keys = rendered_keys(&server).await;
    assert!(keys.iter().any(|k| k == "cancelatperiodend"));
    let list = raw(&server, "Agent/List", json!({})).await;
    assert!(
        list["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["pricing"].get("extracredits").is_some())
    );
}
