//! `UserAgentOAuth/*`: Connect, the provider's consent page (played by the simulator itself),
//! the callback's redirect, Status, Disconnect, TokenRefresh and the finalize calls, per the
//! notes §6.3. Tokens live in the instance's credential group, as Wiro keeps them, and are
//! stripped from every response by `credentials::sanitize`.
//!
//! Choices where the docs are silent ([INFERRED], see the README): own-only providers asked
//! for Wiro mode answer `<Provider> credentials not configured` (Wiro's app is "coming soon");
//! the consent page approves unless the URL carries `decision=deny`; the simulated accounts,
//! pages and folders are fixed.

use serde_json::{Map, Value, json};

use super::credentials;
use super::instances::{Caller, str_field};
use super::{SimError, SimResult, World};
use crate::clock::SimTime;

/// What Status shows but the docs put in no credential field: kept in the group under the
/// simulator's internal prefix, which no response renders.
const USERNAME: &str = "_sim_username";
const PAGE_NAME: &str = "_sim_pageName";
const AD_ACCOUNT_NAME: &str = "_sim_adAccountName";
const CUSTOMER_ID: &str = "_sim_customerId";

/// How long a Connect's state (and a Facebook page choice) stays valid.
pub const STATE_TTL_MS: i64 = 15 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// One provider as the docs describe it.
#[derive(Clone, Copy, Debug)]
pub struct Provider {
    /// Path code: `IG` in `IGConnect`.
    pub code: &'static str,
    /// Credential group: `instagram`.
    pub group: &'static str,
    /// Redirect parameter prefix: `ig` in `ig_connected`.
    pub prefix: &'static str,
    /// Name in `<Provider> credentials not configured`.
    pub name: &'static str,
    /// Wiro mode is "coming soon": own app credentials only.
    pub own_only: bool,
    /// Own-mode app fields, saved with Update before Connect.
    pub app_fields: &'static [&'static str],
    /// Access-token lifetime; `None`: no expiry (Mailchimp).
    pub token_ttl_ms: Option<i64>,
    /// Refresh-token lifetime, for the providers whose Status shows it.
    pub refresh_ttl_ms: Option<i64>,
}

/// Every provider of the notes §6.3.
pub const PROVIDERS: [Provider; 10] = [
    Provider {
        code: "MetaAds",
        group: "metaads",
        prefix: "metaads",
        name: "Meta Ads",
        own_only: true,
        app_fields: &["appId", "appSecret"],
        token_ttl_ms: Some(60 * DAY_MS),
        refresh_ttl_ms: None,
    },
    Provider {
        code: "FB",
        group: "facebook",
        prefix: "fb",
        name: "Facebook",
        own_only: true,
        app_fields: &["appId", "appSecret"],
        token_ttl_ms: Some(60 * DAY_MS),
        refresh_ttl_ms: None,
    },
    Provider {
        code: "IG",
        group: "instagram",
        prefix: "ig",
        name: "Instagram",
        own_only: true,
        app_fields: &["appId", "appSecret"],
        token_ttl_ms: Some(60 * DAY_MS),
        refresh_ttl_ms: None,
    },
    Provider {
        code: "LI",
        group: "linkedin",
        prefix: "li",
        name: "LinkedIn",
        own_only: true,
        app_fields: &["clientId", "clientSecret"],
        token_ttl_ms: Some(60 * DAY_MS),
        refresh_ttl_ms: Some(365 * DAY_MS),
    },
    Provider {
        code: "X",
        group: "twitter",
        prefix: "x",
        name: "X",
        own_only: false,
        app_fields: &["clientId", "clientSecret"],
        token_ttl_ms: Some(2 * HOUR_MS),
        refresh_ttl_ms: Some(180 * DAY_MS),
    },
    Provider {
        code: "TikTok",
        group: "tiktok",
        prefix: "tiktok",
        name: "TikTok",
        own_only: false,
        app_fields: &["clientKey", "clientSecret"],
        token_ttl_ms: Some(DAY_MS),
        refresh_ttl_ms: Some(365 * DAY_MS),
    },
    Provider {
        code: "GAds",
        group: "googleads",
        prefix: "gads",
        name: "Google Ads",
        own_only: false,
        app_fields: &["clientId", "clientSecret"],
        token_ttl_ms: Some(HOUR_MS),
        refresh_ttl_ms: None,
    },
    Provider {
        code: "HubSpot",
        group: "hubspot",
        prefix: "hubspot",
        name: "HubSpot",
        own_only: false,
        app_fields: &["clientId", "clientSecret"],
        token_ttl_ms: Some(30 * 60 * 1000),
        refresh_ttl_ms: None,
    },
    Provider {
        code: "Mailchimp",
        group: "mailchimp",
        prefix: "mailchimp",
        name: "Mailchimp",
        own_only: false,
        app_fields: &["clientId", "clientSecret"],
        token_ttl_ms: None,
        refresh_ttl_ms: None,
    },
    Provider {
        code: "GoogleDrive",
        group: "googledrive",
        prefix: "gdrive",
        name: "Google Drive",
        own_only: false,
        app_fields: &["clientId", "clientSecret"],
        token_ttl_ms: Some(HOUR_MS),
        refresh_ttl_ms: None,
    },
];

