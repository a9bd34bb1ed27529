//! `reseller provision --file customers.csv`: a bulk order through the API.
//!
//! The CSV has a header row with `customer,template,plan,title` and an optional `credentials`
//! column (a JSON object `{group: {field: value}}`). Every row is checked before anything is
//! sent; errors name the line and column. Rows go in batches whose keys derive from the file's
//! content, so running the same file again finds the same batches and orders nothing twice.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Flags of `provision`.
#[derive(Clone, Debug, clap::Args)]
pub struct ProvisionArgs {
    /// The CSV file.
    #[arg(long)]
    pub file: PathBuf,
    /// The API's base URL.
    #[arg(
        long,
        env = "RESELLER_API_URL",
        hide_env_values = true,
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// An ops token (default: one minted with the configured HS256 secret).
    #[arg(long, env = "RESELLER_OPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Orders per batch (1–10000).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Submit and exit without waiting for provisioning to finish.
    #[arg(long)]
    pub no_wait: bool,
    /// Retry the file's failed orders (after fixing their cause, e.g. topping up the wallet):
    /// each resumes from its recorded step, nothing is ordered twice.
    #[arg(long)]
    pub retry_failed: bool,
}

/// One valid row.
#[derive(Debug)]
struct Row {
    customer: String,
    template: String,
    plan: String,
    title: String,
    credentials: Option<Value>,
}

fn parse(bytes: &[u8]) -> anyhow::Result<Vec<Row>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader.headers().context("reading the header row")?.clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let required = ["customer", "template", "plan", "title"];
    let missing: Vec<_> = required.iter().filter(|c| column(c).is_none()).collect();
    if !missing.is_empty() {
        bail!(
            "the header row must name the columns customer,template,plan,title[,credentials]; missing: {missing:?}"
        );
    }
    let (c, t, p, ti, cr) = (
        column("customer"),
        column("template"),
        column("plan"),
        column("title"),
        column("credentials"),
    );
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let get = |idx: Option<usize>| {
            idx.and_then(|i| record.get(i))
                .unwrap_or_default()
                .to_owned()
        };
        let row = Row {
            customer: get(c),
            template: get(t),
            plan: get(p),
            title: get(ti),
            credentials: None,
        };
        for (name, value) in [
            ("customer", &row.customer),
            ("template", &row.template),
            ("title", &row.title),
        ] {
            if value.is_empty() {
                errors.push(format!("line {line}, column {name}: must not be empty"));
            }
        }
        if row.plan != "starter" && row.plan != "pro" {
            errors.push(format!(
                "line {line}, column plan: must be starter or pro, got {:?}",
                row.plan
            ));
        }
        let credentials = get(cr);
        let credentials = if credentials.is_empty() {
            None
        } else {
            match serde_json::from_str::<Value>(&credentials) {
                Ok(v) if v.is_object() => Some(v),
                Ok(_) => {
                    errors.push(format!("line {line}, column credentials: must be a JSON object {{\"group\": {{\"field\": \"value\"}}}}"));
                    None
                }
                Err(e) => {
                    errors.push(format!(
                        "line {line}, column credentials: invalid JSON ({e})"
                    ));
                    None
                }
            }
        };
        rows.push(Row { credentials, ..row });
    }
    if !errors.is_empty() {
        let shown: Vec<_> = errors.iter().take(20).cloned().collect();
        let more = errors.len().saturating_sub(shown.len());
        bail!(
            "the file has {} error(s); nothing was ordered:\n  {}{}",
            errors.len(),
            shown.join("\n  "),
            if more > 0 {
                format!("\n  ...and {more} more")
            } else {
                String::new()
            }
        );
    }
    if rows.is_empty() {
        bail!("the file has no rows to order");
    }
    Ok(rows)
}

/// Runs the bulk order.
///
/// # Errors
/// Bad input, an unreachable API, or refused batches.
pub async fn run(args: ProvisionArgs, settings: &domain::Settings) -> anyhow::Result<()> {
    if !(1..=10_000).contains(&args.batch_size) {
        bail!("--batch-size must be 1 to 10000");
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let rows = parse(&bytes)
        .with_context(|| format!("{} is not a valid order file", args.file.display()))?;
    let token = match args.token {
        Some(t) => t,
        None => api::auth::mint(settings, "reseller-cli", Some("ops"))?,
    };
    let digest = hex::encode(&Sha256::digest(&bytes)[..12]);
    let http = reqwest::Client::new();
    let base = args.api.trim_end_matches('/').to_owned();
    let total = rows.len();
    let mut batches = Vec::new();
    for (n, chunk) in rows.chunks(args.batch_size).enumerate() {
        let key = format!("csv-{digest}-{n}");
        let items: Vec<Value> = chunk
            .iter()
            .map(|r| {
                let mut item = json!({"customer": r.customer, "template": r.template, "plan": r.plan, "title": r.title});
                if let Some(c) = &r.credentials {
                    item["credentials"] = c.clone();
                }
                item
            })
            .collect();
        let response = http
            .post(format!("{base}/v1/admin/provisioning-batches"))
            .bearer_auth(&token)
            .header("idempotency-key", &key)
            .json(&json!({"key": key, "items": items}))
            .send()
            .await
            .with_context(|| format!("cannot reach the API at {base}"))?;
        let status = response.status();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let body: Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(
                "batch {n} was refused ({status}): {}",
                body["detail"].as_str().unwrap_or("no detail")
            );
        }
        // 201 = created now; 200 (same batch key) or a replayed answer = an earlier run's batch.
        let verb = if status.as_u16() == 201 && !replayed {
            "submitted"
        } else {
            "already submitted"
        };
        println!(
            "batch {} of {} orders {verb} (key {key})",
            n + 1,
            chunk.len()
        );
        batches.push(body["id"].as_str().unwrap_or_default().to_owned());
    }
    if args.retry_failed {
        let failed = failed_orders(&http, &base, &token, &batches).await?;
        for order in &failed {
            let response = http
                .post(format!("{base}/v1/admin/agents/{}/retry", order.agent))
                .bearer_auth(&token)
                .send()
                .await
                .with_context(|| format!("cannot reach the API at {base}"))?;
            if !response.status().is_success() {
                let status = response.status();
                let body: Value = response.json().await.unwrap_or_default();
                bail!(
                    "retrying {} ({}) was refused ({status}): {}",
                    order.agent,
                    order.customer,
                    body["detail"].as_str().unwrap_or("no detail")
                );
            }
        }
        println!("retried {} failed order(s)", failed.len());
    }
    if args.no_wait {
        return Ok(());
    }
    wait(&http, &base, &token, &batches, total).await?;
    let failed = failed_orders(&http, &base, &token, &batches).await?;
    if failed.is_empty() {
        return Ok(());
    }
    crate::print_stdout(&failure_table(&failed))?;
    bail!(
        "{} order(s) failed; fix the cause, then rerun with --retry-failed",
        failed.len()
    )
}

