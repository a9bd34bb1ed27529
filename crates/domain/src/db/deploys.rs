//! The Deploy protocol's statements for a chunk of a batch's orders, set-based: the chunk's
//! intents in one statement each (lock, state, operations), its successes recorded the same
//! way. Each statement keeps the single order's fences (`instances::update`, `operations::begin`,
//! `operations::settle`, `instances::set_deployed`): a row that no longer qualifies is left out
//! and its caller goes the single order's way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::db::instances::{self, Instance};
use crate::db::operations::{self, Operation};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, OperationId};
use crate::model::InstanceState;

/// An order of the chunk whose Deploy is about to begin, with the version its facts (`detail`)
/// were read at.
#[derive(Clone, Debug)]
pub struct Intent {
    /// The order.
    pub instance: InstanceId,
    /// The version `detail` was read at: a changed order is left out.
    pub version: i64,
    /// The facts a lost answer will be judged against.
    pub detail: serde_json::Value,
}

/// In the caller's transaction: locks the chunk's orders (in id order, as every multi-row lock
/// here), moves each one still `pending` at its version, not deleted and not deployed to
/// `deploying`, and writes its Deploy intent with `lease`. Returns the intents written; an
/// order left out has changed since it was read (the caller reads it again).
///
/// # Errors
/// Database errors.
pub async fn begin(
    conn: &mut PgConnection,
    intents: &[Intent],
    worker: &str,
    actor: &str,
    lease: Duration,
) -> Result<Vec<Operation>> {
    let ids: Vec<InstanceId> = intents.iter().map(|i| i.instance).collect();
    // Locked by primary key alone and judged here: with `state` or `wiro_guid` in the
    // statement, a planner without fresh statistics (a batch just inserted) walks every
    // pending order's index entry instead.
    let locked: Vec<(InstanceId, i64, String, bool)> = sqlx::query_as(
        "SELECT id, version, state, deleted_at IS NULL AND wiro_guid IS NULL FROM instances
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let ready: Vec<InstanceId> = locked
        .into_iter()
        .filter(|(id, version, state, fresh)| {
            *fresh
                && state == InstanceState::Pending.as_str()
                && intents
                    .iter()
                    .any(|i| i.instance == *id && i.version == *version)
        })
        .map(|(id, ..)| id)
        .collect();
    if ready.is_empty() {
        return Ok(Vec::new());
    }
    // `instances::update` with `Change::to(Deploying)`, for every ready order.
    sqlx::query(
        "UPDATE instances SET state = 'deploying', state_changed_at = now(), requeues = 0,
                version = version + 1, updated_at = now()
         WHERE id = ANY($1)",
    )
    .bind(&ready)
    .execute(&mut *conn)
    .await?;
    let (mut ops, mut orders, mut details) = (Vec::new(), Vec::new(), Vec::new());
    for intent in intents.iter().filter(|i| ready.contains(&i.instance)) {
        ops.push(OperationId::new());
        orders.push(intent.instance);
        details.push(intent.detail.clone());
    }
    let sql = format!(
        "INSERT INTO operations (id, instance_id, kind, state, worker, lease_until, detail, actor, request_id, generation)
         SELECT o.op_id, o.order_id, 'deploy', 'calling', $4, now() + $5 * interval '1 millisecond',
                o.facts, $6, NULL, i.generation
         FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[]) o(op_id, order_id, facts)
         JOIN instances i ON i.id = o.order_id
         WHERE i.id = ANY($2)
         ON CONFLICT (instance_id, flight) WHERE state IN ('calling', 'unknown') AND flight IS NOT NULL
         DO NOTHING
         RETURNING {}",
        operations::COLUMNS
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(&ops)
        .bind(&orders)
        .bind(&details)
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .bind(actor)
        .fetch_all(&mut *conn)
        .await?)
}

/// A Deploy of the chunk that Wiro answered.
#[derive(Clone, Debug)]
pub struct Answered<'a> {
    /// Its operation.
    pub op: OperationId,
    /// The order.
    pub instance: InstanceId,
    /// The instance Wiro made.
    pub wiro_guid: &'a str,
    /// Its status.
    pub wiro_status: i16,
    /// The end of the period the Deploy paid for.
    pub paid_until: Option<DateTime<Utc>>,
}

/// What [`settle`] recorded: the orders as their settlements left them, and the operations
/// that went through evidence checks (their in-doubt alerts are the caller's to resolve).
#[derive(Debug, Default)]
pub struct Settled {
    /// Recorded orders, `configuring` with their guid.
    pub deployed: Vec<Instance>,
    /// Operations settled after at least one evidence check.
    pub checked: Vec<OperationId>,
}

