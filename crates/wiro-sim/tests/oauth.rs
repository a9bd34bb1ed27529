//! `UserAgentOAuth/*` as the notes §6.3 describe it: Connect → the consent page on the
//! simulator → 302 to the redirect URL with the provider's parameters; Status, Disconnect,
//! TokenRefresh, the finalize calls, the 15-minute state, own mode without app credentials.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{Value, json};
use wiro_client::models::{
    AgentStatus, CredentialValues, DeployRequest, DriveFolder, OAuthConnectRequest, OAuthProvider,
    UpdateConfiguration, UpdateRequest,
};
use wiro_client::{Client, Error, WiroError};

const SOCIAL: &str = "c3d4e5f6-a7b8-4c9d-8e0f-130000000013";
const ADS: &str = "c3d4e5f6-a7b8-4c9d-8e0f-140000000014";
const CRM: &str = "c3d4e5f6-a7b8-4c9d-8e0f-150000000015";

fn template_of(provider: OAuthProvider) -> &'static str {
    match provider {
        OAuthProvider::Instagram => SEED_GUID,
        OAuthProvider::X
        | OAuthProvider::TikTok
        | OAuthProvider::Facebook
        | OAuthProvider::LinkedIn => SOCIAL,
        OAuthProvider::MetaAds | OAuthProvider::GoogleAds => ADS,
        OAuthProvider::HubSpot | OAuthProvider::Mailchimp | OAuthProvider::GoogleDrive => CRM,
    }
}

fn app_fields(provider: OAuthProvider) -> BTreeMap<String, Value> {
    let fields: &[&str] = match provider {
        OAuthProvider::MetaAds | OAuthProvider::Facebook | OAuthProvider::Instagram => {
            &["appId", "appSecret"]
        }
        OAuthProvider::TikTok => &["clientKey", "clientSecret"],
        _ => &["clientId", "clientSecret"],
    };
    let mut out: BTreeMap<String, Value> = fields
        .iter()
        .map(|f| ((*f).to_owned(), json!(format!("{f}-value"))))
        .collect();
    out.insert("authMethod".into(), json!("own"));
    out
}

async fn update(c: &Client, guid: &str, group: &str, fields: BTreeMap<String, Value>) {
    c.update(&UpdateRequest {
        guid: guid.to_owned(),
        configuration: Some(UpdateConfiguration {
            credentials: CredentialValues([(group.to_owned(), fields)].into()),
            custom_skills: vec![],
        }),
        ..Default::default()
    })
    .await
    .expect("update");
}

/// An instance of the provider's template with its own-mode app credentials saved.
async fn own_mode_agent(c: &Client, provider: OAuthProvider) -> String {
    let agent = c
        .deploy(&DeployRequest::prepaid(
            template_of(provider),
            "OAuth bot",
            "starter",
        ))
        .await
        .expect("deploy");
    update(c, &agent.guid, provider.group(), app_fields(provider)).await;
    agent.guid
}

async fn connect(
    c: &Client,
    provider: OAuthProvider,
    guid: &str,
    method: &str,
) -> Result<String, Error> {
    c.oauth_connect(
        provider,
        &OAuthConnectRequest {
            user_agent_guid: guid.to_owned(),
            redirect_url: "http://localhost:3000/back?keep=1".into(),
            auth_method: Some(method.into()),
        },
    )
    .await
    .map(|r| r.authorize_url)
}

/// Follows the consent page once and returns the redirect's query parameters.
async fn consent(url: &str) -> BTreeMap<String, String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = http.get(url).send().await.unwrap();
    assert_eq!(answer.status(), 302, "{url}");
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://localhost:3000/back?keep=1&"),
        "{location}"
    );
    reqwest::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn wiro(result: Result<impl std::fmt::Debug, Error>) -> WiroError {
    let e = result.expect_err("a refusal");
    e.wiro()
        .cloned()
        .unwrap_or_else(|| panic!("not a Wiro refusal: {e}"))
}

