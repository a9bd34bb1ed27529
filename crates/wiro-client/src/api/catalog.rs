use crate::models::{
    AgentDetailRequest, AgentDetailResponse, AgentListRequest, AgentListResponse, CatalogAgent,
};
use crate::{Client, Endpoint, Error, Result, WiroError};

impl Client {
    /// `Agent/List`: a page of the public catalog.
    ///
    /// # Errors
    /// Any [`Error`]; read-only, so transient failures were already retried.
    pub async fn list_agents(&self, request: &AgentListRequest) -> Result<AgentListResponse> {
        self.call(Endpoint::AgentList, request).await
    }

    /// `Agent/Detail` by guid or slug; `full` asks for the whole configuration tree
    /// (`type: "full"`) instead of the trimmed credentials schema.
    ///
    /// # Errors
    /// [`WiroError::AgentNotFound`] (inside [`Error::Api`]) for an unknown template.
    pub async fn agent_detail(&self, guid_or_slug: &str, full: bool) -> Result<CatalogAgent> {
        // Template guids are UUIDs; anything else is a slug.
        let is_guid = guid_or_slug.len() == 36 && guid_or_slug.matches('-').count() == 4;
        let request = AgentDetailRequest {
            guid: is_guid.then(|| guid_or_slug.to_owned()),
            slug: (!is_guid).then(|| guid_or_slug.to_owned()),
            detail_type: full.then(|| "full".to_owned()),
        };
        let response: AgentDetailResponse = self.call(Endpoint::AgentDetail, &request).await?;
        response.agents.into_iter().next().ok_or(Error::Api {
            endpoint: Endpoint::AgentDetail,
            status: 200,
            error: WiroError::AgentNotFound,
            others: vec![],
        })
    }
}
