//! Job payloads and queue names, shared by the API (which enqueues) and the worker (which runs
//! them). Queue names are explicit constants: apalis's default is the payload's type path,
//! which silently changes when code moves.

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// Provisioning: deploy, configure, start, wait for Running — a customer's order or action,
/// a restart, a retry.
pub const PROVISION_QUEUE: &str = "provision";

/// Provisioning of ops batches: its own queue with its own worker slots, so a batch of 10,000
/// never holds the slots a customer's order waits for.
pub const BULK_PROVISION_QUEUE: &str = "provision-bulk";

/// A new ops batch's orders, [`BULK_CHUNK`] to a job: the chunk's Deploys begin in one
/// transaction and are recorded in one (set-based), its orders then go on side by side in the
/// job. A queue of its own, so a worker of the release before (which does not know the payload)
/// never takes one.
pub const BULK_CHUNK_QUEUE: &str = "provision-bulk-chunk";

/// Orders per [`ProvisionChunk`]. The chunk's orders share the Deploy's intent and settlement
/// (one statement each instead of two transactions of five and seven statements per order) and
/// the job's fetch, acknowledgement and read; a chunk holds its worker slot until its slowest
/// order is running or rescheduled (`worker::provision::CHUNK_WAIT_RUNNING`). 16, not 8: the
/// machine's CPU per order at concurrency 64 fell from 1.4 – 1.6 ms to 1.0 – 1.2 and the wall
/// by 3 – 4 % (`BENCHMARKS.md`, "Stop 31"); its orders share one progress shard of their
/// batch (`db::batches::insert`).
pub const BULK_CHUNK: usize = 16;

/// The chunks a worker runs at once: its bulk lane's upstream calls
/// (`worker.provision_concurrency`) in whole chunks (at least one), half as many again, and
/// one more. The lane's calls stay within `provision_concurrency` (they share one limit,
/// `wiro_client::Client::limited`). A chunk moves in step — it waits for its slowest call,
/// then does its database work — so its calls are out only part of the time; the extra
/// chunks' calls fill the limit meanwhile instead of it standing part empty (`BENCHMARKS.md`,
/// "Stop 27": at 64, 44 → 53 calls out on average).
pub fn chunk_slots(provision_concurrency: usize) -> usize {
    let chunks_of_calls = (provision_concurrency / BULK_CHUNK).max(1);
    chunks_of_calls + chunks_of_calls / 2 + 1
}

/// Every provisioning queue (a job of any of them drives the instances its payload names).
pub const PROVISION_QUEUES: [&str; 3] = [PROVISION_QUEUE, BULK_PROVISION_QUEUE, BULK_CHUNK_QUEUE];

/// Scheduled sweeps (reconciliation, renewals, top-ups).
pub const SWEEP_QUEUE: &str = "sweeps";

/// Which sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepKind {
    /// Observe every instance upstream; adopt, quarantine, flag, restart.
    Reconcile,
    /// Renew what expired or ends soon; cancel for suspended customers.
    Renewals,
    /// Buy packs (or upgrade, or alert) below the credit threshold.
    Topups,
    /// Settle operations whose answer was lost, once their lease is over.
    Settle,
    /// Hand orders stuck in progress (no job, no change) back to a job.
    Stuck,
    /// Delete expired rows (idempotency keys) nobody can ask for any more.
    Purge,
}

impl SweepKind {
    /// Every sweep.
    pub const ALL: [SweepKind; 6] = [
        SweepKind::Reconcile,
        SweepKind::Renewals,
        SweepKind::Topups,
        SweepKind::Settle,
        SweepKind::Stuck,
        SweepKind::Purge,
    ];

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            SweepKind::Reconcile => "reconcile",
            SweepKind::Renewals => "renewals",
            SweepKind::Topups => "topups",
            SweepKind::Settle => "settle",
            SweepKind::Stuck => "stuck",
            SweepKind::Purge => "purge",
        }
    }
}

/// One sweep, for one schedule tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Which.
    pub kind: SweepKind,
    /// The tick (Unix seconds) that asked for it.
    pub tick: i64,
}

