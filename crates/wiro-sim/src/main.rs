//! `wiro-sim`: the simulator as a standalone process.

use clap::Parser;

#[derive(Parser)]
#[command(name = "wiro-sim", version, about)]
struct Cli {
    #[command(flatten)]
    args: wiro_sim::cli::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "wiro_sim=info".into()),
        )
        .init();
    wiro_sim::cli::run(Cli::parse().args).await
}
