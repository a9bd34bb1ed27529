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
    Ok(out)
}