/// Enqueues the sweep of `tick` unless any process already did: the idempotency key
/// `<kind>:<tick>` is unique in the queue. True when this call enqueued it.
///
/// # Errors
/// [`Error::Queue`] for failures other than the duplicate.
pub async fn enqueue_sweep(pool: &sqlx::PgPool, kind: SweepKind, tick: i64) -> Result<bool> {
    push_sweep(pool, kind, tick, sweep_key(kind, tick)).await
}

/// Asks for a reconciliation now (a worker's start, an agent Wiro no longer has). Askers in the
/// same second share a sweep while one is still to run; once it has run, the next ask gets a
/// sweep of its own (`<kind>:<tick>:<uuid>`): a sweep that finished before the ask may not have
/// seen what made it (a worker restarted within the second of its previous start, an agent
/// found gone just after). Two asks at the same instant after a finished sweep may each
/// enqueue one (a second reconciliation, harmless). True when this call enqueued one.
///
/// # Errors
/// [`Error::Queue`] and database errors.
pub async fn reconcile_now(pool: &sqlx::PgPool, tick: i64) -> Result<bool> {
    let kind = SweepKind::Reconcile;
    if enqueue_sweep(pool, kind, tick).await? {
        return Ok(true);
    }
    let shared = sweep_key(kind, tick);
    if crate::db::queue::still_to_run(pool, SWEEP_QUEUE, &shared).await? {
        return Ok(false);
    }
    push_sweep(
        pool,
        kind,
        tick,
        format!("{shared}:{}", uuid::Uuid::now_v7()),
    )
    .await
}

fn sweep_key(kind: SweepKind, tick: i64) -> String {
    format!("{}:{tick}", kind.as_str())
}

async fn push_sweep(pool: &sqlx::PgPool, kind: SweepKind, tick: i64, key: String) -> Result<bool> {
    let payload =
        serde_json::to_vec(&Sweep { kind, tick }).map_err(|e| Error::Queue(e.to_string()))?;
    let task = TaskBuilder::new(payload)
        .idempotency_key(key)
        .max_attempts(3)
        .build();
    let mut conn = pool.acquire().await?;
    match apalis_postgres::queries::push_tasks(&mut *conn, SWEEP_QUEUE, vec![task]).await {
        Ok(()) => Ok(true),
        Err(apalis_postgres::Error::Database(sqlx::Error::Database(db)))
            if db.is_unique_violation() =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::Queue(e.to_string())),
    }
}

/// Applying a customer's status (suspend, reactivate, close) to its agents.
pub const CUSTOMER_QUEUE: &str = "customer";

/// Every queue a worker process serves (one apalis worker each).
pub const QUEUES: [&str; 5] = [
    PROVISION_QUEUE,
    BULK_PROVISION_QUEUE,
    BULK_CHUNK_QUEUE,
    SWEEP_QUEUE,
    CUSTOMER_QUEUE,
];

/// Bring a customer's agents in line with its status: suspended or closed → cancel renewal at
/// period end and stop; active → undo the cancel and restore each agent's desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyCustomerStatus {
    /// The customer.
    pub customer_id: crate::ids::CustomerId,
    /// The W3C trace context of the request that caused the job (see [`ProvisionInstance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Enqueues [`ApplyCustomerStatus`] inside the caller's transaction.
///
/// # Errors
/// [`Error::Queue`] when the insert fails.
pub async fn enqueue_customer_status(
    conn: &mut PgConnection,
    customer: crate::ids::CustomerId,
) -> Result<()> {
    let payload = serde_json::to_vec(&ApplyCustomerStatus {
        customer_id: customer,
        traceparent: crate::trace::current_traceparent(),
    })
    .map_err(|e| Error::Queue(e.to_string()))?;
    let task = TaskBuilder::new(payload).max_attempts(MAX_ATTEMPTS).build();
    apalis_postgres::queries::push_tasks(conn, CUSTOMER_QUEUE, vec![task])
        .await
        .map_err(|e| Error::Queue(e.to_string()))
}

/// A storage-level attempt budget; the job itself handles backoff and gives up on its own
/// schedule (see `provisioning.max_step_failures`), so this only bounds crash loops.
const MAX_ATTEMPTS: usize = 25;

