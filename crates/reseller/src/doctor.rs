//! `reseller doctor`: checks a deployment's configuration, database, Wiro account and keys in
//! one command, saying for each what is wrong and which setting to change. Spends nothing at
//! Wiro (MyAgents is a read). Exit code 0 only when every check passes.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::Settings;
use domain::sealed::Sealer;
use serde::Serialize;
use sqlx::PgPool;
use wiro_client::{Error as WiroCallError, WiroError};

use crate::runtime;

/// Arguments of `reseller doctor`.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Print one JSON object (`ok`, `checks`, `forecast`) instead of the table.
    #[arg(long)]
    json: bool,
    /// Forecast look-ahead in days.
    #[arg(long, default_value_t = 30)]
    days: i64,
}

/// One check's verdict.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    /// What was found, or what is wrong and how to fix it.
    detail: String,
}

/// What the wallet must hold, from our own records.
#[derive(Debug, Serialize)]
struct ForecastSummary {
    days: i64,
    renewals_due: usize,
    renewals_usd: f64,
    parked: usize,
    parked_usd: f64,
    wallet_must_hold_usd: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    forecast: Option<ForecastSummary>,
}

impl Report {
    fn push(&mut self, name: &'static str, verdict: Result<String, String>) -> bool {
        let ok = verdict.is_ok();
        self.checks.push(Check {
            name,
            ok,
            detail: verdict.unwrap_or_else(|e| e),
        });
        ok
    }
}

/// Runs every check and prints the report; fails (exit code 1) unless all passed.
///
/// # Errors
/// When a check failed, or the report cannot be printed.
pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = examine(args.days).await;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&report)?)
    } else {
        render(&report)?
    };
    crate::print_stdout(&text)?;
    if report.ok {
        Ok(())
    } else {
        let failed: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect();
        anyhow::bail!("doctor: {} failed", failed.join(", "))
    }
}

async fn examine(days: i64) -> Report {
    let mut report = Report {
        ok: false,
        checks: Vec::new(),
        forecast: None,
    };
    let mut settings = match Settings::load() {
        Ok(settings) => settings,
        Err(e) => {
            report.push("config", Err(format!("{e:#}")));
            return report;
        }
    };
    let dev_secret = runtime::use_dev_jwt_secret(&mut settings, false).unwrap_or(false);
    report.push("config", Ok(config_source()));
    report.push(
        "credentials_key",
        runtime::sealer(&settings)
            .map(|_| "security.credentials_key seals and opens credentials".to_owned())
            .map_err(|e| format!("{e:#}")),
    );
    report.push("jwt", jwt(&settings, dev_secret));
    if let Some(pool) = database(&settings, &mut report).await {
        if let Ok(sealer) = runtime::sealer(&settings) {
            report.push("sealed_values", sealed_values(&pool, &sealer).await);
        }
        if let Ok(forecast) = domain::forecast::forecast(&pool, days, None).await {
            report.forecast = Some(ForecastSummary {
                days,
                renewals_due: forecast.renewals.len(),
                renewals_usd: dollars(forecast.renewals_cents),
                parked: forecast.parked.len(),
                parked_usd: dollars(forecast.parked_cents),
                wallet_must_hold_usd: dollars(forecast.total_cents),
            });
        }
        pool.close().await;
    }
    wiro(&settings, &mut report).await;
    report.ok = report.checks.iter().all(|c| c.ok);
    report
}

fn config_source() -> String {
    match std::env::var("RESELLER_CONFIG") {
        Ok(file) if !file.trim().is_empty() => {
            format!("every setting is valid (defaults, {file}, environment)")
        }
        _ => "every setting is valid (defaults and environment; no RESELLER_CONFIG file)".into(),
    }
}

