//! What every long-running subcommand shares: settings, pools, the sealer, signals.

use std::time::Duration;

use anyhow::{Context, bail};
use domain::Settings;
use domain::sealed::Sealer;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A pool on `settings.database.url` with `size` connections.
///
/// # Errors
/// When the database cannot be reached within 10 s.
pub async fn pool(settings: &Settings, size: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect(settings.database.url.expose_secret())
        .await
        .context("cannot connect to the database (database.url / DATABASE_URL)")
}

/// Fails unless every migration of ours is applied.
///
/// # Errors
/// A message telling the operator to run `reseller migrate`.
pub async fn require_migrated(pool: &PgPool) -> anyhow::Result<()> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let missing: Vec<i64> = domain::MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect();
    if !missing.is_empty() {
        bail!("the database is missing migrations {missing:?}: run `reseller migrate` first");
    }
    Ok(())
}

/// The sealer for credentials at rest; the key is required outside `up`.
///
/// # Errors
/// When `security.credentials_key` is empty or invalid.
pub fn sealer(settings: &Settings) -> anyhow::Result<Sealer> {
    let key = settings.security.credentials_key.expose_secret();
    if key.trim().is_empty() {
        bail!(
            "security.credentials_key (RESELLER_SECURITY__CREDENTIALS_KEY) is required: \
             generate one with `head -c32 /dev/urandom | base64`"
        );
    }
    Ok(Sealer::from_base64(key)?)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("shutdown signal received");
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown signal received");
}
