//! `reseller`: one binary for the whole service.

mod runtime;
mod telemetry;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::Settings;

/// wiro-reseller: resell hosted Wiro AI agents to your customers.
#[derive(Parser)]
#[command(name = "reseller", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run background workers (provisioning, renewals, top-ups, reconciliation). Several may
    /// share one database.
    Worker,
    /// Apply database migrations (ours and the job queue's), then exit.
    Migrate,
    /// Run the Wiro simulator as its own process.
    Sim(wiro_sim::cli::SimArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Sim(args) => {
                telemetry::init("auto", "wiro_sim=info");
                wiro_sim::cli::run(args).await
            }
            Command::Migrate => {
                let settings = load()?;
                let pool = runtime::pool(&settings, 2).await?;
                domain::migrate(&pool).await?;
                println!("migrations applied");
                Ok(())
            }
            Command::Worker => run_worker(load()?).await,
        }
    })
}

fn load() -> anyhow::Result<Settings> {
    let settings = Settings::load()?;
    telemetry::init(&settings.log.format, &settings.log.level);
    Ok(settings)
}

async fn run_worker(settings: Settings) -> anyhow::Result<()> {
    // Room for the job slots, the NOTIFY listener and heartbeats.
    let size =
        settings.database.worker_max_connections + settings.worker.provision_concurrency as u32 + 4;
    let pool = runtime::pool(&settings, size).await?;
    runtime::require_migrated(&pool).await?;
    let ctx = worker::JobContext {
        pool,
        wiro: wiro_client::Client::new(settings.wiro_client_config()?)?,
        sealer: runtime::sealer(&settings)?,
        worker_name: Arc::from(worker::unique_worker_name(&settings.worker.name)),
        settings: Arc::new(settings),
    };
    worker::runner::run(ctx, runtime::shutdown_signal()).await
}
