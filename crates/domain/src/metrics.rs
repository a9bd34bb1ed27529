//! Prometheus metrics of this process: HTTP (recorded by the API), upstream calls (recorded by
//! the Wiro client's observer), jobs (recorded by the worker). Gauges that describe the
//! database (instances by state, ledger totals) are computed when scraped.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Latency buckets in seconds, from 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's metrics.
pub struct Metrics {
    /// Everything below, registered.
    pub registry: Registry,
    /// `http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{route,method}`.
    pub http_duration: HistogramVec,
    /// `upstream_calls_total{endpoint,outcome}`.
    pub upstream_calls: IntCounterVec,
    /// `upstream_call_duration_seconds{endpoint}`.
    pub upstream_duration: HistogramVec,
    /// `jobs_total{queue,outcome}`.
    pub jobs: IntCounterVec,
    /// `job_duration_seconds{queue}`.
    pub job_duration: HistogramVec,
    /// `job_queue_wait_seconds{queue}`: from due to started.
    pub job_wait: HistogramVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    metric
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(metric.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    metric
}

/// The global metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    Metrics {
        http_requests: counter(
            &registry,
            "http_requests_total",
            "HTTP requests by route template, method and status.",
            &["route", "method", "status"],
        ),
        http_duration: histogram(
            &registry,
            "http_request_duration_seconds",
            "HTTP request latency.",
            &["route", "method"],
        ),
        upstream_calls: counter(
            &registry,
            "upstream_calls_total",
            "Calls to Wiro by endpoint and outcome (ok or the error kind).",
            &["endpoint", "outcome"],
        ),
        upstream_duration: histogram(
            &registry,
            "upstream_call_duration_seconds",
            "Latency of calls to Wiro.",
            &["endpoint"],
        ),
        jobs: counter(
            &registry,
            "jobs_total",
            "Jobs run by queue and outcome (ok, error).",
            &["queue", "outcome"],
        ),
        job_duration: histogram(
            &registry,
            "job_duration_seconds",
            "Job run time.",
            &["queue"],
        ),
        job_wait: histogram(
            &registry,
            "job_queue_wait_seconds",
            "Time from a job being due to it starting.",
            &["queue"],
        ),
        registry,
    }
});

/// Records every Wiro call attempt (install on the client config).
#[derive(Debug, Default)]
pub struct UpstreamObserver;

impl wiro_client::CallObserver for UpstreamObserver {
    fn on_attempt(
        &self,
        endpoint: wiro_client::Endpoint,
        outcome: &'static str,
        latency: Duration,
    ) {
        let metrics = &*METRICS;
        metrics
            .upstream_calls
            .with_label_values(&[endpoint.path(), outcome])
            .inc();
        metrics
            .upstream_duration
            .with_label_values(&[endpoint.path()])
            .observe(latency.as_secs_f64());
    }
}

/// Renders the registry plus the database gauges in Prometheus text format.
///
/// # Errors
/// Database errors.
pub async fn render(pool: &sqlx::PgPool) -> crate::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let families = METRICS.registry.gather();
    prometheus::TextEncoder::new()
        .encode_utf8(&families, &mut out)
        .map_err(|e| crate::Error::Corrupt(e.to_string()))?;
    let by_state = crate::db::instances::count_by_state(pool).await?;
    let _ = writeln!(
        out,
        "# HELP instances Instances by our state.\n# TYPE instances gauge"
    );
    for state in crate::model::InstanceState::ALL {
        let count = by_state
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, c)| *c);
        let _ = writeln!(out, "instances{{state=\"{state}\"}} {count}");
    }
    let totals = crate::db::ledger::totals(pool).await?;
    let _ = writeln!(
        out,
        "# HELP ledger_charges Wallet charges recorded, by kind.\n# TYPE ledger_charges gauge"
    );
    for (kind, count, _) in &totals {
        let _ = writeln!(out, "ledger_charges{{kind=\"{kind}\"}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP ledger_amount_cents Wallet charges recorded, in cents, by kind.\n# TYPE ledger_amount_cents gauge"
    );
    for (kind, _, cents) in &totals {
        let _ = writeln!(out, "ledger_amount_cents{{kind=\"{kind}\"}} {cents}");
    }
    render_gauges(&mut out, &crate::db::gauges::read(pool).await?);
    Ok(out)
}

/// The gauges the alert rules and the dashboard watch (`deploy/prometheus`, `deploy/grafana`).
fn render_gauges(out: &mut String, g: &crate::db::gauges::Gauges) {
    use std::fmt::Write;
    let mut family = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |key: &str, value: &str| format!("{{{key}=\"{value}\"}}");
    family(
        "alerts_open",
        "Open operator alerts by kind.",
        &g.alerts_open
            .iter()
            .map(|(kind, n)| (one("kind", kind), n.to_string()))
            .collect::<Vec<_>>(),
    );
    family(
        "job_queue_depth",
        "Jobs not done, by queue and status.",
        &g.jobs
            .iter()
            .map(|((queue, status), n)| {
                (
                    format!("{{queue=\"{queue}\",status=\"{status}\"}}"),
                    n.to_string(),
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        "job_oldest_due_seconds",
        "How long the longest-waiting due job of each queue has waited.",
        &g.oldest_due_seconds
            .iter()
            .map(|(queue, secs)| (one("queue", queue), format!("{secs:.3}")))
            .collect::<Vec<_>>(),
    );
    family(
        "operations_unresolved",
        "Consequential upstream calls whose outcome is not settled, by state.",
        &g.operations_unresolved
            .iter()
            .map(|(state, n)| (one("state", state), n.to_string()))
            .collect::<Vec<_>>(),
    );
    family(
        "workers_alive",
        "Workers heard from within a minute, by queue.",
        &g.workers_alive
            .iter()
            .map(|(queue, n)| (one("queue", queue), n.to_string()))
            .collect::<Vec<_>>(),
    );
    family(
        "wallet_due_cents",
        "What renewals due within the window and parked subscriptions will take from the wallet.",
        &[(
            one(
                "window",
                &format!("{}d", crate::db::gauges::WALLET_WINDOW_DAYS),
            ),
            g.wallet_due_cents.to_string(),
        )],
    );
    // NaN while Wiro has reported no balance: every comparison with it is false, so no rule
    // fires on a balance nobody knows.
    family(
        "wallet_available_cents",
        "The wallet balance Wiro last reported in an open insufficient-balance refusal (NaN: none).",
        &[(
            String::new(),
            g.wallet_available_cents
                .map_or_else(|| "NaN".to_owned(), |cents| cents.to_string()),
        )],
    );
    family(
        "api_replicas",
        "API processes sharing the per-customer request rates (each takes 1/N).",
        &[(String::new(), g.api_replicas.to_string())],
    );
}
