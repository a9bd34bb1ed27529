//! Per-customer token buckets (governor's GCRA): one on every mutating request, one more on
//! message sends. Over the rate: 429 with `Retry-After`. Buckets live in each API process (N
//! processes allow N times the rate); the deployment-wide upstream budget is another matter.

use std::num::NonZeroU32;

use actix_web::http::StatusCode;
use domain::config::LimitSettings;
use domain::ids::CustomerId;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// Idle keys are dropped once a bucket holds this many customers.
const MAX_TRACKED: usize = 100_000;

/// The buckets.
#[derive(Debug)]
pub struct RateLimits {
    mutations: Option<DefaultKeyedRateLimiter<CustomerId>>,
    messages: Option<DefaultKeyedRateLimiter<CustomerId>>,
}

fn bucket(per_minute: u32, burst: u32) -> Option<DefaultKeyedRateLimiter<CustomerId>> {
    let rate = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(RateLimiter::keyed(
        Quota::per_minute(rate).allow_burst(burst),
    ))
}

impl RateLimits {
    /// From `[limits]`.
    pub fn new(limits: &LimitSettings) -> Self {
        Self {
            mutations: bucket(limits.mutations_per_minute, limits.mutation_burst),
            messages: bucket(limits.messages_per_minute, limits.message_burst),
        }
    }

    /// A mutating request of `customer`.
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn mutation(&self, customer: CustomerId) -> Result<(), ApiError> {
        check(self.mutations.as_ref(), customer, "requests")
    }

    /// A message send of `customer`.
    ///
    /// # Errors
    /// 429 `rate_limited` with `Retry-After`.
    pub fn message(&self, customer: CustomerId) -> Result<(), ApiError> {
        check(self.messages.as_ref(), customer, "messages")
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
