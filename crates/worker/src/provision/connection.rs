//! `awaiting_connection`: the credentials are complete but a required account (Instagram,
//! X...) is not connected through OAuth. Wiro sends the customer's browser back to the
//! customer's app, not to us, so we learn of a connection by asking `{P}Status`: the job polls
//! while a Connect is fresh (`connection_poll_until`), reconciliation asks now and then.

use std::time::Duration;

use chrono::Utc;
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{Change, Instance};
use domain::model::{DesiredState, InstanceState};
use wiro_client::models::{OAuthProvider, UserAgent};

use super::{Next, Step, transition, upstream_error};
use operations::Services;

/// How often the job asks while a Connect is fresh.
const POLL: Duration = Duration::from_secs(2);

/// The OAuth groups the agent cannot run without (not optional), from its configuration.
pub(super) fn required(agent: &UserAgent) -> Vec<OAuthProvider> {
    agent
        .configuration
        .iter()
        .flat_map(|c| &c.credentials)
        .filter(|(_, group)| group.optional != Some(true))
        .filter_map(|(name, _)| OAuthProvider::from_group(name))
        .collect()
}

/// Which of `providers` Wiro does not show connected, as group names.
///
/// # Errors
/// The first failed Status call.
pub(super) async fn missing(
    ctx: &Services,
    guid: &str,
    providers: &[OAuthProvider],
) -> Result<Vec<String>, wiro_client::Error> {
    let mut missing = Vec::new();
    for provider in providers {
        if !ctx.wiro.oauth_status(*provider, guid).await?.connected {
            missing.push(provider.group().to_owned());
        }
    }
    Ok(missing)
}

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    let Some(guid) = instance.wiro_guid.clone() else {
        transition(ctx, instance, Change::to(InstanceState::Deploying)).await?;
        return Ok(Step::Continue);
    };
    if instance.desired_state == DesiredState::Stopped {
        transition(ctx, instance, Change::to(InstanceState::Stopping)).await?;
        return Ok(Step::Continue);
    }
    let providers: Vec<OAuthProvider> = instance
        .missing_connections
        .iter()
        .filter_map(|g| OAuthProvider::from_group(g))
        .collect();
    let still = match missing(ctx, &guid, &providers).await {
        Ok(still) => still,
        Err(e) => return upstream_error(ctx, instance, "connect", &e).await,
    };
    if still.is_empty() {
        let change = Change {
            missing_connections: Some(Vec::new()),
            connection_poll_until: Some(None),
            ..Change::to(InstanceState::Starting)
        };
        if transition(ctx, instance, change).await? {
            tracing::info!(instance = %instance.id, "connected: starting");
            audit::record(
                &ctx.pool,
                NewAudit {
                    actor: &ctx.actor(),
                    action: "provision.connected",
                    target: Some(format!("instance:{}", instance.id)),
                    request_id: None,
                    outcome: "ok",
                    detail: serde_json::json!({"providers": instance.missing_connections}),
                },
            )
            .await?;
        }
        return Ok(Step::Continue);
    }
    if still != instance.missing_connections {
        let change = Change {
            missing_connections: Some(still),
            ..Change::default()
        };
        transition(ctx, instance, change).await?;
        return Ok(Step::Continue);
    }
    Ok(match instance.connection_poll_until {
        Some(until) if until > Utc::now() => Step::Stop(Next::RetryAfter(POLL)),
        _ => Step::Stop(Next::Done),
    })
}
