//! `reseller`: one binary for the whole service.

mod doctor;
mod migrate;
mod provision;
mod runtime;
mod serve;
mod status;
mod telemetry;
mod up;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

/// wiro-reseller: give each of your customers their own hosted AI agent on Wiro.
///
/// Configuration comes from config/default.toml (compiled in), the file named by
/// RESELLER_CONFIG, RESELLER_<SECTION>__<KEY> variables, and DATABASE_URL, WIRO_BASE_URL,
/// WIRO_API_KEY, WIRO_API_SECRET, WIRO_TEAM_GUID, LOG_FORMAT, RUST_LOG.
#[derive(Parser)]
#[command(
    name = "reseller",
    version,
    about,
    long_about,
    disable_help_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print help (`-h` and `--help` print the same).
    #[arg(short = 'h', long = "help", action = clap::ArgAction::HelpLong, global = true)]
    help: Option<bool>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process for a laptop or a demo: local database, migrations, API,
    /// worker and schedules, and the simulator when no WIRO_API_KEY is set. Prints the URLs,
    /// a customer token, an ops token and a curl line to try.
    Up(up::UpArgs),
    /// Serve the REST API (production; run several behind a load balancer).
    Api,
    /// Run background workers: provisioning, renewals, top-ups, reconciliation (production; run
    /// several — each tick of the schedules makes one sweep).
    Worker,
    /// Run the Wiro simulator as its own process.
    Sim(wiro_sim::cli::SimArgs),
    /// Apply the database migrations (ours and the job queue's), then exit; or, with --check,
    /// wait until they are applied.
    Migrate(migrate::MigrateArgs),
    /// Print a JWT (HS256) for a customer, or for ops with --role ops: the bare token on stdout,
    /// its expiry on stderr. Signs with RESELLER_AUTH__HS256_SECRET, or — beside `reseller up` —
    /// with the development secret `up` generated in .reseller/.
    Token {
        /// The customer's external id (or the ops user's name).
        #[arg(long)]
        sub: String,
        /// `ops` for the ops role.
        #[arg(long)]
        role: Option<String>,
        /// Lifetime, e.g. 15m or 12h (default auth.token_ttl; at most auth.max_token_lifetime).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Bulk-order agents from a CSV file through the API (resumable: a second run orders nothing
    /// twice).
    Provision(provision::ProvisionArgs),
    /// After rotating the credentials key (new key in RESELLER_SECURITY__CREDENTIALS_KEY, the
    /// old ones in RESELLER_SECURITY__PREVIOUS_CREDENTIALS_KEYS): re-seal every stored
    /// credential and webhook secret with the new key, so the old ones can be removed. Safe to
    /// run while the service runs, and to rerun.
    Reseal,
    /// Check the configuration, the database and its migrations, Wiro (reachability, the API
    /// key, the team), the clock, the credentials key and the JWT setup; print the wallet
    /// forecast. Exit code 0 only when every check passes.
    Doctor(doctor::DoctorArgs),
    /// Print agents by state, failed jobs, open alerts and the wallet forecast.
    Status {
        /// Forecast look-ahead in days.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Keep printing the tables, every --interval, until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// With --watch: how often, e.g. 2s or 1m.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "watch")]
        interval: std::time::Duration,
    },
    /// Print a shell completion script: `reseller completions bash > /etc/bash_completion.d/reseller`
    /// (also zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(dispatch(cli.command)));
    telemetry::flush();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Api => serve::api_only(runtime::load()?).await,
        Command::Worker => serve::worker_only(runtime::load()?).await,
        Command::Sim(args) => {
            telemetry::init("auto", "wiro_sim=info");
            wiro_sim::cli::run(args).await
        }
        Command::Migrate(args) => migrate::run(args).await,
        Command::Token { sub, role, ttl } => {
            let mut settings = domain::Settings::load()?;
            runtime::use_dev_jwt_secret(&mut settings, false)?;
            if let Some(role) = &role
                && role != "ops"
            {
                anyhow::bail!("--role must be ops (or absent for a customer token)");
            }
            let ttl = ttl.unwrap_or(settings.auth.token_ttl);
            let (token, expires) = api::auth::mint_for(&settings, &sub, role.as_deref(), ttl)?;
            let at = chrono::DateTime::from_timestamp(expires, 0).unwrap_or_default();
            eprintln!("expires {} ({expires})", at.to_rfc3339());
            print_stdout(&format!("{token}\n"))
        }
        Command::Openapi => print_stdout(&format!("{}\n", api::openapi().to_pretty_json()?)),
        Command::Provision(args) => {
            let mut settings = domain::Settings::load()?;
            runtime::use_dev_jwt_secret(&mut settings, false)?;
            provision::run(args, &settings).await
        }
        Command::Reseal => {
            let settings = runtime::load()?;
            let sealer = runtime::sealer(&settings)?;
            let pool =
                runtime::pool(&settings, 2, settings.database.worker_acquire_timeout).await?;
            runtime::require_migrated(&pool).await?;
            let report = domain::reseal::reseal_all(&pool, &sealer).await?;
            println!(
                "re-sealed {} stored credential(s) with the current key; {} already used it",
                report.resealed, report.current
            );
            println!(
                "re-sealed {} webhook secret(s) with the current key; {} already used it",
                report.secrets_resealed, report.secrets_current
            );
            Ok(())
        }
        Command::Doctor(args) => doctor::run(args).await,
        Command::Status {
            days,
            watch,
            interval,
        } => {
            let settings = domain::Settings::load()?;
            status::run(&settings, days, watch.then_some(interval)).await
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "reseller", &mut script);
            print_stdout(&String::from_utf8_lossy(&script))
        }
    }
}
