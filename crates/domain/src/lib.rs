//! wiro-reseller's shared core: settings, typed ids, the Postgres schema and queries, job
//! payloads, and the order functions both the API and the worker use.

pub mod agents;
pub mod config;
pub mod connections;
pub mod customer_data;
pub mod db;
pub mod editable;
pub mod error;
pub mod forecast;
pub mod ids;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod orders;
pub mod pricing;
pub mod reseal;
pub mod sealed;
pub mod trace;
pub mod webhooks;

pub use config::Settings;
pub use error::{Error, Result};

/// Our migrations (`migrations/` at the workspace root). apalis keeps its own in schema `apalis`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Versions of our migrations not (successfully) applied to `pool`'s database.
///
/// # Errors
/// When the database cannot be read (a missing history table counts as nothing applied).
pub async fn pending_migrations(pool: &sqlx::PgPool) -> Result<Vec<i64>> {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(applied) => applied,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
    Ok(MIGRATOR
        .iter()
        .map(|m| m.version)
        .filter(|v| !applied.contains(v))
        .collect())
}

/// Applies our migrations and apalis's.
///
/// # Errors
/// When either set cannot be applied.
pub async fn migrate(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use anyhow::Context;
    // Migrations are expand-then-contract: a newer release's only add what this one ignores.
    // So a newer migration already applied (a rollback's migrate Job runs this release
    // against the newer schema) is left in place, not refused.
    let mut migrator = sqlx::migrate!("../../migrations");
    migrator.set_ignore_missing(true);
    migrator
        .run(pool)
        .await
        .context("applying wiro-reseller migrations")?;
    setup_job_queue(pool)
        .await
        .context("applying apalis job-queue migrations")?;
    Ok(())
}

/// Applies apalis's migrations and adds the notification its insert trigger leaves out
/// ([`db::queue::install_notify_of_late_due_jobs`]).
///
/// # Errors
/// When either fails.
pub async fn setup_job_queue(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    apalis_postgres::PostgresStorage::setup(pool).await?;
    db::queue::install_notify_of_late_due_jobs(pool).await?;
    Ok(())
}
