//! Settling unresolved operations once their lease is over, by the evidence of their kind: the
//! settle sweep runs it over every such operation; a replay of an Idempotency-Key and a new call
//! of the same flight run it on the one in their way. Nothing stays unresolved silently: checks
//! that cannot decide are counted, and alerted (`operation_in_doubt`).

use domain::db::operations::{self, Operation};
use domain::model::OperationKind;

use crate::Services;
use crate::protocol::Judged;
use crate::{billing, deploy, messages};

/// The most operations one sweep settles (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

/// Judges `op` if it is still unresolved and its lease is over (read afresh: the lease is
/// compared on the database's clock).
///
/// # Errors
/// Database errors.
pub async fn settle_one(services: &Services, op: &Operation) -> domain::Result<Judged> {
    let Some(op) = operations::get(&services.pool, op.id).await? else {
        return Ok(Judged::Unresolved);
    };
    if !op.state.is_unresolved() {
        return Ok(Judged::Settled);
    }
    if !op.lease_over {
        return Ok(Judged::Unresolved);
    }
    let judged = match op.kind {
        OperationKind::Deploy => deploy::judge(services, &op).await?,
        OperationKind::MessageSend => messages::judge(services, &op).await?,
        _ => billing::evidence::judge(services, &op).await?,
    };
    if op.kind == OperationKind::Deploy && judged == Judged::Settled {
        // Adopted: provisioning carries on; not found: it deploys again.
        let mut conn = services.pool.acquire().await?;
        domain::jobs::enqueue_provision(&mut conn, &[op.instance_id]).await?;
    }
    Ok(judged)
}

/// What a settle sweep did.
#[derive(Debug, Default)]
pub struct SettleReport {
    /// Unresolved operations past their lease.
    pub due: usize,
    /// Settled by this sweep.
    pub settled: usize,
    /// Judged but still undecided (counted; alerted after `operations.alert_after_checks`).
    pub undecided: usize,
}

/// Settles every unresolved operation whose lease is over.
///
/// # Errors
/// Database errors.
pub async fn sweep(services: &Services) -> domain::Result<SettleReport> {
    let due = operations::due_for_settling(&services.pool, SWEEP_BATCH).await?;
    let mut report = SettleReport {
        due: due.len(),
        ..SettleReport::default()
    };
    for op in &due {
        match settle_one(services, op).await {
            Ok(Judged::Settled) => report.settled += 1,
            Ok(Judged::Unresolved) => report.undecided += 1,
            Err(e) => {
                report.undecided += 1;
                tracing::warn!(operation = %op.id, error = %e, "settling failed; the next sweep retries");
            }
        }
    }
    Ok(report)
}