/// By path code (`IG`).
pub fn by_code(code: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.code == code)
}

/// By credential group (`instagram`).
pub fn by_group(group: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.group == group)
}

/// A Connect waiting for the browser to come back.
#[derive(Clone, Debug)]
pub struct PendingConnect {
    /// The instance.
    pub guid: String,
    /// The provider's path code.
    pub code: &'static str,
    /// Where the browser goes afterwards.
    pub redirect_url: String,
    /// `wiro` or `own`.
    pub auth_method: String,
    /// When Connect was called.
    pub created_at: SimTime,
}

/// Facebook pages offered by a callback, to choose from with `FBSetPage`.
#[derive(Clone, Debug)]
pub struct PendingPages {
    /// `[{id, name}]`.
    pub pages: Vec<Value>,
    /// When the callback arrived.
    pub at: SimTime,
}

fn sim_pages() -> Vec<Value> {
    vec![
        json!({"id": "1001", "name": "Sim Page"}),
        json!({"id": "1002", "name": "Sim Second Page"}),
    ]
}

fn sim_folders(parent: &str) -> Vec<Value> {
    match parent {
        "shared" => vec![json!({"id": "shared-1", "name": "Shared with me"})],
        _ => vec![
            json!({"id": "folder-1", "name": "Marketing"}),
            json!({"id": "folder-2", "name": "Reports"}),
        ],
    }
}

fn iso(t: SimTime) -> Value {
    chrono::DateTime::from_timestamp_millis(t).map_or(Value::Null, |d| {
        json!(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

fn group_mut<'a>(
    world: &'a mut World,
    caller: &Caller,
    guid: &str,
    provider: &Provider,
) -> Result<&'a mut Map<String, Value>, SimError> {
    let inst = world
        .instances
        .get_mut(guid)
        .filter(|inst| caller.can_see(inst))
        .ok_or_else(|| SimError::refuse("User agent not found or unauthorized"))?;
    inst.credentials
        .get_mut(provider.group)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| SimError::refuse(format!("{} credentials not configured", provider.name)))
}

fn guid_of(body: &Value) -> Result<String, SimError> {
    str_field(body, "userAgentGuid")
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| SimError::refuse("Missing userAgentGuid"))
}

/// A running agent picks up a changed connection by restarting (status 1, `restartafter`).
fn restart_if_running(world: &mut World, guid: &str, now: SimTime) {
    let stop_ms = world.delays.stop_ms;
    if let Some(inst) = world.instances.get_mut(guid)
        && matches!(inst.status, 3 | 4)
    {
        inst.status = 1;
        inst.restart_after = true;
        inst.transition_at = Some(now + stop_ms);
        inst.updated_at = now;
    }
}

fn is_set(group: &Map<String, Value>, field: &str) -> bool {
    group
        .get(field)
        .and_then(Value::as_str)
        .is_some_and(|v| !v.trim().is_empty())
}

