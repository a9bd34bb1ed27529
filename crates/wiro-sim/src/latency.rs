//! Added latency that lasts what it says. tokio's timer counts in whole milliseconds and rounds a
//! deadline up to the next one, and its wake-up waits for a runtime thread: a 20 ms fault held a
//! call 21.5 ms on an idle machine, so every bench's ideal bound (calls × latency) was out by
//! 7 % before any work of ours. One thread sleeps to the earliest deadline (a futex wait, with
//! the kernel's 50 µs timer slack) and wakes the calls whose time has come.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Waits `duration`, to within the kernel's timer slack.
pub async fn wait(duration: Duration) {
    let (wake, woken) = oneshot::channel();
    TIMER.add(Instant::now() + duration, wake);
    // Fails only for a waker dropped unsent, which the timer thread never does.
    let _ = woken.await;
}

static TIMER: LazyLock<Timer> = LazyLock::new(Timer::start);

struct Timer {
    due: Mutex<BinaryHeap<Reverse<Deadline>>>,
    changed: Condvar,
}

struct Deadline(Instant, u64, oneshot::Sender<()>);

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

impl Timer {
    fn start() -> Timer {
        std::thread::Builder::new()
            .name("wiro-sim-latency".into())
            .spawn(|| TIMER.run())
            .expect("the latency thread starts");
        Timer {
            due: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }
    }

    fn add(&self, at: Instant, wake: oneshot::Sender<()>) {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = due.peek().is_none_or(|Reverse(first)| at < first.0);
        due.push(Reverse(Deadline(at, seq, wake)));
        drop(due);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while due.peek().is_some_and(|Reverse(first)| first.0 <= now) {
                if let Some(Reverse(Deadline(_, _, wake))) = due.pop() {
                    let _ = wake.send(());
                }
            }
            due = match due.peek() {
                None => self.changed.wait(due).unwrap_or_else(|e| e.into_inner()),
                Some(Reverse(first)) => {
                    let left = first.0.saturating_duration_since(now);
                    let waited = self
                        .changed
                        .wait_timeout(due, left.max(Duration::from_micros(1)));
                    waited.unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_wait_lasts_at_least_its_duration() {
        let waits = [30u64, 1, 12, 5, 20, 0, 7].map(|ms| async move {
            let began = Instant::now();
            wait(Duration::from_millis(ms)).await;
            (ms, began.elapsed())
        });
        for (ms, waited) in futures::future::join_all(waits).await {
            assert!(
                waited >= Duration::from_millis(ms),
                "a {ms} ms wait returned after {waited:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_shorter_wait_added_later_is_not_held_behind_a_longer_one() {
        let long = tokio::spawn(wait(Duration::from_secs(2)));
        // The timer thread is now asleep until the long deadline.
        tokio::task::yield_now().await;
        let began = Instant::now();
        tokio::select! {
            () = wait(Duration::from_millis(5)) => {}
            _ = long => panic!("the 2 s wait ended before the 5 ms one"),
        }
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "the 5 ms wait took {:?}",
            began.elapsed()
        );
    }
}
