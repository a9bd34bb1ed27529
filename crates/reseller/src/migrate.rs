//! `reseller migrate`: apply the migrations, or (`--check`) wait until another process has.
//!
//! On Kubernetes one Job applies a release's migrations and the release's api and worker pods
//! wait for it in an init container (`migrate --check --wait 10m`), so a rollout never starts
//! a binary whose schema is not there yet.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::runtime;

/// Arguments of `reseller migrate`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Apply nothing: succeed when every migration of this release is applied, fail naming the
    /// missing ones otherwise.
    #[arg(long)]
    check: bool,
    /// With --check: keep checking (and connecting) every 2 seconds for this long, e.g. 10m.
    #[arg(long, requires = "check", value_parser = humantime::parse_duration)]
    wait: Option<Duration>,
}

/// Runs `reseller migrate`.
///
/// # Errors
/// The database is unreachable, a migration fails, or (`--check`) migrations are missing when
/// the wait ends.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let settings = runtime::load()?;
    if !args.check {
        let pool = runtime::pool(&settings, 2, settings.database.worker_acquire_timeout).await?;
        domain::migrate(&pool).await?;
        println!("migrations applied");
        return Ok(());
    }
    let deadline = Instant::now() + args.wait.unwrap_or_default();
    loop {
        let outcome = match runtime::pool(&settings, 1, Duration::from_secs(5)).await {
            Ok(pool) => {
                let missing = domain::pending_migrations(&pool).await;
                pool.close().await;
                missing.map_err(anyhow::Error::from)
            }
            Err(e) => Err(e),
        };
        let problem = match outcome {
            Ok(missing) if missing.is_empty() => {
                println!("every migration of this release is applied");
                return Ok(());
            }
            Ok(missing) => format!(
                "the database is missing migrations {missing:?}: run `reseller migrate` (the migrate Job)"
            ),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(problem);
        }
        eprintln!("waiting: {problem}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
