//! The simulator's clock: real time plus an offset that tests push forward, so a 30-day billing
//! period passes in one call. It can also be frozen, so that short-lived states (Stopping,
//! Queued, a queued message) hold still until a test moves time on explicitly.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, in simulated time.
pub type SimTime = i64;

/// One day in [`SimTime`] units.
pub const DAY_MS: i64 = 86_400_000;

/// `frozen_at` value meaning "follow real time".
const LIVE: i64 = i64::MIN;

/// A shared clock. Cloning shares the state. Time never runs backwards.
#[derive(Clone, Debug)]
pub struct SimClock {
    offset_ms: Arc<AtomicI64>,
    frozen_at: Arc<AtomicI64>,
}

impl Default for SimClock {
    fn default() -> Self {
        Self {
            offset_ms: Arc::new(AtomicI64::new(0)),
            frozen_at: Arc::new(AtomicI64::new(LIVE)),
        }
    }
}

impl SimClock {
    /// Simulated now.
    pub fn now(&self) -> SimTime {
        let base = match self.frozen_at.load(Ordering::SeqCst) {
            LIVE => real_now_ms(),
            frozen => frozen,
        };
        base + self.offset_ms.load(Ordering::SeqCst)
    }

    /// Moves simulated time forward by `ms` (negative values are ignored).
    pub fn advance_ms(&self, ms: i64) -> SimTime {
        if ms > 0 {
            self.offset_ms.fetch_add(ms, Ordering::SeqCst);
        }
        self.now()
    }

    /// Stops time where it is; only [`SimClock::advance_ms`] moves it until [`SimClock::resume`].
    pub fn freeze(&self) -> SimTime {
        let _ = self.frozen_at.compare_exchange(
            LIVE,
            real_now_ms(),
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.now()
    }

    /// Follows real time again from the frozen instant (no jump).
    pub fn resume(&self) -> SimTime {
        let frozen = self.frozen_at.swap(LIVE, Ordering::SeqCst);
        if frozen != LIVE {
            // Keep now continuous: what was frozen + offset becomes real + new offset.
            self.offset_ms
                .fetch_add(frozen - real_now_ms(), Ordering::SeqCst);
        }
        self.now()
    }

    /// True while frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen_at.load(Ordering::SeqCst) != LIVE
    }
}

fn real_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Whole seconds, as Wiro's timestamps are.
pub fn secs(t: SimTime) -> i64 {
    t.div_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_by_at_least_the_amount() {
        let clock = SimClock::default();
        let before = clock.now();
        let after = clock.advance_ms(30 * DAY_MS);
        assert!(after - before >= 30 * DAY_MS);
        assert!(clock.advance_ms(-DAY_MS) >= after);
    }

    #[test]
    fn a_frozen_clock_moves_only_when_advanced_and_resumes_without_a_jump() {
        let clock = SimClock::default();
        let frozen = clock.freeze();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.now(), frozen);
        assert_eq!(clock.advance_ms(100), frozen + 100);
        let resumed = clock.resume();
        assert!(resumed >= frozen + 100 && resumed < frozen + 1000);
        assert!(!clock.is_frozen());
    }
}