/// In the caller's transaction: settles every answered Deploy whose order is still without an
/// instance and not `failed`, and whose operation is still unresolved, as `succeeded`, and
/// records the order's instance. Left out (the caller records them one by one, which contains
/// a duplicate or applies the failed-order policy): every other.
///
/// # Errors
/// Database errors; [`Error::Conflict`] when a settled operation's order was not recorded
/// (the caller rolls back and records them one by one).
pub async fn settle(conn: &mut PgConnection, answered: &[Answered<'_>]) -> Result<Settled> {
    let ids: Vec<InstanceId> = answered.iter().map(|a| a.instance).collect();
    // Instance rows first, then the operations: the order every intent and settlement takes.
    // By primary key alone, judged here (see `begin`).
    let locked: Vec<(InstanceId, bool)> = sqlx::query_as(
        "SELECT id, wiro_guid IS NULL AND state <> 'failed' FROM instances
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let open: Vec<InstanceId> = locked
        .into_iter()
        .filter_map(|(id, open)| open.then_some(id))
        .collect();
    let open: Vec<&Answered<'_>> = answered
        .iter()
        .filter(|a| open.contains(&a.instance))
        .collect();
    if open.is_empty() {
        return Ok(Settled::default());
    }
    let ops: Vec<OperationId> = open.iter().map(|a| a.op).collect();
    let guids: Vec<&str> = open.iter().map(|a| a.wiro_guid).collect();
    // `operations::settle`, for every open order's operation still unresolved.
    let settled: Vec<(OperationId, InstanceId, i32)> = sqlx::query_as(
        "UPDATE operations o
         SET state = 'succeeded', wiro_guid = a.guid, result = jsonb_build_object('wiro_guid', a.guid),
             error = NULL, finished_at = now()
         FROM unnest($1::uuid[], $2::text[]) a(op_id, guid)
         WHERE o.id = ANY($1) AND o.id = a.op_id AND o.state IN ('calling', 'unknown')
         RETURNING o.id, o.instance_id, o.checks",
    )
    .bind(&ops)
    .bind(&guids)
    .fetch_all(&mut *conn)
    .await?;
    let recorded: Vec<&&Answered<'_>> = open
        .iter()
        .filter(|a| settled.iter().any(|(op, _, _)| *op == a.op))
        .collect();
    let ids: Vec<InstanceId> = recorded.iter().map(|a| a.instance).collect();
    let guids: Vec<&str> = recorded.iter().map(|a| a.wiro_guid).collect();
    let statuses: Vec<i16> = recorded.iter().map(|a| a.wiro_status).collect();
    let paid: Vec<Option<DateTime<Utc>>> = recorded.iter().map(|a| a.paid_until).collect();
    // `instances::set_deployed` for an order without an instance that is not failed, as
    // checked under the lock above (so no `wiro_guid IS NULL` here: see `begin`).
    let sql = format!(
        "UPDATE instances
         SET wiro_guid = d.guid, wiro_status = d.status, state = 'configuring',
             state_changed_at = now(), step_failures = 0, version = version + 1, updated_at = now(),
             last_error = NULL, failed_step = NULL,
             subscription_period_end = COALESCE(subscription_period_end, d.paid_until),
             subscription_status = COALESCE(subscription_status, CASE WHEN d.paid_until IS NULL THEN NULL ELSE 'active' END)
         FROM unnest($1::uuid[], $2::text[], $3::smallint[], $4::timestamptz[]) d(order_id, guid, status, paid_until)
         WHERE instances.id = ANY($1) AND instances.id = d.order_id
         RETURNING {}",
        qualified(instances::COLUMNS)
    );
    let deployed = sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&guids)
        .bind(&statuses)
        .bind(&paid)
        .fetch_all(&mut *conn)
        .await?;
    if deployed.len() != settled.len() {
        return Err(Error::Conflict(format!(
            "{} Deploys settled but {} orders recorded",
            settled.len(),
            deployed.len()
        )));
    }
    let checked = settled
        .into_iter()
        .filter(|(_, _, checks)| *checks > 0)
        .map(|(op, _, _)| op)
        .collect();
    Ok(Settled { deployed, checked })
}

/// `columns` (a comma-separated list) qualified with `instances.`, for a statement whose other
/// relation has columns of the same names.
fn qualified(columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("instances.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
