//! Upstream instances we have no row for, and rows whose instance is gone.
//!
//! An unknown instance is read once (Detail: MyAgents does not show descriptions). Carrying our
//! correlator, it belongs to an order: re-adopted when the order has no instance (our records
//! lost it: a database restored from an older backup), contained as a duplicate when the order
//! has another. Without it, it is the operator's own and is never read again.

use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Change, Instance, parse_description};
use domain::db::{alerts, upstream};
use domain::model::InstanceState;
use operations::Services;
use operations::deploy;
use wiro_client::WiroError;
use wiro_client::models::UserAgent;

/// What became of the unknown instances.
#[derive(Debug, Default)]
pub(super) struct Unmapped {
    /// Re-adopted by (or handed to) their order.
    pub adopting: usize,
    /// Contained as duplicates, or reported (their order is unknown).
    pub quarantined: usize,
}

pub(super) async fn handle(ctx: &Services, unknown: &[&UserAgent]) -> anyhow::Result<Unmapped> {
    let guids: Vec<String> = unknown.iter().map(|a| a.guid.clone()).collect();
    let known = upstream::known(&ctx.pool, &guids).await?;
    let mut found = Unmapped::default();
    for row in unknown.iter().filter(|a| !known.contains(&a.guid)) {
        let agent = match ctx.wiro.detail(&row.guid).await {
            Ok(agent) => agent,
            Err(e) => {
                tracing::warn!(wiro_guid = %row.guid, error = %e, "could not read an unknown instance; next sweep");
                continue;
            }
        };
        let Some((order, _)) = agent.description.as_deref().and_then(parse_description) else {
            upstream::record_foreign(&ctx.pool, &agent.guid).await?;
            continue;
        };
        match instances::get(&ctx.pool, order).await? {
            // Recorded as the order's own since we listed it.
            Some(instance) if instance.wiro_guid.as_deref() == Some(agent.guid.as_str()) => {}
            Some(instance) if instance.wiro_guid.is_none() => {
                deploy::readopt(ctx, &instance, &agent).await?;
                found.adopting += 1;
            }
            Some(instance) => {
                deploy::contain(ctx, &instance, &agent, None).await?;
                found.quarantined += 1;
            }
            None => {
                let subject = format!("wiro:{}", agent.guid);
                let detail = serde_json::json!({"title": agent.title, "order": order, "status": agent.status.code()});
                if alerts::raise(&ctx.pool, "upstream_orphan", &subject, None, detail).await? {
                    audit_alert(ctx, "reconcile.orphan", &subject).await?;
                }
                found.quarantined += 1;
            }
        }
    }
    Ok(found)
}

/// Duplicates whose cancellation did not go through yet: try again.
pub(super) async fn cancel_pending_duplicates(ctx: &Services) -> anyhow::Result<()> {
    for (guid, _) in upstream::uncancelled_duplicates(&ctx.pool).await? {
        deploy::cancel_duplicate(ctx, &guid).await?;
    }
    Ok(())
}

pub(super) async fn confirm_missing(ctx: &Services, instance: &Instance) -> anyhow::Result<bool> {
    let Some(guid) = instance.wiro_guid.as_deref() else {
        return Ok(false);
    };
    match ctx.wiro.detail(guid).await {
        Err(e) if e.wiro() == Some(&WiroError::UserAgentNotFound) => {
            let subject = alerts::instance_subject(instance.id);
            alerts::raise(
                &ctx.pool,
                "upstream_missing",
                &subject,
                Some(instance.id),
                serde_json::json!({"wiro_guid": guid}),
            )
            .await?;
            let change = Change {
                state: Some(InstanceState::Failed),
                last_error: Some(Some(
                    "the instance no longer exists at Wiro (User agent not found)".into(),
                )),
                failed_step: Some(Some("reconcile".into())),
                ..Change::default()
            };
            instances::update(&ctx.pool, instance.id, instance.version, change).await?;
            audit_alert(ctx, "reconcile.missing", &subject).await?;
            Ok(true)
        }
        // Still there (listed late) or unreachable: the next sweep looks again.
        _ => Ok(false),
    }
}

async fn audit_alert(ctx: &Services, action: &str, subject: &str) -> anyhow::Result<()> {
    audit::record(
        &ctx.pool,
        NewAudit {
            actor: &ctx.actor(),
            action,
            target: Some(subject.to_owned()),
            request_id: None,
            outcome: "alert",
            detail: serde_json::json!({}),
        },
    )
    .await?;
    Ok(())
}
