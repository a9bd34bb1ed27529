use futures::Stream;

use crate::models::{MyAgentsRequest, UserAgent, UserAgentsResponse};
use crate::{Client, Endpoint, Result};

/// The largest page MyAgents serves.
pub const MY_AGENTS_MAX_PAGE: u32 = 1000;

impl Client {
    /// `UserAgent/MyAgents`: one page.
    ///
    /// # Errors
    /// Any [`crate::Error`]; read-only, so transient failures were already retried.
    pub async fn my_agents(&self, request: &MyAgentsRequest) -> Result<Vec<UserAgent>> {
        let response: UserAgentsResponse = self.call(Endpoint::MyAgents, request).await?;
        Ok(response.useragents)
    }

    /// Every instance, page by page, in ascending id order. MyAgents gives no total, so the
    /// stream ends after the first page shorter than `page_size` (clamped to 1..=1000).
    pub fn my_agents_pages(
        &self,
        page_size: u32,
    ) -> impl Stream<Item = Result<Vec<UserAgent>>> + '_ {
        let limit = page_size.clamp(1, MY_AGENTS_MAX_PAGE);
        futures::stream::try_unfold(Some(0u32), move |start| async move {
            let Some(start) = start else {
                return Ok(None);
            };
            let page = self
                .my_agents(&MyAgentsRequest {
                    // Ascending by id, so instances created while we page land on later pages
                    // instead of shifting earlier ones.
                    sort: Some("id".to_owned()),
                    order: Some("ASC".to_owned()),
                    limit: Some(limit),
                    start: Some(start),
                    category: None,
                })
                .await?;
            let next = (page.len() as u32 == limit).then_some(start + limit);
            Ok(Some((page, next)))
        })
    }
}
