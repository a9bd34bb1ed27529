//! A customer's OAuth connections, proxied to Wiro's `UserAgentOAuth/*`: start one (Wiro's
//! consent URL, with the redirect URL checked against the operator's allowed origins), list the
//! template's providers with their state, disconnect, and the calls that finish a connection
//! (Facebook page, Meta Ads account, Google Ads customer id, Google Drive folders).
//! `{provider}` is the credential group name (`instagram`, `googledrive`, ...).

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use domain::connections::{self, AuthMethod, RedirectOrigins};
use domain::db::audit::{self, NewAudit};
use domain::db::instances::Instance;
use domain::ids::InstanceId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wiro_client::WiroError;
use wiro_client::models::{DriveFolder, OAuthConnectRequest, OAuthProvider, OAuthStatus};

use crate::auth::CustomerAuth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::openapi::{AuthErrors, UpstreamErrors};
use crate::routes::agents::load;
use crate::state::AppState;

/// Start a connection.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"redirect_url": "https://app.example.com/integrations/done", "auth_method": "own"}))]
pub struct ConnectRequest {
    /// Where the customer's browser lands after consent; its origin must be one of
    /// `connections.allowed_redirect_origins`. Wiro adds `<prefix>_connected=true` (or
    /// `<prefix>_error=...`) to it.
    pub redirect_url: String,
    /// `wiro` (Wiro's app) or `own` (the app credentials saved on the agent first). Default:
    /// `wiro` where Wiro has an app, else `own` (Instagram, Facebook, Meta Ads, LinkedIn).
    #[serde(default)]
    pub auth_method: Option<String>,
}

/// Where to send the customer's browser.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectAnswer {
    /// The provider's consent page: open it as a full page, not a popup.
    pub authorize_url: String,
    /// The credential group.
    pub provider: String,
    /// `wiro` or `own`.
    pub auth_method: String,
}

/// One provider the agent's template uses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    /// The credential group (`instagram`, `googledrive`, ...).
    pub provider: String,
    /// Whether Wiro holds a working connection (Facebook: also a page chosen).
    pub connected: bool,
    /// Whether the agent needs it to run (the group is not optional).
    pub required: bool,
    /// The account connected (username, page, portal, customer id...).
    pub account: Option<String>,
    /// When it was connected.
    pub connected_at: Option<DateTime<Utc>>,
    /// When the access token expires (Wiro refreshes it).
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Google Drive: the folders chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FolderView>>)]
    pub folders: Option<Vec<FolderView>>,
}

/// A Google Drive folder.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderView {
    /// Drive id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
}

impl From<DriveFolder> for FolderView {
    fn from(f: DriveFolder) -> Self {
        Self {
            id: f.id,
            name: f.name,
        }
    }
}

