//! What the subcommands share: settings, pools, the local database, the API and worker
//! contexts, signals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use domain::Settings;
use domain::sealed::Sealer;
use secrecy::ExposeSecret;
use sqlx::{Connection, Executor, PgPool};

/// Where `reseller up` keeps the credentials key it generated.
pub const DEV_CREDENTIALS_KEY: &str = ".reseller/credentials.key";
/// Where `reseller up` keeps the JWT secret it generated (`reseller token` beside it uses it).
pub const DEV_JWT_SECRET: &str = ".reseller/jwt.secret";

/// A development secret at `path` (relative to the working directory), generated (0600) when
/// missing. Only the demo (`reseller up`) creates them.
///
/// # Errors
/// When the file cannot be written.
pub fn dev_secret(path: &str, what: &str, variable: &str) -> anyhow::Result<String> {
    let file = std::path::Path::new(path);
    if let Ok(key) = std::fs::read_to_string(file)
        && Sealer::from_base64(key.trim()).is_ok()
    {
        return Ok(key.trim().to_owned());
    }
    let key = Sealer::generate_key();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(file, &key).with_context(|| format!("writing {path}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {path} to its owner"))?;
    }
    eprintln!("generated a development {what} in {path} (set {variable} in production)");
    Ok(key)
}

/// With HS256 and no secret configured, uses the development secret `reseller up` keeps in
/// [`DEV_JWT_SECRET`] — creating it when `create` (only `up` does). An explicitly configured
/// secret always wins. True when the development secret is in use.
///
/// # Errors
/// When the file cannot be written.
pub fn use_dev_jwt_secret(settings: &mut Settings, create: bool) -> anyhow::Result<bool> {
    if settings.auth.algorithm != "HS256" || !settings.auth.hs256_secret.expose_secret().is_empty()
    {
        return Ok(false);
    }
    let secret = if create {
        dev_secret(DEV_JWT_SECRET, "JWT secret", "RESELLER_AUTH__HS256_SECRET")?
    } else {
        match std::fs::read_to_string(DEV_JWT_SECRET) {
            Ok(secret) if !secret.trim().is_empty() => secret.trim().to_owned(),
            _ => return Ok(false),
        }
    };
    settings.auth.hs256_secret = secrecy::SecretString::from(secret);
    Ok(true)
}

/// Loads settings and starts logging.
///
/// # Errors
/// A bad setting (the message names the key).
pub fn load() -> anyhow::Result<Settings> {
    let settings = Settings::load()?;
    crate::telemetry::init(&settings.log.format, &settings.log.level);
    Ok(settings)
}

/// A pool on `database.url` with `size` connections (statement timeout, TLS per the URL);
/// `acquire` gives up after `acquire_timeout`.
///
/// # Errors
/// When the database cannot be reached.
pub async fn pool(
    settings: &Settings,
    size: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    let options =
        domain::db::connect::options(&settings.database).context("database.url / DATABASE_URL")?;
    domain::db::connect::pool_options(size, acquire_timeout)
        .connect_with(options)
        .await
        .context("cannot connect to the database (database.url / DATABASE_URL)")
}

/// Creates the database named in `database.url` when it does not exist (the local default).
///
/// # Errors
/// When the server cannot be reached or the database cannot be created.
pub async fn ensure_database(settings: &Settings) -> anyhow::Result<()> {
    let url = url::Url::parse(settings.database.url.expose_secret())
        .context("database.url is not a URL")?;
    let name = url.path().trim_start_matches('/').to_owned();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("database.url must name a database of letters, digits and _ (got {name:?})");
    }
    let mut admin_url = url.clone();
    admin_url.set_path("/postgres");
    let mut admin = sqlx::PgConnection::connect(admin_url.as_str())
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {}:{} (is it running? scripts/ensure-postgres starts one)", url.host_str().unwrap_or("?"), url.port().unwrap_or(5432)))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await?;
        eprintln!("created database {name}");
    }
    Ok(())
}

/// Fails unless every migration of ours is applied.
///
/// # Errors
/// A message telling the operator to run `reseller migrate`.
pub async fn require_migrated(pool: &PgPool) -> anyhow::Result<()> {
    let missing = domain::pending_migrations(pool).await?;
    if !missing.is_empty() {
        bail!("the database is missing migrations {missing:?}: run `reseller migrate` first");
    }
    Ok(())
}

/// The sealer for credentials at rest; the key is required.
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
    Ok(settings.sealer()?)
}

/// A job context (API and worker both use one) with upstream metrics.
///
/// # Errors
/// A bad Wiro setting or a missing credentials key.
pub fn job_context(
    settings: &Arc<Settings>,
    pool: &PgPool,
    name: String,
) -> anyhow::Result<operations::Services> {
    let mut config = settings.wiro_client_config()?;
    config.observer = Some(Arc::new(domain::metrics::UpstreamObserver));
    if settings.wiro.rate_budget_per_s > 0.0
        && let Some(throttle) = config.throttle.clone()
    {
        // This process's share of the deployment's budget, kept current while it runs (a
        // process that dies stops counting 1.5 s later).
        tokio::spawn(operations::budget::keep_share(
            pool.clone(),
            throttle,
            name.clone(),
            settings.wiro.rate_budget_per_s,
            std::future::pending(),
        ));
    }
    Ok(operations::Services {
        pool: pool.clone(),
        wiro: wiro_client::Client::new(config)?,
        sealer: sealer(settings)?,
        settings: settings.clone(),
        worker_name: Arc::from(name),
    })
}

/// The API's state.
///
/// # Errors
/// A bad auth key or Wiro setting.
pub fn api_state(settings: &Arc<Settings>, pool: &PgPool) -> anyhow::Result<api::AppState> {
    Ok(api::AppState {
        pool: pool.clone(),
        // Unique per process (host, pid and a random suffix): in containers every API has pid
        // 1, and this name owns operation leases and a share of the upstream budget.
        services: job_context(
            settings,
            pool,
            format!("api-{}", operations::unique_worker_name("")),
        )?,
        jwt: api::auth::JwtVerifier::new(settings)?,
        catalog: Arc::new(api::catalog::CatalogCache::new(
            settings.api.catalog_cache_ttl,
        )),
        rate_limits: Arc::new(api::rate_limits::RateLimits::new(&settings.limits)),
        settings: settings.clone(),
    })
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

/// A process-wide shutdown broadcast: one signal, every component told.
pub fn shutdown_channel() -> (
    tokio::sync::watch::Sender<bool>,
    impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let make = move || {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
    };
    (tx, make)
}
