//! One typed [`Settings`] for every subcommand: `config/default.toml` (compiled in, commented)
//! → the file named by `RESELLER_CONFIG` → `RESELLER_<SECTION>__<KEY>` → the well-known
//! variables (`DATABASE_URL`, `WIRO_*`, `LOG_FORMAT`, `RUST_LOG`). Validated once at start-up;
//! a bad value stops it with a message naming the key and what is allowed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::model::Pack;

/// The defaults, documented.
pub const DEFAULTS: &str = include_str!("../../../config/default.toml");

/// A setting that cannot be used; the text names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// All settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Postgres.
    pub database: DatabaseSettings,
    /// The upstream.
    pub wiro: WiroSettings,
    /// The HTTP API.
    pub api: ApiSettings,
    /// JWT verification.
    pub auth: AuthSettings,
    /// The provisioning job.
    pub provisioning: ProvisioningSettings,
    /// Worker processes.
    pub worker: WorkerSettings,
    /// Scheduled sweeps.
    pub schedules: ScheduleSettings,
    /// Billing policy.
    pub billing: BillingSettings,
    /// The exactly-once protocol of consequential upstream calls.
    pub operations: OperationSettings,
    /// What one customer may order and spend, and how fast it may call.
    pub limits: LimitSettings,
    /// Secrets at rest.
    pub security: SecuritySettings,
    /// OAuth connections of agents.
    pub connections: ConnectionSettings,
    /// Signed outbound webhooks.
    pub webhooks: WebhookSettings,
    /// Retail prices: what the SaaS's customers owe.
    pub pricing: PricingSettings,
    /// How long rows are kept that no money depends on.
    pub retention: RetentionSettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[connections]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Origins (`scheme://host[:port]`, `:*` for any port) a customer's OAuth redirect URL may
    /// point to: Wiro sends the browser straight there, so nothing else is accepted.
    pub allowed_redirect_origins: Vec<String>,
}

/// `[pricing]`: the operator's retail price list (ops can override it at
/// `/v1/admin/price-list`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSettings {
    /// ISO 4217 code of every retail price.
    pub currency: String,
    /// Where the list has no price: Wiro's wholesale amount plus this percent.
    pub default_markup_percent: u32,
    /// Per template slug (or `*`): `starter`, `pro`, `package1`... → minor units.
    #[serde(default)]
    pub templates: std::collections::BTreeMap<String, std::collections::BTreeMap<String, i64>>,
}

/// `[retention]`: the purge sweep deletes rows older than these ages (business clock). The
/// ledger is never deleted.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Jobs done, or failed for good.
    #[serde(with = "humantime_serde")]
    pub finished_jobs: Duration,
    /// Webhook events whose deliveries are all settled, with their deliveries and attempts.
    #[serde(with = "humantime_serde")]
    pub webhook_events: Duration,
    /// Message records (which customer sent which message) and their send operations.
    #[serde(with = "humantime_serde")]
    pub messages: Duration,
    /// Resolved alerts.
    #[serde(with = "humantime_serde")]
    pub resolved_alerts: Duration,
    /// Money's paper trail: operations of deploys, renewals, upgrades, packs and cancels, and
    /// the audit log. At least a year.
    #[serde(with = "humantime_serde")]
    pub accounting: Duration,
}

/// `[webhooks]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Allow endpoints on private, loopback and link-local addresses, and plain http (a
    /// receiver on the operator's own machine; `reseller up` sets it). Off: refused (SSRF).
    pub allow_private_targets: bool,
    /// One delivery attempt's bound (connect and answer).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Waits before each retry after a failed attempt; when they run out the delivery fails
    /// and its endpoint is disabled (with an ops alert) if nothing reached it meanwhile.
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// How long a rotated-out secret keeps signing next to the new one.
    #[serde(with = "humantime_serde")]
    pub rotation_grace: Duration,
    /// How often an idle dispatcher looks for due deliveries.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Deliveries one dispatcher claims and sends at once.
    pub batch: u32,
}

/// A list of human-readable durations (`["5s", "5m"]`).
mod durations {
    use std::time::Duration;

    use humantime_serde::re::humantime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            value
                .iter()
                .map(|d| humantime::format_duration(*d).to_string()),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                humantime::parse_duration(text)
                    .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
            })
            .collect()
    }
}

/// `[database]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Postgres URL (may hold a password).
    #[serde(serialize_with = "redact")]
    pub url: SecretString,
    /// API connections, split between its worker threads (at least one each; each thread has
    /// a pool of its own); 0 = [`API_CONNECTIONS_PER_THREAD`] per thread.
    pub api_max_connections: u32,
    /// Worker pool size.
    pub worker_max_connections: u32,
    /// How long an API request waits for a free connection before answering 503.
    #[serde(with = "humantime_serde")]
    pub api_acquire_timeout: Duration,
    /// How long a job waits for a free connection.
    #[serde(with = "humantime_serde")]
    pub worker_acquire_timeout: Duration,
    /// Postgres `statement_timeout` of every connection (0: none).
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

