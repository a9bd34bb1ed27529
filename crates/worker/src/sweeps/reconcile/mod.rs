//! Reconciliation: page through MyAgents and bring our map in line with the upstream.
//!
//! - Mapped instances: record status, subscription and credits through `observe::record`
//!   (which books every renewal a new period end reveals); restart an agent Wiro stopped (a
//!   renewal resets to Stopped) when the customer wants it running; restart agents in Error (5)
//!   with backoff, up to `schedules.error_restart_cap` times, then fail them for ops.
//! - Unknown upstream instances (`unmapped`): ours by their description are re-adopted or
//!   contained as duplicates; the operator's own are remembered and left alone.
//! - Map rows whose upstream instance is gone ("User agent not found"): flagged for ops.
//! - Customers whose month's charges passed their spending limit: flagged for ops.

mod unmapped;

use std::collections::{HashMap, HashSet};

use chrono::{Duration, Utc};
use domain::db::alerts;
use domain::db::instances::{self, Change, Instance};
use domain::model::{CustomerStatus, DesiredState, InstanceState};
use futures::TryStreamExt;
use operations::Services;
use operations::observe;
use wiro_client::models::{AgentStatus, UserAgent};

use super::{Statuses, for_each, restart};

/// What a reconciliation found.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    /// Upstream instances seen.
    pub upstream: usize,
    /// Mapped instances seen.
    pub observed: usize,
    /// Mapped instances whose row changed (the rest were already up to date).
    pub written: usize,
    /// Mapped instances whose row a job wrote after MyAgents was asked for (left to the next
    /// sweep: the listing may be older than what the job saw).
    pub written_meanwhile: usize,
    /// Unknown instances re-adopted by (or handed to) their order.
    pub adopting: usize,
    /// Duplicates contained, or instances of unknown orders reported.
    pub quarantined: usize,
    /// Map rows whose upstream is gone.
    pub missing: usize,
    /// Customers over their monthly spending limit (alerted to ops).
    pub over_limit: usize,
    /// Agents waiting for an OAuth connection or for credits, handed to their job to ask Wiro
    /// again.
    pub waiting: usize,
    /// Items that failed (retried next sweep).
    pub failures: usize,
}

