//! Structured logs: human-readable on a terminal, JSON otherwise (or as `log.format` says).
//! Spans carry request ids and job ids, so every line names the work it belongs to.
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set,
//! spans are exported with OTLP over HTTP, configured by the standard `OTEL_*` variables
//! (`OTEL_SERVICE_NAME`, default `wiro-reseller`; `OTEL_EXPORTER_OTLP_HEADERS`, ...;
//! `OTEL_SDK_DISABLED=true` turns them off). Then the request, job and upstream-call spans
//! carry a `trace_id` field, so log lines name their trace. Off otherwise.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The exporting provider, kept to flush it at exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Installs the global subscriber. `format` is `auto`, `human` or `json`.
pub fn init(format: &str, level: &str) {
    // sqlx reports every migration notice at info; keep it to warnings unless asked.
    let directives = if level.contains("sqlx") {
        level.to_owned()
    } else {
        format!("{level},sqlx=warn")
    };
    let filter =
        EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = match format {
        "json" => true,
        "human" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    // Logs go to stderr: stdout carries what commands print (the `up` banner, a bare token).
    let logs = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let logs = if json {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        logs.boxed()
    };
    // Traces keep the request, job and upstream-call spans (info) whatever the log level, and
    // never the exporter's own HTTP stack (it would trace its own exports).
    let traces = provider().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("wiro-reseller"))
            .with_filter(EnvFilter::new(
                "info,sqlx=warn,hyper=off,hyper_util=off,h2=off,reqwest=off,opentelemetry=off",
            ))
    });
    // A second init (tests, `up` embedding components) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(traces)
        .with(logs.with_filter(filter))
        .try_init();
}

/// The OTLP exporting provider, when the standard variables ask for one.
fn provider() -> Option<&'static SdkTracerProvider> {
    let set = |key: &str| std::env::var(key).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true");
    if disabled
        || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("traces are off: the OTLP exporter cannot be built from OTEL_* ({e})");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("wiro-reseller");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Some(PROVIDER.get_or_init(|| provider))
}

/// Sends the spans still buffered (at exit).
pub fn flush() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        eprintln!("traces: could not flush the last spans: {e}");
    }
}