/// `UserAgentOAuth/{P}Connect`: checks the instance, the redirect and the mode, and returns the
/// consent page's URL on the simulator (`base` is how the caller reached us).
pub fn connect(
    world: &mut World,
    caller: &Caller,
    provider: &'static Provider,
    body: &Value,
    base: &str,
    now: SimTime,
) -> SimResult {
    let guid = guid_of(body)?;
    let redirect = str_field(body, "redirectUrl")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| SimError::refuse("Missing redirectUrl"))?
        .to_owned();
    let auth_method = str_field(body, "authMethod").unwrap_or("wiro").to_owned();
    let group = group_mut(world, caller, &guid, provider)?;
    let allowed = url::Url::parse(&redirect).is_ok_and(|u| {
        u.scheme() == "https"
            || (u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1")))
    });
    if !allowed {
        return Err(SimError::refuse("Invalid redirect URL"));
    }
    let configured = match auth_method.as_str() {
        "own" => provider.app_fields.iter().all(|f| is_set(group, f)),
        _ => !provider.own_only,
    };
    if !configured {
        return Err(SimError::refuse(format!(
            "{} credentials not configured",
            provider.name
        )));
    }
    let state = uuid::Uuid::new_v4().simple().to_string();
    world.oauth_states.insert(
        state.clone(),
        PendingConnect {
            guid,
            code: provider.code,
            redirect_url: redirect,
            auth_method,
            created_at: now,
        },
    );
    Ok(json!({
        "authorizeUrl": format!("{base}/oauth/{}/authorize?state={state}", provider.code),
    }))
}

/// The provider's consent page and Wiro's callback in one: the URL of the 302 that sends the
/// browser back to the redirect URL with the documented parameters.
pub fn authorize(world: &mut World, code: &str, state: &str, deny: bool, now: SimTime) -> String {
    let Some(pending) = world.oauth_states.remove(state) else {
        // No state to find the redirect URL by: the provider's own error page.
        return String::new();
    };
    let Some(provider) = by_code(code).filter(|p| p.code == pending.code) else {
        return String::new();
    };
    let Ok(mut url) = url::Url::parse(&pending.redirect_url) else {
        return String::new();
    };
    let error = |url: &mut url::Url, reason: &str| {
        url.query_pairs_mut()
            .append_pair(&format!("{}_error", provider.prefix), reason);
    };
    if now - pending.created_at > STATE_TTL_MS {
        error(&mut url, "session_expired");
        return url.into();
    }
    if deny {
        error(&mut url, "authorization_denied");
        return url.into();
    }
    let Some(inst) = world.instances.get_mut(&pending.guid) else {
        error(&mut url, "useragent_not_found");
        return url.into();
    };
    let Some(group) = inst
        .credentials
        .get_mut(provider.group)
        .and_then(Value::as_object_mut)
    else {
        error(&mut url, "invalid_config");
        return url.into();
    };
    let username = format!("sim_{}_user", provider.prefix);
    group.insert("authMethod".into(), json!(pending.auth_method));
    group.insert("accessToken".into(), json!(format!("at-{state}")));
    group.insert("refreshToken".into(), json!(format!("rt-{state}")));
    group.insert("connectedAt".into(), iso(now));
    group.insert(
        "tokenExpiresAt".into(),
        provider
            .token_ttl_ms
            .map_or(Value::Null, |ttl| iso(now + ttl)),
    );
    if let Some(ttl) = provider.refresh_ttl_ms {
        group.insert("refreshTokenExpiresAt".into(), iso(now + ttl));
    }
    group.insert(USERNAME.into(), json!(username));
    let connected = format!("{}_connected", provider.prefix);
    let mut pairs = vec![(connected, "true".to_owned())];
    let param = |name: &str| format!("{}_{name}", provider.prefix);
    match provider.code {
        "IG" => {
            group.insert("igUsername".into(), json!(username));
            pairs.push((param("username"), username));
        }
        "X" | "TikTok" => pairs.push((param("username"), username)),
        "LI" => pairs.push((param("name"), "Sim Person".to_owned())),
        "HubSpot" => {
            pairs.push((param("portal"), "12345678".to_owned()));
            pairs.push((param("name"), "Sim Portal".to_owned()));
            group.insert(USERNAME.into(), json!("12345678"));
        }
        "Mailchimp" => pairs.push((param("account"), "Sim Account".to_owned())),
        "FB" => {
            // Connected only once a page is chosen (FBSetPage within 15 minutes).
            group.remove("pageId");
            let pages = sim_pages();
            pairs.push((param("pages"), Value::Array(pages.clone()).to_string()));
            world
                .fb_pending
                .insert(pending.guid.clone(), PendingPages { pages, at: now });
        }
        "MetaAds" => {
            let accounts = json!([{"id": "111222333", "name": "Sim Ad Account"}]);
            pairs.push((param("accounts"), accounts.to_string()));
            let page = sim_pages()[0]["id"].clone();
            group.insert("pageId".into(), page);
        }
        "GAds" => {
            let accounts = json!([{"id": "1234567890", "name": "Sim Ads"}]);
            pairs.push((param("accounts"), accounts.to_string()));
        }
        "GoogleDrive" => {
            pairs.push((
                param("folders"),
                Value::Array(sim_folders("root")).to_string(),
            ));
        }
        _ => {}
    }
    for (name, value) in &pairs {
        url.query_pairs_mut().append_pair(name, value);
    }
    let guid = pending.guid;
    restart_if_running(world, &guid, now);
    url.into()
}

