//! Builds the apalis monitor: one worker per queue, each with an explicit queue name, a unique
//! worker name, explicit heartbeat and orphan timeouts, bounded concurrency, and NOTIFY plus
//! polling for new work (`fetch_gate`: a fetch only when there may be work).

use std::future::Future;
use std::time::Duration;

use std::str::FromStr;

use apalis::prelude::*;
use apalis_cron::CronScheduler;
use apalis_postgres::{Config, PostgresStorage, Pubsub};
use domain::jobs::{
    ApplyCustomerStatus, BULK_CHUNK_QUEUE, BULK_PROVISION_QUEUE, CUSTOMER_QUEUE, Lane,
    PROVISION_QUEUE, ProvisionChunk, ProvisionInstance, SWEEP_QUEUE, Sweep, SweepKind,
};

use crate::fetch_gate::{self, FetchGate};
use crate::jobs::apply_customer_status::apply_customer_status;
use crate::jobs::provision_chunk::provision_chunk;
use crate::jobs::provision_instance::provision_instance;
use crate::jobs::run_sweep::run_sweep;
use crate::jobs::tick::{TickTarget, on_tick};
use operations::Services;

/// The backend of one queue.
type QueueBackend<Args> = FetchGate<PostgresStorage<Args>>;

fn storage<Args>(ctx: &Services, queue: &str, concurrency: usize) -> QueueBackend<Args> {
    let settings = &ctx.settings.worker;
    let config = Config::default()
        .queue(queue)
        // Fetch no more than we can run: extra claimed jobs would wait here while other
        // workers idle.
        .batch_size(concurrency)
        .heartbeat_interval(settings.heartbeat_interval)
        .missed_heartbeats(settings.missed_heartbeats);
    // NOTIFY wakes us for new work at once; the interval finds delayed jobs (NOTIFY only
    // fires for jobs due now) and covers a lost listener. Nothing else starts a fetch.
    let (pool, queue) = (ctx.pool.clone(), queue.to_owned());
    FetchGate::new(
        PostgresStorage::<Args>::new(&ctx.pool).with_config(config),
        move || fetch_gate::notices(Pubsub::new(pool.clone(), queue.clone())),
        settings.poll_interval,
    )
}

