//! The committed `openapi/openapi.json` matches what the code serves. Rewrite it with
//! `UPDATE_OPENAPI=1 cargo test -p api --test openapi`.

use std::path::PathBuf;

fn committed() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json")
}

#[test]
fn the_committed_spec_is_in_sync_with_the_code() {
    let current = api::openapi().to_pretty_json().expect("serialises") + "\n";
    let path = committed();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &current).expect("writes openapi/openapi.json");
        return;
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == current,
        "openapi/openapi.json is out of date: run `UPDATE_OPENAPI=1 cargo test -p api --test openapi` and commit it"
    );
}

#[test]
fn every_operation_documents_its_answers_and_needs_auth_unless_public() {
    let spec = serde_json::to_value(api::openapi()).unwrap();
    // Wiro's message callbacks carry no token of ours but an unguessable per-message one.
    let public = ["/healthz", "/readyz", "/v1/wiro/callbacks/{token}"];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
                if !status.starts_with('2') && !public.contains(&path.as_str()) {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} does not document its problem body"
                    );
                }
            }
            // Statuses the server gives before a handler runs.
            let documents = |status: &str| op["responses"].get(status).is_some();
            assert!(
                documents("400") && documents("500"),
                "{method} {path}: 400/500"
            );
            if op.get("requestBody").is_some() {
                assert!(documents("415"), "{method} {path} takes a body: 415");
                assert!(documents("413"), "{method} {path} takes a body: 413");
            }
            let keyed = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
            if keyed {
                assert!(
                    documents("409") && documents("422"),
                    "{method} {path} takes an Idempotency-Key: 409 and 422"
                );
            }
            if !public.contains(&path.as_str()) {
                assert_eq!(
                    op["security"][0]["bearer"],
                    serde_json::json!([]),
                    "{method} {path} is not secured"
                );
            }
        }
    }
}