#[allow(clippy::cast_precision_loss)] // cents of a forecast are far below 2^52
fn dollars(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// The verifier builds from `[auth]`, and (HS256) a token we mint passes it.
fn jwt(settings: &Settings, dev_secret: bool) -> Result<String, String> {
    let verifier = api::auth::JwtVerifier::new(settings).map_err(|e| format!("{e:#}"))?;
    if settings.auth.algorithm != "HS256" {
        return Ok(format!(
            "{} public key loaded; tokens are minted by your identity provider",
            settings.auth.algorithm
        ));
    }
    let (token, _) = api::auth::mint_for(settings, "doctor", None, Duration::from_secs(60))
        .map_err(|e| format!("minting a test token: {e:#}"))?;
    verifier
        .verify(&token)
        .map_err(|e| format!("a token minted with these settings is refused: {e}"))?;
    Ok(if dev_secret {
        format!(
            "HS256 with the development secret in {} (set RESELLER_AUTH__HS256_SECRET in production)",
            runtime::DEV_JWT_SECRET
        )
    } else {
        "HS256: a token minted with auth.hs256_secret verifies (iss, aud, lifetime)".into()
    })
}

/// Every value sealed with the credentials key opens, and whether the previous keys are still
/// needed.
async fn sealed_values(pool: &PgPool, sealer: &Sealer) -> Result<String, String> {
    let survey = domain::reseal::survey(pool, sealer)
        .await
        .map_err(|e| format!("cannot read them: {e}"))?;
    if let Some(first) = survey.unopenable.first() {
        return Err(format!(
            "{} sealed value(s) open with no configured key (the first: {first}): list the key \
             they were sealed with in security.previous_credentials_keys",
            survey.unopenable.len()
        ));
    }
    Ok(match survey.previous {
        0 => format!(
            "all {} sealed value(s) use the current key; no previous key is needed",
            survey.current
        ),
        n => format!(
            "{n} of {} sealed value(s) open only with a previous key: run `reseller reseal` \
             before removing it from security.previous_credentials_keys",
            n + survey.current
        ),
    })
}

/// Connects and checks the migrations; the pool when both pass.
async fn database(settings: &Settings, report: &mut Report) -> Option<PgPool> {
    let pool = match runtime::pool(settings, 1, Duration::from_secs(5)).await {
        Ok(pool) => pool,
        Err(e) => {
            report.push("database", Err(format!("{e:#}")));
            return None;
        }
    };
    let version: Result<String, _> = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&pool)
        .await;
    match version {
        Ok(version) => report.push("database", Ok(format!("PostgreSQL {version} answers"))),
        Err(e) => report.push(
            "database",
            Err(format!("the database refused a query: {e}")),
        ),
    };
    report.push("database_clock", database_clock(&pool).await);
    let migrated = match domain::pending_migrations(&pool).await {
        Ok(missing) if missing.is_empty() => report.push(
            "migrations",
            Ok(format!(
                "all {} migrations applied",
                domain::MIGRATOR.iter().count()
            )),
        ),
        Ok(missing) => report.push(
            "migrations",
            Err(format!(
                "migrations {missing:?} are not applied: run `reseller migrate`"
            )),
        ),
        Err(e) => report.push("migrations", Err(format!("cannot read them: {e}"))),
    };
    migrated.then_some(pool)
}

/// This machine's clock against the database's. Jobs are due at a `run_at` written from the
/// enqueuing process's clock and taken when the database's clock reaches it (apalis), so a
/// process whose clock runs ahead makes every job it enqueues wait that long; one behind makes
/// the queue-wait metric read high and retries come early. (Leases, deadlines and the business
/// clock are read from the database's clock alone.)
async fn database_clock(pool: &PgPool) -> Result<String, String> {
    let before = Utc::now();
    let theirs: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("cannot read the database's clock: {e}"))?;
    judge_database_clock(before, theirs, Utc::now())
}

/// The most the two clocks may differ: apalis's `run_at` is in whole seconds.
const DATABASE_SKEW_ALLOWED: chrono::Duration = chrono::Duration::seconds(1);

/// Judges the database's clock `theirs`, read between `before` and `after` on ours: the skew
/// is what lies outside that window (the round trip is not held against either clock).
fn judge_database_clock(
    before: DateTime<Utc>,
    theirs: DateTime<Utc>,
    after: DateTime<Utc>,
) -> Result<String, String> {
    let ahead = before - theirs;
    let behind = theirs - after;
    let seconds = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    if ahead > DATABASE_SKEW_ALLOWED {
        Err(format!(
            "this machine's clock is {:.1} s ahead of the database's: every job it enqueues waits \
             that long before a worker takes it; sync the clocks (NTP)",
            seconds(ahead)
        ))
    } else if behind > DATABASE_SKEW_ALLOWED {
        Err(format!(
            "this machine's clock is {:.1} s behind the database's: the queue-wait metric reads \
             high and the retries it schedules come early; sync the clocks (NTP)",
            seconds(behind)
        ))
    } else {
        let skew = ahead.max(behind).max(chrono::Duration::zero());
        Ok(format!("within {:.1} s of the database's", seconds(skew)))
    }
}

/// Reachability and authentication (MyAgents, personal context), the team (MyAgents with the
/// teamGUID header), and the clock against Wiro's `Date` header.
async fn wiro(settings: &Settings, report: &mut Report) {
    if !settings.wiro_configured() {
        report.push(
            "wiro",
            Err(
                "wiro.api_key (WIRO_API_KEY) is empty: set your Wiro project's API key \
                 (only `reseller up` runs without one, on its embedded simulator)"
                    .into(),
            ),
        );
        return;
    }
    let base = &settings.wiro.base_url;
    let client = |team: Option<String>| {
        let mut config = settings
            .wiro_client_config()
            .map_err(|e| format!("{e:#}"))?;
        config.team_guid = team;
        config.retry.max_attempts = 1;
        config.timeout = Duration::from_secs(10);
        wiro_client::Client::new(config).map_err(|e| format!("wiro client: {e}"))
    };
    let probe = wiro_client::models::MyAgentsRequest {
        limit: Some(1),
        ..Default::default()
    };
    let personal = match client(None) {
        Ok(client) => client.my_agents(&probe).await,
        Err(e) => {
            report.push("wiro", Err(e));
            return;
        }
    };
    let reached = report.push(
        "wiro",
        personal
            .map(|_| format!("{base} answers and accepts the API key"))
            .map_err(|e| explain(&e, base)),
    );
    let team = settings.wiro.team_guid.trim();
    if team.is_empty() {
        report.push(
            "team",
            Ok("no wiro.team_guid: instances are deployed to the key's own account".into()),
        );
    } else if reached {
        let verdict = match client(Some(team.to_owned())) {
            Ok(client) => client
                .my_agents(&probe)
                .await
                .map(|_| format!("the account is a member of team {team}"))
                .map_err(|e| match &e {
                    WiroCallError::Api {
                        error: WiroError::NotTeamMember,
                        ..
                    } => format!(
                        "Wiro says the API key's account is not a member of team {team}: \
                         check wiro.team_guid (WIRO_TEAM_GUID)"
                    ),
                    other => explain(other, base),
                }),
            Err(e) => Err(e),
        };
        report.push("team", verdict);
    }
    if reached {
        report.push("clock", clock(base, settings.auth.leeway).await);
    }
}

