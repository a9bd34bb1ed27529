//! Politeness towards Wiro, per process: a rate (this process's share of the deployment's
//! budget, set from outside with [`Throttle::set_share`]) and an adaptive limit on calls in
//! flight and on the rate, both cut when Wiro refuses a tenth or more of the last second's
//! calls with 429 and grown back while it does not. Wiro documents neither a rate limit nor
//! `Retry-After`, so the 429s are the only signal; a stray one (a proxy, a blip) is retried
//! and does not slow everything down.
//!
//! The rate is enforced by a `governor` limiter (GCRA, no bursts), rebuilt when the effective
//! rate moves by more than 5 %.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

/// Below this the rate is not cut further (calls per second).
const MIN_RATE: f64 = 1.0;
/// A cut multiplies the rate and the concurrency limit by this.
const CUT: f64 = 0.7;
/// Growth of the adaptive rate per quiet second.
const GROWTH: f64 = 1.1;
/// The share of the last second's calls refused with 429 that means "too fast" ...
const REFUSED_SHARE: f64 = 0.1;
/// ... counting at least this many refusals.
const REFUSED_AT_LEAST: usize = 3;
/// Two cuts are at least this far apart: one burst of 429s is one signal.
const CUT_SPACING: Duration = Duration::from_millis(500);

/// Shared by every clone of a [`crate::Client`] built from one config.
pub struct Throttle {
    state: Mutex<State>,
    freed: Notify,
    limiter: RwLock<Option<Arc<DefaultDirectRateLimiter>>>,
}

struct State {
    in_flight: usize,
    /// Callers waiting for a place or for the rate.
    waiting: usize,
    /// Some caller had to wait since [`Throttle::take_waited`] was last asked.
    waited: bool,
    /// Adaptive limit on calls in flight (fractional: grows by 1 / limit per success).
    concurrency: f64,
    max_concurrency: f64,
    /// This process's share of the deployment's budget (`None`: no budget) ...
    share: Option<f64>,
    /// ... valid until then (the others stop counting it after that).
    share_until: Option<Instant>,
    /// The rate Wiro's 429s taught us (`None`: none seen lately).
    learned: Option<f64>,
    /// The rate the limiter enforces (`None`: unlimited).
    enforced: Option<f64>,
    last_cut: Option<Instant>,
    last_growth: Instant,
    /// When recent attempts were let through: the rate actually sent, and the demand reported
    /// to the other processes.
    sent: VecDeque<Instant>,
    /// When the last second's 429 answers came.
    refused: VecDeque<Instant>,
    rate_limited: u64,
    cuts: u64,
}

/// A call in flight. Hand it back with [`Permit::finish`]; dropped unfinished (the caller gave
/// up while waiting or sending), it frees its place without teaching anything.
#[derive(Debug)]
pub struct Permit {
    throttle: Arc<Throttle>,
    started: Instant,
    open: bool,
}

impl Permit {
    /// Records how the call ended (see [`Throttle::finish`]).
    pub fn finish(mut self, rate_limited: bool) {
        self.open = false;
        self.throttle.finish(self.started, rate_limited);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.open {
            let mut state = self.throttle.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
            drop(state);
            self.throttle.freed.notify_waiters();
        }
    }
}

/// What the throttle is doing, for metrics and tests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleView {
    /// Calls in flight now.
    pub in_flight: usize,
    /// Callers waiting to send.
    pub waiting: usize,
    /// The adaptive limit on calls in flight.
    pub concurrency: f64,
    /// The enforced rate (calls per second), if any: the lower of the share and what 429s
    /// taught.
    pub rate: Option<f64>,
    /// This process's share of the deployment's budget, if one is set.
    pub share: Option<f64>,
    /// Attempts let through in the last second.
    pub sent_last_second: usize,
    /// 429 answers seen since start.
    pub rate_limited: u64,
    /// Times the limits were cut since start.
    pub cuts: u64,
}

impl Throttle {
    /// A throttle allowing up to `max_concurrency` calls in flight, with no rate until a share
    /// is set.
    pub fn new(max_concurrency: usize) -> Arc<Self> {
        let max = max_concurrency.max(1) as f64;
        Arc::new(Self {
            state: Mutex::new(State {
                in_flight: 0,
                waiting: 0,
                waited: false,
                concurrency: max,
                max_concurrency: max,
                share: None,
                share_until: None,
                learned: None,
                enforced: None,
                last_cut: None,
                last_growth: Instant::now(),
                sent: VecDeque::new(),
                refused: VecDeque::new(),
                rate_limited: 0,
                cuts: 0,
            }),
            freed: Notify::new(),
            limiter: RwLock::new(None),
        })
    }

