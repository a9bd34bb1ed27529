//! Nothing stuck: an order in progress (pending, deploying, configuring, starting, stopping)
//! that has not changed for `schedules.stuck_after` and has no provisioning job waiting or
//! running — its job ran out of attempts, or its follow-up was lost — is handed back to a job.
//! Each time is counted; past `schedules.stuck_alert_after` ops get an `order_stuck` alert
//! (and it is still requeued: the job itself fails the order when a step keeps failing).

use domain::db::instances::{self, Change};
use domain::db::{alerts, queue};
use operations::Services;

/// The most orders one sweep hands back.
const BATCH: i64 = 1_000;

/// What a stuck sweep did.
#[derive(Debug, Default)]
pub struct StuckReport {
    /// In progress and idle past the threshold.
    pub idle: usize,
    /// Of those, without a live job: handed back.
    pub requeued: usize,
}

/// Runs the sweep.
///
/// # Errors
/// Database failures.
pub async fn run(ctx: &Services) -> anyhow::Result<StuckReport> {
    let idle =
        instances::idle_in_progress(&ctx.pool, ctx.settings.schedules.stuck_after, BATCH).await?;
    let mut report = StuckReport {
        idle: idle.len(),
        ..StuckReport::default()
    };
    if idle.is_empty() {
        return Ok(report);
    }
    let live = queue::live_provision_jobs(&ctx.pool).await?;
    for instance in idle.into_iter().filter(|i| !live.contains(&i.id)) {
        let requeues = instance.requeues + 1;
        let mut tx = ctx.pool.begin().await?;
        let change = Change {
            requeues: Some(requeues),
            ..Change::default()
        };
        if instances::update(&mut *tx, instance.id, instance.version, change)
            .await?
            .is_none()
        {
            continue; // it moved meanwhile
        }
        domain::jobs::enqueue_provision(&mut tx, &[instance.id]).await?;
        if requeues >= ctx.settings.schedules.stuck_alert_after {
            let detail = serde_json::json!({"state": instance.state, "requeues": requeues, "last_error": instance.last_error});
            alerts::raise(
                &mut *tx,
                "order_stuck",
                &alerts::instance_subject(instance.id),
                Some(instance.id),
                detail,
            )
            .await?;
        }
        tx.commit().await?;
        tracing::warn!(instance = %instance.id, state = %instance.state, requeues, "stuck order handed back to a job");
        report.requeued += 1;
    }
    Ok(report)
}
