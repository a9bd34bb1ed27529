//! The database's side of `/metrics`: what the alert rules (`deploy/prometheus/alerts.yml`) and
//! the dashboard watch. Every process renders the same values from the shared database, so
//! rules aggregate them with `max`. Each query reads an index or a small table.

use sqlx::PgPool;

use crate::error::Result;

/// A worker whose heartbeat is older than this is not counted alive (the default heartbeat is
/// 5 s × 3 missed; a scrape does not know a deployment's setting, so this is generous).
pub const WORKER_ALIVE_WITHIN_SECONDS: i64 = 60;

/// The window of [`Gauges::wallet_due_cents`]: no subscription renews twice in it.
pub const WALLET_WINDOW_DAYS: i64 = 7;

/// The queues every deployment runs.
const QUEUES: [&str; 5] = [
    crate::jobs::PROVISION_QUEUE,
    crate::jobs::BULK_PROVISION_QUEUE,
    crate::jobs::BULK_CHUNK_QUEUE,
    crate::jobs::SWEEP_QUEUE,
    crate::jobs::CUSTOMER_QUEUE,
];
/// The apalis statuses of a job that is not done.
const JOB_STATUSES: [&str; 5] = ["Pending", "Queued", "Running", "Failed", "Killed"];

/// `rows` plus a zero for every key in `known` they lack, in key order.
fn with_zeros<K: Ord, V: Default>(
    rows: Vec<(K, V)>,
    known: impl IntoIterator<Item = K>,
) -> Vec<(K, V)> {
    let mut all: std::collections::BTreeMap<K, V> =
        known.into_iter().map(|k| (k, V::default())).collect();
    all.extend(rows);
    all.into_iter().collect()
}

/// Gauges read from the database at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Open operator alerts by kind.
    pub alerts_open: Vec<(String, i64)>,
    /// Jobs not done, by queue and apalis status.
    pub jobs: Vec<((String, String), i64)>,
    /// Per queue, how long the longest-waiting due job has waited (0 when none waits).
    pub oldest_due_seconds: Vec<(String, f64)>,
    /// Consequential calls whose outcome is not settled: `calling` (within its lease or past it)
    /// and `unknown`.
    pub operations_unresolved: Vec<(String, i64)>,
    /// Workers heard from within [`WORKER_ALIVE_WITHIN_SECONDS`], by queue.
    pub workers_alive: Vec<(String, i64)>,
    /// What renewals due within [`WALLET_WINDOW_DAYS`] and parked (expired) subscriptions will
    /// take from the wallet.
    pub wallet_due_cents: i64,
    /// The wallet balance Wiro last reported (in an open `Insufficient wallet balance`
    /// refusal); Wiro has no balance endpoint.
    pub wallet_available_cents: Option<i64>,
    /// API processes sharing the per-customer request rates (`crate::db::replicas::live`).
    pub api_replicas: i64,
}

/// Reads every gauge.
///
/// # Errors
/// Database errors.
pub async fn read(pool: &PgPool) -> Result<Gauges> {
    let alerts_open = sqlx::query_as(
        "SELECT kind, count(*) FROM alerts WHERE resolved_at IS NULL GROUP BY kind ORDER BY kind",
    )
    .fetch_all(pool)
    .await?;
    let jobs: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT job_type, status, count(*) FROM apalis.jobs
         WHERE status IN ('Pending', 'Queued', 'Running', 'Failed', 'Killed')
         GROUP BY job_type, status ORDER BY job_type, status",
    )
    .fetch_all(pool)
    .await?;
    let oldest_due_seconds = sqlx::query_as(
        "SELECT job_type,
                COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now())), 0)::float8
         FROM apalis.jobs WHERE status IN ('Pending', 'Queued')
         GROUP BY job_type ORDER BY job_type",
    )
    .fetch_all(pool)
    .await?;
    let operations_unresolved = sqlx::query_as(
        "SELECT CASE WHEN state = 'calling' AND lease_until <= now() THEN 'calling_past_lease'
                     ELSE state END AS state, count(*)
         FROM operations WHERE state IN ('calling', 'unknown') GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let workers_alive = sqlx::query_as(
        "SELECT worker_type, count(*) FILTER (WHERE last_seen > now() - make_interval(secs => $1))
         FROM apalis.workers GROUP BY worker_type ORDER BY worker_type",
    )
    .bind(WORKER_ALIVE_WITHIN_SECONDS as f64)
    .fetch_all(pool)
    .await?;
    let wallet_due_cents = sqlx::query_scalar(
        "SELECT COALESCE(sum(COALESCE(i.subscription_amount_cents, i.price_cents)), 0)::int8
         FROM instances i JOIN customers c ON c.id = i.customer_id
         WHERE c.status = 'active' AND i.wiro_guid IS NOT NULL AND i.state <> 'failed'
           AND NOT i.cancel_at_period_end
           AND (i.subscription_status = 'expired'
                OR (i.subscription_status = 'active'
                    AND i.subscription_period_end <= now() + make_interval(days => $1)))",
    )
    .bind(i32::try_from(WALLET_WINDOW_DAYS).unwrap_or(7))
    .fetch_one(pool)
    .await?;
    let wallet_available_cents = sqlx::query_scalar(
        "SELECT (detail ->> 'available_cents')::int8 FROM alerts
         WHERE kind = 'renewal_parked' AND resolved_at IS NULL AND detail ? 'available_cents'
         ORDER BY updated_at DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let api_replicas = crate::db::replicas::live(pool).await?;
    // Every known series is present (0 when nothing is there), so rules and panels see a zero
    // rather than no data.
    Ok(Gauges {
        alerts_open,
        jobs: with_zeros(
            jobs.into_iter().map(|(q, s, n)| ((q, s), n)).collect(),
            QUEUES.iter().flat_map(|queue| {
                JOB_STATUSES
                    .iter()
                    .map(move |status| ((*queue).to_owned(), (*status).to_owned()))
            }),
        ),
        oldest_due_seconds: with_zeros(oldest_due_seconds, QUEUES.iter().map(|q| (*q).to_owned())),
        operations_unresolved: with_zeros(
            operations_unresolved,
            ["calling", "calling_past_lease", "unknown"].map(str::to_owned),
        ),
        workers_alive: with_zeros(workers_alive, QUEUES.iter().map(|q| (*q).to_owned())),
        wallet_due_cents,
        wallet_available_cents,
        api_replicas,
    })
}
