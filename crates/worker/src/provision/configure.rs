//! After Deploy: send the credentials and custom skills the order (or the customer, later)
//! gave, with Update. Wiro moves 6 → 0 once the required editable credentials are complete;
//! otherwise the instance waits in `awaiting_credentials` for the customer. With the
//! credentials complete, a required OAuth group that Wiro does not show connected makes it
//! wait in `awaiting_connection` instead of starting.

use domain::db::audit::{self, NewAudit};
use domain::db::instances::{Change, Instance};
use domain::model::{DesiredState, InstanceState};
use wiro_client::models::{UpdateConfiguration, UpdateRequest, UserAgent};

use super::{Step, connection, fail, transition, transition_observed, upstream_error};
use operations::Services;
use operations::observe::setup_required;

/// What Update and the checks after it decided for an order, before it is recorded.
pub(super) struct Decision {
    /// What Update answered.
    pub agent: UserAgent,
    /// The order's next facts.
    pub change: Change,
    needs_credentials: bool,
    missing_connections: Vec<String>,
}

impl Decision {
    /// The order goes on to start or stop (it waits for nothing the customer must give): its
    /// record is a plain fenced write, which a chunk may make together with others'.
    pub fn goes_on(&self) -> bool {
        !self.needs_credentials && self.missing_connections.is_empty()
    }
}

/// How the configure step's upstream part ended.
pub(super) enum Configured {
    /// Decided: record it ([`record`]).
    Decided(Box<Decision>),
    /// The step ended otherwise (not deployed, a failure recorded, a backoff).
    Ended(Step),
}

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    match decide(ctx, instance).await? {
        Configured::Ended(step) => Ok(step),
        Configured::Decided(decision) => record(ctx, instance, *decision).await,
    }
}

/// Sends Update and decides the order's next state (everything but recording it).
pub(super) async fn decide(ctx: &Services, instance: &Instance) -> anyhow::Result<Configured> {
    let Some(guid) = instance.wiro_guid.clone() else {
        // Not deployed after all: go back and deploy.
        transition(ctx, instance, Change::to(InstanceState::Deploying)).await?;
        return Ok(Configured::Ended(Step::Continue));
    };
    let pending = match &instance.pending_config {
        Some(sealed) => match ctx.sealer.open(instance.id, sealed) {
            Ok(config) => Some(config),
            Err(e) => {
                let reason = format!("{e} (was security.credentials_key changed?)");
                return Ok(Configured::Ended(
                    fail(ctx, instance, "configure", &reason).await?,
                ));
            }
        },
        None => None,
    };
    // Update always carries the title (it may have changed). It carries a configuration when
    // there are values to send, and on a fresh deploy (status 6) even without values: that is
    // what lets Wiro re-check completeness for templates that need nothing. An empty
    // configuration on a running agent would restart it for nothing, so it is left out then.
    let configuration = match pending {
        Some(config) => Some(UpdateConfiguration {
            credentials: config.credentials,
            custom_skills: config.custom_skills,
        }),
        None if matches!(instance.wiro_status, None | Some(6)) => {
            Some(UpdateConfiguration::default())
        }
        None => None,
    };
    let result = ctx
        .wiro
        .update(&UpdateRequest {
            guid: guid.clone(),
            title: Some(instance.title.clone()),
            configuration,
            ..UpdateRequest::default()
        })
        .await;
    let agent = match result {
        Ok(agent) => agent,
        Err(e) => {
            return Ok(Configured::Ended(
                upstream_error(ctx, instance, "configure", &e).await?,
            ));
        }
    };
    let needs_credentials = setup_required(&agent);
    let mut missing_connections = Vec::new();
    if !needs_credentials && instance.desired_state == DesiredState::Running {
        let required = connection::required(&agent);
        match connection::missing(ctx, &guid, &required).await {
            Ok(missing) => missing_connections = missing,
            Err(e) => {
                return Ok(Configured::Ended(
                    upstream_error(ctx, instance, "configure", &e).await?,
                ));
            }
        }
    }
    let next = if needs_credentials {
        InstanceState::AwaitingCredentials
    } else if !missing_connections.is_empty() {
        InstanceState::AwaitingConnection
    } else {
        match instance.desired_state {
            DesiredState::Running => InstanceState::Starting,
            DesiredState::Stopped => InstanceState::Stopping,
        }
    };
    let mut change = Change::to(next);
    change.missing_connections = Some(missing_connections.clone());
    if instance.pending_config.is_some() {
        // Fenced on the version: if the customer sent newer values meanwhile, this write loses
        // and the next run sends those.
        change.pending_config = Some(None);
    }
    Ok(Configured::Decided(Box::new(Decision {
        agent,
        change,
        needs_credentials,
        missing_connections,
    })))
}

/// Records what [`decide`] decided (fenced on the version it read), with the audit entry of
/// a wait for the customer.
pub(super) async fn record(
    ctx: &Services,
    instance: &Instance,
    decision: Decision,
) -> anyhow::Result<Step> {
    let Decision {
        agent,
        change,
        needs_credentials,
        missing_connections,
    } = decision;
    let Some(recorded) = transition_observed(ctx, instance, &agent, change).await? else {
        return Ok(Step::Continue);
    };
    if needs_credentials {
        let missing = operations::observe::missing_credentials(&agent);
        tracing::info!(instance = %instance.id, ?missing, "waiting for the customer's credentials");
        audit::record(
            &ctx.pool,
            NewAudit {
                actor: &ctx.actor(),
                action: "provision.awaiting_credentials",
                target: Some(format!("instance:{}", instance.id)),
                request_id: None,
                outcome: "ok",
                detail: serde_json::json!({"missing": missing}),
            },
        )
        .await?;
    }
    if !missing_connections.is_empty() {
        tracing::info!(instance = %instance.id, ?missing_connections, "waiting for the customer to connect");
        audit::record(
            &ctx.pool,
            NewAudit {
                actor: &ctx.actor(),
                action: "provision.awaiting_connection",
                target: Some(format!("instance:{}", instance.id)),
                request_id: None,
                outcome: "ok",
                detail: serde_json::json!({"missing": missing_connections}),
            },
        )
        .await?;
    }
    Ok(Step::Advanced(Box::new(recorded)))
}
