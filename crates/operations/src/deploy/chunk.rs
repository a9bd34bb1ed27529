//! Deploy for a chunk of a batch's new orders under the same protocol as one order's
//! (`super::deploy`), set-based: one statement commits the chunk's intents before any call, the
//! calls go out side by side (each under its own lease's deadline), and one statement in one
//! transaction records the answered ones with their charges and audit entries. A call
//! that was refused or lost, and an answer that cannot be recorded with the rest (the order
//! failed or got an instance meanwhile), go exactly the single order's way.

use std::collections::HashMap;

use domain::db::deploys::{self, Answered, Intent};
use domain::db::instances::Instance;
use domain::db::operations::Operation;
use domain::db::{alerts, ledger};
use domain::ids::InstanceId;
use domain::model::OperationState;
use tokio::time::Instant;
use wiro_client::models::UserAgent;

use super::{Deployed, answered, paid_until, record, request, snapshot};
use crate::Services;
use crate::protocol::{self, Held};

/// Deploys every one of `orders` (read `pending`) whose intent could still be written; an
/// order missing from the answer had changed since it was read (the caller reads it again).
///
/// # Errors
/// Database errors. A Deploy already sent stays recorded as its intent (judged after its lease
/// by whoever drives the order next).
pub async fn deploy_chunk(
    services: &Services,
    orders: &[Instance],
) -> domain::Result<Vec<(InstanceId, Deployed)>> {
    let actor = services.actor();
    let intents: Vec<Intent> = orders
        .iter()
        .map(|order| Intent {
            instance: order.id,
            version: order.version,
            detail: snapshot(order),
        })
        .collect();
    let asked_at = Instant::now();
    let lease = services.settings.provisioning.deploy_lease;
    let ops = deploys::begin(
        &services.pool,
        &intents,
        &services.worker_name,
        &actor,
        lease,
    )
    .await?;
    let by_id: HashMap<InstanceId, &Instance> = orders.iter().map(|o| (o.id, o)).collect();
    let calls = ops.into_iter().filter_map(|op| {
        let order = *by_id.get(&op.instance_id)?;
        let held = Held::new(op, asked_at);
        Some(async move {
            let answer = held
                .client(services)
                .deploy(&request(order, &held.op))
                .await;
            (held.op, order, answer)
        })
    });
    let answers = futures::future::join_all(calls).await;
    let mut outcomes = Vec::with_capacity(answers.len());
    let mut deployed = Vec::new();
    for (op, order, answer) in answers {
        match answer {
            Ok(agent) => deployed.push((op, order, agent)),
            Err(error) => {
                let outcome = answered(services, &op, order, Err(error)).await?;
                outcomes.push((order.id, outcome));
            }
        }
    }
    outcomes.extend(record_chunk(services, deployed).await?);
    Ok(outcomes)
}

/// Records the chunk's answered Deploys in one transaction; any it cannot (or, should the
/// transaction fail, all of them) are recorded one by one as a single order's are.
async fn record_chunk(
    services: &Services,
    deployed: Vec<(Operation, &Instance, UserAgent)>,
) -> domain::Result<Vec<(InstanceId, Deployed)>> {
    if deployed.is_empty() {
        return Ok(Vec::new());
    }
    let mut recorded = match record_together(services, &deployed).await {
        Ok(recorded) => recorded,
        Err(e) => {
            tracing::warn!(error = %e, orders = deployed.len(), "could not record a chunk's Deploys together; recording them one by one");
            HashMap::new()
        }
    };
    let mut outcomes = Vec::with_capacity(deployed.len());
    for (op, order, agent) in deployed {
        let outcome = match recorded.remove(&order.id) {
            Some(row) => {
                // The same two lines a single order's settlement logs (`protocol::settle_written`,
                // `super::record`), so a search for either finds a batch's orders too.
                tracing::info!(operation = %op.id, kind = %op.kind, state = %OperationState::Succeeded, "operation settled");
                tracing::info!(instance = %order.id, wiro_guid = %agent.guid, state = %OperationState::Succeeded, "deployed");
                Deployed::Done(Some(Box::new(row)))
            }
            None => {
                let row = record(services, &op, order, &agent, OperationState::Succeeded).await?;
                Deployed::Done(row.map(Box::new))
            }
        };
        outcomes.push((order.id, outcome));
    }
    Ok(outcomes)
}

/// The set-based settlement: every operation, instance, charge and audit entry it can record,
/// in one transaction (with the in-doubt alerts of operations that had evidence checks);
/// returns the orders it recorded.
async fn record_together(
    services: &Services,
    deployed: &[(Operation, &Instance, UserAgent)],
) -> domain::Result<HashMap<InstanceId, Instance>> {
    let answered: Vec<Answered<'_>> = deployed
        .iter()
        .map(|(op, order, agent)| Answered {
            op: op.id,
            instance: order.id,
            wiro_guid: &agent.guid,
            wiro_status: agent.status.code() as i16,
            paid_until: paid_until(agent),
            customer: order.customer_id,
            amount_cents: order.price_cents,
            reference: ledger::deploy_reference(order.id, order.generation),
        })
        .collect();
    let mut tx = services.pool.begin().await?;
    let settled = deploys::settle(&mut tx, &answered, &services.actor()).await?;
    let recorded: HashMap<InstanceId, Instance> = settled
        .deployed
        .into_iter()
        .map(|row| (row.id, row))
        .collect();
    for op in &settled.checked {
        alerts::resolve(&mut *tx, "operation_in_doubt", &protocol::subject(*op)).await?;
    }
    tx.commit().await?;
    Ok(recorded)
}
