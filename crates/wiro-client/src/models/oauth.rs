//! `UserAgentOAuth/*` bodies and answers (camelCase on the wire, unlike messaging).

use serde::{Deserialize, Serialize};

/// One OAuth provider of Wiro's integrations: its path code, credential group and redirect
/// parameter prefix, as the docs list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OAuthProvider {
    /// Meta Ads (`metaads`): own app only.
    MetaAds,
    /// Facebook pages (`facebook`): own app only.
    Facebook,
    /// Instagram (`instagram`): own app only.
    Instagram,
    /// LinkedIn (`linkedin`): own app only.
    LinkedIn,
    /// X (`twitter`).
    X,
    /// TikTok (`tiktok`).
    TikTok,
    /// Google Ads (`googleads`).
    GoogleAds,
    /// HubSpot (`hubspot`).
    HubSpot,
    /// Mailchimp (`mailchimp`; an API key works too).
    Mailchimp,
    /// Google Drive (`googledrive`).
    GoogleDrive,
}

impl OAuthProvider {
    /// Every provider.
    pub const ALL: [OAuthProvider; 10] = [
        OAuthProvider::MetaAds,
        OAuthProvider::Facebook,
        OAuthProvider::Instagram,
        OAuthProvider::LinkedIn,
        OAuthProvider::X,
        OAuthProvider::TikTok,
        OAuthProvider::GoogleAds,
        OAuthProvider::HubSpot,
        OAuthProvider::Mailchimp,
        OAuthProvider::GoogleDrive,
    ];

    /// The code in the endpoint paths: `IG` in `UserAgentOAuth/IGConnect`.
    pub const fn code(self) -> &'static str {
        match self {
            OAuthProvider::MetaAds => "MetaAds",
            OAuthProvider::Facebook => "FB",
            OAuthProvider::Instagram => "IG",
            OAuthProvider::LinkedIn => "LI",
            OAuthProvider::X => "X",
            OAuthProvider::TikTok => "TikTok",
            OAuthProvider::GoogleAds => "GAds",
            OAuthProvider::HubSpot => "HubSpot",
            OAuthProvider::Mailchimp => "Mailchimp",
            OAuthProvider::GoogleDrive => "GoogleDrive",
        }
    }

    /// The credential group it fills (and `TokenRefresh`'s `provider`).
    pub const fn group(self) -> &'static str {
        match self {
            OAuthProvider::MetaAds => "metaads",
            OAuthProvider::Facebook => "facebook",
            OAuthProvider::Instagram => "instagram",
            OAuthProvider::LinkedIn => "linkedin",
            OAuthProvider::X => "twitter",
            OAuthProvider::TikTok => "tiktok",
            OAuthProvider::GoogleAds => "googleads",
            OAuthProvider::HubSpot => "hubspot",
            OAuthProvider::Mailchimp => "mailchimp",
            OAuthProvider::GoogleDrive => "googledrive",
        }
    }

    /// The prefix of the parameters Wiro's callback adds to the redirect URL: `ig` in
    /// `ig_connected=true` and `ig_error=...`.
    pub const fn redirect_prefix(self) -> &'static str {
        match self {
            OAuthProvider::MetaAds => "metaads",
            OAuthProvider::Facebook => "fb",
            OAuthProvider::Instagram => "ig",
            OAuthProvider::LinkedIn => "li",
            OAuthProvider::X => "x",
            OAuthProvider::TikTok => "tiktok",
            OAuthProvider::GoogleAds => "gads",
            OAuthProvider::HubSpot => "hubspot",
            OAuthProvider::Mailchimp => "mailchimp",
            OAuthProvider::GoogleDrive => "gdrive",
        }
    }

    /// Wiro's own app is "coming soon" for these: only `authMethod: "own"` works.
    pub const fn own_only(self) -> bool {
        matches!(
            self,
            OAuthProvider::MetaAds
                | OAuthProvider::Facebook
                | OAuthProvider::Instagram
                | OAuthProvider::LinkedIn
        )
    }

    /// The group's fields for the customer's own app (`authMethod: "own"`), saved with Update
    /// before Connect; Wiro's own app needs none of them.
    pub const fn app_fields(self) -> &'static [&'static str] {
        match self {
            OAuthProvider::MetaAds | OAuthProvider::Facebook | OAuthProvider::Instagram => {
                &["appId", "appSecret"]
            }
            OAuthProvider::TikTok => &["clientKey", "clientSecret"],
            _ => &["clientId", "clientSecret"],
        }
    }

    /// The provider whose credential group is `group`.
    pub fn from_group(group: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.group() == group)
    }
}

