//! Exactly-once Deploy. Deploy charges the wallet and has no idempotency key; our job queue is
//! at-least-once. The protocol:
//!
//! 1. **Intent.** Commit an `operations` row (state `calling`, a lease) before calling. The
//!    single-flight index allows one unresolved Deploy per instance.
//! 2. **Correlator.** The upstream title carries `[wr:<instance id>]`; the description names the
//!    operation.
//! 3. **Never guess.** An answer that may have been lost (timeout, reset, 5xx) marks the
//!    operation `unknown`. Whoever finds an unresolved operation whose lease has run out (the
//!    caller crashed or stalled) searches MyAgents for the correlator *before* any new Deploy:
//!    found → adopt it; absent after the lease → `not_found`, and only then may a new Deploy go.
//! 4. **Fence.** The result is written only if the operation is still unresolved (its id is the
//!    token), and the Wiro guid only if none is recorded: a stale worker can neither overwrite
//!    nor double-record. The charge goes to the ledger under `deploy:<instance>`, once.
//!
//! What remains: a worker frozen *between* its last lease check and the send could still send
//! after another worker resolved `not_found` and deployed. The window is microseconds; the
//! duplicate would carry the same correlator and is reported by reconciliation.

use chrono::Utc;
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Change, Instance};
use domain::db::ledger::{self, NewCharge};
use domain::db::operations::{self, Operation};
use domain::model::{ChargeKind, InstanceState, OperationKind, OperationState};
use wiro_client::Outcome;
use wiro_client::models::{DeployRequest, UserAgent};

use super::find::{UpstreamMatch, find_by_correlator};
use super::{Next, Step, transition, upstream_error};
use ::operations::Services;

pub(super) async fn run(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    if instance.wiro_guid.is_some() {
        // Deployed; the state only lags behind.
        transition(ctx, instance, Change::to(InstanceState::Configuring)).await?;
        return Ok(Step::Continue);
    }
    if instance.state == InstanceState::Pending {
        transition(ctx, instance, Change::to(InstanceState::Deploying)).await?;
        return Ok(Step::Continue);
    }
    match operations::in_flight(&ctx.pool, instance.id, OperationKind::Deploy).await? {
        Some(op) => resolve_in_flight(ctx, instance, &op).await,
        None => call_deploy(ctx, instance).await,
    }
}

/// An earlier Deploy's outcome is not recorded: wait out its lease, then look upstream.
async fn resolve_in_flight(
    ctx: &Services,
    instance: &Instance,
    op: &Operation,
) -> anyhow::Result<Step> {
    let now = Utc::now();
    if op.lease_active(now) {
        // Its caller may still be waiting on Wiro; only it may decide for now.
        let wait = (op.lease_until - now).to_std().unwrap_or_default();
        return Ok(Step::Stop(Next::RetryAfter(
            wait + std::time::Duration::from_millis(100),
        )));
    }
    let found = match find_by_correlator(ctx, instance.id).await {
        Ok(found) => found,
        Err(e) => return upstream_error(ctx, instance, "deploy", &e).await,
    };
    match found {
        UpstreamMatch::One(agent) => {
            record_deployed(ctx, instance, op, &agent, OperationState::Adopted).await?;
        }
        UpstreamMatch::Several(agents) => {
            report_duplicates(ctx, instance, &agents[1..]).await?;
            record_deployed(ctx, instance, op, &agents[0], OperationState::Adopted).await?;
        }
        UpstreamMatch::None if op.state == OperationState::Unknown && now < op.lease_until => {
            // The answer was lost moments ago and Wiro may still be working on it.
            let wait = (op.lease_until - now).to_std().unwrap_or_default();
            return Ok(Step::Stop(Next::RetryAfter(
                wait + std::time::Duration::from_millis(100),
            )));
        }
        UpstreamMatch::None => {
            if operations::resolve(&ctx.pool, op.id, OperationState::NotFound, None, None).await? {
                tracing::info!(instance = %instance.id, operation = %op.id, "earlier Deploy did not happen; deploying again");
            }
        }
    }
    Ok(Step::Continue)
}

