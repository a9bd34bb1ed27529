//! The simulator's clock: real time plus an offset that tests push forward, so a 30-day billing
//! period passes in one call.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since the Unix epoch, in simulated time.
pub type SimTime = i64;

/// One day in [`SimTime`] units.
pub const DAY_MS: i64 = 86_400_000;

/// A shared, monotonic-by-construction clock. Cloning shares the offset.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    offset_ms: Arc<AtomicI64>,
}

impl SimClock {
    /// Simulated now.
    pub fn now(&self) -> SimTime {
        real_now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    /// Moves simulated time forward by `ms` (negative values are ignored: time never runs back).
    pub fn advance_ms(&self, ms: i64) -> SimTime {
        if ms > 0 {
            self.offset_ms.fetch_add(ms, Ordering::SeqCst);
        }
        self.now()
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
}
