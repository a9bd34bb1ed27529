//! Agent/List and Agent/Detail against the simulator.

mod common;

use common::{SEED_GUID, client_for, sim};
use wiro_client::models::AgentListRequest;
use wiro_client::{Error, WiroError};

#[tokio::test]
async fn the_catalog_is_public_and_lists_only_active_templates() {
    let server = sim().await;
    let anonymous = client_for(&server, None);
    let page = anonymous
        .list_agents(&AgentListRequest::default())
        .await
        .unwrap();
    assert_eq!(page.total.0 as usize, page.agents.len());
    assert!(page.agents.iter().all(|a| a.status == 1));
    assert!(!page.agents.iter().any(|a| a.slug == "legacy-scheduler"));
    // Default order is id DESC.
    let ids: Vec<i64> = page.agents.iter().map(|a| a.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted);
    let seed = page.agents.iter().find(|a| a.guid == SEED_GUID).unwrap();
    assert_eq!(seed.pricing.starter.unwrap().price, 9.0);
    assert_eq!(seed.pricing.pro.unwrap().credits, 5000);
    assert!(
        seed.configuration.is_none(),
        "List rows carry no configuration"
    );
}

#[tokio::test]
async fn list_filters_by_category_and_search_and_pages_with_start_and_limit() {
    let server = sim().await;
    let c = client_for(&server, None);
    let support = c
        .list_agents(&AgentListRequest {
            category: Some("customer-support".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(support.agents.len() >= 2);
    assert!(
        support
            .agents
            .iter()
            .all(|a| a.categories.contains(&"customer-support".to_owned()))
    );

    let found = c
        .list_agents(&AgentListRequest {
            search: Some("instagram".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.agents[0].slug, "instagram-manager");

    let first = c
        .list_agents(&AgentListRequest {
            sort: Some("title".into()),
            order: Some("ASC".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = c
        .list_agents(&AgentListRequest {
            sort: Some("title".into()),
            order: Some("ASC".into()),
            limit: Some(2),
            start: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.agents.len(), 2);
    assert!(first.agents[1].title.to_lowercase() <= second.agents[0].title.to_lowercase());
    assert_eq!(first.total, second.total);
}

#[tokio::test]
async fn detail_is_trimmed_unless_full_is_asked_for() {
    let server = sim().await;
    let c = client_for(&server, None);
    let trimmed = c.agent_detail("instagram-manager", false).await.unwrap();
    let config = trimmed.configuration.unwrap();
    assert!(config.custom_skills.is_empty());
    assert!(config.rate_limit.is_none());
    let instagram = &config.credentials["instagram"];
    assert_eq!(instagram.editable.get("authMethod"), Some(&true));
    assert_eq!(trimmed.ratelimit.unwrap().action_types["message"], 10);
    // Platform secrets never leave Wiro.
    assert!(!config.credentials["openai"].fields.contains_key("apiKey"));

    let full = c.agent_detail(SEED_GUID, true).await.unwrap();
    let config = full.configuration.unwrap();
    assert_eq!(config.custom_skills.len(), 2);
    assert!(config.rate_limit.is_some());
}

#[tokio::test]
async fn detail_of_an_unknown_or_disabled_template_is_refused_with_its_own_error() {
    let server = sim().await;
    let c = client_for(&server, None);
    let err = c.agent_detail("no-such-agent", false).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AgentNotFound));
    let err = c.agent_detail("legacy-scheduler", false).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Api {
            error: WiroError::AgentNotFoundOrInactive,
            ..
        }
    ));
}