/// An order of the file that failed, and why.
struct FailedOrder {
    customer: String,
    agent: String,
    reason: String,
}

/// Every failed order of `batches` (all pages).
async fn failed_orders(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    batches: &[String],
) -> anyhow::Result<Vec<FailedOrder>> {
    let mut failed = Vec::new();
    for id in batches {
        let mut cursor: Option<String> = None;
        loop {
            let mut url = url::Url::parse(&format!("{base}/v1/admin/provisioning-batches/{id}"))
                .with_context(|| format!("--api {base} is not a URL"))?;
            url.query_pairs_mut().append_pair("limit", "500");
            if let Some(c) = &cursor {
                url.query_pairs_mut().append_pair("cursor", c);
            }
            let body: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            for item in body["items"].as_array().into_iter().flatten() {
                if item["state"] == "failed" {
                    failed.push(FailedOrder {
                        customer: item["customer"].as_str().unwrap_or("?").to_owned(),
                        agent: item["instance_id"].as_str().unwrap_or("?").to_owned(),
                        reason: item["error"]
                            .as_str()
                            .unwrap_or("no reason recorded")
                            .to_owned(),
                    });
                }
            }
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
    }
    Ok(failed)
}

fn failure_table(failed: &[FailedOrder]) -> String {
    let width = failed
        .iter()
        .map(|f| f.customer.chars().count())
        .max()
        .unwrap_or(0)
        .max("CUSTOMER".len());
    let mut out = format!(
        "\nFAILED ORDERS\n{:<width$}  {:<36}  REASON\n",
        "CUSTOMER", "AGENT"
    );
    for f in failed {
        out.push_str(&format!(
            "{:<width$}  {:<36}  {}\n",
            f.customer, f.agent, f.reason
        ));
    }
    out
}

/// States an order does not leave by itself.
const SETTLED: [&str; 5] = [
    "running",
    "stopped",
    "awaiting_credentials",
    "awaiting_connection",
    "failed",
];

async fn wait(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    batches: &[String],
    total: usize,
) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} settled  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        let mut settled = 0usize;
        let mut failed = 0usize;
        for id in batches {
            let body: Value = http
                .get(format!("{base}/v1/admin/provisioning-batches/{id}?limit=1"))
                .bearer_auth(token)
                .send()
                .await?
                .json()
                .await?;
            for state in SETTLED {
                settled += body["counts"][state].as_u64().unwrap_or(0) as usize;
            }
            failed += body["counts"]["failed"].as_u64().unwrap_or(0) as usize;
        }
        match &bar {
            Some(bar) => {
                bar.set_position(settled as u64);
                bar.set_message(format!("{failed} failed"));
            }
            None if last_line.elapsed() >= Duration::from_secs(5) || settled == total => {
                println!("settled {settled}/{total} ({failed} failed)");
                last_line = std::time::Instant::now();
            }
            None => {}
        }
        if settled >= total {
            if let Some(bar) = bar {
                bar.finish();
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_file_parses_with_optional_credentials() {
        let csv = "customer,template,plan,title,credentials\n\
                   acme,instagram-manager,starter,Acme bot,\"{\"\"instagram\"\":{\"\"authMethod\"\":\"\"wiro\"\"}}\"\n\
                   globex,email-assistant,pro,Globex,\n";
        let rows = parse(csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].credentials.as_ref().unwrap()["instagram"]["authMethod"],
            "wiro"
        );
        assert!(rows[1].credentials.is_none());
    }

    #[test]
    fn errors_name_the_line_and_column_and_nothing_is_accepted() {
        let csv = "customer,template,plan,title,credentials\nacme,x,gold,t,\n,x,pro,t,{bad\n";
        let err = parse(csv.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("line 2, column plan"), "{err}");
        assert!(err.contains("line 3, column customer"), "{err}");
        assert!(err.contains("line 3, column credentials"), "{err}");
    }

    #[test]
    fn a_missing_header_column_is_named() {
        let err = parse(b"customer,plan,title\nacme,starter,t\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("template"), "{err}");
    }
}
