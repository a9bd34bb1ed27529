//! Builds the apalis monitor: one worker per queue, each with an explicit queue name, a unique
//! worker name, explicit heartbeat and orphan timeouts, bounded concurrency, and NOTIFY plus
//! polling for new work.

use std::future::Future;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage, Pubsub};
use domain::jobs::{PROVISION_QUEUE, ProvisionInstance};

use crate::context::JobContext;
use crate::jobs::provision_instance::provision_instance;

/// The backend of one queue.
type QueueBackend<Args> = PollWith<PostgresStorage<Args>, Strategy>;

fn storage<Args>(ctx: &JobContext, queue: &str, concurrency: usize) -> QueueBackend<Args> {
    let settings = &ctx.settings.worker;
    let config = Config::default()
        .queue(queue)
        // Fetch no more than we can run: extra claimed jobs would wait here while other
        // workers idle.
        .batch_size(concurrency)
        .heartbeat_interval(settings.heartbeat_interval)
        .missed_heartbeats(settings.missed_heartbeats);
    // NOTIFY wakes us for new work at once; the interval finds delayed jobs (NOTIFY only
    // fires for jobs due now) and covers a lost listener.
    let strategy = Strategy::new()
        .stream(Pubsub::new(ctx.pool.clone(), queue.to_owned()))
        .interval(settings.poll_interval);
    PostgresStorage::<Args>::new(&ctx.pool)
        .with_config(config)
        .poll_with_strategy(strategy)
}

/// Runs every queue's worker until `shutdown` resolves, then lets in-flight jobs finish for
/// `worker.shutdown_timeout` (unfinished ones are handed back by the orphan sweep).
///
/// # Errors
/// When the monitor fails.
pub async fn run(
    ctx: JobContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let name = ctx.worker_name.to_string();
    let settings = ctx.settings.worker.clone();
    let provision_backend =
        storage::<ProvisionInstance>(&ctx, PROVISION_QUEUE, settings.provision_concurrency);
    let provision_ctx = ctx.clone();
    tracing::info!(worker = %name, provision_concurrency = settings.provision_concurrency, "worker starting");
    Monitor::new()
        .register(move |_| {
            WorkerBuilder::new(format!("{name}/{PROVISION_QUEUE}"))
                .backend(provision_backend.clone())
                .concurrency(settings.provision_concurrency)
                .data(provision_ctx.clone())
                .catch_panic()
                .build(provision_instance)
        })
        .shutdown_timeout(ctx.settings.worker.shutdown_timeout)
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Defaults suitable for tests: fast heartbeats and polling.
pub fn fast_timings(settings: &mut domain::Settings) {
    settings.worker.heartbeat_interval = Duration::from_millis(500);
    settings.worker.missed_heartbeats = 2;
    settings.worker.poll_interval = Duration::from_millis(100);
}
