use crate::models::{DeployRequest, GuidRequest, UpdateRequest, UserAgent, UserAgentsResponse};
use crate::{Client, Endpoint, Error, Result};

impl Client {
    /// `UserAgent/Deploy`. Charges the wallet on a prepaid deploy and has no idempotency key, so
    /// it is **never retried** here: on an error whose [`Error::outcome`] is
    /// [`crate::Outcome::Unknown`], look for the instance upstream before deploying again.
    ///
    /// # Errors
    /// Any [`Error`]; see above for what an unknown outcome means.
    pub async fn deploy(&self, request: &DeployRequest) -> Result<UserAgent> {
        let response: UserAgentsResponse = self.call(Endpoint::Deploy, request).await?;
        single(Endpoint::Deploy, response)
    }

    /// `UserAgent/Detail`: the instance with subscription and sanitized configuration.
    ///
    /// # Errors
    /// [`crate::WiroError::UserAgentNotFound`] when the guid is not ours.
    pub async fn detail(&self, guid: &str) -> Result<UserAgent> {
        let response: UserAgentsResponse = self
            .call(
                Endpoint::Detail,
                &GuidRequest {
                    guid: guid.to_owned(),
                },
            )
            .await?;
        single(Endpoint::Detail, response)
    }

    /// `UserAgent/Update`: title, description, categories, credentials, custom skills. A
    /// starting or running agent restarts to apply it.
    ///
    /// # Errors
    /// Any [`Error`].
    pub async fn update(&self, request: &UpdateRequest) -> Result<UserAgent> {
        let response: UserAgentsResponse = self.call(Endpoint::Update, request).await?;
        single(Endpoint::Update, response)
    }

    /// `UserAgent/Start`: queue the agent for launch.
    ///
    /// # Errors
    /// Refusals such as [`crate::WiroError::AlreadyRunning`] or
    /// [`crate::WiroError::SetupIncomplete`].
    pub async fn start(&self, guid: &str) -> Result<()> {
        let _: UserAgentsResponse = self
            .call(
                Endpoint::Start,
                &GuidRequest {
                    guid: guid.to_owned(),
                },
            )
            .await?;
        Ok(())
    }

    /// `UserAgent/Stop`.
    ///
    /// # Errors
    /// Refusals such as [`crate::WiroError::AlreadyStopped`].
    pub async fn stop(&self, guid: &str) -> Result<()> {
        let _: UserAgentsResponse = self
            .call(
                Endpoint::Stop,
                &GuidRequest {
                    guid: guid.to_owned(),
                },
            )
            .await?;
        Ok(())
    }
}

/// Deploy, Detail and Update answer with a one-element list.
fn single(endpoint: Endpoint, response: UserAgentsResponse) -> Result<UserAgent> {
    response
        .useragents
        .into_iter()
        .next()
        .ok_or_else(|| Error::Decode {
            endpoint,
            status: 200,
            reason: "`useragents` is empty".to_owned(),
            body: String::new(),
        })
}
