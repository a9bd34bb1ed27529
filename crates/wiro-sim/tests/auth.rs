//! x-api-key, Bearer and signature projects, and Wiro's 401 answers.

mod common;

use common::*;
use serde_json::{Value, json};
use wiro_client::{Auth, Error, WiroError};
use wiro_sim::{AccountSpec, SimConfig};

async fn signature_sim() -> wiro_sim::SimServer {
    let mut config = SimConfig::with_account(KEY, 100.0);
    config.accounts.push(AccountSpec {
        api_key: "signed-key".into(),
        api_secret: Some("signed-secret".into()),
        wallet: 100.0,
    });
    sim_with(config).await
}

fn refusal(err: &Error) -> (u16, &WiroError) {
    match err {
        Error::Api { status, error, .. } => (*status, error),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn every_auth_method_reaches_the_account() {
    let server = signature_sim().await;
    for auth in [
        Auth::ApiKey(KEY.to_owned().into()),
        Auth::Bearer(KEY.to_owned().into()),
        Auth::Signature {
            api_key: "signed-key".to_owned().into(),
            api_secret: "signed-secret".to_owned().into(),
        },
    ] {
        let c = client_for(&server, Some(auth.clone()));
        assert!(c.my_agents(&Default::default()).await.is_ok(), "{auth:?}");
    }
}

#[tokio::test]
async fn wrong_credentials_get_wiros_401_messages() {
    let server = signature_sim().await;
    let cases = [
        (
            Auth::ApiKey("unknown".to_owned().into()),
            WiroError::UnknownApiKey,
        ),
        (
            Auth::ApiKey("signed-key".to_owned().into()),
            WiroError::SignatureRequired,
        ),
        (
            Auth::Signature {
                api_key: "signed-key".to_owned().into(),
                api_secret: "wrong".to_owned().into(),
            },
            WiroError::InvalidSignature,
        ),
        (
            Auth::Bearer("unknown".to_owned().into()),
            WiroError::BearerInvalid,
        ),
    ];
    for (auth, expected) in cases {
        let c = client_for(&server, Some(auth));
        let err = c.my_agents(&Default::default()).await.unwrap_err();
        assert_eq!(refusal(&err), (401, &expected));
        assert!(err.wiro().unwrap().is_auth());
    }
}

#[tokio::test]
async fn no_credentials_at_all_is_a_missing_bearer_and_an_unknown_path_is_a_404() {
    let server = sim().await;
    let raw = reqwest::Client::new();
    let response = raw
        .post(format!("{}/UserAgent/MyAgents", server.base_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], 99);
    assert_eq!(
        body["errors"][0]["message"],
        "Authorization bearer token is not founded in headers."
    );

    let response = raw
        .post(format!("{}/UserAgent/Nope", server.base_url()))
        .header("x-api-key", KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "Error parsing url.");
}

#[tokio::test]
async fn the_client_refuses_to_call_a_private_endpoint_without_a_key() {
    let server = sim().await;
    let anonymous = client_for(&server, None);
    let err = anonymous.my_agents(&Default::default()).await.unwrap_err();
    assert!(matches!(err, Error::NotSent { .. }), "{err:?}");
    assert!(
        server.sim().call_counts().is_empty(),
        "nothing reached the simulator"
    );
}
