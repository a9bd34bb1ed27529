//! The background ticker: applies due transitions without waiting for a request, and delivers
//! `callbackurl` webhooks as Wiro does — up to 3 attempts, 2 s apart, anything but HTTP 200 is a
//! failure, then the webhook is abandoned.

use std::time::Duration;

use tokio::sync::watch;

use crate::simulator::Simulator;
use crate::world::Callback;

const ATTEMPTS: u32 = 3;

pub(crate) async fn tick_loop(sim: Simulator, every: Duration, mut stop: watch::Receiver<bool>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut interval = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let outbox = sim.take_outbox();
        for callback in outbox {
            tokio::spawn(deliver(
                http.clone(),
                callback,
                sim.inner.webhook_retry_delay,
            ));
        }
    }
}

async fn deliver(http: reqwest::Client, callback: Callback, pause: Duration) {
    for attempt in 1..=ATTEMPTS {
        let sent = http.post(&callback.url).json(&callback.body).send().await;
        if sent.as_ref().is_ok_and(|r| r.status().as_u16() == 200) {
            return;
        }
        tracing::info!(url = %callback.url, attempt, "webhook delivery failed");
        if attempt < ATTEMPTS {
            tokio::time::sleep(pause).await;
        }
    }
    tracing::warn!(url = %callback.url, "webhook abandoned after {ATTEMPTS} attempts");
}