#[tokio::test]
async fn every_provider_connects_through_the_consent_page_and_disconnects() {
    let server = sim().await;
    let c = client(&server);
    for provider in OAuthProvider::ALL {
        let guid = own_mode_agent(&c, provider).await;
        let before = c.oauth_status(provider, &guid).await.unwrap();
        assert!(!before.connected, "{provider:?}");

        let url = connect(&c, provider, &guid, "own").await.unwrap();
        assert!(
            url.starts_with(&server.base_url().replace("/v1", "")),
            "{url}"
        );
        let params = consent(&url).await;
        let prefix = provider.redirect_prefix();
        assert_eq!(
            params[&format!("{prefix}_connected")],
            "true",
            "{provider:?}: {params:?}"
        );

        if provider == OAuthProvider::Facebook {
            // Connected only once a page is chosen from the callback's list.
            let pages: Vec<Value> = serde_json::from_str(&params["fb_pages"]).unwrap();
            assert!(!c.oauth_status(provider, &guid).await.unwrap().connected);
            let id = pages[0]["id"].as_str().unwrap();
            let page = c.fb_set_page(&guid, id, None).await.unwrap();
            assert_eq!(page.page_id, id);
        }
        let status = c.oauth_status(provider, &guid).await.unwrap();
        assert!(status.connected, "{provider:?}");
        assert!(status.connected_at.is_some(), "{provider:?}");
        assert_eq!(
            status.token_expires_at.is_some(),
            provider != OAuthProvider::Mailchimp,
            "{provider:?}: Mailchimp tokens do not expire"
        );
        // Tokens are server-side: never in Detail.
        let detail = c.detail(&guid).await.unwrap();
        let shown = serde_json::to_string(&detail.configuration).unwrap();
        assert!(
            !shown.contains("accessToken") && !shown.contains("tokenExpiresAt"),
            "{shown}"
        );

        c.oauth_disconnect(provider, &guid).await.unwrap();
        assert!(
            !c.oauth_status(provider, &guid).await.unwrap().connected,
            "{provider:?}"
        );
    }
}

#[tokio::test]
async fn a_denied_consent_and_an_expired_state_come_back_as_documented_errors() {
    let server = sim().await;
    let c = client(&server);
    let guid = own_mode_agent(&c, OAuthProvider::Instagram).await;

    let url = connect(&c, OAuthProvider::Instagram, &guid, "own")
        .await
        .unwrap();
    let params = consent(&format!("{url}&decision=deny")).await;
    assert_eq!(params["ig_error"], "authorization_denied");
    assert!(
        !c.oauth_status(OAuthProvider::Instagram, &guid)
            .await
            .unwrap()
            .connected
    );

    let url = connect(&c, OAuthProvider::Instagram, &guid, "own")
        .await
        .unwrap();
    server.sim().advance_ms(15 * 60 * 1000 + 1);
    let params = consent(&url).await;
    assert_eq!(params["ig_error"], "session_expired");
}

#[tokio::test]
async fn own_only_providers_and_own_mode_without_app_credentials_are_refused() {
    let server = sim().await;
    let c = client(&server);
    let seed = deploy_seed(&c, "starter").await;
    let refused = wiro(connect(&c, OAuthProvider::Instagram, &seed.guid, "own").await);
    assert_eq!(
        refused,
        WiroError::CredentialsNotConfigured {
            provider: "Instagram".into()
        }
    );
    let refused = wiro(connect(&c, OAuthProvider::Instagram, &seed.guid, "wiro").await);
    assert_eq!(refused.message(), "Instagram credentials not configured");

    // X has a Wiro app: wiro mode needs no app credentials.
    let social = c
        .deploy(&DeployRequest::prepaid(SOCIAL, "Social", "starter"))
        .await
        .unwrap();
    assert!(
        connect(&c, OAuthProvider::X, &social.guid, "wiro")
            .await
            .is_ok()
    );
    let refused = wiro(connect(&c, OAuthProvider::X, "no-such-guid", "wiro").await);
    assert_eq!(refused, WiroError::UserAgentNotFoundOrUnauthorized);
}

