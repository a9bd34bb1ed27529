//! The Deploy protocol's statements for a chunk of a batch's orders, set-based: the chunk's
//! intents in one statement each (lock, state, operations), its successes recorded the same
//! way. Each statement keeps the single order's fences (`instances::update`, `operations::begin`,
//! `operations::settle`, `instances::set_deployed`): a row that no longer qualifies is left out
//! and its caller goes the single order's way.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, Row};

use crate::db::instances::{self, Instance};
use crate::db::operations::{self, Operation};
use crate::error::{Error, Result};
use crate::ids::{CustomerId, InstanceId, OperationId};

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

/// Commits the chunk's intents in one statement (one round trip, one commit): locks the
/// chunk's orders in id order (as every multi-row lock here), moves each one still `pending` at
/// its version, not deleted and not deployed to `deploying`, and writes its Deploy intent with
/// `lease`. Returns the intents written; an order left out has changed since it was read (the
/// caller reads it again).
///
/// # Errors
/// Database errors.
pub async fn begin(
    conn: impl PgExecutor<'_>,
    intents: &[Intent],
    worker: &str,
    actor: &str,
    lease: Duration,
) -> Result<Vec<Operation>> {
    let ids: Vec<InstanceId> = intents.iter().map(|i| i.instance).collect();
    let versions: Vec<i64> = intents.iter().map(|i| i.version).collect();
    let ops: Vec<OperationId> = intents.iter().map(|_| OperationId::new()).collect();
    let details: Vec<&serde_json::Value> = intents.iter().map(|i| &i.detail).collect();
    // Rows are locked by primary key alone and judged after the lock: with `state` or
    // `wiro_guid` in the locking scan, a planner without fresh statistics (a batch just
    // inserted) walks every pending order's index entry instead. `ready` moves the orders
    // (`instances::update` with `Change::to(Deploying)`); the intents are written for them.
    let sql = format!(
        "WITH locked AS MATERIALIZED (
             SELECT id, version, state, deleted_at, wiro_guid, generation FROM instances
             WHERE id = ANY($1) ORDER BY id FOR UPDATE
         ), ready AS MATERIALIZED (
             SELECT l.id AS order_id, l.generation, w.op_id, w.facts
             FROM locked l
             JOIN unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::jsonb[])
                  AS w(order_id, order_version, op_id, facts) ON w.order_id = l.id
             WHERE l.version = w.order_version AND l.state = 'pending'
               AND l.deleted_at IS NULL AND l.wiro_guid IS NULL
         ), moved AS (
             UPDATE instances SET state = 'deploying', state_changed_at = now(), requeues = 0,
                                  version = version + 1, updated_at = now()
             FROM ready WHERE instances.id = ANY($1) AND instances.id = ready.order_id
         )
         INSERT INTO operations (id, instance_id, kind, state, worker, lease_until, detail, actor, request_id, generation)
         SELECT op_id, order_id, 'deploy', 'calling', $5, now() + $6 * interval '1 millisecond',
                facts, $7, NULL, generation
         FROM ready
         ON CONFLICT (instance_id, flight) WHERE state IN ('calling', 'unknown') AND flight IS NOT NULL
         DO NOTHING
         RETURNING {}",
        operations::COLUMNS
    );
    Ok(sqlx::query_as::<_, Operation>(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&versions)
        .bind(&ops)
        .bind(&details)
        .bind(worker)
        .bind(lease.as_millis() as f64)
        .bind(actor)
        .fetch_all(conn)
        .await?)
}

/// A Deploy of the chunk that Wiro answered, with the charge it makes.
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
    /// The order's customer.
    pub customer: CustomerId,
    /// The order's price, as its intent read it.
    pub amount_cents: i64,
    /// The charge's reference (`ledger::deploy_reference`).
    pub reference: String,
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

