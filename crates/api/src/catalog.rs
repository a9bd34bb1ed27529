//! The upstream catalog with a short cache: the list for browsing and ordering, details (with
//! the credential schema) per template.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use domain::model::Plan;
use domain::orders::ResolvedTemplate;
use domain::sealed::PendingConfig;
use tokio::sync::Mutex;
use wiro_client::models::{AgentListRequest, CatalogAgent};

use crate::error::ApiError;

/// Cached catalog.
#[derive(Debug)]
pub struct CatalogCache {
    ttl: Duration,
    list: Mutex<Option<(Instant, Arc<Vec<CatalogAgent>>)>>,
    details: Mutex<HashMap<String, (Instant, Arc<CatalogAgent>)>>,
}

impl CatalogCache {
    /// A cache keeping answers for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            list: Mutex::new(None),
            details: Mutex::new(HashMap::new()),
        }
    }

    /// Every active template.
    ///
    /// # Errors
    /// Upstream failures (as API errors).
    pub async fn list(
        &self,
        wiro: &wiro_client::Client,
    ) -> Result<Arc<Vec<CatalogAgent>>, ApiError> {
        let mut cached = self.list.lock().await;
        if let Some((at, list)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(list.clone());
        }
        let page = wiro
            .list_agents(&AgentListRequest {
                limit: Some(1000),
                sort: Some("title".into()),
                order: Some("ASC".into()),
                ..AgentListRequest::default()
            })
            .await
            .map_err(|e| ApiError::upstream(&e, false))?;
        let list = Arc::new(page.agents);
        *cached = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// One template by slug or guid, with its full configuration (credential schema and
    /// custom skills, each with its `_editable` flags).
    ///
    /// # Errors
    /// 404 for an unknown template; upstream failures.
    pub async fn detail(
        &self,
        wiro: &wiro_client::Client,
        slug_or_guid: &str,
    ) -> Result<Arc<CatalogAgent>, ApiError> {
        if let Some((at, agent)) = self.details.lock().await.get(slug_or_guid)
            && at.elapsed() < self.ttl
        {
            return Ok(agent.clone());
        }
        let agent = Arc::new(
            wiro.agent_detail(slug_or_guid, true)
                .await
                .map_err(|e| ApiError::upstream(&e, false))?,
        );
        let mut details = self.details.lock().await;
        details.insert(agent.slug.clone(), (Instant::now(), agent.clone()));
        details.insert(agent.guid.clone(), (Instant::now(), agent.clone()));
        Ok(agent)
    }

    /// Refuses (422, naming the field) credentials or custom skills `template` does not let
    /// its owner edit.
    ///
    /// # Errors
    /// 422; upstream failures.
    pub async fn check_editable(
        &self,
        wiro: &wiro_client::Client,
        template: &str,
        config: &PendingConfig,
        field: &str,
    ) -> Result<(), ApiError> {
        if config.is_empty() {
            return Ok(());
        }
        let agent = self.detail(wiro, template).await?;
        Ok(domain::editable::check(
            agent.configuration.as_ref(),
            config,
            field,
        )?)
    }

    /// The template an order names (slug or guid) with the price of `plan`.
    ///
    /// # Errors
    /// 422 naming the field for an unknown template or an unpriced plan.
    pub async fn resolve(
        &self,
        wiro: &wiro_client::Client,
        template: &str,
        plan: Plan,
        field: &str,
    ) -> Result<ResolvedTemplate, ApiError> {
        let list = self.list(wiro).await?;
        let agent = list
            .iter()
            .find(|a| a.slug == template || a.guid == template)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "{field}.template: no template {template:?} in the catalog"
                ))
            })?;
        let price = agent.pricing.plan(plan.as_str()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plan_not_available",
                format!("{field}.plan: {template} has no {plan} plan"),
            )
        })?;
        Ok(ResolvedTemplate {
            guid: agent.guid.clone(),
            slug: agent.slug.clone(),
            price_cents: (price.price * 100.0).round() as i64,
        })
    }
}