/// Connections each API worker thread keeps when `database.api_max_connections` is 0. An
/// actix worker thread runs one request's code at a time: two connections let it send one
/// statement while it answers another's result, and more only queue more Postgres backends on
/// the same cores (`BENCHMARKS.md`, "Stop 27": the read's p99 0.65–0.90× the floor's with two
/// per thread, 1.10–2.25× with five).
pub const API_CONNECTIONS_PER_THREAD: u32 = 2;

/// The API's HTTP worker threads for `api.workers`: one per CPU when 0 (actix's own default).
pub fn api_threads(workers: usize) -> usize {
    match workers {
        0 => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
        n => n,
    }
}

impl DatabaseSettings {
    /// Connections each of the API's `threads` worker threads keeps in a pool of its own:
    /// `api_max_connections` split between them (at least one each), or
    /// [`API_CONNECTIONS_PER_THREAD`] when it is 0.
    pub fn api_connections_per_thread(&self, threads: usize) -> u32 {
        match self.api_max_connections {
            0 => API_CONNECTIONS_PER_THREAD,
            total => (total / u32::try_from(threads.max(1)).unwrap_or(u32::MAX)).max(1),
        }
    }

    /// All the API's connections over its `threads` worker threads.
    pub fn api_connections(&self, threads: usize) -> u32 {
        self.api_connections_per_thread(threads)
            .saturating_mul(u32::try_from(threads.max(1)).unwrap_or(u32::MAX))
    }
}

/// `[wiro]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WiroSettings {
    /// Base URL with `/v1`.
    pub base_url: String,
    /// API key; empty means "not configured".
    #[serde(serialize_with = "redact")]
    pub api_key: SecretString,
    /// Secret of signature projects; empty for key-only.
    #[serde(serialize_with = "redact")]
    pub api_secret: SecretString,
    /// Team for the `teamGUID` header; empty for personal.
    pub team_guid: String,
    /// Request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Attempts of read-only calls.
    pub max_attempts: u32,
    /// Allows a plain-http `base_url` that is not loopback (a simulator in another container).
    #[serde(default)]
    pub allow_insecure_upstream: bool,
    /// Our public base URL as Wiro can reach it (`https://reseller.example.com`). When set,
    /// every Message/Send carries a `callbackurl` to us with an unguessable per-message token,
    /// and replies arrive without polling; empty: replies are learnt by polling.
    #[serde(default)]
    pub callback_base_url: String,
    /// How often pending messages are polled with Message/Detail (the only way without a
    /// callback URL; a safety net, after `reply_callback_grace`, with one).
    #[serde(with = "humantime_serde")]
    pub reply_poll_interval: Duration,
    /// With a callback URL, how long a message waits for its callback before it is polled.
    #[serde(with = "humantime_serde")]
    pub reply_callback_grace: Duration,
    /// Calls per second the whole deployment may make to Wiro, shared by every process through
    /// Postgres (0: no budget; the adaptive limits still back off on 429).
    pub rate_budget_per_s: f64,
    /// Calls in flight per process at most; cut on each burst of 429s, grown back after.
    pub max_concurrency: usize,
}

/// `[api]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Body limit.
    pub body_limit_bytes: usize,
    /// Body limit of the bulk-order route only (10,000 orders must fit).
    pub batch_body_limit_bytes: usize,
    /// Idempotency-Key retention.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// Catalog cache.
    #[serde(with = "humantime_serde")]
    pub catalog_cache_ttl: Duration,
    /// Longest message wait.
    #[serde(with = "humantime_serde")]
    pub message_wait_max: Duration,
    /// Drain time on SIGTERM.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// HTTP worker threads (0 = one per CPU).
    pub workers: usize,
    /// Address of the internal `/metrics` listener ("" = none); never the public port.
    pub metrics_listen: String,
}

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256, RS256, ES256 or EdDSA.
    pub algorithm: String,
    /// HS256 secret.
    #[serde(serialize_with = "redact")]
    pub hs256_secret: SecretString,
    /// HS256 secrets used before, comma-separated: tokens they signed still verify (until they
    /// expire), nothing is signed with them. What lets the secret rotate without logging every
    /// caller out.
    #[serde(serialize_with = "redact")]
    pub previous_hs256_secrets: SecretString,
    /// PEM public key for asymmetric algorithms.
    pub public_key_pem: String,
    /// The PEM public key used before (asymmetric algorithms): tokens its private key signed
    /// still verify until they expire, so the SaaS can switch keys without logging callers
    /// out.
    pub previous_public_key_pem: String,
    /// Required issuer.
    pub issuer: String,
    /// Required audience of customer tokens.
    pub audience: String,
    /// Required audience of ops tokens (a customer-audience token never grants ops).
    pub ops_audience: String,
    /// Clock skew allowance.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// The longest a token may live (`exp` − `iat`, or `exp` − now without `iat`).
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    /// Lifetime of minted tokens.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
}

