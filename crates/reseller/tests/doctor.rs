//! `reseller doctor` against a healthy setup and against each mistake an operator makes, and
//! `reseller migrate --check` (what the Kubernetes pods wait on).

use std::process::{Command, Output};

use domain::sealed::Sealer;
use serde_json::Value;
use sqlx::PgPool;
use wiro_sim::{SimConfig, SimServer};

const TEAM: &str = "0b7b5f6c-1d2e-4f30-9a8b-7c6d5e4f3a21";

async fn sim() -> SimServer {
    let mut config = SimConfig::with_account(testkit::WIRO_KEY, 100.0);
    config.team_guid = Some(TEAM.to_owned());
    SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Runs the built binary with a complete, valid environment, then `overrides` (off the test's
/// runtime thread, which serves the simulator meanwhile).
async fn reseller(
    args: &[&str],
    pool: &PgPool,
    sim: &SimServer,
    overrides: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_reseller"));
    command
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("RESELLER_CONFIG")
        .env("DATABASE_URL", testkit::process::database_url(pool))
        .env("WIRO_BASE_URL", sim.base_url())
        .env("WIRO_API_KEY", testkit::WIRO_KEY)
        .env("WIRO_API_SECRET", "")
        .env("WIRO_TEAM_GUID", TEAM)
        .env("RESELLER_SECURITY__CREDENTIALS_KEY", Sealer::generate_key())
        .env("RESELLER_AUTH__HS256_SECRET", Sealer::generate_key())
        .env("RUST_LOG", "warn");
    for (key, value) in overrides {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The JSON report, and whether the process exited 0.
async fn doctor(pool: &PgPool, sim: &SimServer, overrides: &[(&str, &str)]) -> (Value, bool) {
    let output = reseller(&["doctor", "--json"], pool, sim, overrides).await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(
        report["ok"].as_bool().unwrap(),
        output.status.success(),
        "{report:#}"
    );
    (report, output.status.success())
}

/// The named check: (passed, detail).
fn check(report: &Value, name: &str) -> (bool, String) {
    let found = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report:#}"));
    (
        found["ok"].as_bool().unwrap(),
        found["detail"].as_str().unwrap().to_owned(),
    )
}

fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_healthy_setup_passes_every_check_and_shows_the_forecast(pool: PgPool) {
    let sim = sim().await;
    let (report, ok) = doctor(&pool, &sim, &[]).await;
    assert!(ok, "{report:#}");
    for name in [
        "config",
        "credentials_key",
        "jwt",
        "database",
        "database_clock",
        "migrations",
        "sealed_values",
        "wiro",
        "team",
        "clock",
    ] {
        assert!(check(&report, name).0, "{name}: {report:#}");
    }
    assert!(check(&report, "team").1.contains(TEAM));
    assert_eq!(report["forecast"]["days"], 30);
    assert_eq!(report["forecast"]["wallet_must_hold_usd"], 0.0);

    // The table says the same, and the process exits 0.
    let table = reseller(&["doctor"], &pool, &sim, &[]).await;
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("ok    wiro") && text.contains("WALLET FORECAST, NEXT 30 DAYS"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("every check passed"), "{text}");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_wrong_api_key_is_named(pool: PgPool) {
    let sim = sim().await;
    let (report, ok) = doctor(&pool, &sim, &[("WIRO_API_KEY", "not-our-key")]).await;
    assert!(!ok);
    assert_eq!(failed(&report), ["wiro"], "{report:#}");
    let detail = check(&report, "wiro").1;
    assert!(
        detail.contains("WIRO_API_KEY") && detail.contains("Project authorization is not founded."),
        "{detail}"
    );
    let table = reseller(&["doctor"], &pool, &sim, &[("WIRO_API_KEY", "not-our-key")]).await;
    assert_eq!(table.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&table.stderr).contains("doctor: wiro failed"));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_team_the_account_is_not_in_is_named(pool: PgPool) {
    let sim = sim().await;
    let other = "ffffffff-1d2e-4f30-9a8b-7c6d5e4f3a21";
    let (report, ok) = doctor(&pool, &sim, &[("WIRO_TEAM_GUID", other)]).await;
    assert!(!ok);
    assert_eq!(failed(&report), ["team"], "{report:#}");
    let detail = check(&report, "team").1;
    assert!(
        detail.contains("not a member of team")
            && detail.contains(other)
            && detail.contains("WIRO_TEAM_GUID"),
        "{detail}"
    );
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_is_told_to_run_migrate(pool: PgPool) {
    let sim = sim().await;
    let (report, ok) = doctor(&pool, &sim, &[]).await;
    assert!(!ok);
    assert_eq!(failed(&report), ["migrations"], "{report:#}");
    assert!(check(&report, "database").0);
    assert!(
        check(&report, "migrations")
            .1
            .contains("run `reseller migrate`")
    );
    assert!(
        report.get("forecast").is_none(),
        "no forecast from an unmigrated database"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_bad_config_value_names_its_key(pool: PgPool) {
    let sim = sim().await;
    let (report, ok) = doctor(&pool, &sim, &[("RESELLER_API__SHUTDOWN_TIMEOUT", "soon")]).await;
    assert!(!ok);
    assert_eq!(failed(&report), ["config"], "{report:#}");
    let detail = check(&report, "config").1;
    assert!(
        detail.to_lowercase().contains("api.shutdown_timeout") && detail.contains("soon"),
        "{detail}"
    );

    // A short JWT secret is named by its key; so is a missing credentials key.
    let (report, _) = doctor(&pool, &sim, &[("RESELLER_AUTH__HS256_SECRET", "short")]).await;
    assert_eq!(failed(&report), ["config"], "{report:#}");
    assert!(
        check(&report, "config").1.contains("auth.hs256_secret"),
        "{report:#}"
    );
    let (report, _) = doctor(&pool, &sim, &[("RESELLER_SECURITY__CREDENTIALS_KEY", "")]).await;
    assert_eq!(failed(&report), ["credentials_key"], "{report:#}");
    assert!(
        check(&report, "credentials_key")
            .1
            .contains("RESELLER_SECURITY__CREDENTIALS_KEY"),
        "{report:#}"
    );
}

#[sqlx::test(migrations = false)]
async fn migrate_check_fails_on_an_unmigrated_database_and_waits_for_the_migration(pool: PgPool) {
    let sim = sim().await;
    let refused = reseller(&["migrate", "--check"], &pool, &sim, &[]).await;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("missing migrations"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A waiting check (a pod's init container) passes once the migrate Job has run.
    let url = testkit::process::database_url(&pool);
    let waiting = testkit::process::spawn(
        env!("CARGO_BIN_EXE_reseller"),
        &["migrate", "--check", "--wait", "60s"],
        &[
            ("DATABASE_URL", url),
            ("RESELLER_SECURITY__CREDENTIALS_KEY", Sealer::generate_key()),
        ],
    );
    domain::migrate(&pool).await.unwrap();
    let output = tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("every migration of this release is applied")
    );
}

/// The report with `current` as the credentials key and `previous` as the previous ones.
async fn with_keys(pool: &PgPool, sim: &SimServer, current: &str, previous: &str) -> (Value, bool) {
    let keys = [
        ("RESELLER_SECURITY__CREDENTIALS_KEY", current),
        ("RESELLER_SECURITY__PREVIOUS_CREDENTIALS_KEYS", previous),
    ];
    doctor(pool, sim, &keys).await
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn sealed_values_say_whether_the_previous_credentials_key_is_still_needed(pool: PgPool) {
    let sim = sim().await;
    let old = Sealer::generate_key();
    let new = Sealer::generate_key();
    let mut webhooks = domain::Settings::defaults().unwrap().webhooks;
    webhooks.allow_private_targets = true;
    let (endpoint, _) = domain::webhooks::create_endpoint(
        &pool,
        &Sealer::from_base64(&old).unwrap(),
        &webhooks,
        domain::webhooks::NewEndpoint {
            url: "http://127.0.0.1:9/hook".into(),
            event_types: None,
            description: None,
        },
        domain::orders::Actor {
            name: "ops:doctor",
            request_id: None,
        },
    )
    .await
    .unwrap();
    let (report, _) = with_keys(&pool, &sim, &new, &old).await;
    let (ok, detail) = check(&report, "sealed_values");
    assert!(ok, "{report:#}");
    assert!(
        detail.contains("1 of 1 sealed value(s) open only with a previous key")
            && detail.contains("reseller reseal"),
        "{detail}"
    );

    let (report, ok) = with_keys(&pool, &sim, &new, "").await;
    assert!(!ok);
    let (passed, detail) = check(&report, "sealed_values");
    assert!(!passed);
    assert!(
        detail.contains(&format!("webhook endpoint {}", endpoint.id))
            && detail.contains("security.previous_credentials_keys"),
        "{detail}"
    );

    let (report, _) = with_keys(&pool, &sim, &old, "").await;
    let (ok, detail) = check(&report, "sealed_values");
    assert!(ok, "{report:#}");
    assert!(
        detail.contains("all 1 sealed value(s) use the current key"),
        "{detail}"
    );
}