/// Runs the sweep.
///
/// # Errors
/// When MyAgents cannot be read or the database fails.
pub async fn run(ctx: &Services) -> anyhow::Result<ReconcileReport> {
    // MyAgents is judged only against rows no one wrote since it was asked for: a job that
    // wrote a row later saw Wiro later (a listing taken before a Start must not restart the
    // agent the job has just recorded Running). Those rows wait for the next sweep.
    let listed_from = domain::db::clock::database_now(&ctx.pool).await?;
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

    let (mapped, unknown): (Vec<&UserAgent>, Vec<&UserAgent>) = upstream
        .iter()
        .partition(|agent| by_guid.contains_key(agent.guid.as_str()));
    let found = unmapped::handle(ctx, &unknown).await?;
    report.adopting = found.adopting;
    report.quarantined = found.quarantined;
    report.observed = mapped.len();
    let (mapped, newer): (Vec<(Instance, UserAgent)>, Vec<_>) = mapped
        .into_iter()
        .map(|agent| ((*by_guid[agent.guid.as_str()]).clone(), agent.clone()))
        .partition(|(instance, _)| instance.updated_at < listed_from);
    report.written_meanwhile = newer.len();
    let statuses = Statuses::of(&ctx.pool, mapped.iter().map(|(i, _)| i.customer_id)).await?;
    let written = std::sync::atomic::AtomicUsize::new(0);
    report.failures += for_each(ctx, mapped, |(instance, agent)| {
        let statuses = &statuses;
        let written = &written;
        async move {
            // A job may change the row meanwhile: re-read and judge again (a few times).
            let mut current = instance;
            for _ in 0..5 {
                match observe_one(ctx, &current, &agent, statuses).await? {
                    Observed::Unchanged => return Ok(()),
                    Observed::Written => {
                        written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Ok(());
                    }
                    Observed::Raced => {}
                }
                match instances::get(&ctx.pool, current.id).await? {
                    // A downgrade moved the agent to a new instance: this row is not about it.
                    Some(fresh) if fresh.wiro_guid.as_deref() != Some(agent.guid.as_str()) => {
                        return Ok(());
                    }
                    // Written since the listing was asked for: judged by the next sweep.
                    Some(fresh) if fresh.updated_at >= listed_from => return Ok(()),
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
    report.written = written.into_inner();

    let gone: Vec<Instance> = ours
        .iter()
        .filter(|i| i.state != InstanceState::Failed)
        .filter(|i| i.wiro_guid.as_deref().is_some_and(|g| !seen.contains(g)))
        .cloned()
        .collect();
    for instance in gone {
        if unmapped::confirm_missing(ctx, &instance).await? {
            report.missing += 1;
        }
    }
    unmapped::cancel_pending_duplicates(ctx).await?;
    // A customer may connect long after the job stopped polling, and credits come back with
    // a renewal or a pack bought by hand: each waiting agent's job asks Wiro once more.
    let waiting: Vec<_> = ours
        .iter()
        .filter(|i| {
            matches!(
                i.state,
                InstanceState::AwaitingConnection | InstanceState::OutOfCredits
            )
        })
        .map(|i| i.id)
        .collect();
    if !waiting.is_empty() {
        let mut conn = ctx.pool.acquire().await?;
        domain::jobs::enqueue_provision(&mut conn, &waiting).await?;
        report.waiting = waiting.len();
    }
    // Renewals booked above may take a customer over its limit; we cannot refuse them, so
    // ops hear about it.
    let mut conn = ctx.pool.acquire().await?;
    report.over_limit = domain::limits::alert_all_over(&mut conn, &ctx.settings.limits).await?;
    Ok(report)
}

/// What [`observe_one`] did.
enum Observed {
    /// The row already held what Wiro shows; nothing to do.
    Unchanged,
    /// The observation (and any restart) was recorded.
    Written,
    /// The row changed first: the caller re-reads and judges again.
    Raced,
}

/// Records what Wiro shows and restarts what should run.
async fn observe_one(
    ctx: &Services,
    instance: &Instance,
    agent: &UserAgent,
    statuses: &Statuses,
) -> anyhow::Result<Observed> {
    let active_customer = statuses.get(instance.customer_id).await? == CustomerStatus::Active;
    let wants_running = instance.desired_state == DesiredState::Running && active_customer;
    let subscribed = agent
        .subscription
        .as_ref()
        .is_some_and(wiro_client::models::Subscription::is_active);
    let mut change = Change::default();
    let mut restart_needed = false;
    let mut alert: Option<(&str, serde_json::Value)> = None;
    let mut resolved: Option<&str> = None;
    match agent.status {
        AgentStatus::Running if instance.error_restarts > 0 => {
            change.error_restarts = Some(0);
            resolved = Some("error_restarts_exhausted");
        }
        AgentStatus::Stopped if instance.state == InstanceState::Running => {
            // Wiro stopped it (a renewal resets to Stopped; an expiry stops it).
            if wants_running && subscribed {
                restart_needed = true;
            } else {
                change.state = Some(InstanceState::Stopped);
            }
        }
        AgentStatus::Stopped
            if instance.state == InstanceState::Stopped && wants_running && subscribed =>
        {
            // Stopped by an expiry and paid again since, but its restart was missed.
            restart_needed = true;
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
                alert = Some((
                    "error_restarts_exhausted",
                    serde_json::json!({"restarts": cap}),
                ));
            } else if error_restart_due(ctx, instance) {
                change.error_restarts = Some(instance.error_restarts + 1);
                change.last_error_restart_at = Some(Some(Utc::now()));
                restart_needed = true;
            }
        }
        _ => {}
    }
    if alert.is_none() && resolved.is_none() && !restart_needed {
        let (writes, renewals) = observe::planned(instance, agent, change.clone());
        if writes.is_empty() && renewals.is_empty() {
            // Nothing new: no lock, no write (most agents on most sweeps).
            return Ok(Observed::Unchanged);
        }
    }
    let mut tx = ctx.pool.begin().await?;
    let Some(current) =
        observe::record(&mut tx, instance.id, Some(instance.version), agent, change).await?
    else {
        return Ok(Observed::Raced);
    };
    let subject = alerts::instance_subject(instance.id);
    if let Some((kind, detail)) = alert {
        alerts::raise(&mut *tx, kind, &subject, Some(instance.id), detail).await?;
    }
    if let Some(kind) = resolved {
        alerts::resolve(&mut *tx, kind, &subject).await?;
    }
    tx.commit().await?;
    if restart_needed {
        restart(ctx, &current, "reconciliation found it stopped or in Error").await?;
    }
    Ok(Observed::Written)
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
