//! Structured logs: human-readable on a terminal, JSON otherwise (or as `log.format` says).
//! Spans carry request ids and job ids, so every line names the work it belongs to.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests, `up` embedding components) keeps the first subscriber.
    let _ = result;
}
