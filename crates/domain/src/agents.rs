//! Changes to an existing instance that need the worker: new credentials or title, start/stop,
//! and an ops retry of a failed order. Each records intent and enqueues the provisioning job in
//! one transaction; the job does the upstream work.

use crate::db::audit::{self, NewAudit};
use crate::db::instances::{self, Change, Instance};
use crate::error::{Error, Result};
use crate::ids::{CustomerId, InstanceId};
use crate::jobs;
use crate::model::{DesiredState, InstanceState};
use crate::orders::Actor;
use crate::sealed::{PendingConfig, Sealer};

/// Locks the instance row for the transaction; `customer` scopes the lookup when given (and
/// then leaves out the agents it deleted).
async fn lock(
    tx: &mut sqlx::PgConnection,
    id: InstanceId,
    customer: Option<CustomerId>,
) -> Result<Instance> {
    // A customer's own lookup never finds an agent it deleted; ops' finds every agent.
    sqlx::query(
        "SELECT 1 FROM instances WHERE id = $1
           AND ($2::uuid IS NULL OR (customer_id = $2 AND deleted_at IS NULL)) FOR UPDATE",
    )
    .bind(id)
    .bind(customer)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound("agent"))?;
    instances::get(&mut *tx, id)
        .await?
        .ok_or(Error::NotFound("agent"))
}

async fn commit_change(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    instance: &Instance,
    change: Change,
    enqueue: bool,
    audit_entry: NewAudit<'_>,
) -> Result<Instance> {
    let updated = instances::update(&mut *tx, instance.id, instance.version, change)
        .await?
        .ok_or_else(|| Error::Conflict("the agent changed meanwhile; try again".into()))?;
    if enqueue {
        jobs::enqueue_provision(&mut tx, &[instance.id]).await?;
    }
    audit::record(&mut *tx, audit_entry).await?;
    tx.commit().await?;
    Ok(updated)
}

/// New credentials, custom skills and/or title from the customer. They are sealed and merged
/// over any not yet sent; a deployed instance goes back to `configuring` (Wiro restarts a
/// running agent to apply them). A failed order keeps them until ops retry it.
///
/// # Errors
/// [`Error::NotFound`] when the customer has no such agent.
pub async fn update_config(
    pool: &sqlx::PgPool,
    sealer: &Sealer,
    customer: CustomerId,
    id: InstanceId,
    title: Option<String>,
    config: PendingConfig,
    actor: Actor<'_>,
) -> Result<Instance> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, Some(customer)).await?;
    let mut change = Change::default();
    let has_values = !config.is_empty();
    if has_values {
        let mut merged = match &instance.pending_config {
            Some(sealed) => sealer.open(id, sealed)?,
            None => PendingConfig::default(),
        };
        merged.merge(config);
        change.pending_config = Some(Some(sealer.seal(id, &merged)?));
    }
    let title_changed = title.as_ref().is_some_and(|t| *t != instance.title);
    change.title = title;
    let reconfigure = (has_values || title_changed)
        && instance.wiro_guid.is_some()
        && instance.state != InstanceState::Failed;
    if reconfigure {
        change.state = Some(InstanceState::Configuring);
    }
    let enqueue = reconfigure || instance.state.is_in_progress();
    let fields: Vec<String> = change
        .pending_config
        .as_ref()
        .map(|_| vec!["credentials".to_owned()])
        .unwrap_or_default();
    commit_change(
        tx,
        &instance,
        change,
        enqueue,
        NewAudit {
            actor: actor.name,
            action: "agent.update",
            target: Some(format!("instance:{id}")),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({"changed": fields, "title_changed": title_changed}),
        },
    )
    .await
}

