//! The command line, shared by the `wiro-sim` binary and `reseller sim`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::SimServer;
use crate::catalog::Catalog;
use crate::simulator::{AccountSpec, SimConfig};
use crate::world::Delays;

/// Run an in-memory Wiro Agents API (paths under /v1, admin API under /admin).
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// An API key the simulator accepts; repeat for several accounts.
    #[arg(long = "api-key", required = true)]
    pub api_keys: Vec<String>,
    /// Makes every account a signature project with this secret.
    #[arg(long)]
    pub api_secret: Option<String>,
    /// A team every account is a member of (for the teamGUID header).
    #[arg(long)]
    pub team_guid: Option<String>,
    /// Starting wallet of each account, in dollars.
    #[arg(long, default_value_t = 1000.0)]
    pub wallet: f64,
    /// A catalog JSON file replacing the built-in one.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Milliseconds from Start to Running.
    #[arg(long, default_value_t = 1000)]
    pub start_delay_ms: i64,
    /// Milliseconds from Stop to Stopped.
    #[arg(long, default_value_t = 300)]
    pub stop_delay_ms: i64,
    /// Milliseconds a message takes to be answered.
    #[arg(long, default_value_t = 500)]
    pub message_delay_ms: i64,
    /// Also render fields Wiro does not document (`subscription.cancelatperiodend`,
    /// `pricing.extracredits`), for experiments.
    #[arg(long)]
    pub undocumented_fields: bool,
}

impl SimArgs {
    /// The simulator configuration these flags describe.
    ///
    /// # Errors
    /// A bad catalog file or negative numbers, with the flag named.
    pub fn config(&self) -> anyhow::Result<SimConfig> {
        if !self.wallet.is_finite() || self.wallet < 0.0 {
            anyhow::bail!(
                "--wallet must be a non-negative number of dollars, got {}",
                self.wallet
            );
        }
        for (flag, v) in [
            ("--start-delay-ms", self.start_delay_ms),
            ("--stop-delay-ms", self.stop_delay_ms),
            ("--message-delay-ms", self.message_delay_ms),
        ] {
            if v < 0 {
                anyhow::bail!("{flag} must be zero or more, got {v}");
            }
        }
        let catalog = match &self.catalog {
            Some(path) => Catalog::load(path)?,
            None => Catalog::default_catalog(),
        };
        let mut delays = Delays::default().with_start_delay_ms(self.start_delay_ms);
        delays.stop_ms = self.stop_delay_ms;
        delays.message_start_ms = self.message_delay_ms / 2;
        delays.message_reply_ms = self.message_delay_ms - self.message_delay_ms / 2;
        let mut config = SimConfig::with_account("unused", 0.0);
        config.accounts = self
            .api_keys
            .iter()
            .map(|key| AccountSpec {
                api_key: key.clone(),
                api_secret: self.api_secret.clone(),
                wallet: self.wallet,
            })
            .collect();
        config.team_guid = self.team_guid.clone();
        config.catalog = catalog;
        config.delays = delays;
        config.undocumented_fields = self.undocumented_fields;
        Ok(config)
    }
}

/// Serves until Ctrl-C or SIGTERM.
///
/// # Errors
/// Bad flags or an address that cannot be bound.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let templates = config.catalog.templates.len();
    let server = SimServer::start(config, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("wiro-sim listening on http://{}", server.addr());
    println!("  Wiro API:  {}", server.base_url());
    println!("  admin API: {}", server.admin_url());
    println!(
        "  {} account(s), {templates} templates",
        args.api_keys.len()
    );
    wait_for_signal().await;
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
