//! Reconciliation: page through MyAgents and bring our map in line with the upstream.
//!
//! - Mapped instances: record status, subscription and credits; count the periods Wiro renewed
//!   on its own into the ledger (under the same references explicit renewals use); restart an
//!   agent Wiro stopped (renewal resets to Stopped) when the customer wants it running.
//! - Upstream instances carrying our correlator but missing from the map: hand them to the
//!   provisioning job when the order is known and undeployed (it adopts them), report a
//!   duplicate when the order is deployed elsewhere, quarantine them when the order is unknown.
//! - Map rows whose upstream instance is gone ("User agent not found"): flag for ops.
//! - Agents in Error (5) that should run: Start again with backoff, up to
//!   `schedules.error_restart_cap` times, then fail them for ops.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use domain::db::alerts;
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Change, Instance, parse_correlator};
use domain::db::ledger::{self, NewCharge};
use domain::model::{ChargeKind, CustomerStatus, DesiredState, InstanceState};
use futures::TryStreamExt;
use wiro_client::WiroError;
use wiro_client::models::{AgentStatus, UserAgent};

use super::{Statuses, for_each, restart};
use operations::Services;
use operations::billing::renewal_reference;
use operations::observe::observed;

/// What a reconciliation found.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Upstream instances seen.
    pub upstream: usize,
    /// Mapped instances updated.
    pub observed: usize,
    /// Unmapped instances handed to their (known) order.
    pub adopting: usize,
    /// Unmapped instances of unknown orders, quarantined.
    pub quarantined: usize,
    /// Map rows whose upstream is gone.
    pub missing: usize,
    /// Items that failed (retried next sweep).
    pub failures: usize,
}

/// Runs the sweep.
///
/// # Errors
/// When MyAgents cannot be read or the database fails.
pub async fn run(ctx: &Services) -> anyhow::Result<ReconcileReport> {
    let upstream: Vec<UserAgent> = ctx
        .wiro
        .my_agents_pages(wiro_client::MY_AGENTS_MAX_PAGE)
        .try_concat()
        .await?;
    let mut report = ReconcileReport {
        upstream: upstream.len(),
        ..ReconcileReport::default()
    };
    let ours = instances::deployed(&ctx.pool).await?;
    let by_guid: HashMap<&str, &Instance> = ours
        .iter()
        .filter_map(|i| i.wiro_guid.as_deref().map(|g| (g, i)))
        .collect();
    let seen: HashSet<&str> = upstream.iter().map(|a| a.guid.as_str()).collect();
    let statuses = Statuses::new(&ctx.pool);

    let mut mapped = Vec::new();
    for agent in &upstream {
        match by_guid.get(agent.guid.as_str()) {
            Some(instance) => mapped.push(((*instance).clone(), agent.clone())),
            None => match unmapped(ctx, agent).await? {
                Unmapped::NotOurs => {}
                Unmapped::Adopting => report.adopting += 1,
                Unmapped::Quarantined => report.quarantined += 1,
            },
        }
    }
    report.observed = mapped.len();
    report.failures += for_each(ctx, mapped, |(instance, agent)| {
        let statuses = &statuses;
        async move {
            // A job may change the row meanwhile: re-read and judge again (a few times).
            let mut current = instance;
            for _ in 0..5 {
                if observe(ctx, &current, &agent, statuses).await? {
                    return Ok(());
                }
                match instances::get(&ctx.pool, current.id).await? {
                    Some(fresh) => current = fresh,
                    None => return Ok(()),
                }
            }
            anyhow::bail!(
                "instance {} kept changing during reconciliation",
                current.id
            )
        }
    })
    .await;

    let gone: Vec<Instance> = ours
        .iter()
        .filter(|i| i.state != InstanceState::Failed)
        .filter(|i| i.wiro_guid.as_deref().is_some_and(|g| !seen.contains(g)))
        .cloned()
        .collect();
    for instance in gone {
        if confirm_missing(ctx, &instance).await? {
            report.missing += 1;
        }
    }
    Ok(report)
}

enum Unmapped {
    NotOurs,
    Adopting,
    Quarantined,
}

async fn unmapped(ctx: &Services, agent: &UserAgent) -> anyhow::Result<Unmapped> {
    let Some(id) = parse_correlator(&agent.title) else {
        return Ok(Unmapped::NotOurs); // the operator's own instance
    };
    let subject = format!("wiro:{}", agent.guid);
    match instances::get(&ctx.pool, id).await? {
        Some(instance) if instance.wiro_guid.is_none() => {
            // The order's Deploy outcome is not recorded yet: its job resolves it (after the
            // lease) by this very search, and adopts.
            let mut conn = ctx.pool.acquire().await?;
            domain::jobs::enqueue_provision(&mut conn, &[id]).await?;
            Ok(Unmapped::Adopting)
        }
        Some(instance) => {
            let detail = serde_json::json!({"title": agent.title, "order": id, "mapped_guid": instance.wiro_guid});
            alerts::raise(&ctx.pool, "upstream_duplicate", &subject, Some(id), detail).await?;
            Ok(Unmapped::Quarantined)
        }
        None => {
            let detail = serde_json::json!({"title": agent.title, "correlator": id, "status": agent.status.code()});
            if alerts::raise(&ctx.pool, "upstream_orphan", &subject, None, detail).await? {
                audit_alert(ctx, "reconcile.orphan", &subject).await?;
            }
            Ok(Unmapped::Quarantined)
        }
    }
}