/// HS256 secrets that have been published (in this repository): never accepted for signing.
pub const PUBLISHED_HS256_SECRETS: &[&str] = &["dev-only-secret-change-me-0123456789abcdef"];

/// `[provisioning]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningSettings {
    /// Window after a Deploy was sent in which only its sender may decide the outcome.
    #[serde(with = "humantime_serde")]
    pub deploy_lease: Duration,
    /// Transient failures before giving up.
    pub max_step_failures: u32,
    /// Backoff start.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Backoff cap.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// In-job wait for Running.
    #[serde(with = "humantime_serde")]
    pub wait_running_inline: Duration,
    /// Start retries after Error.
    pub start_retries: u32,
    /// The longest an agent may take to reach Running (or Stopped) before the order fails.
    #[serde(with = "humantime_serde")]
    pub start_deadline: Duration,
    /// A Deploy that landed for an order already failed: `adopt` it (provisioning resumes) or
    /// `cancel` its subscription (it never renews).
    pub failed_deploy_policy: FailedDeployPolicy,
}

/// `provisioning.failed_deploy_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedDeployPolicy {
    /// Take the instance and carry on provisioning.
    Adopt,
    /// Cancel its subscription at Wiro and leave the order failed.
    Cancel,
}

/// `[worker]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Worker name (empty: generated, unique per process).
    pub name: String,
    /// Orders of ops batches in flight (the bulk lane): in whole chunks of
    /// [`crate::jobs::BULK_CHUNK`] (at least one), and as many single-order follow-ups.
    pub provision_concurrency: usize,
    /// Provisioning jobs of customers' own orders and actions in flight (the interactive lane;
    /// slots of its own, so these never wait behind a batch).
    pub interactive_concurrency: usize,
    /// Other queues' concurrency.
    pub ops_concurrency: usize,
    /// Heartbeat period.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Missed heartbeats before a worker is dead.
    pub missed_heartbeats: usize,
    /// Poll period for delayed jobs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Grace on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Address of the worker's /healthz and /metrics ("" = none).
    pub metrics_listen: String,
}

/// `[schedules]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Tick the schedules in this process.
    pub enabled: bool,
    /// Reconciliation sweep.
    pub reconcile: String,
    /// Renewal sweep.
    pub renewals: String,
    /// Top-up sweep.
    pub topups: String,
    /// Settle sweep: unresolved operations past their lease.
    pub settle: String,
    /// Stuck sweep: orders in progress with no live job.
    pub stuck: String,
    /// Purge sweep: expired idempotency keys.
    pub purge: String,
    /// An order in progress this long without a change and without a job is stuck.
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
    /// Requeues of one stuck order before ops are alerted.
    pub stuck_alert_after: i32,
    /// Renewal look-ahead.
    #[serde(with = "humantime_serde")]
    pub renewal_window: Duration,
    /// Error restarts before failing.
    pub error_restart_cap: u32,
}

/// `[billing]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// Customers may upgrade.
    pub allow_upgrade: bool,
    /// Customers may cancel.
    pub allow_cancel: bool,
    /// Customers may schedule (and withdraw) a Pro → Starter downgrade.
    pub allow_downgrade: bool,
    /// Customers may renew.
    pub allow_renew: bool,
    /// Customers may buy packs.
    pub allow_extra_credits: bool,
    /// Top-up threshold (0 = off).
    pub topup_threshold: i64,
    /// Pack bought by top-up.
    pub topup_pack: Pack,
    /// Packs per customer per month.
    pub topup_monthly_cap: i64,
    /// What a Starter instance below the threshold gets.
    pub starter_policy: StarterPolicy,
    /// Extra-credit packs as Wiro prices them, per template slug and pack. Wiro documents no
    /// field carrying them, so the operator states them; a pack not listed is not sold.
    pub packs: BTreeMap<String, BTreeMap<Pack, PackPrice>>,
}

impl BillingSettings {
    /// The price of `pack` for `template_slug`, if the operator lists it.
    pub fn pack(&self, template_slug: &str, pack: Pack) -> Option<PackPrice> {
        self.packs.get(template_slug)?.get(&pack).copied()
    }
}

/// What a pack costs at Wiro and the credits it adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackPrice {
    /// Wiro's price, in cents.
    pub price_cents: i64,
    /// Extra credits it adds.
    pub credits: i64,
}