fn time(text: Option<&str>) -> Option<DateTime<Utc>> {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn view(provider: OAuthProvider, required: bool, status: &OAuthStatus) -> ConnectionView {
    ConnectionView {
        provider: provider.group().to_owned(),
        connected: status.connected,
        required,
        account: status.account_name().map(str::to_owned),
        connected_at: time(status.connected_at.as_deref()),
        token_expires_at: time(status.token_expires_at.as_deref()),
        folders: status
            .folders
            .clone()
            .map(|f| f.into_iter().map(FolderView::from).collect()),
    }
}

/// The agent's OAuth groups (name → required), from its template's full configuration.
async fn oauth_groups(
    state: &AppState,
    instance: &Instance,
) -> ApiResult<Vec<(OAuthProvider, bool)>> {
    let template = state
        .catalog
        .detail(state.wiro(), &instance.template_guid)
        .await?;
    Ok(template
        .configuration
        .as_ref()
        .map(|c| {
            c.credentials
                .iter()
                .filter_map(|(name, group)| {
                    OAuthProvider::from_group(name).map(|p| (p, group.optional != Some(true)))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The agent (the customer's own, deployed) and the provider, which its template must use
/// (and whether it is required).
async fn target(
    state: &AppState,
    auth: &CustomerAuth,
    id: Uuid,
    provider: &str,
) -> ApiResult<(Instance, String, OAuthProvider)> {
    let (instance, guid, provider, _) = target_required(state, auth, id, provider).await?;
    Ok((instance, guid, provider))
}

async fn target_required(
    state: &AppState,
    auth: &CustomerAuth,
    id: Uuid,
    provider: &str,
) -> ApiResult<(Instance, String, OAuthProvider, bool)> {
    let instance = load(state, auth, id).await?;
    let provider = connections::provider(provider)?;
    let Some(required) = oauth_groups(state, &instance)
        .await?
        .into_iter()
        .find_map(|(p, required)| (p == provider).then_some(required))
    else {
        return Err(ApiError::not_found("connection provider"));
    };
    let guid = instance.wiro_guid.clone().ok_or_else(|| {
        ApiError::conflict(
            "agent_not_deployed",
            format!(
                "the agent is {} and has no instance to connect yet; try again shortly",
                instance.state
            ),
        )
    })?;
    Ok((instance, guid, provider, required))
}

/// Wiro's refusals of OAuth calls, in our words.
fn refused(provider: OAuthProvider, error: &wiro_client::Error) -> ApiError {
    match error.wiro() {
        Some(WiroError::CredentialsNotConfigured { .. }) => ApiError::conflict(
            "app_credentials_missing",
            format!(
                "connecting {} with your own app needs the app's credentials first: set them \
                 with PATCH /v1/agents/{{id}} under credentials.{}",
                provider.group(),
                provider.group()
            ),
        ),
        Some(WiroError::InvalidRedirectUrl) => {
            ApiError::validation("redirect_url: refused by the provider (it must be https)")
        }
        Some(WiroError::NoPendingFacebookConnection) => ApiError::conflict(
            "no_pending_connection",
            "no Facebook connection is waiting for a page: connect again, then choose a page \
             within 15 minutes",
        ),
        Some(WiroError::PageNotPending) => {
            ApiError::validation("page_id: not one of the pages offered by the connection")
        }
        Some(WiroError::TooManyFolders) => ApiError::validation("folders: at most 5"),
        _ => ApiError::upstream(error, false),
    }
}

async fn record(
    state: &AppState,
    auth: &CustomerAuth,
    action: &str,
    id: Uuid,
    detail: serde_json::Value,
) -> ApiResult<()> {
    audit::record(
        &state.pool,
        NewAudit {
            actor: &auth.actor(),
            action,
            target: Some(format!("instance:{id}")),
            request_id: auth.request_id.as_deref(),
            outcome: "ok",
            detail,
        },
    )
    .await?;
    Ok(())
}

/// Starts an OAuth connection: answers the provider's consent URL.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Agent id."),
        ("provider" = String, Path, description = "Credential group: instagram, facebook, metaads, linkedin, twitter, tiktok, googleads, hubspot, mailchimp, googledrive."),
    ),
    request_body = ConnectRequest,
    responses(
        (status = 200, description = "Send the browser to `authorize_url`.", body = ConnectAnswer),
        (status = 404, description = "No such agent, or its template does not use this provider.", body = Problem),
        (status = 409, description = "Not deployed yet, or own mode without the app's credentials.", body = Problem),
        (status = 422, description = "A redirect URL outside the allowed origins, or a mode the provider does not offer.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/connections/{provider}")]
pub async fn connect(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
    body: web::Json<ConnectRequest>,
) -> ApiResult<HttpResponse> {
    let (id, provider) = path.into_inner();
    let method = AuthMethod::choose(
        connections::provider(&provider)?,
        body.auth_method.as_deref(),
    )?;
    RedirectOrigins::parse(&state.settings.connections.allowed_redirect_origins)?
        .check(&body.redirect_url)?;
    let (_, guid, provider) = target(&state, &auth, id, &provider).await?;
    let answer = state
        .wiro()
        .oauth_connect(
            provider,
            &OAuthConnectRequest {
                user_agent_guid: guid,
                redirect_url: body.redirect_url.clone(),
                auth_method: Some(method.as_str().to_owned()),
            },
        )
        .await
        .map_err(|e| refused(provider, &e))?;
    // Wiro's consent state lives 15 minutes: poll for the connection that long.
    let poll_until = chrono::Utc::now() + chrono::Duration::minutes(15);
    domain::agents::connection_started(&state.pool, InstanceId(id), poll_until).await?;
    record(
        &state,
        &auth,
        "connection.connect",
        id,
        serde_json::json!({"provider": provider.group(), "auth_method": method.as_str()}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ConnectAnswer {
        authorize_url: answer.authorize_url,
        provider: provider.group().to_owned(),
        auth_method: method.as_str().to_owned(),
    }))
}

/// Each provider the agent's template uses, with its connection as Wiro reports it.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    responses(
        (status = 200, description = "The template's providers.", body = Vec<ConnectionView>),
        (status = 404, description = "No such agent.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/agents/{id}/connections")]
pub async fn list_connections(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let instance = load(&state, &auth, id.into_inner()).await?;
    let groups = oauth_groups(&state, &instance).await?;
    let mut views = Vec::with_capacity(groups.len());
    for (provider, required) in groups {
        let status = match instance.wiro_guid.as_deref() {
            Some(guid) => state
                .wiro()
                .oauth_status(provider, guid)
                .await
                .map_err(|e| refused(provider, &e))?,
            None => OAuthStatus::default(),
        };
        views.push(view(provider, required, &status));
    }
    Ok(HttpResponse::Ok().json(views))
}

/// Disconnects: Wiro forgets the tokens (a running agent restarts without them).
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "Agent id."),
        ("provider" = String, Path, description = "Credential group."),
    ),
    responses(
        (status = 204, description = "Disconnected."),
        (status = 404, description = "No such agent, or its template does not use this provider.", body = Problem),
        (status = 409, description = "Not deployed yet.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[delete("/agents/{id}/connections/{provider}")]
pub async fn disconnect(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    path: web::Path<(Uuid, String)>,
) -> ApiResult<HttpResponse> {
    let (id, provider) = path.into_inner();
    let (_, guid, provider, required) = target_required(&state, &auth, id, &provider).await?;
    state
        .wiro()
        .oauth_disconnect(provider, &guid)
        .await
        .map_err(|e| refused(provider, &e))?;
    if required {
        domain::agents::connection_lost(&state.pool, InstanceId(id), provider.group()).await?;
    }
    record(
        &state,
        &auth,
        "connection.disconnect",
        id,
        serde_json::json!({"provider": provider.group()}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The Facebook page to post as, from the `fb_pages` the redirect carried.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChoosePage {
    /// Page id.
    pub page_id: String,
    /// Page name.
    #[serde(default)]
    pub page_name: Option<String>,
}

/// Chooses the Facebook page (within 15 minutes of the connection).
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    request_body = ChoosePage,
    responses(
        (status = 200, description = "The page chosen.", body = ChoosePage),
        (status = 404, description = "No such agent, or no Facebook group.", body = Problem),
        (status = 409, description = "No connection waiting for a page.", body = Problem),
        (status = 422, description = "Not one of the pages offered.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/connections/facebook/page")]
pub async fn choose_page(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<ChoosePage>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let (_, guid, provider) = target(&state, &auth, id, "facebook").await?;
    let page = state
        .wiro()
        .fb_set_page(&guid, &body.page_id, body.page_name.as_deref())
        .await
        .map_err(|e| refused(provider, &e))?;
    record(
        &state,
        &auth,
        "connection.facebook_page",
        id,
        serde_json::json!({"page_id": page.page_id}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ChoosePage {
        page_id: page.page_id,
        page_name: page.page_name,
    }))
}

/// The Meta Ads account to manage, from the `metaads_accounts` the redirect carried.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseAdAccount {
    /// Ad account id (an `act_` prefix is dropped).
    pub ad_account_id: String,
    /// Its name.
    #[serde(default)]
    pub ad_account_name: Option<String>,
}

/// Chooses the Meta Ads account.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    request_body = ChooseAdAccount,
    responses(
        (status = 204, description = "Chosen; a running agent restarts with it."),
        (status = 404, description = "No such agent, or no Meta Ads group.", body = Problem),
        (status = 409, description = "Not deployed yet.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/connections/metaads/ad-account")]
pub async fn choose_ad_account(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<ChooseAdAccount>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let (_, guid, provider) = target(&state, &auth, id, "metaads").await?;
    state
        .wiro()
        .meta_ads_set_ad_account(&guid, &body.ad_account_id, body.ad_account_name.as_deref())
        .await
        .map_err(|e| refused(provider, &e))?;
    record(
        &state,
        &auth,
        "connection.metaads_account",
        id,
        serde_json::json!({}),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The Google Ads customer to manage.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseCustomerId {
    /// The 10-digit customer id (dashes allowed).
    pub customer_id: String,
}

/// Chooses the Google Ads customer id.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    request_body = ChooseCustomerId,
    responses(
        (status = 200, description = "The id as stored (digits only).", body = ChooseCustomerId),
        (status = 404, description = "No such agent, or no Google Ads group.", body = Problem),
        (status = 409, description = "Not deployed yet.", body = Problem),
        (status = 422, description = "Not 10 digits.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/connections/googleads/customer-id")]
pub async fn choose_customer_id(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<ChooseCustomerId>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let digits = body
        .customer_id
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    if digits != 10 {
        return Err(ApiError::validation("customer_id: must have 10 digits"));
    }
    let (_, guid, provider) = target(&state, &auth, id, "googleads").await?;
    let stored = state
        .wiro()
        .gads_set_customer_id(&guid, &body.customer_id)
        .await
        .map_err(|e| refused(provider, &e))?;
    record(
        &state,
        &auth,
        "connection.googleads_customer",
        id,
        serde_json::json!({}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ChooseCustomerId {
        customer_id: stored,
    }))
}

/// Browsing Google Drive folders.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FolderQuery {
    /// Parent folder id (default `root`; `shared` lists what is shared with the account).
    pub parent: Option<String>,
    /// Only folders whose name contains this.
    pub search: Option<String>,
}

/// Lists Google Drive folders the connected account can see.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id."), FolderQuery),
    responses(
        (status = 200, description = "Folders.", body = Vec<FolderView>),
        (status = 404, description = "No such agent, or no Google Drive group.", body = Problem),
        (status = 409, description = "Not deployed yet.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[get("/agents/{id}/connections/googledrive/folders")]
pub async fn list_folders(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<FolderQuery>,
) -> ApiResult<HttpResponse> {
    let (_, guid, provider) = target(&state, &auth, id.into_inner(), "googledrive").await?;
    let folders = state
        .wiro()
        .google_drive_list_folder(&guid, query.parent.as_deref(), query.search.as_deref())
        .await
        .map_err(|e| refused(provider, &e))?;
    Ok(HttpResponse::Ok().json(
        folders
            .into_iter()
            .map(FolderView::from)
            .collect::<Vec<_>>(),
    ))
}

/// The Google Drive folders the agent works in.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChooseFolders {
    /// At most 5.
    pub folders: Vec<FolderView>,
}

/// Chooses up to five Google Drive folders.
#[utoipa::path(
    tag = "agents",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Agent id.")),
    request_body = ChooseFolders,
    responses(
        (status = 200, description = "The folders chosen.", body = ChooseFolders),
        (status = 404, description = "No such agent, or no Google Drive group.", body = Problem),
        (status = 409, description = "Not deployed yet.", body = Problem),
        (status = 422, description = "More than five folders.", body = Problem),
        AuthErrors, UpstreamErrors,
    )
)]
#[post("/agents/{id}/connections/googledrive/folders")]
pub async fn choose_folders(
    auth: CustomerAuth,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    body: web::Json<ChooseFolders>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    if body.folders.len() > 5 {
        return Err(ApiError::validation("folders: at most 5"));
    }
    let (_, guid, provider) = target(&state, &auth, id, "googledrive").await?;
    let folders: Vec<DriveFolder> = body
        .folders
        .iter()
        .map(|f| DriveFolder {
            id: f.id.clone(),
            name: f.name.clone(),
        })
        .collect();
    let chosen = state
        .wiro()
        .google_drive_set_folder(&guid, &folders)
        .await
        .map_err(|e| refused(provider, &e))?;
    record(
        &state,
        &auth,
        "connection.googledrive_folders",
        id,
        serde_json::json!({"folders": chosen.len()}),
    )
    .await?;
    Ok(HttpResponse::Ok().json(ChooseFolders {
        folders: chosen.into_iter().map(FolderView::from).collect(),
    }))
}