#[tokio::test]
async fn a_running_agent_restarts_when_its_connection_changes() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    update(
        &c,
        &agent.guid,
        "instagram",
        app_fields(OAuthProvider::Instagram),
    )
    .await;
    wait_for_status(&c, &agent.guid, AgentStatus::Running).await;

    let url = connect(&c, OAuthProvider::Instagram, &agent.guid, "own")
        .await
        .unwrap();
    let params = consent(&url).await;
    assert_eq!(params["ig_username"], "sim_ig_user");
    let detail = c.detail(&agent.guid).await.unwrap();
    assert_eq!(
        detail.status,
        AgentStatus::Stopping,
        "restartafter cycle begins"
    );
    wait_for_status(&c, &agent.guid, AgentStatus::Running).await;
}

#[tokio::test]
async fn finalize_calls_follow_the_documented_rules() {
    let server = sim().await;
    let c = client(&server);

    // Facebook: the page must come from the callback's list, within 15 minutes.
    let fb = own_mode_agent(&c, OAuthProvider::Facebook).await;
    let refused = wiro(c.fb_set_page(&fb, "1001", None).await);
    assert_eq!(refused, WiroError::NoPendingFacebookConnection);
    consent(
        &connect(&c, OAuthProvider::Facebook, &fb, "own")
            .await
            .unwrap(),
    )
    .await;
    let refused = wiro(c.fb_set_page(&fb, "9999", None).await);
    assert_eq!(refused, WiroError::PageNotPending);
    server.sim().advance_ms(15 * 60 * 1000 + 1);
    let refused = wiro(c.fb_set_page(&fb, "1001", None).await);
    assert_eq!(refused, WiroError::NoPendingFacebookConnection);

    // Google Ads: non-digits stripped.
    let ads = own_mode_agent(&c, OAuthProvider::GoogleAds).await;
    consent(
        &connect(&c, OAuthProvider::GoogleAds, &ads, "own")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        c.gads_set_customer_id(&ads, "123-456-7890").await.unwrap(),
        "1234567890"
    );
    let status = c
        .oauth_status(OAuthProvider::GoogleAds, &ads)
        .await
        .unwrap();
    assert_eq!(status.customer_id.as_deref(), Some("1234567890"));

    // Meta Ads: `act_` stripped; the account name shows in Status.
    let meta = own_mode_agent(&c, OAuthProvider::MetaAds).await;
    consent(
        &connect(&c, OAuthProvider::MetaAds, &meta, "own")
            .await
            .unwrap(),
    )
    .await;
    c.meta_ads_set_ad_account(&meta, "act_111222333", Some("Main"))
        .await
        .unwrap();
    let status = c.oauth_status(OAuthProvider::MetaAds, &meta).await.unwrap();
    assert_eq!(status.username.as_deref(), Some("Main"));

    // Google Drive: list, then at most five folders.
    let drive = own_mode_agent(&c, OAuthProvider::GoogleDrive).await;
    consent(
        &connect(&c, OAuthProvider::GoogleDrive, &drive, "own")
            .await
            .unwrap(),
    )
    .await;
    let folders = c
        .google_drive_list_folder(&drive, None, Some("rep"))
        .await
        .unwrap();
    assert_eq!(folders.len(), 1);
    let chosen = c.google_drive_set_folder(&drive, &folders).await.unwrap();
    assert_eq!(chosen, folders);
    let six: Vec<DriveFolder> = (0..6)
        .map(|i| DriveFolder {
            id: format!("f{i}"),
            name: None,
        })
        .collect();
    let refused = wiro(c.google_drive_set_folder(&drive, &six).await);
    assert_eq!(refused, WiroError::TooManyFolders);

    // TokenRefresh: new tokens, but not for Mailchimp.
    let refreshed = c
        .oauth_token_refresh(OAuthProvider::GoogleDrive, &drive)
        .await
        .unwrap();
    assert!(!refreshed.access_token.is_empty());
    let crm = own_mode_agent(&c, OAuthProvider::Mailchimp).await;
    let refused = wiro(c.oauth_token_refresh(OAuthProvider::Mailchimp, &crm).await);
    assert_eq!(refused, WiroError::InvalidProvider);
}