async fn confirm_missing(ctx: &Services, instance: &Instance) -> anyhow::Result<bool> {
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

/// Whole periods Wiro renewed on its own between two observed period ends (30-day periods).
fn auto_renewed_periods(before: DateTime<Utc>, after: DateTime<Utc>) -> i64 {
    let period = Duration::days(domain::forecast::PERIOD_DAYS);
    let gained = after - before;
    if gained < period - Duration::days(1) {
        return 0;
    }
    let periods = (gained.num_seconds() as f64 / period.num_seconds() as f64).round() as i64;
    let exact = period * periods as i32;
    if (gained - exact).num_seconds().abs() <= Duration::days(1).num_seconds() {
        periods
    } else {
        0
    }
}

/// Records what Wiro shows; false when the row changed first (the caller re-reads).
async fn observe(
    ctx: &Services,
    instance: &Instance,
    agent: &UserAgent,
    statuses: &Statuses,
) -> anyhow::Result<bool> {
    let mut change = observed(agent);
    let mut tx = ctx.pool.begin().await?;
    // Periods Wiro renewed by itself since we last looked: each is a charge we caused.
    let sub = agent.subscription.as_ref();
    if let (Some(before), Some(after), true, Some(sub)) = (
        instance.subscription_period_end,
        operations::billing::period_end(agent),
        instance.subscription_status.as_deref() == Some("active"),
        sub,
    ) && sub.is_active()
    {
        let periods = auto_renewed_periods(before, after);
        for n in 1..=periods {
            let end = before + Duration::days(domain::forecast::PERIOD_DAYS * n);
            ledger::record(
                &mut *tx,
                NewCharge {
                    customer_id: instance.customer_id,
                    instance_id: instance.id,
                    kind: ChargeKind::Renewal,
                    amount_cents: (sub.amount * 100.0).round() as i64,
                    reference: renewal_reference(instance, &end.timestamp().to_string()),
                    wiro_guid: Some(&agent.guid),
                },
            )
            .await?;
        }
    }
    let active_customer = statuses.get(instance.customer_id).await? == CustomerStatus::Active;
    let wants_running = instance.desired_state == DesiredState::Running && active_customer;
    let subscribed = sub.is_some_and(wiro_client::models::Subscription::is_active);
    let mut restart_needed = false;
    match agent.status {
        AgentStatus::Running if instance.error_restarts > 0 => {
            change.error_restarts = Some(0);
            alerts::resolve(
                &mut *tx,
                "error_restarts_exhausted",
                &alerts::instance_subject(instance.id),
            )
            .await?;
        }
        AgentStatus::Stopped if instance.state == InstanceState::Running => {
            // Wiro stopped it (a renewal resets to Stopped; an expiry stops it).
            if wants_running && subscribed {
                restart_needed = true;
            } else {
                change.state = Some(InstanceState::Stopped);
            }
        }
        AgentStatus::Error
            if wants_running
                && matches!(
                    instance.state,
                    InstanceState::Running | InstanceState::Starting
                ) =>
        {
            let cap = ctx.settings.schedules.error_restart_cap as i32;
            if instance.error_restarts >= cap {
                change.state = Some(InstanceState::Failed);
                change.failed_step = Some(Some("run".into()));
                change.last_error = Some(Some(format!(
                    "the agent went to Error (5) again after {cap} restarts"
                )));
                alerts::raise(
                    &mut *tx,
                    "error_restarts_exhausted",
                    &alerts::instance_subject(instance.id),
                    Some(instance.id),
                    serde_json::json!({"restarts": cap}),
                )
                .await?;
            } else if error_restart_due(ctx, instance) {
                change.error_restarts = Some(instance.error_restarts + 1);
                change.last_error_restart_at = Some(Some(Utc::now()));
                restart_needed = true;
            }
        }
        _ => {}
    }
    if instances::update(&mut *tx, instance.id, instance.version, change)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    tx.commit().await?;
    if restart_needed && let Some(current) = instances::get(&ctx.pool, instance.id).await? {
        restart(ctx, &current, "reconciliation found it stopped or in Error").await?;
    }
    Ok(true)
}

/// Backoff between error restarts: `provisioning.backoff_base` doubled per restart, capped.
fn error_restart_due(ctx: &Services, instance: &Instance) -> bool {
    let Some(last) = instance.last_error_restart_at else {
        return true;
    };
    let settings = &ctx.settings.provisioning;
    let wait = settings
        .backoff_base
        .saturating_mul(2u32.saturating_pow(instance.error_restarts as u32))
        .min(settings.backoff_max);
    Utc::now() - last >= Duration::from_std(wait).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_periods_are_counted_and_odd_gaps_are_not() {
        let t = Utc::now();
        assert_eq!(auto_renewed_periods(t, t + Duration::days(30)), 1);
        assert_eq!(auto_renewed_periods(t, t + Duration::days(90)), 3);
        assert_eq!(auto_renewed_periods(t, t + Duration::days(12)), 0);
        assert_eq!(auto_renewed_periods(t, t + Duration::days(45)), 0);
        assert_eq!(auto_renewed_periods(t, t), 0);
    }
}