/// `UserAgentOAuth/{P}Status`: top-level fields, ISO-8601 times.
pub fn status(world: &mut World, caller: &Caller, provider: &Provider, body: &Value) -> SimResult {
    let guid = guid_of(body)?;
    let group = group_mut(world, caller, &guid, provider)?;
    let token = is_set(group, "accessToken");
    let connected = match provider.code {
        "FB" => token && is_set(group, "pageId"),
        "MetaAds" => token && is_set(group, "authMethod"),
        _ => token,
    };
    if !connected {
        return Ok(json!({"connected": false}));
    }
    let field = |name: &str| group.get(name).cloned().unwrap_or(Value::Null);
    let mut out = json!({
        "connected": true,
        "connectedAt": field("connectedAt"),
    });
    let obj = out.as_object_mut().expect("object");
    match provider.code {
        "LI" => {
            obj.insert("linkedinName".into(), json!("Sim Person"));
        }
        "GAds" => {
            obj.insert("customerId".into(), field(CUSTOMER_ID));
        }
        "GoogleDrive" => {
            obj.insert(
                "folders".into(),
                group.get("folders").cloned().unwrap_or(json!([])),
            );
        }
        "FB" => {
            obj.insert("username".into(), field(PAGE_NAME));
        }
        "MetaAds" => {
            obj.insert(
                "username".into(),
                group.get(AD_ACCOUNT_NAME).cloned().unwrap_or(json!("")),
            );
        }
        _ => {
            obj.insert("username".into(), field(USERNAME));
        }
    }
    if provider.token_ttl_ms.is_some() {
        obj.insert("tokenExpiresAt".into(), field("tokenExpiresAt"));
    }
    if provider.refresh_ttl_ms.is_some() {
        obj.insert(
            "refreshTokenExpiresAt".into(),
            field("refreshTokenExpiresAt"),
        );
    }
    Ok(out)
}

/// Fields a connection wrote, cleared by Disconnect (app credentials and `authMethod` stay).
const CONNECTION_FIELDS: [&str; 12] = [
    "accessToken",
    "refreshToken",
    "connectedAt",
    "tokenExpiresAt",
    "refreshTokenExpiresAt",
    "igUsername",
    "pageId",
    "adAccountId",
    USERNAME,
    PAGE_NAME,
    AD_ACCOUNT_NAME,
    CUSTOMER_ID,
];

/// `UserAgentOAuth/{P}Disconnect`: clears the stored connection; a running agent restarts.
pub fn disconnect(
    world: &mut World,
    caller: &Caller,
    provider: &Provider,
    body: &Value,
    now: SimTime,
) -> SimResult {
    let guid = guid_of(body)?;
    let group = group_mut(world, caller, &guid, provider)?;
    for field in CONNECTION_FIELDS {
        if field.starts_with(credentials::INTERNAL_PREFIX) {
            group.remove(field);
        } else if group.contains_key(field) {
            group.insert(field.into(), json!(""));
        }
    }
    group.remove("folders");
    world.fb_pending.remove(&guid);
    restart_if_running(world, &guid, now);
    Ok(json!({}))
}