/// `billing.starter_policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StarterPolicy {
    /// Raise an ops alert only.
    Alert,
    /// Upgrade to Pro.
    Upgrade,
}

/// `[limits]`: defaults ops can override per customer, and request rates.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Agents one customer may have (failed orders that never deployed do not count).
    pub max_agents: i64,
    /// Cents one customer may spend per calendar month, all charges (0: no limit).
    pub monthly_spend_cents: i64,
    /// Mutating requests per customer per minute (a token bucket; 0: no limit).
    pub mutations_per_minute: u32,
    /// Of which this many at once.
    pub mutation_burst: u32,
    /// Message sends per customer per minute (0: no limit).
    pub messages_per_minute: u32,
    /// Of which this many at once.
    pub message_burst: u32,
}

/// `[operations]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSettings {
    /// How long only the caller may send or decide a billing call or message send.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// A lost call is "not applied" only after two checks this far apart found no trace.
    #[serde(with = "humantime_serde")]
    pub quiet_period: Duration,
    /// Undecided evidence checks of one operation before ops are alerted.
    pub alert_after_checks: i32,
}

/// `[security]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Base64 AES-256 key that seals credentials at rest.
    #[serde(serialize_with = "redact")]
    pub credentials_key: SecretString,
    /// Keys used before (comma-separated base64): they still open, never seal.
    #[serde(serialize_with = "redact", default = "empty_secret")]
    pub previous_credentials_keys: SecretString,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// auto, human or json.
    pub format: String,
    /// tracing filter.
    pub level: String,
}

fn redact<S: serde::Serializer>(secret: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.expose_secret().is_empty() {
        ""
    } else {
        "[redacted]"
    })
}

/// Well-known variables and the key each sets.
const WELL_KNOWN: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("WIRO_BASE_URL", "wiro.base_url"),
    ("WIRO_API_KEY", "wiro.api_key"),
    ("WIRO_API_SECRET", "wiro.api_secret"),
    ("WIRO_TEAM_GUID", "wiro.team_guid"),
    ("LOG_FORMAT", "log.format"),
    ("RUST_LOG", "log.level"),
];

impl Settings {
    /// All the connections the API keeps over its worker threads (`api.workers`): the size of
    /// its start-up pool, the template of the threads' pools.
    pub fn api_connections(&self) -> u32 {
        self.database.api_connections(api_threads(self.api.workers))
    }

