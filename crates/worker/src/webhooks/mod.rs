//! The webhook dispatcher: every worker process claims due deliveries (`FOR UPDATE SKIP
//! LOCKED`, with a lease), signs each event per Standard Webhooks with every active secret of
//! its endpoint, and POSTs the exact stored bytes. A 2xx delivers it; anything else is retried
//! on `webhooks.retry_schedule` (with jitter), and a delivery that fails for the whole schedule
//! disables its endpoint (when nothing reached it meanwhile) with an ops alert.
//!
//! Delivery is at-least-once: a dispatcher that dies mid-request leaves its lease to run out,
//! and another sends the same `webhook-id` again; receivers deduplicate on it. A slow or dead
//! receiver costs only its own deliveries' time (each request is bounded by
//! `webhooks.timeout`), never provisioning, which only writes the outbox.

use std::time::{Duration, Instant};

use chrono::Utc;
use domain::db::webhooks::{self, AttemptRecord, Due, NextStep};
use domain::webhooks as signing;
use futures::StreamExt;
use operations::Services;
use rand::Rng;
use tokio::sync::watch;

mod resolver;

pub use resolver::PublicOnly;

/// How many bytes of a receiver's answer the log keeps.
const RESPONSE_KEPT: usize = 512;

/// Runs until `stop` turns true.
pub async fn run(ctx: Services, mut stop: watch::Receiver<bool>) {
    let settings = ctx.settings.webhooks.clone();
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(PublicOnly {
            allow_private: settings.allow_private_targets,
        })
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!(
            "wiro-reseller-webhooks/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "webhook dispatcher cannot build its HTTP client");
            return;
        }
    };
    tracing::info!("webhook dispatcher running");
    loop {
        let sent = match dispatch_once(&ctx, &http).await {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatch failed; trying again");
                0
            }
        };
        if *stop.borrow() {
            break;
        }
        if sent == 0 {
            tokio::select! {
                _ = tokio::time::sleep(settings.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
    tracing::info!("webhook dispatcher stopped");
}

/// Claims and sends one batch of due deliveries, concurrently. Returns how many were sent.
///
/// # Errors
/// Database errors.
pub async fn dispatch_once(ctx: &Services, http: &reqwest::Client) -> anyhow::Result<usize> {
    let settings = &ctx.settings.webhooks;
    // The lease outlives one request: nobody else sends it while we wait for the answer.
    let lease = settings.timeout * 2 + Duration::from_secs(5);
    let due = webhooks::claim_due(&ctx.pool, i64::from(settings.batch), lease).await?;
    let count = due.len();
    futures::stream::iter(due)
        .for_each_concurrent(settings.batch as usize, |due| async move {
            if let Err(e) = deliver(ctx, http, &due).await {
                tracing::warn!(event = %due.event_id, endpoint = %due.endpoint_id, error = %e, "recording a webhook attempt failed");
            }
        })
        .await;
    Ok(count)
}

async fn deliver(ctx: &Services, http: &reqwest::Client, due: &Due) -> anyhow::Result<()> {
    let started = Instant::now();
    let outcome = send(ctx, http, due).await;
    let duration_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let schedule = &ctx.settings.webhooks.retry_schedule;
    let (record, next) = match &outcome {
        Ok((status, body)) if (200..300).contains(status) => (
            AttemptRecord {
                status: Some(*status),
                duration_ms,
                response: Some(body.as_str()),
                error: None,
            },
            NextStep::Delivered,
        ),
        Ok((status, body)) => (
            AttemptRecord {
                status: Some(*status),
                duration_ms,
                response: Some(body.as_str()),
                error: None,
            },
            retry(schedule, due.attempt),
        ),
        Err(why) => (
            AttemptRecord {
                status: None,
                duration_ms,
                response: None,
                error: Some(why.as_str()),
            },
            retry(schedule, due.attempt),
        ),
    };
    let disabled = webhooks::record_attempt(&ctx.pool, due, record, next).await?;
    match next {
        NextStep::Delivered => {
            tracing::debug!(event = %due.event_id, endpoint = %due.endpoint_id, attempt = due.attempt, "webhook delivered");
        }
        NextStep::RetryAt(at) => {
            tracing::info!(event = %due.event_id, endpoint = %due.endpoint_id, attempt = due.attempt, %at, "webhook not delivered; retrying");
        }
        NextStep::GiveUp => {
            tracing::warn!(event = %due.event_id, endpoint = %due.endpoint_id, disabled, "webhook undeliverable after the whole schedule");
        }
    }
    Ok(())
}

/// After failed attempt `attempt` (1-based): the next one after the schedule's delay (±10%
/// jitter, so a receiver that comes back is not hit by every retry at once), or give up.
fn retry(schedule: &[Duration], attempt: i32) -> NextStep {
    let Some(delay) = usize::try_from(attempt - 1)
        .ok()
        .and_then(|i| schedule.get(i))
    else {
        return NextStep::GiveUp;
    };
    let jitter = delay.mul_f64(rand::rng().random_range(-0.1..=0.1_f64).abs());
    let delay = if rand::rng().random_bool(0.5) {
        *delay + jitter
    } else {
        delay.saturating_sub(jitter)
    };
    NextStep::RetryAt(Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default())
}

/// One signed POST. `Ok((status, first bytes of the answer))`, or why nothing was answered.
async fn send(ctx: &Services, http: &reqwest::Client, due: &Due) -> Result<(u16, String), String> {
    let allow_private = ctx.settings.webhooks.allow_private_targets;
    // Checked again at each delivery: an address in the URL here; a name where the
    // connection is made (`PublicOnly`), since it may resolve elsewhere from one lookup to the
    // next.
    let url = signing::check_url(&due.url, allow_private)
        .and_then(|url| signing::check_literal_address(&url, allow_private).map(|()| url))
        .map_err(|e| e.to_string())?;
    let mut keys = Vec::with_capacity(2);
    for sealed in std::iter::once(&due.secret).chain(due.previous_secret.as_ref()) {
        let secret = ctx
            .sealer
            .open_secret(due.endpoint_id, sealed)
            .map_err(|e| e.to_string())?;
        keys.push(signing::secret_key(&secret).map_err(|e| e.to_string())?);
    }
    let id = signing::message_id(due.event_id);
    let timestamp = Utc::now().timestamp();
    let signature = signing::signature_header(&keys, &id, timestamp, due.body.as_bytes());
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(due.body.clone())
        .send()
        .await
        .map_err(|e| format!("no answer: {}", error_chain(&e)))?;
    let status = response.status().as_u16();
    Ok((status, first_bytes(response).await))
}

/// `e` with its sources: reqwest's own text names only the URL, its source why (a refused
/// address, a timeout, a refused connection).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The first [`RESPONSE_KEPT`] bytes of the answer (the rest is not read).
async fn first_bytes(response: reqwest::Response) -> String {
    let mut kept = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = RESPONSE_KEPT - kept.len();
        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if kept.len() >= RESPONSE_KEPT {
            break;
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_runs_out_after_its_last_delay() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        let now = Utc::now();
        match retry(&schedule, 1) {
            NextStep::RetryAt(at) => {
                let secs = (at - now).num_milliseconds() as f64 / 1000.0;
                assert!((4.4..=5.6).contains(&secs), "{secs}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(retry(&schedule, 2), NextStep::RetryAt(_)));
        assert!(matches!(retry(&schedule, 3), NextStep::GiveUp));
    }
}