/// `UserAgentOAuth/TokenRefresh`: `provider` is the group name; Mailchimp has nothing to
/// refresh.
pub fn token_refresh(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = guid_of(body)?;
    let provider = str_field(body, "provider")
        .and_then(by_group)
        .filter(|p| p.token_ttl_ms.is_some())
        .ok_or_else(|| SimError::refuse("Invalid provider"))?;
    let group = group_mut(world, caller, &guid, provider)?;
    if !is_set(group, "accessToken") {
        // [INFERRED] nothing to refresh: the docs give no message; Wiro's generic one.
        return Err(SimError::refuse(format!(
            "{} credentials not configured",
            provider.name
        )));
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (access, refresh) = (format!("at-{suffix}"), format!("rt-{suffix}"));
    group.insert("accessToken".into(), json!(access));
    group.insert("refreshToken".into(), json!(refresh));
    if let Some(ttl) = provider.token_ttl_ms {
        group.insert("tokenExpiresAt".into(), iso(now + ttl));
    }
    Ok(json!({"accessToken": access, "refreshToken": refresh}))
}

/// The finalize calls after a callback.
pub fn finalize(
    world: &mut World,
    caller: &Caller,
    endpoint: &str,
    body: &Value,
    now: SimTime,
) -> Option<SimResult> {
    Some(match endpoint {
        "MetaAdsSetAdAccount" => set_ad_account(world, caller, body, now),
        "FBSetPage" => set_page(world, caller, body, now),
        "GAdsSetCustomerId" => set_customer_id(world, caller, body),
        "GoogleDriveListFolder" => list_folder(world, caller, body),
        "GoogleDriveSetFolder" => set_folders(world, caller, body, now),
        _ => return None,
    })
}

fn provider(code: &str) -> &'static Provider {
    by_code(code).expect("a provider of the table")
}

fn set_ad_account(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = guid_of(body)?;
    let id = str_field(body, "adAccountId").unwrap_or_default();
    let id = id.strip_prefix("act_").unwrap_or(id).to_owned();
    let name = str_field(body, "adAccountName")
        .unwrap_or_default()
        .to_owned();
    let group = group_mut(world, caller, &guid, provider("MetaAds"))?;
    group.insert("adAccountId".into(), json!(id));
    group.insert(AD_ACCOUNT_NAME.into(), json!(name));
    restart_if_running(world, &guid, now);
    Ok(json!({}))
}

fn set_page(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = guid_of(body)?;
    let page_id = str_field(body, "pageId").unwrap_or_default().to_owned();
    group_mut(world, caller, &guid, provider("FB"))?;
    let pending = world
        .fb_pending
        .get(&guid)
        .filter(|p| now - p.at <= STATE_TTL_MS)
        .cloned()
        .ok_or_else(|| SimError::refuse("No pending Facebook connection"))?;
    let page = pending
        .pages
        .iter()
        .find(|p| str_field(p, "id") == Some(page_id.as_str()))
        .ok_or_else(|| SimError::refuse("Selected pageId not found in pending pages list"))?;
    let name = str_field(body, "pageName")
        .or_else(|| str_field(page, "name"))
        .unwrap_or_default()
        .to_owned();
    let group = group_mut(world, caller, &guid, provider("FB"))?;
    group.insert("pageId".into(), json!(page_id));
    group.insert(PAGE_NAME.into(), json!(name));
    world.fb_pending.remove(&guid);
    restart_if_running(world, &guid, now);
    Ok(json!({"pageId": page_id, "pageName": name}))
}

fn set_customer_id(world: &mut World, caller: &Caller, body: &Value) -> SimResult {
    let guid = guid_of(body)?;
    let digits: String = str_field(body, "customerId")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let group = group_mut(world, caller, &guid, provider("GAds"))?;
    group.insert(CUSTOMER_ID.into(), json!(digits));
    Ok(json!({"customerId": digits}))
}

fn list_folder(world: &mut World, caller: &Caller, body: &Value) -> SimResult {
    let guid = guid_of(body)?;
    group_mut(world, caller, &guid, provider("GoogleDrive"))?;
    let parent = str_field(body, "parentId").unwrap_or("root");
    let query = str_field(body, "searchQuery")
        .unwrap_or_default()
        .to_lowercase();
    let folders: Vec<Value> = sim_folders(parent)
        .into_iter()
        .filter(|f| str_field(f, "name").is_some_and(|n| n.to_lowercase().contains(&query)))
        .collect();
    Ok(json!({"folders": folders}))
}

fn set_folders(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = guid_of(body)?;
    let folders = body
        .get("folders")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if folders.len() > 5 {
        return Err(SimError::refuse("Maximum 5 folders allowed"));
    }
    let group = group_mut(world, caller, &guid, provider("GoogleDrive"))?;
    group.insert("folders".into(), Value::Array(folders.clone()));
    restart_if_running(world, &guid, now);
    Ok(json!({"folders": folders}))
}