/// In the caller's transaction, in one statement: settles every answered Deploy whose order is
/// still without an instance and not `failed`, and whose operation is still unresolved, as
/// `succeeded` (`operations::settle`), records the order's instance (`instances::set_deployed`),
/// its charge (`ledger::record`) and the audit entry. Left out (the caller records them one by
/// one, which contains a duplicate or applies the failed-order policy): every other.
///
/// # Errors
/// Database errors; [`Error::Conflict`] when a settled operation's order was not recorded
/// (the caller rolls back and records them one by one).
pub async fn settle(
    conn: &mut PgConnection,
    answered: &[Answered<'_>],
    default_actor: &str,
) -> Result<Settled> {
    let ops: Vec<OperationId> = answered.iter().map(|a| a.op).collect();
    let ids: Vec<InstanceId> = answered.iter().map(|a| a.instance).collect();
    let guids: Vec<&str> = answered.iter().map(|a| a.wiro_guid).collect();
    let statuses: Vec<i16> = answered.iter().map(|a| a.wiro_status).collect();
    let paid: Vec<Option<DateTime<Utc>>> = answered.iter().map(|a| a.paid_until).collect();
    let customers: Vec<CustomerId> = answered.iter().map(|a| a.customer).collect();
    let amounts: Vec<i64> = answered.iter().map(|a| a.amount_cents).collect();
    let references: Vec<&str> = answered.iter().map(|a| a.reference.as_str()).collect();
    // Instance rows first (by primary key alone, judged after the lock: see `begin`), then
    // the operations: the order every intent and settlement takes. `deployed` needs no
    // `wiro_guid IS NULL`: `open` checked it under the lock.
    let sql = format!(
        "WITH answered AS MATERIALIZED (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::smallint[],
                                  $5::timestamptz[], $6::uuid[], $7::bigint[], $8::text[])
                 AS a(op_id, order_id, guid, status, paid_until, customer, amount, reference)
         ), locked AS MATERIALIZED (
             SELECT id AS order_id, wiro_guid IS NULL AND state <> 'failed' AS open FROM instances
             WHERE id = ANY($2) ORDER BY id FOR UPDATE
         ), settled AS (
             UPDATE operations o
             SET state = 'succeeded', wiro_guid = a.guid, result = jsonb_build_object('wiro_guid', a.guid),
                 error = NULL, finished_at = now()
             FROM answered a JOIN locked l ON l.order_id = a.order_id AND l.open
             WHERE o.id = ANY($1) AND o.id = a.op_id AND o.state IN ('calling', 'unknown')
             RETURNING o.id AS settled_op, o.checks, o.actor AS op_actor, o.request_id AS op_request
         ), deployed AS (
             UPDATE instances
             SET wiro_guid = a.guid, wiro_status = a.status, state = 'configuring',
                 state_changed_at = now(), step_failures = 0, version = version + 1, updated_at = now(),
                 last_error = NULL, failed_step = NULL,
                 subscription_period_end = COALESCE(subscription_period_end, a.paid_until),
                 subscription_status = COALESCE(subscription_status, CASE WHEN a.paid_until IS NULL THEN NULL ELSE 'active' END)
             FROM settled s JOIN answered a ON a.op_id = s.settled_op
             WHERE instances.id = ANY($2) AND instances.id = a.order_id
             RETURNING {}
         ), charged AS (
             INSERT INTO ledger_entries
                 (customer_id, instance_id, kind, amount_cents, reference, wiro_guid, operation_id, estimated)
             SELECT a.customer, a.order_id, 'deploy', a.amount, a.reference, a.guid, a.op_id, false
             FROM settled s JOIN answered a ON a.op_id = s.settled_op
             ON CONFLICT (reference) DO NOTHING
         ), audited AS (
             INSERT INTO audit_log (actor, action, target, request_id, outcome, detail)
             SELECT COALESCE(s.op_actor, $9), 'deploy', 'instance:' || a.order_id, s.op_request, 'succeeded',
                    jsonb_build_object('operation', a.op_id, 'result', jsonb_build_object('wiro_guid', a.guid),
                                       'error', NULL)
             FROM settled s JOIN answered a ON a.op_id = s.settled_op
         )
         SELECT d.*, s.settled_op, s.checks
         FROM settled s JOIN answered a ON a.op_id = s.settled_op
         LEFT JOIN deployed d ON d.id = a.order_id",
        instances::qualified(instances::COLUMNS)
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&ops)
        .bind(&ids)
        .bind(&guids)
        .bind(&statuses)
        .bind(&paid)
        .bind(&customers)
        .bind(&amounts)
        .bind(&references)
        .bind(default_actor)
        .fetch_all(&mut *conn)
        .await?;
    let mut settled = Settled::default();
    for row in rows {
        if row.try_get::<Option<InstanceId>, _>("id")?.is_none() {
            return Err(Error::Conflict(format!(
                "a Deploy was settled but its order was not recorded (operation {})",
                row.try_get::<OperationId, _>("settled_op")?
            )));
        }
        if row.try_get::<i32, _>("checks")? > 0 {
            settled.checked.push(row.try_get("settled_op")?);
        }
        settled.deployed.push(Instance::from_row(&row)?);
    }
    Ok(settled)
}
