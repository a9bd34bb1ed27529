//! Job payloads and queue names, shared by the API (which enqueues) and the worker (which runs
//! them). Queue names are explicit constants: apalis's default is the payload's type path,
//! which silently changes when code moves.

use std::time::Duration;

use apalis_core::task::builder::TaskBuilder;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::ids::InstanceId;

/// Provisioning: deploy, configure, start, wait for Running.
pub const PROVISION_QUEUE: &str = "provision";

/// A storage-level attempt budget; the job itself handles backoff and gives up on its own
/// schedule (see `provisioning.max_step_failures`), so this only bounds crash loops.
const MAX_ATTEMPTS: usize = 25;

/// Drive one instance towards its desired state. Safe to run any number of times, in
/// parallel: every side effect is fenced in the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionInstance {
    /// The instance.
    pub instance_id: InstanceId,
}

/// Enqueues provisioning of `instances` inside the caller's transaction (so a rolled-back
/// order leaves no job, and a committed one always has one).
///
/// # Errors
/// [`Error::Queue`] when the insert fails.
pub async fn enqueue_provision(conn: &mut PgConnection, instances: &[InstanceId]) -> Result<()> {
    enqueue_provision_after(conn, instances, Duration::ZERO).await
}

/// Like [`enqueue_provision`], running no earlier than `delay` from now.
///
/// # Errors
/// [`Error::Queue`] when the insert fails.
pub async fn enqueue_provision_after(
    conn: &mut PgConnection,
    instances: &[InstanceId],
    delay: Duration,
) -> Result<()> {
    if instances.is_empty() {
        return Ok(());
    }
    let tasks = instances
        .iter()
        .map(|id| {
            let payload = serde_json::to_vec(&ProvisionInstance { instance_id: *id })
                .map_err(|e| Error::Queue(e.to_string()))?;
            Ok(TaskBuilder::new(payload)
                .max_attempts(MAX_ATTEMPTS)
                .run_after(delay)
                .build())
        })
        .collect::<Result<Vec<_>>>()?;
    apalis_postgres::queries::push_tasks(conn, PROVISION_QUEUE, tasks)
        .await
        .map_err(|e| Error::Queue(e.to_string()))
}