/// Sets what the agent should be (running or stopped) and lets the worker get it there.
///
/// # Errors
/// [`Error::NotFound`] for no such agent; [`Error::Conflict`] while it waits for credentials
/// (to start) or has failed.
pub async fn set_desired_state(
    pool: &sqlx::PgPool,
    customer: Option<CustomerId>,
    id: InstanceId,
    desired: DesiredState,
    actor: Actor<'_>,
) -> Result<Instance> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, customer).await?;
    if instance.state == InstanceState::Failed {
        return Err(Error::Conflict(
            "the agent's provisioning failed; ops must retry it first".into(),
        ));
    }
    if desired == DesiredState::Running && instance.state == InstanceState::AwaitingCredentials {
        return Err(Error::Conflict(format!(
            "the agent needs credentials before it can start: {}",
            instance.missing_credentials.join(", ")
        )));
    }
    if desired == DesiredState::Running && instance.state == InstanceState::AwaitingConnection {
        return Err(Error::Conflict(format!(
            "the agent needs its accounts connected before it can start: {}",
            instance.missing_connections.join(", ")
        )));
    }
    let mut change = Change {
        desired_state: Some(desired),
        ..Change::default()
    };
    let target = match desired {
        DesiredState::Running => InstanceState::Starting,
        DesiredState::Stopped => InstanceState::Stopping,
    };
    // Before the first start, the provisioning job reads `desired_state` itself.
    let settled = matches!(
        instance.state,
        InstanceState::Running
            | InstanceState::Stopped
            | InstanceState::Starting
            | InstanceState::Stopping
            | InstanceState::OutOfCredits
    );
    if settled {
        // A stopped agent whose account was disconnected waits for it again instead of
        // starting without it.
        let target = if desired == DesiredState::Running && !instance.missing_connections.is_empty()
        {
            InstanceState::AwaitingConnection
        } else {
            target
        };
        change.state = Some(target);
    }
    let action = match desired {
        DesiredState::Running => "agent.start",
        DesiredState::Stopped => "agent.stop",
    };
    commit_change(
        tx,
        &instance,
        change,
        true,
        NewAudit {
            actor: actor.name,
            action,
            target: Some(format!("instance:{id}")),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({}),
        },
    )
    .await
}

/// Ops: resume a failed order from the step that failed.
///
/// # Errors
/// [`Error::NotFound`]; [`Error::Conflict`] when the order has not failed.
pub async fn retry_failed(
    pool: &sqlx::PgPool,
    id: InstanceId,
    actor: Actor<'_>,
) -> Result<Instance> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, None).await?;
    if instance.state != InstanceState::Failed {
        return Err(Error::Conflict(format!(
            "the agent is {}, not failed",
            instance.state
        )));
    }
    if instance.deleted_at.is_some() {
        return Err(Error::Conflict(
            "its customer deleted the agent: there is nothing to resume".into(),
        ));
    }
    let resume = match (&instance.wiro_guid, instance.failed_step.as_deref()) {
        (None, _) => InstanceState::Deploying,
        (Some(_), Some("start")) if instance.desired_state == DesiredState::Running => {
            InstanceState::Starting
        }
        (Some(_), Some("stop")) => InstanceState::Stopping,
        (Some(_), _) => InstanceState::Configuring,
    };
    commit_change(
        tx,
        &instance,
        Change::to(resume),
        true,
        NewAudit {
            actor: actor.name,
            action: "agent.retry",
            target: Some(format!("instance:{id}")),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({"previous_error": instance.last_error, "resume": resume}),
        },
    )
    .await
}

/// After a customer started an OAuth connection: an agent waiting for it has its job poll
/// Wiro's Status until `poll_until` (the browser goes back to the customer's app, not to us).
///
/// # Errors
/// Database errors.
pub async fn connection_started(
    pool: &sqlx::PgPool,
    id: InstanceId,
    poll_until: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, None).await?;
    if instance.state != InstanceState::AwaitingConnection {
        return Ok(()); // nothing waits for it (Wiro restarts a running agent by itself)
    }
    let change = Change {
        connection_poll_until: Some(Some(poll_until)),
        ..Change::default()
    };
    instances::update(&mut *tx, id, instance.version, change)
        .await?
        .ok_or_else(|| Error::Conflict("the agent changed meanwhile; try again".into()))?;
    jobs::enqueue_provision(&mut tx, &[id]).await?;
    tx.commit().await?;
    Ok(())
}