    /// Loads from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad key.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_figment(&Self::figment())
    }

    /// The layered sources, for callers that add their own on top (CLI flags, tests).
    pub fn figment() -> Figment {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Ok(path) = std::env::var("RESELLER_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("RESELLER_").split("__").ignore(&["CONFIG"]));
        for (var, key) in WELL_KNOWN {
            if let Ok(value) = std::env::var(var)
                && !value.is_empty()
            {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        figment
    }

    /// Defaults only (no environment): for tests, which then set what they need.
    ///
    /// # Errors
    /// Never for the shipped defaults.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_figment(&Figment::from(Toml::string(DEFAULTS)))
    }

    /// Extracts and validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the bad key and what is allowed.
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values serde cannot.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError(format!("{key}: {why}")));
        if !self.database.url.expose_secret().starts_with("postgres") {
            return bad(
                "database.url",
                "must be a postgres:// or postgresql:// URL".into(),
            );
        }
        if let Err(e) = crate::db::connect::options(&self.database) {
            return bad("database.url", e.to_string());
        }
        if self.database.api_acquire_timeout.is_zero()
            || self.database.worker_acquire_timeout.is_zero()
        {
            return bad(
                "database.api_acquire_timeout / database.worker_acquire_timeout",
                "must be greater than zero".into(),
            );
        }
        if !self.wiro.callback_base_url.is_empty() {
            match url::Url::parse(&self.wiro.callback_base_url) {
                Ok(url) if matches!(url.scheme(), "https" | "http") && url.query().is_none() => {}
                Ok(_) => {
                    return bad(
                        "wiro.callback_base_url",
                        "must be an http(s) URL without a query".into(),
                    );
                }
                Err(e) => return bad("wiro.callback_base_url", e.to_string()),
            }
        }
        if !self.wiro.rate_budget_per_s.is_finite() || self.wiro.rate_budget_per_s < 0.0 {
            return bad(
                "wiro.rate_budget_per_s",
                "must be a number of calls per second, 0 for none".into(),
            );
        }
        if self.wiro.max_concurrency == 0 {
            return bad("wiro.max_concurrency", "must be at least 1".into());
        }
        if self.wiro.reply_poll_interval.is_zero() {
            return bad(
                "wiro.reply_poll_interval",
                "must be greater than zero".into(),
            );
        }
        if let Err(e) = wiro_client::ClientConfig::new(&self.wiro.base_url, None) {
            return bad("wiro.base_url", e.to_string());
        }
        if let Err(why) = upstream_transport(&self.wiro.base_url, self.wiro.allow_insecure_upstream)
        {
            return bad("wiro.base_url", why);
        }
        if let Err(e) =
            crate::connections::RedirectOrigins::parse(&self.connections.allowed_redirect_origins)
        {
            // The message already names the key and the entry.
            return Err(ConfigError(e.to_string()));
        }
        if let Err(e) = crate::pricing::check_currency(&self.pricing.currency) {
            return bad("pricing.currency", e.to_string());
        }
        if self.pricing.default_markup_percent > 10_000 {
            return bad("pricing.default_markup_percent", "at most 10000".into());
        }
        for (template, items) in &self.pricing.templates {
            for (item, amount) in items {
                if let Err(e) =
                    crate::pricing::check_price(template, item, *amount, &self.pricing.currency)
                {
                    return bad(
                        &format!("pricing.templates.{template}.{item}"),
                        e.to_string(),
                    );
                }
            }
        }
        if self.webhooks.timeout.is_zero() || self.webhooks.batch == 0 {
            return bad(
                "webhooks.timeout / webhooks.batch",
                "must be greater than zero".into(),
            );
        }
        if self.webhooks.retry_schedule.len() > 20 {
            return bad(
                "webhooks.retry_schedule",
                "at most 20 retries (each failed delivery waits through all of them)".into(),
            );
        }
        if self.api.batch_body_limit_bytes < self.api.body_limit_bytes {
            return bad(
                "api.batch_body_limit_bytes",
                format!(
                    "must be at least api.body_limit_bytes ({})",
                    self.api.body_limit_bytes
                ),
            );
        }
        if !self.wiro.api_secret.expose_secret().is_empty() && !self.wiro_configured() {
            return bad(
                "wiro.api_secret",
                "is set but wiro.api_key (WIRO_API_KEY) is not".into(),
            );
        }
        if self.wiro.timeout.is_zero() || self.wiro.max_attempts == 0 {
            return bad(
                "wiro.timeout / wiro.max_attempts",
                "must be greater than zero".into(),
            );
        }
        if self.provisioning.deploy_lease < self.wiro.timeout + Duration::from_secs(1) {
            return bad(
                "provisioning.deploy_lease",
                format!(
                    "must exceed wiro.timeout ({:?}) by at least 1s, or a slow Deploy answer could be second-guessed",
                    self.wiro.timeout
                ),
            );
        }
        if !["HS256", "RS256", "ES256", "EdDSA"].contains(&self.auth.algorithm.as_str()) {
            return bad(
                "auth.algorithm",
                format!(
                    "{:?} is not one of HS256, RS256, ES256, EdDSA",
                    self.auth.algorithm
                ),
            );
        }
        let secret = self.auth.hs256_secret.expose_secret();
        if self.auth.algorithm == "HS256" && !secret.is_empty() && secret.len() < 32 {
            return bad(
                "auth.hs256_secret",
                "must be at least 32 bytes for HS256".into(),
            );
        }
        if self.auth.algorithm == "HS256" && !self.auth.previous_public_key_pem.trim().is_empty() {
            return bad(
                "auth.previous_public_key_pem",
                "only with an asymmetric auth.algorithm (RS256, ES256, EdDSA)".into(),
            );
        }
        let previous = self.previous_hs256_secrets();
        if !previous.is_empty() && self.auth.algorithm != "HS256" {
            return bad(
                "auth.previous_hs256_secrets",
                "only with auth.algorithm = HS256".into(),
            );
        }
        if let Some(position) = previous
            .iter()
            .position(|p| p.len() < 32 || PUBLISHED_HS256_SECRETS.contains(p))
        {
            return bad(
                "auth.previous_hs256_secrets",
                format!(
                    "secret {} of the list is shorter than 32 bytes or the published \
                     development value",
                    position + 1
                ),
            );
        }
        if self.auth.audience.trim().is_empty()
            || self.auth.ops_audience.trim().is_empty()
            || self.auth.audience == self.auth.ops_audience
        {
            return bad(
                "auth.audience / auth.ops_audience",
                "must both be set and differ: an ops token must not be a customer token with a claim"
                    .into(),
            );
        }
        if self.auth.leeway > Duration::from_secs(300) {
            return bad("auth.leeway", "must be at most 5m".into());
        }
        if self.auth.max_token_lifetime < Duration::from_secs(60)
            || self.auth.max_token_lifetime > Duration::from_secs(30 * 86_400)
        {
            return bad(
                "auth.max_token_lifetime",
                "must be between 1m and 30d".into(),
            );
        }
        if self.auth.token_ttl.is_zero() || self.auth.token_ttl > self.auth.max_token_lifetime {
            return bad(
                "auth.token_ttl",
                "must be greater than zero and at most auth.max_token_lifetime".into(),
            );
        }
        if self.auth.algorithm != "HS256" && self.auth.public_key_pem.trim().is_empty() {
            return bad(
                "auth.public_key_pem",
                format!("is required for {}", self.auth.algorithm),
            );
        }
        for (key, age) in [
            ("retention.finished_jobs", self.retention.finished_jobs),
            ("retention.webhook_events", self.retention.webhook_events),
            ("retention.messages", self.retention.messages),
            ("retention.resolved_alerts", self.retention.resolved_alerts),
        ] {
            if age < Duration::from_secs(3600) {
                return bad(key, "must be at least 1h".into());
            }
        }
        if self.retention.accounting < Duration::from_secs(365 * 86_400) {
            return bad(
                "retention.accounting",
                "must be at least 365d: operations and audit entries of money are an accounting record".into(),
            );
        }
        for (key, value) in [
            (
                "worker.provision_concurrency",
                self.worker.provision_concurrency,
            ),
            (
                "worker.interactive_concurrency",
                self.worker.interactive_concurrency,
            ),
            ("worker.ops_concurrency", self.worker.ops_concurrency),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.worker.missed_heartbeats == 0 || self.worker.heartbeat_interval.is_zero() {
            return bad(
                "worker.heartbeat_interval / worker.missed_heartbeats",
                "must be greater than zero".into(),
            );
        }
        for (key, expr) in [
            ("schedules.reconcile", &self.schedules.reconcile),
            ("schedules.renewals", &self.schedules.renewals),
            ("schedules.topups", &self.schedules.topups),
            ("schedules.settle", &self.schedules.settle),
            ("schedules.stuck", &self.schedules.stuck),
            ("schedules.purge", &self.schedules.purge),
        ] {
            if let Err(e) = <cron::Schedule as std::str::FromStr>::from_str(expr) {
                return bad(
                    key,
                    format!("{expr:?} is not a six-field cron expression (seconds first): {e}"),
                );
            }
        }
        for (slug, packs) in &self.billing.packs {
            for (pack, price) in packs {
                if price.price_cents <= 0 || price.credits <= 0 {
                    return bad(
                        &format!("billing.packs.{slug}.{pack}"),
                        "price_cents and credits must both be greater than zero".into(),
                    );
                }
            }
        }
        if self.operations.lease < self.wiro.timeout + Duration::from_secs(1) {
            return bad(
                "operations.lease",
                format!(
                    "must exceed wiro.timeout ({:?}) by at least 1s: the call must end inside the lease",
                    self.wiro.timeout
                ),
            );
        }
        if self.limits.max_agents < 0 || self.limits.monthly_spend_cents < 0 {
            return bad(
                "limits.max_agents / limits.monthly_spend_cents",
                "must not be negative".into(),
            );
        }
        for (key, rate, burst) in [
            (
                "limits.mutations_per_minute / limits.mutation_burst",
                self.limits.mutations_per_minute,
                self.limits.mutation_burst,
            ),
            (
                "limits.messages_per_minute / limits.message_burst",
                self.limits.messages_per_minute,
                self.limits.message_burst,
            ),
        ] {
            if rate > 0 && burst == 0 {
                return bad(key, "a rate needs a burst of at least 1".into());
            }
        }
        if self.operations.quiet_period.is_zero() || self.operations.alert_after_checks < 1 {
            return bad(
                "operations.quiet_period / operations.alert_after_checks",
                "must be greater than zero".into(),
            );
        }
        if self.billing.topup_threshold < 0 || self.billing.topup_monthly_cap < 0 {
            return bad(
                "billing.topup_threshold / billing.topup_monthly_cap",
                "must not be negative".into(),
            );
        }
        for (key, value) in [
            ("api.metrics_listen", &self.api.metrics_listen),
            ("worker.metrics_listen", &self.worker.metrics_listen),
        ] {
            if !value.is_empty() && value.parse::<SocketAddr>().is_err() {
                return bad(
                    key,
                    format!("{value:?} is not an address like 127.0.0.1:9091 (or empty)"),
                );
            }
        }
        if !["auto", "human", "json"].contains(&self.log.format.as_str()) {
            return bad("log.format", "must be auto, human or json".into());
        }
        let key = self.security.credentials_key.expose_secret();
        if !key.is_empty() {
            self.sealer().map_err(|e| ConfigError(e.to_string()))?;
        }
        Ok(())
    }

    /// The sealer of credentials at rest: the current key and the previous ones.
    ///
    /// # Errors
    /// A key that is not base64 of 32 bytes (the setting is named).
    pub fn sealer(&self) -> crate::Result<crate::sealed::Sealer> {
        crate::sealed::Sealer::with_previous(
            self.security.credentials_key.expose_secret(),
            self.security.previous_credentials_keys.expose_secret(),
        )
    }

    /// The HS256 secrets that verify and no longer sign (`auth.previous_hs256_secrets`), in
    /// the order listed.
    pub fn previous_hs256_secrets(&self) -> Vec<&str> {
        self.auth
            .previous_hs256_secrets
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// Refuses to sign or verify tokens with no HS256 secret, or with a published one: anyone
    /// who has read the repository could mint an ops token.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable to set.
    pub fn require_signing_secret(&self) -> Result<(), ConfigError> {
        if self.auth.algorithm != "HS256" {
            return Ok(());
        }
        let secret = self.auth.hs256_secret.expose_secret();
        let why = if secret.is_empty() {
            "is not set"
        } else if PUBLISHED_HS256_SECRETS.contains(&secret) {
            "is the published development value"
        } else {
            return Ok(());
        };
        Err(ConfigError(format!(
            "auth.hs256_secret {why}: set RESELLER_AUTH__HS256_SECRET to at least 32 random bytes \
             (head -c32 /dev/urandom | base64), or verify an asymmetric key with \
             RESELLER_AUTH__ALGORITHM and RESELLER_AUTH__PUBLIC_KEY_PEM"
        )))
    }

    /// True when a Wiro API key is configured (otherwise `up` embeds the simulator).
    pub fn wiro_configured(&self) -> bool {
        !self.wiro.api_key.expose_secret().trim().is_empty()
    }

    /// The Wiro client configuration these settings describe.
    ///
    /// # Errors
    /// [`ConfigError`] for a bad base URL.
    pub fn wiro_client_config(&self) -> Result<wiro_client::ClientConfig, ConfigError> {
        let key = self.wiro.api_key.expose_secret().trim().to_owned();
        let secret = self.wiro.api_secret.expose_secret().trim().to_owned();
        let auth = match (key.is_empty(), secret.is_empty()) {
            (true, _) => None,
            (false, true) => Some(wiro_client::Auth::ApiKey(key.into())),
            (false, false) => Some(wiro_client::Auth::Signature {
                api_key: key.into(),
                api_secret: secret.into(),
            }),
        };
        let mut config = wiro_client::ClientConfig::new(&self.wiro.base_url, auth)
            .map_err(|e| ConfigError(format!("wiro.base_url: {e}")))?;
        config.team_guid = Some(self.wiro.team_guid.trim().to_owned()).filter(|t| !t.is_empty());
        config.timeout = self.wiro.timeout;
        config.connect_timeout = self.wiro.connect_timeout;
        config.retry.max_attempts = self.wiro.max_attempts;
        config.throttle = Some(wiro_client::Throttle::new(self.wiro.max_concurrency));
        Ok(config)
    }
}

/// Wiro's key and our customers' credentials travel to `base_url`: it must be https, unless it
/// is loopback (the embedded simulator, a local proxy) or ops opted out explicitly.
fn upstream_transport(base_url: &str, allow_insecure: bool) -> Result<(), String> {
    let url = url::Url::parse(base_url).map_err(|e| e.to_string())?;
    if url.scheme() == "https" || allow_insecure {
        return Ok(());
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "must be https (the API key and customer credentials travel to it); {} is neither https nor loopback — set wiro.allow_insecure_upstream (RESELLER_WIRO__ALLOW_INSECURE_UPSTREAM=true) for a simulator on a private network",
            url.scheme()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_connections_default_to_two_per_worker_thread_and_split_a_total() {
        let mut database = Settings::defaults().unwrap().database;
        database.api_max_connections = 0;
        assert_eq!(database.api_connections_per_thread(2), 2);
        assert_eq!(database.api_connections(8), 16);
        database.api_max_connections = 10;
        assert_eq!(database.api_connections_per_thread(2), 5);
        assert_eq!(database.api_connections(2), 10);
        database.api_max_connections = 1;
        assert_eq!(
            database.api_connections_per_thread(4),
            1,
            "at least one each"
        );
    }

    fn with(key: &str, value: impl Serialize) -> Result<Settings, ConfigError> {
        Settings::from_figment(
            &Figment::from(Toml::string(DEFAULTS)).merge(Serialized::default(key, value)),
        )
    }

    #[test]
    fn the_shipped_defaults_are_valid() {
        let settings = Settings::defaults().unwrap();
        assert!(!settings.wiro_configured());
        assert_eq!(settings.api.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn a_redirect_origin_that_is_not_an_origin_is_refused_by_name() {
        let err = with(
            "connections.allowed_redirect_origins",
            ["https://app.example.com", "http://app.example.com"],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("connections.allowed_redirect_origins[1]"),
            "{err}"
        );
        assert!(
            with(
                "connections.allowed_redirect_origins",
                ["https://app.example.com:*"]
            )
            .is_ok()
        );
    }

    #[test]
    fn an_accounting_retention_under_a_year_is_refused_by_name() {
        let err = with("retention.accounting", "30d").unwrap_err();
        assert!(err.to_string().contains("retention.accounting"), "{err}");
        assert!(err.to_string().contains("365d"), "{err}");
        let err = with("retention.finished_jobs", "1m").unwrap_err();
        assert!(err.to_string().contains("retention.finished_jobs"), "{err}");
        let defaults = Settings::defaults().unwrap();
        assert!(defaults.retention.accounting >= Duration::from_secs(7 * 365 * 86_400));
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = with("worker.provision_concurrency", "many").unwrap_err();
        assert!(err.to_string().contains("provision_concurrency"), "{err}");
        let err = with("schedules.renewals", "*/5 * * * *").unwrap_err();
        assert!(err.to_string().contains("schedules.renewals"), "{err}");
        let err = with("auth.algorithm", "none").unwrap_err();
        assert!(err.to_string().contains("auth.algorithm"), "{err}");
        let err = with("provisioning.deploy_lease", "10s").unwrap_err();
        assert!(
            err.to_string().contains("provisioning.deploy_lease"),
            "{err}"
        );
        let err = with("security.credentials_key", "abc").unwrap_err();
        assert!(
            err.to_string().contains("security.credentials_key"),
            "{err}"
        );
    }

    #[test]
    fn the_upstream_must_be_https_unless_loopback_or_explicitly_allowed() {
        for ok in [
            "https://api.wiro.ai/v1",
            "http://127.0.0.1:7700/v1",
            "http://localhost:7700/v1",
            "http://[::1]:7700/v1",
        ] {
            with("wiro.base_url", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let err = with("wiro.base_url", "http://sim:7700/v1").unwrap_err();
        assert!(
            err.to_string().contains("wiro.base_url: must be https")
                && err.to_string().contains("allow_insecure_upstream"),
            "{err}"
        );
        let allowed = Settings::from_figment(
            &Figment::from(Toml::string(DEFAULTS))
                .merge(Serialized::default("wiro.base_url", "http://sim:7700/v1"))
                .merge(Serialized::default("wiro.allow_insecure_upstream", true)),
        );
        assert!(allowed.is_ok(), "{allowed:?}");
    }

    #[test]
    fn the_batch_body_limit_is_at_least_the_general_one() {
        let err = with("api.batch_body_limit_bytes", 1024).unwrap_err();
        assert!(
            err.to_string().contains("api.batch_body_limit_bytes"),
            "{err}"
        );
    }

    #[test]
    fn pack_prices_are_typed_and_checked() {
        let settings = Settings::defaults().unwrap();
        let price = settings
            .billing
            .pack("instagram-manager", Pack::Package1)
            .unwrap();
        assert_eq!((price.price_cents, price.credits), (500, 1000));
        assert!(
            settings
                .billing
                .pack("internal-notes", Pack::Package1)
                .is_none()
        );
        let err = with(
            "billing.packs",
            serde_json::json!({"x": {"package1": {"price_cents": 0, "credits": 5}}}),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("billing.packs.x.package1"),
            "{err}"
        );
        let err = with(
            "billing.packs",
            serde_json::json!({"x": {"package9": {"price_cents": 1, "credits": 5}}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("package9"), "{err}");
        let err = with("billing.starter_policy", "maybe").unwrap_err();
        assert!(err.to_string().contains("starter_policy"), "{err}");
    }

    #[test]
    fn no_shipped_secret_signs_anything() {
        let shipped = Settings::defaults().unwrap();
        let err = shipped.require_signing_secret().unwrap_err().to_string();
        assert!(err.contains("RESELLER_AUTH__HS256_SECRET"), "{err}");
        let published = with("auth.hs256_secret", PUBLISHED_HS256_SECRETS[0]).unwrap();
        assert!(published.require_signing_secret().is_err());
        let own = with("auth.hs256_secret", "x".repeat(40)).unwrap();
        assert!(own.require_signing_secret().is_ok());
        let err = with("auth.leeway", "10m").unwrap_err();
        assert!(err.to_string().contains("auth.leeway"), "{err}");
        let err = with("auth.token_ttl", "90d").unwrap_err();
        assert!(err.to_string().contains("auth.token_ttl"), "{err}");
        let err = with("auth.ops_audience", "wiro-reseller").unwrap_err();
        assert!(err.to_string().contains("ops_audience"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = with("worker.concurency", 3).unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn secrets_are_redacted_when_settings_are_printed() {
        let settings = with("wiro.api_key", "super-secret-key").unwrap();
        let printed = format!("{settings:?} {}", serde_json::to_string(&settings).unwrap());
        assert!(!printed.contains("super-secret-key"), "{printed}");
        assert!(settings.wiro_configured());
    }
}
