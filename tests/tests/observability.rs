//! The dashboard and the alert rules watch only what the service exports: every metric and
//! every label they name is in a real scrape of a service that has served an order.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::PgPool;

/// Metrics Prometheus itself provides.
const PROMETHEUS_OWN: &[&str] = &["ALERTS", "up"];
/// Words that are never metric names: operators, and aggregations (`max by (x) (...)`).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
];

/// Metric name → the label names its samples carry, from Prometheus text exposition.
fn exported(scrape: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            metrics.entry(name.to_owned()).or_default();
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    metrics.entry(format!("{name}{suffix}")).or_default();
                }
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let labels = metrics.entry(line[..name_end].to_owned()).or_default();
            if line[name_end..].starts_with('{') {
                let body = &line[name_end + 1..line.find('}').unwrap()];
                for pair in body.split("\",") {
                    if let Some((key, _)) = pair.split_once('=') {
                        labels.insert(key.trim().to_owned());
                    }
                }
            }
        }
    }
    metrics
}

/// What one PromQL expression names: metric → label names in its matchers, and the labels of
/// its `by (...)` clauses.
#[derive(Debug, Default)]
struct Uses {
    metrics: BTreeMap<String, BTreeSet<String>>,
    grouping: BTreeSet<String>,
}

fn uses(expr: &str) -> Uses {
    let mut out = Uses::default();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            let end = i + chars[i..].iter().position(|&c| c == '}').unwrap();
            let body: String = chars[i + 1..end].iter().collect();
            let labels = out.metrics.entry(last_word.clone()).or_default();
            for matcher in body.split(',') {
                let key: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !key.is_empty() {
                    labels.insert(key);
                }
            }
            i = end + 1;
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if ["by", "without"].contains(&word.as_str()) && next == Some('(') {
                let open = i + chars[i..].iter().position(|&c| c == '(').unwrap();
                let close = open + chars[open..].iter().position(|&c| c == ')').unwrap();
                let list: String = chars[open + 1..close].iter().collect();
                out.grouping.extend(
                    list.split(',')
                        .map(|l| l.trim().to_owned())
                        .filter(|l| !l.is_empty()),
                );
                i = close + 1;
            } else if ["on", "ignoring", "group_left", "group_right"].contains(&word.as_str())
                && next == Some('(')
            {
                i += chars[i..].iter().position(|&c| c == ')').unwrap() + 1;
            } else if next != Some('(') && !KEYWORDS.contains(&word.as_str()) {
                out.metrics.entry(word.clone()).or_default();
                last_word = word;
            }
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every `expr` of deploy/prometheus/alerts.yml (inline or a `|` block), with the names of
/// its recording rules.
fn rule_expressions(yaml: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut recorded = BTreeSet::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- record: ") {
            recorded.insert(name.trim().to_owned());
        }
        let Some(value) = trimmed.strip_prefix("expr: ") else {
            continue;
        };
        if value.trim() != "|" {
            exprs.push(value.trim().to_owned());
            continue;
        }
        let indent = line.len() - trimmed.len();
        let block: Vec<&str> = lines[n + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" "));
    }
    (exprs, recorded)
}

fn dashboard_expressions(json: &str) -> Vec<String> {
    let dashboard: serde_json::Value = serde_json::from_str(json).unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().clone())
        .map(|target| target["expr"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_promql_reader_finds_metrics_labels_and_groupings() {
    let found = uses(
        r#"max by (queue) (job_oldest_due_seconds{queue!~"a|b"}[5m]) > 300 and on (x) sum(rate(jobs_total[1m])) or reseller:ratio"#,
    );
    assert_eq!(
        found.metrics.keys().collect::<Vec<_>>(),
        ["job_oldest_due_seconds", "jobs_total", "reseller:ratio"]
    );
    assert_eq!(
        found.metrics["job_oldest_due_seconds"],
        BTreeSet::from(["queue".to_owned()])
    );
    assert_eq!(found.grouping, BTreeSet::from(["queue".to_owned()]));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn every_metric_the_dashboard_and_alert_rules_use_is_exported(pool: PgPool) {
    let app = testkit::spawn_app(pool).await;
    let token = app.customer_token("observed");
    app.running_agent(&token, "email-assistant", "starter")
        .await;
    // An open alert, so `alerts_open` has a sample (and the wallet balance Wiro reported in it).
    domain::db::alerts::raise(
        &app.pool,
        "renewal_parked",
        "instance:observed",
        None,
        serde_json::json!({"required_cents": 1900, "available_cents": 500}),
    )
    .await
    .unwrap();
    let scrape = reqwest::get(format!("{}/metrics", app.metrics_address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = exported(&scrape);
    assert!(
        scrape.contains("\nwallet_available_cents 500\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("workers_alive{queue=\"provision\"} 1"),
        "{scrape}"
    );
    assert!(scrape.contains("\napi_replicas 1\n"), "{scrape}");

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let rules = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(format!("{root}/deploy/grafana/reseller.json")).unwrap();
    let (rule_exprs, recorded) = rule_expressions(&rules);
    let dashboard_exprs = dashboard_expressions(&dashboard);
    assert!(rule_exprs.len() >= 10 && dashboard_exprs.len() >= 14);

    let mut problems = Vec::new();
    for expr in rule_exprs.iter().chain(&dashboard_exprs) {
        let used = uses(expr);
        let mut labels_of_used = BTreeSet::from(["le".to_owned()]);
        for (metric, labels) in &used.metrics {
            if PROMETHEUS_OWN.contains(&metric.as_str()) || recorded.contains(metric) {
                labels_of_used.insert("alertname".into());
                continue;
            }
            let Some(exported_labels) = metrics.get(metric) else {
                problems.push(format!("{metric} (in `{expr}`) is not exported"));
                continue;
            };
            labels_of_used.extend(exported_labels.iter().cloned());
            for label in labels {
                if !exported_labels.contains(label) {
                    problems.push(format!("{metric} has no label {label} (in `{expr}`)"));
                }
            }
        }
        for label in &used.grouping {
            if !labels_of_used.contains(label) {
                problems.push(format!(
                    "`by ({label})` groups on a label no metric of `{expr}` has"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\n\nscrape:\n{scrape}");
}
