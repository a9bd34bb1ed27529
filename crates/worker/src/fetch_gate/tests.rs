//! The gate against a stand-in for apalis's Postgres backend that follows its rules: polled
//! while idle it starts a fetch; a fetch sees the jobs committed before it started and ends
//! when the test says; a fetch's jobs are handed out one per poll; an empty fetch parks.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::channel::mpsc;

use super::*;

#[derive(Clone, Default)]
struct Queue(Arc<Mutex<QueueState>>);

#[derive(Default)]
struct QueueState {
    committed: Vec<u32>,
    /// Jobs before this index were taken by a fetch.
    taken: usize,
    fetches: usize,
    /// The fetch in flight: how many committed jobs its snapshot saw, and whether it ended.
    in_flight: Option<(usize, bool)>,
    buffer: VecDeque<u32>,
    waker: Option<Waker>,
}

impl Queue {
    fn commit(&self, job: u32) {
        self.0.lock().unwrap().committed.push(job);
    }

    fn fetches(&self) -> usize {
        self.0.lock().unwrap().fetches
    }

    /// Ends the fetch in flight (as its answer arriving would), waking its poller.
    fn end_fetch(&self) {
        let mut state = self.0.lock().unwrap();
        let fetch = state.in_flight.as_mut().expect("a fetch in flight");
        fetch.1 = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

impl Backend for Queue {
    type Task = u32;
    type Error = std::io::Error;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<u32, Self::Error>>> {
        let mut state = self.0.lock().unwrap();
        if let Some(job) = state.buffer.pop_front() {
            return Poll::Ready(Some(Ok(job)));
        }
        match state.in_flight {
            Some((seen, true)) => {
                state.in_flight = None;
                let from = state.taken;
                let jobs: Vec<u32> = state.committed[from..seen.max(from)].to_vec();
                state.taken = seen.max(from);
                state.buffer.extend(jobs);
                match state.buffer.pop_front() {
                    Some(job) => Poll::Ready(Some(Ok(job))),
                    None => {
                        // Empty: parked until something wakes the worker.
                        state.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
            Some((_, false)) => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            None => {
                state.fetches += 1;
                state.in_flight = Some((state.committed.len(), false));
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn poll_close(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

struct Harness {
    queue: Queue,
    gate: FetchGate<Queue>,
    notify: mpsc::UnboundedSender<()>,
    worker: WorkerContext,
}

impl Harness {
    fn new() -> Self {
        let queue = Queue::default();
        let (notify, notices) = mpsc::unbounded();
        let notices = Mutex::new(Some(notices));
        // An hour: the interval ticks once at the start and not again within a test.
        let gate = FetchGate::new(
            queue.clone(),
            move || match notices.lock().unwrap().take() {
                Some(rx) => rx.boxed(),
                None => futures::stream::pending().boxed(),
            },
            Duration::from_secs(3600),
        );
        Self {
            queue,
            gate,
            notify,
            worker: WorkerContext::new("fetch-gate-test"),
        }
    }

    /// One poll of the gate, as the worker makes on any wake.
    fn poll(&mut self) -> Option<u32> {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        match self.gate.poll_next(&mut cx, &self.worker) {
            Poll::Ready(Some(Ok(job))) => Some(job),
            Poll::Ready(other) => panic!(
                "unexpected {:?}",
                other.map(|r| r.map_err(|e| e.to_string()))
            ),
            Poll::Pending => None,
        }
    }

    /// Starts the worker: its first fetch (jobs may be waiting), which finds nothing.
    fn started_idle(&mut self) {
        assert_eq!(self.poll(), None);
        assert_eq!(self.queue.fetches(), 1);
        self.queue.end_fetch();
        assert_eq!(self.poll(), None);
    }
}

#[tokio::test(start_paused = true)]
async fn wakes_from_running_jobs_start_no_fetch() {
    let mut h = Harness::new();
    h.started_idle();
    // Every await of a running job wakes the worker's task; apalis alone fetches on each.
    for _ in 0..20 {
        assert_eq!(h.poll(), None);
    }
    assert_eq!(
        h.queue.fetches(),
        1,
        "a wake without a reason started a fetch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_notification_on_an_idle_worker_fetches_at_once() {
    let mut h = Harness::new();
    h.started_idle();
    h.queue.commit(3);
    h.notify.unbounded_send(()).unwrap();
    assert_eq!(h.poll(), None);
    assert_eq!(h.queue.fetches(), 2);
    h.queue.end_fetch();
    assert_eq!(h.poll(), Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_notification_during_a_fetch_is_not_lost() {
    let mut h = Harness::new();
    h.started_idle();
    h.queue.commit(1);
    h.notify.unbounded_send(()).unwrap();
    assert_eq!(h.poll(), None); // the fetch for job 1 begins
    // Job 7 commits while that fetch is in flight (its snapshot does not see it).
    h.queue.commit(7);
    h.notify.unbounded_send(()).unwrap();
    assert_eq!(h.poll(), None);
    h.queue.end_fetch();
    assert_eq!(h.poll(), Some(1));
    // Handing out job 1 began a fetch after the notification: it sees 7.
    assert_eq!(h.poll(), None);
    h.queue.end_fetch();
    assert_eq!(h.poll(), Some(7));
}

#[tokio::test(start_paused = true)]
async fn a_notification_during_a_fetch_that_finds_nothing_is_not_lost() {
    let mut h = Harness::new();
    // The first fetch is in flight when job 7 commits and is notified.
    assert_eq!(h.poll(), None);
    h.queue.commit(7);
    h.notify.unbounded_send(()).unwrap();
    assert_eq!(h.poll(), None);
    h.queue.end_fetch();
    // That fetch's snapshot predates job 7: it ends empty and the backend parks.
    assert_eq!(h.poll(), None);
    assert_eq!(
        h.poll(),
        None,
        "nothing but the recheck may fetch again yet"
    );
    assert_eq!(h.queue.fetches(), 1);
    tokio::time::advance(RECHECK).await;
    assert_eq!(h.poll(), None);
    assert_eq!(h.queue.fetches(), 2, "the recheck began a fetch");
    h.queue.end_fetch();
    assert_eq!(h.poll(), Some(7));
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_handed_out_whole_then_the_queue_is_asked_again() {
    let mut h = Harness::new();
    assert_eq!(h.poll(), None);
    for job in [1, 2, 3] {
        h.queue.commit(job);
    }
    h.queue.end_fetch();
    // The first fetch began before the commits: nothing. A notification for them:
    assert_eq!(h.poll(), None);
    h.notify.unbounded_send(()).unwrap();
    assert_eq!(h.poll(), None);
    h.queue.end_fetch();
    assert_eq!([h.poll(), h.poll(), h.poll()], [Some(1), Some(2), Some(3)]);
    // A full batch may have left more behind: the next poll asks again.
    assert_eq!(h.poll(), None);
    assert_eq!(h.queue.fetches(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_interval_fetches_jobs_that_became_due_without_a_notification() {
    let mut h = Harness::new();
    h.started_idle();
    h.queue.commit(9); // a delayed job coming due sends no notification
    assert_eq!(h.poll(), None);
    assert_eq!(h.queue.fetches(), 1);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(h.poll(), None);
    assert_eq!(h.queue.fetches(), 2);
    h.queue.end_fetch();
    assert_eq!(h.poll(), Some(9));
}

#[tokio::test(start_paused = true)]
async fn a_notification_arriving_as_a_fetch_ends_empty_fetches_again_at_once() {
    let mut h = Harness::new();
    assert_eq!(h.poll(), None);
    // Job 7 commits after the fetch's snapshot; its notification and the fetch's (empty)
    // answer arrive before the worker's next poll.
    h.queue.commit(7);
    h.notify.unbounded_send(()).unwrap();
    h.queue.end_fetch();
    assert_eq!(h.poll(), None);
    assert_eq!(
        h.queue.fetches(),
        2,
        "no fetch began after the notification"
    );
    h.queue.end_fetch();
    assert_eq!(h.poll(), Some(7));
}