/// What the agent runtime answers, instead of an answer, once both credit pools are empty.
pub const CREDIT_LIMIT_REPLY: &str = "[SYSTEM_CREDIT_LIMIT_REACHED]";

/// A reply carried [`CREDIT_LIMIT_REPLY`]: a running (or starting) agent goes to
/// `out_of_credits`, and its job applies the top-up policy at once. True when it moved.
///
/// # Errors
/// Database errors.
pub async fn credits_exhausted(pool: &sqlx::PgPool, id: InstanceId) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, None).await?;
    if !matches!(
        instance.state,
        InstanceState::Running | InstanceState::Starting
    ) {
        return Ok(false);
    }
    let change = Change {
        last_error: Some(Some(format!("the agent answered {CREDIT_LIMIT_REPLY}"))),
        ..Change::to(InstanceState::OutOfCredits)
    };
    if instances::update(&mut *tx, id, instance.version, change)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    jobs::enqueue_provision(&mut tx, &[id]).await?;
    tx.commit().await?;
    tracing::info!(instance = %id, "out of credits");
    Ok(true)
}

/// After a customer disconnected a required account: a running (or starting) agent goes back
/// to waiting for it; a stopped one remembers it, so starting it waits too.
///
/// # Errors
/// Database errors.
pub async fn connection_lost(pool: &sqlx::PgPool, id: InstanceId, group: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, None).await?;
    let mut missing = instance.missing_connections.clone();
    if !missing.iter().any(|g| g == group) {
        missing.push(group.to_owned());
        missing.sort();
    }
    let mut change = Change {
        missing_connections: Some(missing),
        ..Change::default()
    };
    if matches!(
        instance.state,
        InstanceState::Running | InstanceState::Starting
    ) {
        change.state = Some(InstanceState::AwaitingConnection);
        change.connection_poll_until = Some(None);
    }
    instances::update(&mut *tx, id, instance.version, change)
        .await?
        .ok_or_else(|| Error::Conflict("the agent changed meanwhile; try again".into()))?;
    tx.commit().await?;
    Ok(())
}

/// The customer deletes an agent: from now on it does not exist for the customer; the job
/// stops it and cancels its subscription at the period end (Wiro has no immediate cancel).
/// The row, its ledger and its audit stay.
///
/// # Errors
/// [`Error::NotFound`] when the customer has no such (undeleted) agent.
pub async fn delete(
    pool: &sqlx::PgPool,
    customer: CustomerId,
    id: InstanceId,
    actor: Actor<'_>,
) -> Result<Instance> {
    let mut tx = pool.begin().await?;
    let instance = lock(&mut tx, id, Some(customer)).await?;
    if instance.deleted_at.is_some() {
        return Err(Error::NotFound("agent"));
    }
    let mut change = Change {
        deleted_at: Some(Some(chrono::Utc::now())),
        desired_state: Some(DesiredState::Stopped),
        connection_poll_until: Some(None),
        ..Change::default()
    };
    // Settled or waiting agents are stopped now; one still being set up goes on to a stop
    // (its job reads `desired_state`).
    if matches!(
        instance.state,
        InstanceState::Running
            | InstanceState::Starting
            | InstanceState::Stopped
            | InstanceState::AwaitingConnection
            | InstanceState::OutOfCredits
    ) {
        change.state = Some(InstanceState::Stopping);
    }
    commit_change(
        tx,
        &instance,
        change,
        true,
        NewAudit {
            actor: actor.name,
            action: "agent.delete",
            target: Some(format!("instance:{id}")),
            request_id: actor.request_id,
            outcome: "ok",
            detail: serde_json::json!({"state": instance.state}),
        },
    )
    .await
}