/// Drive one instance towards its desired state. Safe to run any number of times, in
/// parallel: every side effect is fenced in the database.
///
/// Payloads change expand-then-contract, so a worker of the previous release and of this one
/// can run side by side: a field is only ever added as optional (an older worker ignores it,
/// this one reads its absence as the old behaviour), and removed only after a release that no
/// longer writes it. `tests/payloads` holds the previous release's payloads; a test runs them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionInstance {
    /// The instance.
    pub instance_id: InstanceId,
    /// The W3C trace context of the request that caused the job (added in 0.2; absent from
    /// older payloads and when tracing is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Drive a chunk of a new ops batch's orders (see [`BULK_CHUNK_QUEUE`]). Safe to run any number
/// of times, in parallel: the chunk's steps are fenced like a single order's, and an order not
/// `pending` when the chunk runs simply goes on from its recorded step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionChunk {
    /// The orders.
    pub instance_ids: Vec<InstanceId>,
    /// The W3C trace context of the request that caused the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Enqueues a new batch's `instances` as [`ProvisionChunk`]s of [`BULK_CHUNK`], inside the
/// caller's transaction.
///
/// # Errors
/// [`Error::Queue`] when the insert fails.
pub async fn enqueue_chunks(conn: &mut PgConnection, instances: &[InstanceId]) -> Result<()> {
    if instances.is_empty() {
        return Ok(());
    }
    let tasks = instances
        .chunks(BULK_CHUNK)
        .map(|chunk| {
            let payload = serde_json::to_vec(&ProvisionChunk {
                instance_ids: chunk.to_vec(),
                traceparent: crate::trace::current_traceparent(),
            })
            .map_err(|e| Error::Queue(e.to_string()))?;
            Ok(TaskBuilder::new(payload).max_attempts(MAX_ATTEMPTS).build())
        })
        .collect::<Result<Vec<_>>>()?;
    apalis_postgres::queries::push_tasks(conn, BULK_CHUNK_QUEUE, tasks)
        .await
        .map_err(|e| Error::Queue(e.to_string()))
}

/// Which lane a provisioning job waits in. Each lane is its own queue with its own worker
/// slots (`worker.interactive_concurrency`, `worker.provision_concurrency`), so a customer's
/// own order, an action on an agent or a restart never waits for a slot behind an ops batch of
/// thousands. A job's follow-ups stay in its lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// One agent at a time: orders, actions, restarts, retries.
    Interactive,
    /// Ops batches.
    Bulk,
}

impl Lane {
    /// The lane's queue.
    pub fn queue(self) -> &'static str {
        match self {
            Lane::Interactive => PROVISION_QUEUE,
            Lane::Bulk => BULK_PROVISION_QUEUE,
        }
    }

    /// Within a queue shared with an older release's jobs, interactive work still goes first.
    fn priority(self) -> usize {
        match self {
            Lane::Interactive => 1,
            Lane::Bulk => 0,
        }
    }
}

/// Enqueues provisioning of `instances` inside the caller's transaction (so a rolled-back
/// order leaves no job, and a committed one always has one), in the interactive lane.
///
/// # Errors
/// [`Error::Queue`] when the insert fails.
pub async fn enqueue_provision(conn: &mut PgConnection, instances: &[InstanceId]) -> Result<()> {
    enqueue_provision_in(conn, instances, Lane::Interactive, Duration::ZERO).await
}

/// Enqueues provisioning of `instances` in `lane`, no earlier than `delay` from now.
///
/// # Errors
/// [`Error::Queue`] when the insert fails.
pub async fn enqueue_provision_in(
    conn: &mut PgConnection,
    instances: &[InstanceId],
    lane: Lane,
    delay: Duration,
) -> Result<()> {
    if instances.is_empty() {
        return Ok(());
    }
    let tasks = instances
        .iter()
        .map(|id| {
            let payload = serde_json::to_vec(&ProvisionInstance {
                instance_id: *id,
                traceparent: crate::trace::current_traceparent(),
            })
            .map_err(|e| Error::Queue(e.to_string()))?;
            Ok(TaskBuilder::new(payload)
                .max_attempts(MAX_ATTEMPTS)
                .priority(lane.priority())
                .run_after(delay)
                .build())
        })
        .collect::<Result<Vec<_>>>()?;
    apalis_postgres::queries::push_tasks(conn, lane.queue(), tasks)
        .await
        .map_err(|e| Error::Queue(e.to_string()))
}
