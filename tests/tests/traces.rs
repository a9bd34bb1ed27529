//! One order is one trace: the API request's span, the jobs it caused (the trace context
//! travels in their payloads) and every upstream call they made share one trace id, and the log
//! lines inside them name it. Spans go to an in-memory exporter; this binary holds only this
//! test, because the subscriber it installs is global (the API serves from its own threads).

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use sqlx::PgPool;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log output, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_orders_request_jobs_and_upstream_calls_share_one_trace(pool: PgPool) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_writer(move || writer.clone()),
        )
        .init();

    let app = testkit::spawn_app(pool).await;
    let token = app.customer_token("traced");
    let agent = app
        .running_agent(&token, "email-assistant", "starter")
        .await;
    // The job's spans end just after it recorded Running: wait until the last one (which
    // made the Start call) is exported.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let spans = loop {
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let job_ended = spans.iter().any(|s| {
            s.name == "job" && attribute(s, "instance").as_deref() == Some(agent.as_str())
        });
        let started = spans
            .iter()
            .any(|s| attribute(s, "endpoint").as_deref() == Some("UserAgent/Start"));
        if job_ended && started {
            break spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job's spans never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };

    let request = spans
        .iter()
        .find(|s| {
            s.name == "http"
                && attribute(s, "method").as_deref() == Some("POST")
                && attribute(s, "path").as_deref() == Some("/v1/agents")
        })
        .expect("the order's request span");
    let trace = request.span_context.trace_id();
    assert_eq!(attribute(request, "trace_id"), Some(trace.to_string()));

    let jobs: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "job" && attribute(s, "instance").as_deref() == Some(agent.as_str()))
        .collect();
    assert!(!jobs.is_empty(), "the provisioning job ran in a span");
    for job in &jobs {
        assert_eq!(job.span_context.trace_id(), trace, "job span {job:?}");
        assert_eq!(attribute(job, "trace_id"), Some(trace.to_string()));
    }

    let calls: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "wiro.call" && s.span_context.trace_id() == trace)
        .collect();
    let endpoints: Vec<String> = calls
        .iter()
        .filter_map(|c| attribute(c, "endpoint"))
        .collect();
    for endpoint in ["UserAgent/Deploy", "UserAgent/Start", "UserAgent/Detail"] {
        assert!(
            endpoints.iter().any(|e| e == endpoint),
            "{endpoint} is in the order's trace: {endpoints:?}"
        );
    }
    for call in &calls {
        assert!(attribute(call, "attempt").is_some(), "{call:?}");
        assert_eq!(
            attribute(call, "outcome").as_deref(),
            Some("ok"),
            "{call:?}"
        );
    }
    // The one Deploy of the run is this order's, and it is in this trace.
    let deploys: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attribute(s, "endpoint").as_deref() == Some("UserAgent/Deploy"))
        .collect();
    assert_eq!(deploys.len(), 1);
    assert_eq!(deploys[0].span_context.trace_id(), trace);

    // Log lines written inside the job name the trace.
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let tagged = text
        .lines()
        .filter(|line| line.contains(&format!("\"trace_id\":\"{trace}\"")))
        .count();
    assert!(tagged > 0, "no log line names trace {trace}:\n{text}");
}