/// Body of `{P}Connect`.
#[derive(Clone, Debug, Serialize)]
pub struct OAuthConnectRequest {
    /// Instance guid.
    #[serde(rename = "userAgentGuid")]
    pub user_agent_guid: String,
    /// Where the browser goes after consent (HTTPS, or localhost for development).
    #[serde(rename = "redirectUrl")]
    pub redirect_url: String,
    /// `wiro` (default) or `own`.
    #[serde(rename = "authMethod", skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
}

/// Answer of `{P}Connect`.
#[derive(Clone, Debug, Deserialize)]
pub struct OAuthConnectResponse {
    /// The provider's consent page, opened as a full page.
    #[serde(rename = "authorizeUrl")]
    pub authorize_url: String,
}

/// Body of `{P}Status` and `{P}Disconnect`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct UserAgentGuid<'a> {
    #[serde(rename = "userAgentGuid")]
    pub user_agent_guid: &'a str,
}

/// Answer of `{P}Status`: top-level fields, times as ISO-8601 strings. Which account field a
/// provider fills differs (`username`, `linkedinName`, `customerId`, `folders`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthStatus {
    /// Connected (Facebook: a token **and** a page; Meta Ads: a token and an auth method).
    #[serde(default)]
    pub connected: bool,
    /// The account: X/TikTok/IG username, Facebook page name, Meta Ads account name, HubSpot
    /// portal id, Mailchimp account name.
    #[serde(default)]
    pub username: Option<String>,
    /// LinkedIn's account name.
    #[serde(default)]
    pub linkedin_name: Option<String>,
    /// Google Ads customer id.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Google Drive folders chosen.
    #[serde(default)]
    pub folders: Option<Vec<DriveFolder>>,
    /// When it was connected.
    #[serde(default)]
    pub connected_at: Option<String>,
    /// When the access token expires (Wiro refreshes it).
    #[serde(default)]
    pub token_expires_at: Option<String>,
    /// When the refresh token expires (X, TikTok, LinkedIn).
    #[serde(default)]
    pub refresh_token_expires_at: Option<String>,
}

impl OAuthStatus {
    /// The account's name, whichever field the provider uses.
    pub fn account_name(&self) -> Option<&str> {
        [&self.username, &self.linkedin_name, &self.customer_id]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .find(|s| !s.is_empty())
    }
}

/// A Google Drive folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriveFolder {
    /// Drive id.
    pub id: String,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Body of `TokenRefresh`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TokenRefreshRequest<'a> {
    #[serde(rename = "userAgentGuid")]
    pub user_agent_guid: &'a str,
    /// The credential group name (`twitter`, `instagram`, ...).
    pub provider: &'a str,
}

/// Answer of `TokenRefresh`. The tokens are secrets: `Debug` hides them.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRefreshResponse {
    /// The new access token.
    #[serde(default)]
    pub access_token: String,
    /// The new refresh token.
    #[serde(default)]
    pub refresh_token: String,
}

impl std::fmt::Debug for TokenRefreshResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenRefreshResponse([redacted])")
    }
}

/// Body of `MetaAdsSetAdAccount`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetAdAccountRequest<'a> {
    pub user_agent_guid: &'a str,
    pub ad_account_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad_account_name: Option<&'a str>,
}

/// Body of `FBSetPage`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetPageRequest<'a> {
    pub user_agent_guid: &'a str,
    pub page_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_name: Option<&'a str>,
}

/// Answer of `FBSetPage`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FacebookPage {
    /// The page chosen.
    #[serde(default)]
    pub page_id: String,
    /// Its name.
    #[serde(default)]
    pub page_name: Option<String>,
}

/// Body of `GAdsSetCustomerId`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetCustomerIdRequest<'a> {
    pub user_agent_guid: &'a str,
    pub customer_id: &'a str,
}

/// Answer of `GAdsSetCustomerId`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomerIdResponse {
    #[serde(default)]
    pub customer_id: String,
}

/// Body of `GoogleDriveListFolder`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListFolderRequest<'a> {
    pub user_agent_guid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_query: Option<&'a str>,
}

/// Body of `GoogleDriveSetFolder`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetFoldersRequest<'a> {
    pub user_agent_guid: &'a str,
    pub folders: &'a [DriveFolder],
}

/// Answer of the Drive folder calls.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct FoldersResponse {
    #[serde(default)]
    pub folders: Vec<DriveFolder>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_round_trips_by_group() {
        for p in OAuthProvider::ALL {
            assert_eq!(OAuthProvider::from_group(p.group()), Some(p));
        }
        assert_eq!(OAuthProvider::from_group("openai"), None);
    }

    #[test]
    fn status_names_the_account_whichever_field_carries_it() {
        let li: OAuthStatus = serde_json::from_str(
            r#"{"connected":true,"linkedinName":"Ada","connectedAt":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(li.account_name(), Some("Ada"));
        let meta: OAuthStatus =
            serde_json::from_str(r#"{"connected":true,"username":""}"#).unwrap();
        assert_eq!(meta.account_name(), None);
    }
}
