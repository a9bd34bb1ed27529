use crate::models::oauth::{
    CustomerIdResponse, FoldersResponse, ListFolderRequest, SetAdAccountRequest,
    SetCustomerIdRequest, SetFoldersRequest, SetPageRequest, TokenRefreshRequest, UserAgentGuid,
};
use crate::models::{
    Ack, DriveFolder, FacebookPage, OAuthConnectRequest, OAuthConnectResponse, OAuthProvider,
    OAuthStatus, TokenRefreshResponse,
};
use crate::{Client, Endpoint, Result};

fn path(provider: OAuthProvider, verb: &str) -> String {
    format!("UserAgentOAuth/{}{verb}", provider.code())
}

impl Client {
    /// `UserAgentOAuth/{P}Connect`: the consent page to send the customer's browser to.
    ///
    /// # Errors
    /// [`crate::WiroError::InvalidRedirectUrl`] for a non-HTTPS redirect,
    /// [`crate::WiroError::CredentialsNotConfigured`] in own mode without app credentials.
    pub async fn oauth_connect(
        &self,
        provider: OAuthProvider,
        request: &OAuthConnectRequest,
    ) -> Result<OAuthConnectResponse> {
        self.call_path(Endpoint::OAuthConnect, &path(provider, "Connect"), request)
            .await
    }

    /// `UserAgentOAuth/{P}Status`.
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn oauth_status(&self, provider: OAuthProvider, guid: &str) -> Result<OAuthStatus> {
        let body = UserAgentGuid {
            user_agent_guid: guid,
        };
        self.call_path(Endpoint::OAuthStatus, &path(provider, "Status"), &body)
            .await
    }

    /// `UserAgentOAuth/{P}Disconnect`: clears the stored tokens; a running agent restarts.
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn oauth_disconnect(&self, provider: OAuthProvider, guid: &str) -> Result<()> {
        let body = UserAgentGuid {
            user_agent_guid: guid,
        };
        let _: Ack = self
            .call_path(
                Endpoint::OAuthDisconnect,
                &path(provider, "Disconnect"),
                &body,
            )
            .await?;
        Ok(())
    }

    /// `UserAgentOAuth/TokenRefresh` (Mailchimp has none: `Invalid provider`).
    ///
    /// # Errors
    /// [`crate::WiroError::InvalidProvider`], or any [`crate::Error`].
    pub async fn oauth_token_refresh(
        &self,
        provider: OAuthProvider,
        guid: &str,
    ) -> Result<TokenRefreshResponse> {
        let body = TokenRefreshRequest {
            user_agent_guid: guid,
            provider: provider.group(),
        };
        self.call(Endpoint::OAuthTokenRefresh, &body).await
    }

    /// `UserAgentOAuth/MetaAdsSetAdAccount` (an `act_` prefix is stripped by Wiro).
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn meta_ads_set_ad_account(
        &self,
        guid: &str,
        ad_account_id: &str,
        ad_account_name: Option<&str>,
    ) -> Result<()> {
        let body = SetAdAccountRequest {
            user_agent_guid: guid,
            ad_account_id,
            ad_account_name,
        };
        let _: Ack = self
            .call_path(
                Endpoint::OAuthFinalize,
                "UserAgentOAuth/MetaAdsSetAdAccount",
                &body,
            )
            .await?;
        Ok(())
    }

    /// `UserAgentOAuth/FBSetPage`, within 15 minutes of the callback.
    ///
    /// # Errors
    /// [`crate::WiroError::NoPendingFacebookConnection`],
    /// [`crate::WiroError::PageNotPending`], or any [`crate::Error`].
    pub async fn fb_set_page(
        &self,
        guid: &str,
        page_id: &str,
        page_name: Option<&str>,
    ) -> Result<FacebookPage> {
        let body = SetPageRequest {
            user_agent_guid: guid,
            page_id,
            page_name,
        };
        self.call_path(Endpoint::OAuthFinalize, "UserAgentOAuth/FBSetPage", &body)
            .await
    }

    /// `UserAgentOAuth/GAdsSetCustomerId`: the id as Wiro stored it (digits only).
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn gads_set_customer_id(&self, guid: &str, customer_id: &str) -> Result<String> {
        let body = SetCustomerIdRequest {
            user_agent_guid: guid,
            customer_id,
        };
        let answer: CustomerIdResponse = self
            .call_path(
                Endpoint::OAuthFinalize,
                "UserAgentOAuth/GAdsSetCustomerId",
                &body,
            )
            .await?;
        Ok(answer.customer_id)
    }

    /// `UserAgentOAuth/GoogleDriveListFolder` (`parent` defaults to `root`; `shared` is the
    /// virtual "shared with me").
    ///
    /// # Errors
    /// Any [`crate::Error`].
    pub async fn google_drive_list_folder(
        &self,
        guid: &str,
        parent: Option<&str>,
        search: Option<&str>,
    ) -> Result<Vec<DriveFolder>> {
        let body = ListFolderRequest {
            user_agent_guid: guid,
            parent_id: parent,
            search_query: search,
        };
        let answer: FoldersResponse = self
            .call_path(
                Endpoint::OAuthStatus,
                "UserAgentOAuth/GoogleDriveListFolder",
                &body,
            )
            .await?;
        Ok(answer.folders)
    }

    /// `UserAgentOAuth/GoogleDriveSetFolder`: at most 5; a running agent restarts.
    ///
    /// # Errors
    /// [`crate::WiroError::TooManyFolders`], or any [`crate::Error`].
    pub async fn google_drive_set_folder(
        &self,
        guid: &str,
        folders: &[DriveFolder],
    ) -> Result<Vec<DriveFolder>> {
        let body = SetFoldersRequest {
            user_agent_guid: guid,
            folders,
        };
        let answer: FoldersResponse = self
            .call_path(
                Endpoint::OAuthFinalize,
                "UserAgentOAuth/GoogleDriveSetFolder",
                &body,
            )
            .await?;
        Ok(answer.folders)
    }
}
