//! Per-customer token buckets (governor's GCRA): one on every mutating request, one more on
//! message sends. Over the rate: 429 with `Retry-After`.
//!
//! The rates in `[limits]` are the deployment's: each API process keeps its buckets in memory
//! and takes 1/N of every rate and burst, N the API processes alive now
//! ([`Replica`], through `api_replicas`), so a customer spreading requests over
//! the replicas behind a load balancer gets no more than the configured rate in all. A change
//! of N rebuilds the buckets (each customer's burst starts full again, at the new size).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use domain::config::LimitSettings;
use domain::ids::CustomerId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlx::PgPool;

use crate::error::ApiError;

/// Idle keys are dropped once a bucket holds this many customers.
const MAX_TRACKED: usize = 100_000;

/// How often an API process says it is alive and counts the others.
pub const REPLICA_PERIOD: Duration = Duration::from_secs(2);

/// A process silent for longer than this no longer counts.
pub const REPLICA_LIVE: Duration = domain::db::replicas::LIVE;

/// The buckets.
#[derive(Debug)]
pub struct RateLimits {
    limits: LimitSettings,
    replicas: AtomicUsize,
    buckets: RwLock<Arc<Buckets>>,
}

#[derive(Debug)]
struct Buckets {
    mutations: Option<DefaultKeyedRateLimiter<CustomerId>>,
    messages: Option<DefaultKeyedRateLimiter<CustomerId>>,
}

impl Buckets {
    fn new(limits: &LimitSettings, replicas: usize) -> Self {
        Self {
            mutations: bucket(limits.mutations_per_minute, limits.mutation_burst, replicas),
            messages: bucket(limits.messages_per_minute, limits.message_burst, replicas),
        }
    }
}

/// One process's bucket: its part of `per_minute` and `burst` among `replicas` (at least one
/// request each; none when the rate is 0, a disabled bucket).
fn bucket(
    per_minute: u32,
    burst: u32,
    replicas: usize,
) -> Option<DefaultKeyedRateLimiter<CustomerId>> {
    let part = |n: u32| {
        let replicas = u32::try_from(replicas.max(1)).unwrap_or(u32::MAX);
        NonZeroU32::new(n / replicas).unwrap_or(NonZeroU32::MIN)
    };
    NonZeroU32::new(per_minute)?;
    Some(RateLimiter::keyed(
        Quota::per_minute(part(per_minute)).allow_burst(part(burst)),
    ))
}

impl RateLimits {
    /// From `[limits]`, for one process until [`RateLimits::set_replicas`] says otherwise.
    pub fn new(limits: &LimitSettings) -> Self {
        Self {
            limits: limits.clone(),
            replicas: AtomicUsize::new(1),
            buckets: RwLock::new(Arc::new(Buckets::new(limits, 1))),
        }
    }

    /// The API processes the rates are shared among.
    pub fn replicas(&self) -> usize {
        self.replicas.load(Ordering::Relaxed)
    }

    /// Shares the rates among `replicas` processes (at least one); true when that changed them.
    pub fn set_replicas(&self, replicas: usize) -> bool {
        let replicas = replicas.max(1);
        if self.replicas.swap(replicas, Ordering::Relaxed) == replicas {
            return false;
        }
        let buckets = Arc::new(Buckets::new(&self.limits, replicas));
        *self.buckets.write().unwrap_or_else(|e| e.into_inner()) = buckets;
        true
    }

    fn buckets(&self) -> Arc<Buckets> {
        self.buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A mutating request of `customer`.
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn mutation(&self, customer: CustomerId) -> Result<(), ApiError> {
        check(self.buckets().mutations.as_ref(), customer, "requests")
    }

    /// A message send of `customer`.
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn message(&self, customer: CustomerId) -> Result<(), ApiError> {
        check(self.buckets().messages.as_ref(), customer, "messages")
    }
}

/// This process's place among the API processes sharing the rates: its heartbeat runs until
/// [`Replica::leave`] (or until dropped, when the others stop counting it after
/// [`REPLICA_LIVE`]).
#[derive(Debug)]
pub struct Replica {
    pool: PgPool,
    member: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Replica {
    /// Starts sharing `limits` as `member` ([`share_across_replicas`]).
    pub fn join(pool: &PgPool, member: String, limits: Arc<RateLimits>) -> Self {
        let heartbeat = tokio::spawn(share_across_replicas(pool.clone(), member.clone(), limits));
        Self {
            pool: pool.clone(),
            member,
            heartbeat,
        }
    }

    /// Stops the heartbeat and hands this process's part back at once.
    pub async fn leave(self) {
        self.heartbeat.abort();
        if let Err(e) = domain::db::replicas::leave(&self.pool, &self.member).await {
            tracing::warn!(error = %e, "could not leave the API processes' count; it lapses on its own");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Keeps `limits` shared among the API processes alive: says every [`REPLICA_PERIOD`] that
/// `member` (this process, a name no other uses) is alive and counts those that said so within
/// [`REPLICA_LIVE`]. Should the database not answer, the last count holds.
async fn share_across_replicas(pool: PgPool, member: String, limits: Arc<RateLimits>) {
    let mut tick = tokio::time::interval(REPLICA_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match domain::db::replicas::heartbeat(&pool, &member, REPLICA_LIVE).await {
            Ok(replicas) => {
                if limits.set_replicas(replicas) {
                    tracing::info!(
                        replicas,
                        "API processes sharing the per-customer request rates"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the API processes; keeping the last count")
            }
        }
    }
}

fn check(
    limiter: Option<&DefaultKeyedRateLimiter<CustomerId>>,
    customer: CustomerId,
    what: &str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if limiter.len() > MAX_TRACKED {
        limiter.retain_recent();
    }
    limiter.check_key(&customer).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            detail: format!("too many {what}; try again in {secs}s"),
            retry_after: Some(secs.max(1)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u32, burst: u32) -> LimitSettings {
        LimitSettings {
            max_agents: 1,
            monthly_spend_cents: 0,
            mutations_per_minute: per_minute,
            mutation_burst: burst,
            messages_per_minute: 0,
            message_burst: 0,
        }
    }

    fn allowed(limits: &RateLimits, customer: CustomerId, tries: usize) -> usize {
        (0..tries)
            .filter(|_| limits.mutation(customer).is_ok())
            .count()
    }

    #[test]
    fn each_of_n_processes_takes_its_part_of_the_burst() {
        let customer = CustomerId::new();
        let alone = RateLimits::new(&limits(1, 12));
        assert_eq!(allowed(&alone, customer, 20), 12);

        let shared = RateLimits::new(&limits(1, 12));
        assert!(shared.set_replicas(3));
        assert!(!shared.set_replicas(3), "no change, no rebuild");
        assert_eq!(shared.replicas(), 3);
        assert_eq!(allowed(&shared, customer, 20), 4);
    }

    #[test]
    fn a_part_is_never_less_than_one_and_a_disabled_bucket_stays_disabled() {
        let customer = CustomerId::new();
        let many = RateLimits::new(&limits(1, 2));
        many.set_replicas(5);
        assert_eq!(allowed(&many, customer, 5), 1);

        let off = RateLimits::new(&limits(0, 0));
        off.set_replicas(4);
        assert_eq!(allowed(&off, customer, 50), 50);
    }
}