/// Runs every queue's worker until `shutdown` resolves, then lets in-flight jobs finish for
/// `worker.shutdown_timeout` (unfinished ones are handed back by the orphan sweep).
///
/// # Errors
/// When the monitor fails.
pub async fn run(
    ctx: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let name = ctx.worker_name.to_string();
    let settings = ctx.settings.worker.clone();
    let ops = settings.ops_concurrency;
    tracing::info!(worker = %name, interactive_concurrency = settings.interactive_concurrency, provision_concurrency = settings.provision_concurrency, ops_concurrency = ops, "worker starting");

    let provision =
        storage::<ProvisionInstance>(&ctx, PROVISION_QUEUE, settings.interactive_concurrency);
    let bulk =
        storage::<ProvisionInstance>(&ctx, BULK_PROVISION_QUEUE, settings.provision_concurrency);
    // A chunk runs its orders side by side: the bulk lane's slots hold whole chunks.
    let chunk_slots = domain::jobs::chunk_slots(settings.provision_concurrency);
    let chunks = storage::<ProvisionChunk>(&ctx, BULK_CHUNK_QUEUE, chunk_slots);
    let sweeps = storage::<Sweep>(&ctx, SWEEP_QUEUE, ops);
    let customers = storage::<ApplyCustomerStatus>(&ctx, CUSTOMER_QUEUE, ops);
    // The bulk lane (chunks and single orders of batches) makes at most provision_concurrency
    // upstream calls at once, however many of its jobs run.
    let bulk_ctx = Services {
        wiro: ctx.wiro.limited(settings.provision_concurrency),
        ..ctx.clone()
    };
    let mut monitor = Monitor::new();
    {
        let (ctx, name) = (ctx.clone(), name.clone());
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("{name}/{PROVISION_QUEUE}"))
                .backend(provision.clone())
                .concurrency(settings.interactive_concurrency)
                .data(ctx.clone())
                .data(Lane::Interactive)
                .catch_panic()
                .build(provision_instance)
        });
    }
    {
        let (ctx, name) = (bulk_ctx.clone(), name.clone());
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("{name}/{BULK_PROVISION_QUEUE}"))
                .backend(bulk.clone())
                .concurrency(settings.provision_concurrency)
                .data(ctx.clone())
                .data(Lane::Bulk)
                .catch_panic()
                .build(provision_instance)
        });
    }
    {
        let (ctx, name) = (crate::provision::chunk_services(&bulk_ctx), name.clone());
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("{name}/{BULK_CHUNK_QUEUE}"))
                .backend(chunks.clone())
                .concurrency(chunk_slots)
                .data(ctx.clone())
                .catch_panic()
                .build(provision_chunk)
        });
    }
    {
        let (ctx, name) = (ctx.clone(), name.clone());
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("{name}/{SWEEP_QUEUE}"))
                .backend(sweeps.clone())
                .concurrency(ops)
                .data(ctx.clone())
                .catch_panic()
                .build(run_sweep)
        });
    }
    {
        let (ctx, name) = (ctx.clone(), name.clone());
        monitor = monitor.register(move |_| {
            WorkerBuilder::new(format!("{name}/{CUSTOMER_QUEUE}"))
                .backend(customers.clone())
                .concurrency(ops)
                .data(ctx.clone())
                .catch_panic()
                .build(apply_customer_status)
        });
    }
    if ctx.settings.schedules.enabled {
        // One reconciliation at start: after a restart, agents show what Wiro shows within
        // seconds rather than at the next tick (minutes). Processes starting in the same second
        // share the sweep, unless it already ran (a restart within the second).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let Err(e) = domain::jobs::reconcile_now(&ctx.pool, now).await {
            tracing::warn!(error = %e, "cannot enqueue the start-up reconciliation; the schedule will run it");
        }
        let schedules = &ctx.settings.schedules;
        for (kind, expr) in [
            (SweepKind::Reconcile, &schedules.reconcile),
            (SweepKind::Renewals, &schedules.renewals),
            (SweepKind::Topups, &schedules.topups),
            (SweepKind::Settle, &schedules.settle),
            (SweepKind::Stuck, &schedules.stuck),
            (SweepKind::Purge, &schedules.purge),
        ] {
            let schedule = cron::Schedule::from_str(expr)
                .map_err(|e| anyhow::anyhow!("schedules.{}: {e}", kind.as_str()))?;
            let target = TickTarget {
                kind,
                pool: ctx.pool.clone(),
            };
            let name = name.clone();
            monitor = monitor.register(move |_| {
                WorkerBuilder::new(format!("{name}/cron-{}", target.kind.as_str()))
                    .backend(CronScheduler::new(schedule.clone()))
                    .data(target.clone())
                    .catch_panic()
                    .build(on_tick)
            });
        }
    }
    // Two loops next to the queues: the webhook dispatcher and the reply poller.
    let (stop_loops, stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tokio::spawn(crate::webhooks::run(ctx.clone(), stopped.clone()));
    let poller = tokio::spawn(crate::replies::run(ctx.clone(), stopped));
    let monitored = monitor
        .shutdown_timeout(ctx.settings.worker.shutdown_timeout)
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await;
    let _ = stop_loops.send(true);
    let _ = dispatcher.await;
    let _ = poller.await;
    monitored?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Defaults suitable for tests: fast heartbeats and polling.
pub fn fast_timings(settings: &mut domain::Settings) {
    settings.schedules.enabled = false;
    settings.worker.heartbeat_interval = Duration::from_millis(500);
    settings.worker.missed_heartbeats = 2;
    settings.worker.poll_interval = Duration::from_millis(100);
    settings.webhooks.poll_interval = Duration::from_millis(50);
}