    /// Sets this process's share of the deployment's budget (calls per second; `None`: none).
    pub fn set_share(&self, share: Option<f64>) {
        let mut state = self.lock();
        state.share_until = None;
        // No share at all still lets a call through every ten seconds.
        state.share = share.map(|s| s.max(MIN_RATE / 10.0));
        self.enforce(&mut state);
    }

    /// Sets this process's share for `valid` from now: unless renewed by then, it falls to
    /// nothing (the other processes stop counting this one when its reports stop, and share
    /// what it held).
    pub fn lease_share(&self, share: f64, valid: Duration) {
        let mut state = self.lock();
        state.share_until = Some(Instant::now() + valid);
        state.share = Some(share.max(MIN_RATE / 10.0));
        self.enforce(&mut state);
    }

    fn drop_expired_share(&self) {
        let mut state = self.lock();
        if state
            .share_until
            .is_some_and(|until| Instant::now() >= until)
        {
            state.share_until = None;
            state.share = Some(MIN_RATE / 10.0);
            self.enforce(&mut state);
        }
    }

    /// Waits until a call may be sent: under the concurrency limit and the rate.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        let asked = Instant::now();
        self.drop_expired_share();
        self.lock().waiting += 1;
        let _waiting = Waiting(self);
        loop {
            let notified = self.freed.notified();
            {
                let mut state = self.lock();
                if (state.in_flight as f64) < state.concurrency.floor().max(1.0) {
                    state.in_flight += 1;
                    break;
                }
            }
            notified.await;
        }
        let mut permit = Permit {
            throttle: self.clone(),
            started: Instant::now(),
            open: true,
        };
        // A waiter let through by a limiter that was replaced meanwhile waits on the new one:
        // two generations must not each grant the rate.
        loop {
            let limiter = self
                .limiter
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let Some(limiter) = limiter else { break };
            limiter.until_ready().await;
            let current = self
                .limiter
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if current.is_none_or(|c| Arc::ptr_eq(&c, &limiter)) {
                break;
            }
        }
        let now = Instant::now();
        let mut state = self.lock();
        state.sent.push_back(now);
        trim(&mut state.sent, now);
        if now.duration_since(asked) > Duration::from_millis(1) {
            state.waited = true;
        }
        permit.started = now;
        permit
    }

    /// Records how a call sent at `started` ended: 429s on a tenth of the last second's calls
    /// cut the limits (once per burst);
    /// anything else lets them grow back.
    fn finish(&self, started: Instant, rate_limited: bool) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let now = Instant::now();
        if rate_limited {
            state.rate_limited += 1;
            state.refused.push_back(now);
            trim(&mut state.refused, now);
            trim(&mut state.sent, now);
            let refused = state.refused.len();
            let too_fast = refused >= REFUSED_AT_LEAST
                && refused as f64 >= REFUSED_SHARE * state.sent.len() as f64;
            // Only a call sent after the last cut says the cut was not enough.
            if too_fast
                && state
                    .last_cut
                    .is_none_or(|cut| started > cut && now.duration_since(cut) >= CUT_SPACING)
            {
                let sending = (state.sent.len() as f64).max(MIN_RATE);
                let current = state.enforced.map_or(sending, |r| r.min(sending));
                state.learned = Some((current * CUT).max(MIN_RATE));
                state.concurrency = (state.concurrency * CUT).max(1.0);
                state.last_cut = Some(now);
                state.cuts += 1;
                state.last_growth = now;
                self.enforce(&mut state);
            }
        } else {
            state.concurrency =
                (state.concurrency + 1.0 / state.concurrency).min(state.max_concurrency);
            let quiet = now.duration_since(state.last_growth);
            if quiet >= Duration::from_secs(1) {
                state.last_growth = now;
                if let Some(learned) = state.learned {
                    let grown = learned * GROWTH.powf(quiet.as_secs_f64());
                    // Far above what we send or are allowed anyway: forget the lesson.
                    state.learned = (grown < state.share.unwrap_or(f64::MAX)
                        && grown < 4.0 * state.sent.len().max(1) as f64)
                        .then_some(grown);
                    self.enforce(&mut state);
                }
            }
        }
        drop(state);
        self.freed.notify_waiters();
    }

    /// Whether some caller had to wait (for a place or for the rate) since the last time this
    /// was asked: the process wants more than it is let make.
    pub fn take_waited(&self) -> bool {
        std::mem::take(&mut self.lock().waited)
    }

    /// Attempts let through in the last second: the demand this process reports.
    pub fn sent_last_second(&self) -> usize {
        let mut state = self.lock();
        trim(&mut state.sent, Instant::now());
        state.sent.len()
    }

    /// A snapshot.
    pub fn view(&self) -> ThrottleView {
        let mut state = self.lock();
        trim(&mut state.sent, Instant::now());
        ThrottleView {
            in_flight: state.in_flight,
            waiting: state.waiting,
            concurrency: state.concurrency,
            rate: state.enforced,
            share: state.share,
            sent_last_second: state.sent.len(),
            rate_limited: state.rate_limited,
            cuts: state.cuts,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Rebuilds the limiter when the effective rate moved by more than 5 %.
    fn enforce(&self, state: &mut State) {
        let wanted = match (state.share, state.learned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let close = match (wanted, state.enforced) {
            (None, None) => true,
            (Some(w), Some(e)) => (w - e).abs() <= e * 0.05,
            _ => false,
        };
        if close {
            return;
        }
        state.enforced = wanted;
        let limiter = wanted.map(|rate| Arc::new(RateLimiter::direct(quota(rate))));
        *self
            .limiter
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limiter;
    }
}

/// Counts a caller in `acquire` until it is let through or gives up.
struct Waiting<'a>(&'a Throttle);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.waiting = state.waiting.saturating_sub(1);
    }
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("view", &self.view())
            .finish()
    }
}