async fn call_deploy(ctx: &Services, instance: &Instance) -> anyhow::Result<Step> {
    let lease = ctx.settings.provisioning.deploy_lease;
    let detail = serde_json::json!({"plan": instance.plan, "template": instance.template_guid});
    let Some(op) = operations::begin(
        &ctx.pool,
        instance.id,
        OperationKind::Deploy,
        &ctx.worker_name,
        lease,
        detail,
    )
    .await?
    else {
        return Ok(Step::Continue); // another worker just started one
    };
    // The last check before money moves: the lease must outlive a whole call (a slow intent
    // commit could have eaten into it).
    let left = (op.lease_until - Utc::now()).to_std().unwrap_or_default();
    if left < ctx.settings.wiro.timeout {
        operations::resolve(
            &ctx.pool,
            op.id,
            OperationState::Refused,
            None,
            Some("not sent: lease too short"),
        )
        .await?;
        return Ok(Step::Stop(Next::RetryAfter(
            std::time::Duration::from_secs(1),
        )));
    }
    let request = DeployRequest {
        agentguid: instance.template_guid.clone(),
        title: instance.upstream_title(),
        description: Some(format!(
            "wiro-reseller order {} (operation {})",
            instance.id, op.id
        )),
        useprepaid: true,
        plan: instance.plan.as_str().to_owned(),
        pinned: Some(false),
    };
    match ctx.wiro.deploy(&request).await {
        Ok(agent) => {
            record_deployed(ctx, instance, &op, &agent, OperationState::Succeeded).await?;
            Ok(Step::Continue)
        }
        Err(error) if error.outcome() == Outcome::NotApplied => {
            operations::resolve(
                &ctx.pool,
                op.id,
                OperationState::Refused,
                None,
                Some(&error.to_string()),
            )
            .await?;
            upstream_error(ctx, instance, "deploy", &error).await
        }
        Err(error) => {
            tracing::warn!(instance = %instance.id, operation = %op.id, %error, "Deploy outcome unknown; checking upstream before anything else");
            operations::resolve(
                &ctx.pool,
                op.id,
                OperationState::Unknown,
                None,
                Some(&error.to_string()),
            )
            .await?;
            Ok(Step::Continue)
        }
    }
}

/// Records the deployed instance, the operation's outcome and the charge in one transaction,
/// fenced by the operation id and by "no guid recorded yet".
async fn record_deployed(
    ctx: &Services,
    instance: &Instance,
    op: &Operation,
    agent: &UserAgent,
    how: OperationState,
) -> anyhow::Result<()> {
    let mut tx = ctx.pool.begin().await?;
    let fenced = match operations::resolve(&mut *tx, op.id, how, Some(&agent.guid), None).await {
        Ok(resolved) => resolved,
        Err(e) if e.is_unique_violation("operations_one_deploy") => false,
        Err(e) => return Err(e.into()),
    };
    let recorded = fenced
        && instances::set_deployed(
            &mut *tx,
            instance.id,
            &agent.guid,
            agent.status.code() as i16,
        )
        .await?;
    if !recorded {
        drop(tx);
        return fenced_out(ctx, instance, agent).await;
    }
    ledger::record(
        &mut *tx,
        NewCharge {
            customer_id: instance.customer_id,
            instance_id: instance.id,
            kind: ChargeKind::Deploy,
            amount_cents: instance.price_cents,
            reference: ledger::deploy_reference(instance.id),
            wiro_guid: Some(&agent.guid),
        },
    )
    .await?;
    audit::record(
        &mut *tx,
        NewAudit {
            actor: &ctx.actor(),
            action: if how == OperationState::Adopted {
                "deploy.adopt"
            } else {
                "deploy.ok"
            },
            target: Some(format!("instance:{}", instance.id)),
            request_id: None,
            outcome: "ok",
            detail: serde_json::json!({"wiro_guid": agent.guid, "operation": op.id}),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(instance = %instance.id, wiro_guid = %agent.guid, outcome = %how, "deployed");
    Ok(())
}

/// Our Deploy landed but someone else already resolved the operation or recorded a guid. If
/// it is the same instance, all is well; otherwise ours is a duplicate for ops to cancel.
async fn fenced_out(ctx: &Services, instance: &Instance, agent: &UserAgent) -> anyhow::Result<()> {
    let current = instances::get(&ctx.pool, instance.id).await?;
    if current.and_then(|i| i.wiro_guid).as_deref() == Some(agent.guid.as_str()) {
        return Ok(());
    }
    report_duplicates(ctx, instance, std::slice::from_ref(agent)).await
}

async fn report_duplicates(
    ctx: &Services,
    instance: &Instance,
    extra: &[UserAgent],
) -> anyhow::Result<()> {
    for agent in extra {
        tracing::error!(instance = %instance.id, wiro_guid = %agent.guid, "duplicate upstream instance for one order");
        audit::record(
            &ctx.pool,
            NewAudit {
                actor: &ctx.actor(),
                action: "deploy.duplicate",
                target: Some(format!("instance:{}", instance.id)),
                request_id: None,
                outcome: "alert",
                detail: serde_json::json!({"duplicate_wiro_guid": agent.guid}),
            },
        )
        .await?;
    }
    Ok(())
}
