//! The command line as ops use it: `-h` and `--help` print the same for every command and no
//! help shows an empty `[env: NAME=]`; completions for each shell; `status --watch` keeps
//! printing; `provision` ends with a table of failed orders and their reasons, and
//! `--retry-failed` takes them up again once the cause is fixed.

use std::process::{Command, Output};
use std::time::Duration;

use sqlx::PgPool;
use testkit::process::*;

const BIN: &str = env!("CARGO_BIN_EXE_reseller");
const COMMANDS: &[&str] = &[
    "",
    "up",
    "api",
    "worker",
    "sim",
    "migrate",
    "token",
    "openapi",
    "provision",
    "reseal",
    "doctor",
    "status",
    "completions",
];

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args.iter().filter(|a| !a.is_empty()))
        .env_remove("RESELLER_API_URL")
        .env_remove("RESELLER_OPS_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn short_and_long_help_are_the_same_and_show_no_empty_env_values() {
    for command in COMMANDS {
        let short = run(&[command, "-h"]);
        let long = run(&[command, "--help"]);
        assert!(short.status.success(), "reseller {command} -h");
        assert_eq!(
            String::from_utf8_lossy(&short.stdout),
            String::from_utf8_lossy(&long.stdout),
            "reseller {command}: -h and --help differ"
        );
        let text = String::from_utf8_lossy(&long.stdout);
        assert!(
            !text.contains("=]"),
            "reseller {command} --help shows an empty env value:\n{text}"
        );
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef reseller"),
        ("fish", "complete -c reseller"),
    ] {
        let output = run(&["completions", shell]);
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("provision") && script.contains("retry-failed"),
            "{shell}"
        );
    }
    let refused = run(&["completions", "tcsh"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("invalid value 'tcsh'"));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn status_watch_keeps_printing_until_stopped(pool: PgPool) {
    domain::migrate(&pool).await.unwrap(); // and the job queue's, which status reads
    let mut watching = Guard(spawn(
        BIN,
        &["status", "--watch", "--interval", "200ms"],
        &[
            ("DATABASE_URL", database_url(&pool)),
            (
                "RESELLER_SECURITY__CREDENTIALS_KEY",
                domain::sealed::Sealer::generate_key(),
            ),
        ],
    ));
    let out = lines(watching.0.stdout.take().unwrap());
    for _ in 0..3 {
        line_starting(&out, "--- ", Duration::from_secs(10));
        line_starting(&out, "AGENT STATE", Duration::from_secs(5));
    }
    assert!(
        terminate(&mut watching.0).success(),
        "Ctrl-C / SIGTERM ends the watch cleanly"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn provision_tables_its_failures_and_retries_them(pool: PgPool) {
    // $12 pays for two Email Assistants on Starter ($5 each), not four: the wallet runs dry
    // part-way and the rest fail for it.
    let app = testkit::spawn_app_with(
        pool,
        wiro_sim::SimConfig::with_account(testkit::WIRO_KEY, 12.0),
        |_| {},
        true,
    )
    .await;
    let dir = std::env::temp_dir().join(format!("reseller-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("orders.csv");
    let mut text = String::from("customer,template,plan,title\n");
    for i in 0..4 {
        text.push_str(&format!("cli-{i},email-assistant,starter,CLI {i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let provision = |extra: &'static [&'static str]| {
        let mut args = vec![
            "provision".to_owned(),
            "--file".into(),
            csv.to_string_lossy().into_owned(),
            "--api".into(),
            app.address.clone(),
            "--token".into(),
            app.ops_token(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(&args)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap()
        })
    };

    let first = provision(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        !first.status.success(),
        "failures make the exit code non-zero: {stdout}"
    );
    assert!(stdout.contains("FAILED ORDERS"), "{stdout}");
    let failed_rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("cli-")).collect();
    assert!(!failed_rows.is_empty() && failed_rows.len() < 4, "{stdout}");
    assert!(
        failed_rows.iter().all(|row| row.contains("wallet")),
        "each failure says why: {stdout}"
    );
    assert!(stderr.contains("rerun with --retry-failed"), "{stderr}");

    // Fixed (the wallet topped up), a rerun with --retry-failed orders nothing twice and runs
    // every order.
    app.sim.sim().set_wallet(testkit::WIRO_KEY, 100.0).unwrap();
    let second = provision(&["--retry-failed"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        second.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        stdout.contains("batch 1 of 4 orders already submitted"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("retried {} failed order(s)", failed_rows.len())),
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED ORDERS"), "{stdout}");
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = 'running'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(running, 4);
    app.assert_ledgers_match().await;
    let _ = std::fs::remove_dir_all(dir);
}
