//! Scheduled sweeps. Each selects its work by state ("everything due"), not by tick, so a
//! missed tick costs nothing and a duplicate one finds nothing left to do.

pub mod customer_status;
mod downgrade;
pub mod purge;
pub mod reconcile;
pub mod renewals;
pub mod stuck;
pub mod topups;

use std::collections::HashMap;

use domain::db::customers;
use domain::db::instances::{self, Change, Instance};
use domain::ids::CustomerId;
use domain::jobs::{self, SweepKind};
use domain::model::{CustomerStatus, InstanceState};
use tokio::sync::Mutex;

use operations::Services;

/// Runs one sweep.
///
/// # Errors
/// Infrastructure failures; per-instance upstream failures are logged and left for the next
/// sweep.
pub async fn run(ctx: &Services, kind: SweepKind) -> anyhow::Result<()> {
    match kind {
        SweepKind::Reconcile => reconcile::run(ctx)
            .await
            .map(|report| tracing::info!(?report, "reconciled")),
        SweepKind::Renewals => renewals::run(ctx)
            .await
            .map(|report| tracing::info!(?report, "renewals swept")),
        SweepKind::Topups => topups::run(ctx)
            .await
            .map(|report| tracing::info!(?report, "top-ups swept")),
        SweepKind::Settle => operations::settle::sweep(ctx)
            .await
            .map(|report| tracing::info!(?report, "operations settled"))
            .map_err(Into::into),
        SweepKind::Stuck => stuck::run(ctx)
            .await
            .map(|report| tracing::info!(?report, "stuck orders swept")),
        SweepKind::Purge => purge::run(ctx)
            .await
            .map(|report| tracing::info!(?report, "expired rows purged")),
    }
}

/// Reads the instance from Wiro and records it (booking any renewal it reveals; retried on
/// concurrent changes: it only records facts).
pub(crate) async fn refresh(
    ctx: &Services,
    instance: &Instance,
) -> anyhow::Result<Option<Instance>> {
    let Some(guid) = instance.wiro_guid.as_deref() else {
        return Ok(None);
    };
    let agent = ctx.wiro.detail(guid).await?;
    Ok(
        operations::observe::record_now(&ctx.pool, instance.id, None, &agent, Change::default())
            .await?,
    )
}

/// Customer statuses, looked up once per sweep.
#[derive(Debug)]
pub(crate) struct Statuses {
    pool: sqlx::PgPool,
    cache: Mutex<HashMap<CustomerId, CustomerStatus>>,
}

impl Statuses {
    pub(crate) fn new(pool: &sqlx::PgPool) -> Self {
        Self {
            pool: pool.clone(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// With the statuses of `customers` read in one statement: a sweep over 100,000 agents
    /// otherwise reads its customers one by one (one statement each, every five minutes).
    pub(crate) async fn of(
        pool: &sqlx::PgPool,
        customers: impl Iterator<Item = CustomerId>,
    ) -> anyhow::Result<Self> {
        let mut ids: Vec<CustomerId> = customers.collect();
        ids.sort_unstable();
        ids.dedup();
        let known = customers::statuses(pool, &ids).await?;
        Ok(Self {
            pool: pool.clone(),
            cache: Mutex::new(known.into_iter().collect()),
        })
    }

    pub(crate) async fn get(&self, id: CustomerId) -> anyhow::Result<CustomerStatus> {
        if let Some(status) = self.cache.lock().await.get(&id) {
            return Ok(*status);
        }
        let status = customers::get(&self.pool, id)
            .await?
            .map_or(CustomerStatus::Closed, |c| c.status);
        self.cache.lock().await.insert(id, status);
        Ok(status)
    }
}

/// Applies `change` (fenced on the version) and enqueues the provisioning job in one
/// transaction; false when someone changed the instance first.
pub(crate) async fn change_and_provision(
    ctx: &Services,
    instance: &Instance,
    change: Change,
) -> anyhow::Result<bool> {
    let mut tx = ctx.pool.begin().await?;
    if instances::update(&mut *tx, instance.id, instance.version, change)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    jobs::enqueue_provision(&mut tx, &[instance.id]).await?;
    tx.commit().await?;
    Ok(true)
}

/// Hands the agent to the provisioning job to start it again. A concurrent change that only
/// recorded what Wiro shows (another sweep's observation) does not make it give up; a change of
/// state does (the caller's reason may be gone).
pub(crate) async fn restart(
    ctx: &Services,
    instance: &Instance,
    reason: &str,
) -> anyhow::Result<bool> {
    tracing::info!(instance = %instance.id, reason, "restarting agent");
    let change = Change {
        state: Some(InstanceState::Starting),
        ..Change::default()
    };
    let mut current = instance.clone();
    for _ in 0..5 {
        if !matches!(
            current.state,
            InstanceState::Running | InstanceState::Stopped
        ) {
            return Ok(false); // in progress, failed, or waiting: not ours to restart
        }
        if change_and_provision(ctx, &current, change.clone()).await? {
            return Ok(true);
        }
        match instances::get(&ctx.pool, instance.id).await? {
            Some(fresh) => current = fresh,
            None => return Ok(false),
        }
    }
    anyhow::bail!(
        "instance {} kept changing; restart left to the next sweep",
        instance.id
    )
}

/// Hands the agent to the provisioning job to stop it.
pub(crate) async fn stop(ctx: &Services, instance: &Instance) -> anyhow::Result<bool> {
    if matches!(
        instance.state,
        InstanceState::Stopped | InstanceState::Stopping | InstanceState::Failed
    ) {
        return Ok(false);
    }
    let change = Change {
        state: Some(InstanceState::Stopping),
        ..Change::default()
    };
    change_and_provision(ctx, instance, change).await
}

/// Runs `f` over `items` with the ops concurrency, logging (not propagating) per-item errors.
pub(crate) async fn for_each<T, F, Fut>(ctx: &Services, items: Vec<T>, f: F) -> usize
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    use futures::StreamExt;
    let failures = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(items)
        .for_each_concurrent(ctx.settings.worker.ops_concurrency, |item| {
            let fut = f(item);
            let failures = &failures;
            async move {
                if let Err(e) = fut.await {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(error = %e, "sweep item failed; the next sweep retries it");
                }
            }
        })
        .await;
    failures.into_inner()
}
