//! The reply poller: every worker process claims messages due for a look (`FOR UPDATE SKIP
//! LOCKED`, pushing their next look one interval away) and records what Message/Detail shows.
//! Without `wiro.callback_base_url` it is how `message.completed` / `message.failed` fire; with
//! one it is the safety net for a callback Wiro gave up on (it waits `reply_callback_grace`
//! first). Messages are followed for a day.

use std::time::Duration;

use domain::db::messages;
use futures::StreamExt;
use operations::Services;
use tokio::sync::watch;

/// Messages one poller claims at once.
const BATCH: i64 = 50;
/// Concurrent Detail calls.
const CONCURRENCY: usize = 8;
/// How long a message is followed.
const GIVE_UP: Duration = Duration::from_secs(24 * 3600);

/// Runs until `stop` turns true.
pub async fn run(ctx: Services, mut stop: watch::Receiver<bool>) {
    let interval = ctx.settings.wiro.reply_poll_interval;
    loop {
        let polled = match poll_once(&ctx).await {
            Ok(polled) => polled,
            Err(e) => {
                tracing::warn!(error = %e, "reply poll failed; trying again");
                0
            }
        };
        if *stop.borrow() {
            break;
        }
        if polled == 0 {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Claims and looks at one batch of due messages. Returns how many.
///
/// # Errors
/// Database errors (a failed Detail is logged; the message is looked at again next interval).
pub async fn poll_once(ctx: &Services) -> anyhow::Result<usize> {
    let interval = ctx.settings.wiro.reply_poll_interval;
    let due = messages::claim_polls(&ctx.pool, BATCH, interval, GIVE_UP).await?;
    let count = due.len();
    futures::stream::iter(due)
        .for_each_concurrent(CONCURRENCY, |(guid, instance)| async move {
            if let Err(e) = operations::replies::observe(ctx, &guid, instance).await {
                tracing::info!(message = %guid, error = %e, "could not read a pending message; next interval");
            }
        })
        .await;
    Ok(count)
}
