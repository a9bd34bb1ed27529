//! Backoff with full jitter for calls that are safe to repeat.

use std::time::Duration;

use rand::Rng;

use crate::endpoint::Safety;
use crate::error::{Error, Outcome};

/// How many times and how patiently safe calls are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = no retries).
    pub max_attempts: u32,
    /// The backoff before the second attempt; doubled each time, capped at `max_delay`.
    pub base_delay: Duration,
    /// The largest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// Whether `error` on attempt number `attempt` (1-based) of a call of `safety` may be retried.
    pub fn should_retry(&self, safety: Safety, error: &Error, attempt: u32) -> bool {
        if attempt >= self.max_attempts || !error.is_transient() {
            return false;
        }
        match safety {
            Safety::ReadOnly => true,
            Safety::Idempotent => error.outcome() == Outcome::NotApplied,
            Safety::Spending => false,
        }
    }

    /// The pause before attempt `attempt + 1`: full jitter over the exponential bound, or the
    /// server's `Retry-After` when it asked for longer.
    pub fn delay(&self, error: &Error, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let jittered = Duration::from_secs_f64(exp.as_secs_f64() * rand::rng().random::<f64>());
        match error {
            Error::RateLimited {
                retry_after: Some(after),
                ..
            } => (*after)
                .min(self.max_delay.max(Duration::from_secs(1)))
                .max(jittered),
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Endpoint;

    fn rate_limited() -> Error {
        Error::RateLimited {
            endpoint: Endpoint::Deploy,
            retry_after: None,
        }
    }

    fn gateway() -> Error {
        Error::Http {
            endpoint: Endpoint::Start,
            status: 503,
            body: String::new(),
        }
    }

    #[test]
    fn spending_calls_are_never_retried() {
        let policy = RetryPolicy::default();
        assert!(!policy.should_retry(Safety::Spending, &rate_limited(), 1));
        assert!(!policy.should_retry(Safety::Spending, &gateway(), 1));
    }

    #[test]
    fn idempotent_calls_retry_only_when_nothing_was_applied() {
        let policy = RetryPolicy::default();
        assert!(policy.should_retry(Safety::Idempotent, &rate_limited(), 1));
        assert!(!policy.should_retry(Safety::Idempotent, &gateway(), 1));
    }

    #[test]
    fn read_only_calls_retry_until_the_attempt_budget_is_spent() {
        let policy = RetryPolicy::default();
        assert!(policy.should_retry(Safety::ReadOnly, &gateway(), 3));
        assert!(!policy.should_retry(Safety::ReadOnly, &gateway(), 4));
    }

    #[test]
    fn delays_stay_under_the_cap() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            assert!(policy.delay(&gateway(), attempt) <= policy.max_delay);
        }
    }
}