/// One call every 1 / `rate` seconds, no burst.
fn quota(rate: f64) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate.max(MIN_RATE / 10.0));
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(NonZeroU32::MIN)
}

fn trim(sent: &mut VecDeque<Instant>, now: Instant) {
    while sent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        sent.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refusals_of_a_tenth_of_the_calls_cut_the_limits_and_quiet_lets_them_grow_back() {
        let throttle = Throttle::new(8);
        let mut permits = Vec::new();
        for _ in 0..8 {
            permits.push(throttle.acquire().await);
        }
        assert_eq!(throttle.view().in_flight, 8);
        // Two refusals of eight: a blip, retried, nothing cut.
        permits.pop().unwrap().finish(true);
        permits.pop().unwrap().finish(true);
        assert_eq!(throttle.view().rate, None);
        assert_eq!(throttle.view().concurrency, 8.0);
        // The third: Wiro means it.
        permits.pop().unwrap().finish(true);
        let view = throttle.view();
        assert!(view.concurrency < 8.0, "{view:?}");
        let rate = view.rate.expect("a rate is learned from the 429s");
        assert!(rate <= 8.0 * CUT + 1e-9, "{view:?}");
        // Another 429 from a call sent before the cut is the same burst: no second cut.
        permits.pop().unwrap().finish(true);
        assert_eq!(throttle.view().rate, Some(rate));
        assert_eq!(throttle.view().rate_limited, 4);
        for permit in permits {
            permit.finish(false);
        }
        assert!(throttle.view().concurrency > view.concurrency);
    }

    #[tokio::test]
    async fn the_share_is_the_rate_when_nothing_was_learned() {
        let throttle = Throttle::new(4);
        throttle.set_share(Some(50.0));
        assert_eq!(throttle.view().rate, Some(50.0));
        throttle.set_share(None);
        assert_eq!(throttle.view().rate, None);
    }

    #[tokio::test]
    async fn a_permit_dropped_unfinished_frees_its_place() {
        let throttle = Throttle::new(1);
        drop(throttle.acquire().await);
        assert_eq!(throttle.view().in_flight, 0);
        let again = tokio::time::timeout(Duration::from_secs(5), throttle.acquire())
            .await
            .expect("the place is free");
        again.finish(false);
    }

    #[tokio::test]
    async fn calls_beyond_the_concurrency_limit_wait_for_one_to_finish() {
        let throttle = Throttle::new(1);
        let held = throttle.acquire().await;
        let waiting = {
            let throttle = throttle.clone();
            tokio::spawn(async move { throttle.acquire().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        held.finish(false);
        let next = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting call proceeds")
            .unwrap();
        next.finish(false);
        assert_eq!(throttle.view().in_flight, 0);
    }
}
