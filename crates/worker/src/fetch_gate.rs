//! When a queue's worker asks Postgres for jobs.
//!
//! apalis 1.0 (`PollWith` over `PostgresStorage`) has two habits this module removes:
//!
//! - **A fetch on every wake.** The jobs a worker runs are polled inside the worker's own task,
//!   so every answer one of them awaits (a query, an upstream call) wakes that task, and every
//!   wake with free slots starts a fetch: many fetches per job, each reading the queue's index.
//! - **A lost NOTIFY.** A notification is consumed on the wake it causes even when a fetch is
//!   already in flight. If that fetch's snapshot predates the new job's commit it returns
//!   empty, and the job waits for the next unrelated wake: the next upstream answer of some
//!   running job (pickup p99 = the upstream latency) or the poll interval.
//!
//! [`FetchGate`] lets the backend fetch only for a reason: a notification, the poll interval,
//! a batch still being handed out, or the backend's own wake (its fetch in flight made
//! progress). After a notification it makes sure a fetch begins after it: one more poll at
//! once (which starts a fetch if the last one just ended) and one more [`RECHECK`] later (for a
//! fetch that was still in flight then).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use apalis_core::backend::{Backend, BackendConfig, WireFormatBackend};
use apalis_core::worker::context::WorkerContext;
use futures::stream::BoxStream;
use futures::task::AtomicWaker;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Interval, MissedTickBehavior, Sleep};

/// How long after a notification the gate looks once more: longer than a fetch takes, so a
/// fetch in flight when the notification came has ended and a fresh one sees the job.
pub const RECHECK: Duration = Duration::from_millis(10);

/// A backend that fetches only when there may be something to fetch (see the module docs).
pub struct FetchGate<B> {
    inner: B,
    /// Wakes for new work (NOTIFY); `None` once the listener has ended. (In a mutex only to
    /// be `Sync`, as apalis wants of a backend; it is never contended.)
    notices: Option<Mutex<BoxStream<'static, ()>>>,
    /// A fresh stream for a clone (apalis restarts a worker from a clone of its backend).
    make_notices: Arc<dyn Fn() -> BoxStream<'static, ()> + Send + Sync>,
    period: Duration,
    /// Created on first poll (it needs the runtime).
    interval: Option<Interval>,
    recheck: Option<Pin<Box<Sleep>>>,
    /// A reason to fetch has come and no fetch was started for it yet.
    wanted: bool,
    /// The backend just handed out a job: its batch may hold more.
    draining: bool,
    wake: Arc<BackendWake>,
    waker: Waker,
}

/// The waker the backend sees: records that the backend itself asked to be polled, and
/// passes the wake on to the worker's task.
#[derive(Default)]
struct BackendWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for BackendWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<B> FetchGate<B> {
    /// Gates `inner`: `notices` yields once per notification for this queue; `period` is
    /// the poll interval (jobs that become due later send no notification).
    pub fn new(
        inner: B,
        notices: impl Fn() -> BoxStream<'static, ()> + Send + Sync + 'static,
        period: Duration,
    ) -> Self {
        Self::with_notices(inner, Arc::new(notices), period)
    }

    fn with_notices(
        inner: B,
        make_notices: Arc<dyn Fn() -> BoxStream<'static, ()> + Send + Sync>,
        period: Duration,
    ) -> Self {
        let wake = Arc::new(BackendWake::default());
        Self {
            inner,
            notices: Some(Mutex::new(make_notices())),
            make_notices,
            period,
            interval: None,
            recheck: None,
            // Jobs may already be waiting.
            wanted: true,
            draining: false,
            waker: Waker::from(wake.clone()),
            wake,
        }
    }

    /// Collects the reasons to fetch that have come, registering the task for the next ones.
    fn collect_reasons(&mut self, cx: &mut Context<'_>) {
        if let Some(notices) = self.notices.as_mut() {
            let notices = notices.get_mut().unwrap_or_else(PoisonError::into_inner);
            loop {
                match notices.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => {
                        self.wanted = true;
                        if self.recheck.is_none() {
                            self.recheck = Some(Box::pin(tokio::time::sleep(RECHECK)));
                        }
                    }
                    Poll::Ready(None) => {
                        tracing::warn!("the job notification listener ended; polling only");
                        self.notices = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        if let Some(recheck) = self.recheck.as_mut()
            && recheck.as_mut().poll(cx).is_ready()
        {
            self.recheck = None;
            self.wanted = true;
        }
        let period = self.period;
        let interval = self.interval.get_or_insert_with(|| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        while interval.poll_tick(cx).is_ready() {
            self.wanted = true;
        }
    }
}

impl<B: Clone> Clone for FetchGate<B> {
    fn clone(&self) -> Self {
        Self::with_notices(self.inner.clone(), self.make_notices.clone(), self.period)
    }
}

impl<B: Backend> Backend for FetchGate<B> {
    type Task = B::Task;
    type Error = B::Error;

    fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        // Heartbeats and acknowledgements: always.
        self.inner.poll_ready(cx, worker)
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        self.wake.task.register(cx.waker());
        self.collect_reasons(cx);
        let woken = self.wake.woken.swap(false, Ordering::AcqRel);
        if !(self.wanted || self.draining || woken) {
            // Only a running job's progress woke us: nothing new to fetch.
            return Poll::Pending;
        }
        let waker = self.waker.clone();
        let mut backend_cx = Context::from_waker(&waker);
        // Twice when a reason came: if the first poll only ended a fetch that began before the
        // reason, the second begins a fresh one (on a fetch still in flight it does nothing).
        let polls = if std::mem::take(&mut self.wanted) {
            2
        } else {
            1
        };
        for _ in 0..polls {
            if let Poll::Ready(item) = self.inner.poll_next(&mut backend_cx, worker) {
                self.draining = true;
                return Poll::Ready(item);
            }
        }
        self.draining = false;
        Poll::Pending
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_close(cx, worker)
    }
}

apalis_core::delegate_config!(FetchGate<B>, inner);
apalis_core::delegate_codec!(FetchGate<B>, inner);
apalis_core::delegate_sink!(FetchGate<B>, inner);
apalis_core::delegate_deref!(FetchGate<B>, inner);

/// A queue's notifications as a stream of wake-ups (the job ids are not needed: the fetch
/// takes whatever is due, in priority order).
pub fn notices<S, T, E>(stream: S) -> BoxStream<'static, ()>
where
    S: Stream<Item = Result<T, E>> + Send + 'static,
{
    stream.map(|_| ()).boxed()
}

#[cfg(test)]
mod tests;