fn explain(error: &WiroCallError, base: &str) -> String {
    match error {
        WiroCallError::Api { error, .. } => match error {
            WiroError::UnknownApiKey => format!(
                "Wiro does not know the API key ({error}): check wiro.api_key (WIRO_API_KEY)"
            ),
            WiroError::SignatureRequired => format!(
                "the project requires signature authentication ({error}): set wiro.api_secret \
                 (WIRO_API_SECRET)"
            ),
            WiroError::InvalidSignature => format!(
                "Wiro refused the signature ({error}): check wiro.api_secret (WIRO_API_SECRET)"
            ),
            WiroError::IpNotAllowed { ip } => format!(
                "Wiro does not allow calls from {ip}: add it to the project's allowed addresses"
            ),
            other => format!("Wiro refused MyAgents: {other}"),
        },
        WiroCallError::Connect { source, .. } => {
            format!("cannot connect to {base} (wiro.base_url / WIRO_BASE_URL): {source}")
        }
        other => format!("{other} (wiro.base_url / WIRO_BASE_URL is {base})"),
    }
}

/// Our clock against the `Date` header of Wiro's answer: renewals, leases and JWT lifetimes
/// all compare times, so a skew beyond `auth.leeway` fails.
async fn clock(base: &str, leeway: Duration) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let response = http
        .get(base)
        .send()
        .await
        .map_err(|e| format!("cannot read Wiro's clock: {e}"))?;
    let ours = Utc::now();
    let date = response
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or("Wiro's answer carries no Date header; the clock cannot be compared")?;
    let theirs = DateTime::parse_from_rfc2822(date)
        .map_err(|e| format!("Wiro's Date header {date:?} is not a date: {e}"))?
        .with_timezone(&Utc);
    let skew = (ours - theirs).num_milliseconds().unsigned_abs();
    let allowed = u64::try_from(leeway.as_millis())
        .unwrap_or(u64::MAX)
        .max(1_000);
    if skew > allowed {
        Err(format!(
            "this machine's clock is {:.1} s off Wiro's (more than auth.leeway {}): sync it (NTP)",
            skew as f64 / 1000.0,
            humantime::format_duration(leeway)
        ))
    } else {
        Ok(format!("within {:.1} s of Wiro's", skew as f64 / 1000.0))
    }
}

fn render(report: &Report) -> anyhow::Result<String> {
    let mut out = String::new();
    for check in &report.checks {
        let verdict = if check.ok { "ok" } else { "FAIL" };
        writeln!(out, "{verdict:<5} {:<16} {}", check.name, check.detail)?;
    }
    if let Some(f) = &report.forecast {
        writeln!(out)?;
        writeln!(out, "WALLET FORECAST, NEXT {} DAYS", f.days)?;
        writeln!(
            out,
            "  renewals due      {:>6}   ${:>10.2}",
            f.renewals_due, f.renewals_usd
        )?;
        writeln!(
            out,
            "  parked (expired)  {:>6}   ${:>10.2}",
            f.parked, f.parked_usd
        )?;
        writeln!(
            out,
            "  wallet must hold           ${:>10.2}",
            f.wallet_must_hold_usd
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        if report.ok {
            "every check passed"
        } else {
            "some checks failed"
        }
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn a_read_inside_the_round_trip_is_no_skew() {
        assert_eq!(
            judge_database_clock(at(0), at(40), at(80)),
            Ok("within 0.0 s of the database's".to_owned())
        );
        assert!(judge_database_clock(at(0), at(-900), at(80)).is_ok());
        assert!(judge_database_clock(at(0), at(1_000), at(5)).is_ok());
    }

    #[test]
    fn a_clock_ahead_says_jobs_wait_and_one_behind_says_retries_come_early() {
        let ahead = judge_database_clock(at(0), at(-2_500), at(10)).unwrap_err();
        assert!(
            ahead.contains("2.5 s ahead") && ahead.contains("waits"),
            "{ahead}"
        );
        let behind = judge_database_clock(at(0), at(3_010), at(10)).unwrap_err();
        assert!(
            behind.contains("3.0 s behind") && behind.contains("early"),
            "{behind}"
        );
    }
}
