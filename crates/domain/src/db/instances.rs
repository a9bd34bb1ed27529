//! Instances: one per order, mapping a customer to a Wiro instance guid, with our provisioning
//! state. Every state change is a fenced update on `version`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, Postgres, QueryBuilder};

use crate::error::{Error, Result};
use crate::ids::{BatchId, CustomerId, InstanceId, OperationId};
use crate::model::{CancelSource, DesiredState, InstanceState, Plan};

/// An instance row.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Instance {
    /// Our id.
    pub id: InstanceId,
    /// Owner.
    pub customer_id: CustomerId,
    /// Template guid.
    pub template_guid: String,
    /// Template slug.
    pub template_slug: String,
    /// Plan ordered.
    #[sqlx(try_from = "String")]
    pub plan: Plan,
    /// The customer's title (without our correlator).
    pub title: String,
    /// Plan price when ordered, in cents.
    pub price_cents: i64,
    /// Wiro's instance guid once deployed.
    pub wiro_guid: Option<String>,
    /// Our state.
    #[sqlx(try_from = "String")]
    pub state: InstanceState,
    /// What it should be.
    #[sqlx(try_from = "String")]
    pub desired_state: DesiredState,
    /// Last observed Wiro status 0–6.
    pub wiro_status: Option<i16>,
    /// Wiro says credentials are missing.
    pub setup_required: bool,
    /// Which credential fields are missing (`group.field`).
    pub missing_credentials: Vec<String>,
    /// Which required OAuth connections are missing (credential groups).
    pub missing_connections: Vec<String>,
    /// Until then the provisioning job polls Wiro for the connection a Connect started.
    pub connection_poll_until: Option<DateTime<Utc>>,
    /// When the customer deleted it (hidden from the customer, stopped, not renewed).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Sealed credentials still to send.
    #[serde(skip)]
    pub pending_config: Option<Vec<u8>>,
    /// `agent-starter` / `agent-pro` as Wiro reports it.
    pub subscription_plan: Option<String>,
    /// `active` / `expired`.
    pub subscription_status: Option<String>,
    /// End of the paid period.
    pub subscription_period_end: Option<DateTime<Utc>>,
    /// A cancellation we made is pending (or took effect): Wiro shows this nowhere, so it is
    /// our own record, set by our Cancel and cleared by our undo or explicit renewal.
    pub cancel_at_period_end: bool,
    /// Who asked for the cancellation.
    #[sqlx(try_from = "Option<String>")]
    pub cancel_source: OptionalCancelSource,
    /// When the cancelled subscription ends (Wiro's `cancelsAt`).
    pub cancels_at: Option<DateTime<Utc>>,
    /// What the subscription costs per period, in cents, as last observed.
    pub subscription_amount_cents: Option<i64>,
    /// Monthly credits left.
    pub monthly_credits: Option<i64>,
    /// Extra credits left.
    pub extra_credits: Option<i64>,
    /// Last error shown to ops.
    pub last_error: Option<String>,
    /// The step that failed.
    pub failed_step: Option<String>,
    /// Consecutive transient failures.
    pub step_failures: i32,
    /// Restarts after Wiro reported Error, since it last ran.
    pub error_restarts: i32,
    /// When the last of those restarts was made.
    pub last_error_restart_at: Option<DateTime<Utc>>,
    /// True while credits are above the top-up threshold.
    pub topup_armed: bool,
    /// Times the stuck sweep handed it back to a job.
    pub requeues: i32,
    /// A downgrade scheduled at the period end (its cancel is recorded with it): the plan the
    /// agent comes back on, on a new Wiro instance.
    #[sqlx(try_from = "Option<String>")]
    pub downgrade_to: OptionalPlan,
    /// Which Wiro instance of the agent this is (0: the first; each downgrade adds one).
    pub generation: i32,
    /// When `state` last changed.
    pub state_changed_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

/// A nullable [`CancelSource`] column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OptionalCancelSource(pub Option<CancelSource>);

impl TryFrom<Option<String>> for OptionalCancelSource {
    type Error = String;
    fn try_from(value: Option<String>) -> std::result::Result<Self, String> {
        value
            .map(|s| s.parse())
            .transpose()
            .map(OptionalCancelSource)
    }
}

/// A nullable [`Plan`] column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OptionalPlan(pub Option<Plan>);

impl TryFrom<Option<String>> for OptionalPlan {
    type Error = String;
    fn try_from(value: Option<String>) -> std::result::Result<Self, String> {
        value.map(|s| s.parse()).transpose().map(OptionalPlan)
    }
}

impl Instance {
    /// Who asked for the pending cancellation, if one is recorded.
    pub fn cancelled_by(&self) -> Option<CancelSource> {
        self.cancel_at_period_end
            .then_some(self.cancel_source.0)
            .flatten()
    }
}

/// The upstream description of a Deploy: names the order and, as `[wr:<operation id>]`, the
/// Deploy operation (the correlator). Customers cannot edit descriptions through us, and
/// chatting with the agent never shows it (the title does, so the title stays theirs).
pub fn upstream_description(instance: InstanceId, operation: OperationId) -> String {
    format!("wiro-reseller order {instance} [wr:{operation}]")
}

/// Reads the order and the Deploy operation back from an upstream description.
pub fn parse_description(description: &str) -> Option<(InstanceId, OperationId)> {
    let rest = &description[description.find("wiro-reseller order ")? + 20..];
    let (instance, rest) = rest.split_once(' ')?;
    let start = rest.find("[wr:")? + 4;
    let end = start + rest[start..].find(']')?;
    Some((instance.parse().ok()?, rest[start..end].parse().ok()?))
}

pub(crate) const COLUMNS: &str = "id, customer_id, template_guid, template_slug, plan, title, price_cents, \
    wiro_guid, state, desired_state, wiro_status, setup_required, missing_credentials, \
    missing_connections, connection_poll_until, deleted_at, pending_config, subscription_plan, subscription_status, subscription_period_end, \
    cancel_at_period_end, cancel_source, cancels_at, subscription_amount_cents, monthly_credits, \
    extra_credits, last_error, failed_step, step_failures, error_restarts, last_error_restart_at, \
    topup_armed, requeues, downgrade_to, generation, state_changed_at, created_at, updated_at, version";

/// What an order creates.
#[derive(Clone, Debug)]
pub struct NewInstance {
    /// The id (chosen by the caller so sealed config can be bound to it).
    pub id: InstanceId,
    /// Owner.
    pub customer_id: CustomerId,
    /// Template guid.
    pub template_guid: String,
    /// Template slug.
    pub template_slug: String,
    /// Plan.
    pub plan: Plan,
    /// Title.
    pub title: String,
    /// Price of the plan in cents.
    pub price_cents: i64,
    /// Sealed credentials/custom skills, if the order had any.
    pub pending_config: Option<Vec<u8>>,
}

/// Inserts many instances in one statement, all `pending` and desired `running`.
///
/// # Errors
/// Database errors.
pub async fn insert_many(conn: impl PgExecutor<'_>, rows: &[NewInstance]) -> Result<()> {
    let query = sqlx::query(
        "INSERT INTO instances (id, customer_id, template_guid, template_slug, plan, title,
                                price_cents, pending_config, state)
         SELECT *, 'pending' FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                         $6::text[], $7::bigint[], $8::bytea[])",
    );
    bind_rows(query, rows).execute(conn).await?;
    Ok(())
}

/// Inserts a batch's instances as [`insert_many`] does, each marked with the batch and its
/// position among `rows`, and counts them into the batch's progress shards (an order's shard is
/// its position divided by `shard_span`, modulo 64) in the same statement, from the rows it
/// inserted.
///
/// # Errors
/// Database errors.
pub async fn insert_batch(
    conn: impl PgExecutor<'_>,
    batch: BatchId,
    shard_span: i16,
    rows: &[NewInstance],
) -> Result<()> {
    let query = sqlx::query(
        "WITH inserted AS (
             INSERT INTO instances (id, customer_id, template_guid, template_slug, plan, title,
                                    price_cents, pending_config, state, batch_id, batch_position)
             SELECT id, customer_id, guid, slug, plan, title, price, config, 'pending', $9,
                    (n - 1)::int
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bigint[], $8::bytea[])
                  WITH ORDINALITY AS r(id, customer_id, guid, slug, plan, title, price, config, n)
             RETURNING batch_position)
         INSERT INTO provisioning_batch_shards AS s (batch_id, shard, unsettled)
         SELECT $9, (batch_position / $10 % 64)::smallint, count(*)::int FROM inserted GROUP BY 2
         ON CONFLICT (batch_id, shard) DO UPDATE SET unsettled = s.unsettled + excluded.unsettled",
    );
    bind_rows(query, rows)
        .bind(batch)
        .bind(shard_span)
        .execute(conn)
        .await?;
    Ok(())
}

/// Binds `rows` column by column as `$1` – `$8` (id, customer, template guid and slug, plan,
/// title, price, sealed config).
fn bind_rows<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    rows: &'q [NewInstance],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let ids: Vec<InstanceId> = rows.iter().map(|r| r.id).collect();
    let customers: Vec<CustomerId> = rows.iter().map(|r| r.customer_id).collect();
    let guids: Vec<&str> = rows.iter().map(|r| r.template_guid.as_str()).collect();
    let slugs: Vec<&str> = rows.iter().map(|r| r.template_slug.as_str()).collect();
    let plans: Vec<&str> = rows.iter().map(|r| r.plan.as_str()).collect();
    let titles: Vec<&str> = rows.iter().map(|r| r.title.as_str()).collect();
    let prices: Vec<i64> = rows.iter().map(|r| r.price_cents).collect();
    let configs: Vec<Option<&[u8]>> = rows.iter().map(|r| r.pending_config.as_deref()).collect();
    query
        .bind(ids)
        .bind(customers)
        .bind(guids)
        .bind(slugs)
        .bind(plans)
        .bind(titles)
        .bind(prices)
        .bind(configs)
}

/// By id, whoever owns it (workers and ops).
///
/// # Errors
/// Database errors.
pub async fn get(conn: impl PgExecutor<'_>, id: InstanceId) -> Result<Option<Instance>> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE id = $1");
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// Those of `ids` that exist, whoever owns them (a worker's chunk of a batch).
///
/// # Errors
/// Database errors.
pub async fn get_many(conn: impl PgExecutor<'_>, ids: &[InstanceId]) -> Result<Vec<Instance>> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE id = ANY($1)");
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .fetch_all(conn)
        .await?)
}

/// By id, only if `customer` owns it.
///
/// # Errors
/// Database errors.
pub async fn get_for_customer(
    conn: impl PgExecutor<'_>,
    customer: CustomerId,
    id: InstanceId,
) -> Result<Option<Instance>> {
    // A deleted agent no longer exists for its customer.
    let sql = format!(
        "SELECT {COLUMNS} FROM instances WHERE id = $1 AND customer_id = $2 AND deleted_at IS NULL"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(customer)
        .fetch_optional(conn)
        .await?)
}

/// Filters for listing instances.
#[derive(Clone, Debug, Default)]
pub struct InstanceFilter {
    /// Only this customer's.
    pub customer: Option<CustomerId>,
    /// Only this state.
    pub state: Option<InstanceState>,
    /// Only this observed Wiro status.
    pub wiro_status: Option<i16>,
    /// Leave out agents their customer deleted (what the customer sees).
    pub hide_deleted: bool,
}

/// A page ordered by id after `after`.
///
/// # Errors
/// Database errors.
pub async fn list(
    conn: impl PgExecutor<'_>,
    filter: &InstanceFilter,
    after: Option<InstanceId>,
    limit: i64,
) -> Result<Vec<Instance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM instances
         WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::text IS NULL OR state = $2)
           AND ($3::smallint IS NULL OR wiro_status = $3) AND ($4::uuid IS NULL OR id > $4)
           AND (NOT $6 OR deleted_at IS NULL)
         ORDER BY id LIMIT $5"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(filter.customer)
        .bind(filter.state.map(InstanceState::as_str))
        .bind(filter.wiro_status)
        .bind(after)
        .bind(limit)
        .bind(filter.hide_deleted)
        .fetch_all(conn)
        .await?)
}

/// Counts by state (for progress and metrics).
///
/// # Errors
/// Database errors.
pub async fn count_by_state(conn: impl PgExecutor<'_>) -> Result<Vec<(String, i64)>> {
    Ok(
        sqlx::query_as("SELECT state, count(*) FROM instances GROUP BY state ORDER BY state")
            .fetch_all(conn)
            .await?,
    )
}

/// A partial update; `None` leaves a column alone. `Some(None)` clears a nullable column.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Change {
    /// New state.
    pub state: Option<InstanceState>,
    /// New desired state.
    pub desired_state: Option<DesiredState>,
    /// Wiro guid.
    pub wiro_guid: Option<String>,
    /// Observed status.
    pub wiro_status: Option<Option<i16>>,
    /// Setup required.
    pub setup_required: Option<bool>,
    /// Missing fields.
    pub missing_credentials: Option<Vec<String>>,
    /// Missing connections.
    pub missing_connections: Option<Vec<String>>,
    /// Poll for a connection until then.
    pub connection_poll_until: Option<Option<DateTime<Utc>>>,
    /// Deleted by the customer.
    pub deleted_at: Option<Option<DateTime<Utc>>>,
    /// Sealed pending config.
    pub pending_config: Option<Option<Vec<u8>>>,
    /// Title.
    pub title: Option<String>,
    /// Plan.
    pub plan: Option<Plan>,
    /// Subscription plan.
    pub subscription_plan: Option<Option<String>>,
    /// Subscription status.
    pub subscription_status: Option<Option<String>>,
    /// Period end.
    pub subscription_period_end: Option<Option<DateTime<Utc>>>,
    /// Our cancellation record (set by our Cancel, cleared by our undo or renewal).
    pub cancel_at_period_end: Option<bool>,
    /// Who cancelled.
    pub cancel_source: Option<Option<CancelSource>>,
    /// When the cancelled subscription ends.
    pub cancels_at: Option<Option<DateTime<Utc>>>,
    /// A scheduled downgrade (always with a recorded cancel).
    pub downgrade_to: Option<Option<Plan>>,
    /// Subscription price.
    pub subscription_amount_cents: Option<Option<i64>>,
    /// Monthly credits.
    pub monthly_credits: Option<Option<i64>>,
    /// Extra credits.
    pub extra_credits: Option<Option<i64>>,
    /// Error text.
    pub last_error: Option<Option<String>>,
    /// Failed step.
    pub failed_step: Option<Option<String>>,
    /// Failure counter.
    pub step_failures: Option<i32>,
    /// Error-restart counter.
    pub error_restarts: Option<i32>,
    /// Last error restart.
    pub last_error_restart_at: Option<Option<DateTime<Utc>>>,
    /// Top-up armed.
    pub topup_armed: Option<bool>,
    /// Stuck-sweep requeue counter.
    pub requeues: Option<i32>,
}

impl Change {
    /// True when it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The part of the change that `row` does not already hold: a sweep that finds what it
    /// observed already stored writes nothing (at 100k agents, a write per agent per sweep is
    /// the difference between a quiet table and a busy one).
    pub fn without_effect_on(self, row: &Instance) -> Self {
        // No `..` in the pattern: a field added to `Change` fails to compile until it is
        // compared here.
        let Self {
            state,
            desired_state,
            wiro_guid,
            wiro_status,
            setup_required,
            missing_credentials,
            missing_connections,
            connection_poll_until,
            deleted_at,
            pending_config,
            title,
            plan,
            subscription_plan,
            subscription_status,
            subscription_period_end,
            cancel_at_period_end,
            cancel_source,
            cancels_at,
            downgrade_to,
            subscription_amount_cents,
            monthly_credits,
            extra_credits,
            last_error,
            failed_step,
            step_failures,
            error_restarts,
            last_error_restart_at,
            topup_armed,
            requeues,
        } = self;
        fn keep<T: PartialEq<U>, U: ?Sized>(value: Option<T>, stored: &U) -> Option<T> {
            value.filter(|v| v != stored)
        }
        Self {
            state: keep(state, &row.state),
            desired_state: keep(desired_state, &row.desired_state),
            wiro_guid: wiro_guid.filter(|g| row.wiro_guid.as_deref() != Some(g.as_str())),
            wiro_status: keep(wiro_status, &row.wiro_status),
            setup_required: keep(setup_required, &row.setup_required),
            missing_credentials: keep(missing_credentials, &row.missing_credentials),
            missing_connections: keep(missing_connections, &row.missing_connections),
            connection_poll_until: keep(connection_poll_until, &row.connection_poll_until),
            deleted_at: keep(deleted_at, &row.deleted_at),
            pending_config: keep(pending_config, &row.pending_config),
            title: keep(title, &row.title),
            plan: keep(plan, &row.plan),
            subscription_plan: keep(subscription_plan, &row.subscription_plan),
            subscription_status: keep(subscription_status, &row.subscription_status),
            subscription_period_end: keep(subscription_period_end, &row.subscription_period_end),
            cancel_at_period_end: keep(cancel_at_period_end, &row.cancel_at_period_end),
            cancel_source: keep(cancel_source, &row.cancel_source.0),
            cancels_at: keep(cancels_at, &row.cancels_at),
            downgrade_to: keep(downgrade_to, &row.downgrade_to.0),
            subscription_amount_cents: keep(
                subscription_amount_cents,
                &row.subscription_amount_cents,
            ),
            monthly_credits: keep(monthly_credits, &row.monthly_credits),
            extra_credits: keep(extra_credits, &row.extra_credits),
            last_error: keep(last_error, &row.last_error),
            failed_step: keep(failed_step, &row.failed_step),
            step_failures: keep(step_failures, &row.step_failures),
            error_restarts: keep(error_restarts, &row.error_restarts),
            last_error_restart_at: keep(last_error_restart_at, &row.last_error_restart_at),
            topup_armed: keep(topup_armed, &row.topup_armed),
            requeues: keep(requeues, &row.requeues),
        }
    }

    /// Moves to `state`, clearing the error and the failure counter.
    pub fn to(state: InstanceState) -> Self {
        Self {
            state: Some(state),
            last_error: Some(None),
            failed_step: Some(None),
            step_failures: Some(0),
            ..Self::default()
        }
    }
}

/// Calls `$emit!(column, value)` for every field of a [`Change`] (`value` an `Option` of what
/// to bind; `None` leaves the column alone): the one list of the columns a change can set, for
/// [`update`] and [`update_many`].
macro_rules! change_columns {
    ($change:ident, $emit:ident) => {
        $emit!("state", $change.state.map(InstanceState::as_str));
        $emit!(
            "desired_state",
            $change.desired_state.map(DesiredState::as_str)
        );
        $emit!("wiro_guid", $change.wiro_guid);
        $emit!("wiro_status", $change.wiro_status);
        $emit!("setup_required", $change.setup_required);
        $emit!("missing_credentials", $change.missing_credentials);
        $emit!("missing_connections", $change.missing_connections);
        $emit!("connection_poll_until", $change.connection_poll_until);
        $emit!("deleted_at", $change.deleted_at);
        $emit!("pending_config", $change.pending_config);
        $emit!("title", $change.title);
        $emit!("plan", $change.plan.map(Plan::as_str));
        $emit!("subscription_plan", $change.subscription_plan);
        $emit!("subscription_status", $change.subscription_status);
        $emit!("subscription_period_end", $change.subscription_period_end);
        $emit!("cancel_at_period_end", $change.cancel_at_period_end);
        $emit!(
            "cancel_source",
            $change.cancel_source.map(|c| c.map(CancelSource::as_str))
        );
        $emit!("cancels_at", $change.cancels_at);
        $emit!(
            "downgrade_to",
            $change.downgrade_to.map(|p| p.map(Plan::as_str))
        );
        $emit!(
            "subscription_amount_cents",
            $change.subscription_amount_cents
        );
        $emit!("monthly_credits", $change.monthly_credits);
        $emit!("extra_credits", $change.extra_credits);
        $emit!("last_error", $change.last_error);
        $emit!("failed_step", $change.failed_step);
        $emit!("step_failures", $change.step_failures);
        $emit!("error_restarts", $change.error_restarts);
        $emit!("last_error_restart_at", $change.last_error_restart_at);
        $emit!("topup_armed", $change.topup_armed);
        $emit!("requeues", $change.requeues);
    };
}

/// Applies `change` if the row is still at `version`; `None` when someone else changed it first.
///
/// # Errors
/// Database errors.
pub async fn update(
    conn: impl PgExecutor<'_>,
    id: InstanceId,
    version: i64,
    change: Change,
) -> Result<Option<Instance>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("UPDATE instances SET version = version + 1, updated_at = now()");
    macro_rules! set {
        ($col:literal, $value:expr) => {
            if let Some(v) = $value {
                q.push(concat!(", ", $col, " = ")).push_bind(v);
            }
        };
    }
    if let Some(state) = change.state {
        q.push(", state_changed_at = CASE WHEN state = ")
            .push_bind(state.as_str())
            .push(" THEN state_changed_at ELSE now() END");
        if change.requeues.is_none() {
            // A new state is progress: the stuck sweep's count starts again.
            q.push(", requeues = CASE WHEN state = ")
                .push_bind(state.as_str())
                .push(" THEN requeues ELSE 0 END");
        }
    }
    change_columns!(change, set);
    q.push(" WHERE id = ").push_bind(id);
    q.push(" AND version = ").push_bind(version);
    q.push(" RETURNING ").push(COLUMNS);
    Ok(q.build_query_as::<Instance>().fetch_optional(conn).await?)
}

/// [`update`] for many rows, one statement per shape (the columns a change sets): each row
/// changes only if it is still at its version. Returns the rows changed; a row left out was
/// changed by someone else first (its caller reads it again).
///
/// # Errors
/// Database errors.
pub async fn update_many(
    conn: &mut sqlx::PgConnection,
    rows: Vec<(InstanceId, i64, Change)>,
) -> Result<Vec<Instance>> {
    let mut shapes: std::collections::BTreeMap<Vec<&'static str>, Vec<(InstanceId, i64, Change)>> =
        std::collections::BTreeMap::new();
    for row in rows {
        shapes.entry(shape(&row.2)).or_default().push(row);
    }
    let mut changed = Vec::new();
    for (columns, mut rows) in shapes {
        if columns.is_empty() {
            continue;
        }
        // Locked in id order, as every multi-row lock here.
        rows.sort_by_key(|(id, ..)| *id);
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
            "UPDATE instances SET version = instances.version + 1, updated_at = now()",
        );
        if columns.contains(&"state") {
            q.push(", state_changed_at = CASE WHEN instances.state = v.state THEN instances.state_changed_at ELSE now() END");
            if !columns.contains(&"requeues") {
                // A new state is progress: the stuck sweep's count starts again.
                q.push(", requeues = CASE WHEN instances.state = v.state THEN instances.requeues ELSE 0 END");
            }
        }
        for column in &columns {
            q.push(format_args!(", {column} = v.{column}"));
        }
        q.push(" FROM (");
        q.push_values(rows, |mut b, (id, version, change)| {
            b.push_bind(id).push_bind(version);
            macro_rules! bind {
                ($col:literal, $value:expr) => {
                    if let Some(v) = $value {
                        b.push_bind(v);
                    }
                };
            }
            change_columns!(change, bind);
        });
        q.push(") AS v(id, version");
        for column in &columns {
            q.push(", ").push(*column);
        }
        q.push(") WHERE instances.id = v.id AND instances.version = v.version RETURNING ")
            .push(qualified(COLUMNS));
        changed.extend(q.build_query_as::<Instance>().fetch_all(&mut *conn).await?);
    }
    Ok(changed)
}

/// The columns `change` sets, in [`change_columns`] order.
fn shape(change: &Change) -> Vec<&'static str> {
    let probe = change.clone();
    let mut columns = Vec::new();
    macro_rules! name {
        ($col:literal, $value:expr) => {
            if $value.is_some() {
                columns.push($col);
            }
        };
    }
    change_columns!(probe, name);
    columns
}

/// `columns` (a comma-separated list) qualified with `instances.`, for a statement whose other
/// relation has columns of the same names.
pub(crate) fn qualified(columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("instances.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Deployed instances whose subscription needs the renewal sweep: expired, ending within
/// `horizon`, or holding a suspension's cancellation (to take back once the customer is active
/// again). An expired subscription a customer or ops cancelled, whose agent is stopped, needs
/// nothing more — unless the cancel was a downgrade's (its new instance is due).
///
/// # Errors
/// Database errors.
pub async fn renewal_candidates(
    conn: impl PgExecutor<'_>,
    horizon: DateTime<Utc>,
) -> Result<Vec<Instance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM instances
         WHERE wiro_guid IS NOT NULL AND state NOT IN ('failed', 'pending', 'deploying')
           AND (subscription_status = 'expired' OR subscription_period_end <= $1
                OR (cancel_at_period_end AND cancel_source = 'suspension'))
           AND NOT (subscription_status = 'expired' AND cancel_at_period_end
                    AND cancel_source IN ('customer', 'ops') AND state = 'stopped'
                    AND (downgrade_to IS NULL OR deleted_at IS NOT NULL))
         ORDER BY subscription_period_end NULLS FIRST, id"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(horizon)
        .fetch_all(conn)
        .await?)
}

/// Instances in progress (pending, deploying, configuring, starting, stopping) that have not
/// changed for `idle` (database clock), oldest change first.
///
/// # Errors
/// Database errors.
pub async fn idle_in_progress(
    conn: impl PgExecutor<'_>,
    idle: std::time::Duration,
    limit: i64,
) -> Result<Vec<Instance>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM instances
         WHERE state IN ('pending', 'deploying', 'configuring', 'starting', 'stopping')
           AND updated_at < now() - $1 * interval '1 millisecond'
         ORDER BY updated_at, id LIMIT $2"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(idle.as_millis() as f64)
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Every deployed instance (for sweeps), oldest first.
///
/// # Errors
/// Database errors.
pub async fn deployed(conn: impl PgExecutor<'_>) -> Result<Vec<Instance>> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE wiro_guid IS NOT NULL ORDER BY id");
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?)
}

/// Records the Wiro guid of a fresh deploy and moves to `next` (`configuring`, or `failed`
/// when the order was given up meanwhile) — only if no guid is recorded yet (the instance is
/// deployed at most once). `paid_until` is the end of the period the Deploy paid for, so a
/// renewal that happened before we first looked is still seen as one. Returns the row as it
/// now is; `None` when a guid is already recorded.
///
/// # Errors
/// Database errors (a guid already mapped to another instance is a unique violation).
pub async fn set_deployed(
    conn: impl PgExecutor<'_>,
    id: InstanceId,
    wiro_guid: &str,
    wiro_status: i16,
    paid_until: Option<DateTime<Utc>>,
) -> Result<Option<Instance>> {
    let sql = format!(
        "UPDATE instances
         SET wiro_guid = $2, wiro_status = $3,
             state = CASE WHEN state = 'failed' THEN 'failed' ELSE 'configuring' END,
             state_changed_at = now(), step_failures = 0, version = version + 1, updated_at = now(),
             last_error = CASE WHEN state = 'failed' THEN last_error END,
             failed_step = CASE WHEN state = 'failed' THEN failed_step END,
             subscription_period_end = COALESCE(subscription_period_end, $4),
             subscription_status = COALESCE(subscription_status, CASE WHEN $4 IS NULL THEN NULL ELSE 'active' END)
         WHERE id = $1 AND wiro_guid IS NULL
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(wiro_guid)
        .bind(wiro_status)
        .bind(paid_until)
        .fetch_optional(conn)
        .await?)
}

/// The agent's next Wiro instance, on `plan` at `price_cents` (a downgrade whose period
/// ended): its current guid goes to `instance_generations`, and the agent starts over as a
/// `pending` order of the same id, title and desired state with `pending_config` to send —
/// no subscription, cancel or credits of the old instance carried. Only from `version`, with
/// a downgrade still scheduled; `None` otherwise (someone else moved first).
///
/// # Errors
/// Database errors.
pub async fn begin_generation(
    conn: &mut sqlx::PgConnection,
    id: InstanceId,
    version: i64,
    plan: Plan,
    price_cents: i64,
    pending_config: Option<Vec<u8>>,
) -> Result<Option<Instance>> {
    let kept = sqlx::query(
        "INSERT INTO instance_generations (instance_id, generation, wiro_guid, plan, reason)
         SELECT id, generation, wiro_guid, plan, 'downgrade' FROM instances
         WHERE id = $1 AND version = $2 AND wiro_guid IS NOT NULL AND downgrade_to IS NOT NULL",
    )
    .bind(id)
    .bind(version)
    .execute(&mut *conn)
    .await?;
    if kept.rows_affected() != 1 {
        return Ok(None);
    }
    let sql = format!(
        "UPDATE instances SET
             wiro_guid = NULL, wiro_status = NULL, generation = generation + 1,
             plan = $3, price_cents = $4, pending_config = $5,
             state = 'pending', state_changed_at = now(), requeues = 0,
             setup_required = TRUE, missing_credentials = '{{}}', missing_connections = '{{}}',
             connection_poll_until = NULL,
             subscription_plan = NULL, subscription_status = NULL, subscription_period_end = NULL,
             subscription_amount_cents = NULL, cancel_at_period_end = FALSE, cancel_source = NULL,
             cancels_at = NULL, downgrade_to = NULL, monthly_credits = NULL, extra_credits = NULL,
             last_error = NULL, failed_step = NULL, step_failures = 0, error_restarts = 0,
             last_error_restart_at = NULL, topup_armed = TRUE,
             version = version + 1, updated_at = now()
         WHERE id = $1 AND version = $2
         RETURNING {COLUMNS}"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(version)
        .bind(plan.as_str())
        .bind(price_cents)
        .bind(pending_config)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The Wiro guids an agent had before its current one, oldest first.
///
/// # Errors
/// Database errors.
pub async fn earlier_guids(conn: impl PgExecutor<'_>, id: InstanceId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT wiro_guid FROM instance_generations WHERE instance_id = $1 ORDER BY generation",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

/// The instance, locked for the rest of the transaction.
///
/// # Errors
/// Database errors.
pub async fn lock(conn: impl PgExecutor<'_>, id: InstanceId) -> Result<Option<Instance>> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// What an operation's intent needs of its instance, read under the row lock.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Locked {
    /// The instance.
    pub id: InstanceId,
    /// Its customer.
    pub customer_id: CustomerId,
    /// Its current state.
    #[sqlx(try_from = "String")]
    pub state: InstanceState,
    /// Its Wiro instance, once deployed.
    pub wiro_guid: Option<String>,
    /// When its customer deleted it.
    pub deleted_at: Option<DateTime<Utc>>,
    /// The fence every write checks.
    pub version: i64,
}

/// The instance's lock facts ([`Locked`]), locking its row for the rest of the transaction:
/// [`lock`] without decoding every column.
///
/// # Errors
/// Database errors.
pub async fn lock_facts(conn: impl PgExecutor<'_>, id: InstanceId) -> Result<Option<Locked>> {
    Ok(sqlx::query_as::<_, Locked>(
        "SELECT id, customer_id, state, wiro_guid, deleted_at, version
         FROM instances WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// The instance mapped to `wiro_guid`, if any.
///
/// # Errors
/// Database errors.
pub async fn by_wiro_guid(conn: impl PgExecutor<'_>, wiro_guid: &str) -> Result<Option<Instance>> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE wiro_guid = $1");
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(wiro_guid)
        .fetch_optional(conn)
        .await?)
}

/// Loads, then retries `change` on the newest version until it applies or `decide` declines.
/// `decide` sees the current row and returns the change to make (or `None` to stop).
///
/// # Errors
/// [`Error::NotFound`] when the instance does not exist; database errors.
pub async fn update_with<F>(
    pool: &sqlx::PgPool,
    id: InstanceId,
    mut decide: F,
) -> Result<Option<Instance>>
where
    F: FnMut(&Instance) -> Option<Change>,
{
    loop {
        let current = get(pool, id).await?.ok_or(Error::NotFound("instance"))?;
        let Some(change) = decide(&current) else {
            return Ok(None);
        };
        if let Some(updated) = update(pool, id, current.version, change).await? {
            return Ok(Some(updated));
        }
    }
}

/// Ids of instances holding a sealed pending config, after `after`, in id order.
///
/// # Errors
/// Database errors.
pub async fn with_pending_config(
    conn: impl PgExecutor<'_>,
    after: InstanceId,
    limit: i64,
) -> Result<Vec<InstanceId>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM instances WHERE pending_config IS NOT NULL AND id > $1
          ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// A page of sealed pending configs after `after`, in id order (`reseal::survey`).
///
/// # Errors
/// Database errors.
pub async fn pending_configs_after(
    conn: impl PgExecutor<'_>,
    after: InstanceId,
    limit: i64,
) -> Result<Vec<(InstanceId, Vec<u8>)>> {
    Ok(sqlx::query_as(
        "SELECT id, pending_config FROM instances WHERE pending_config IS NOT NULL AND id > $1
          ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The sealed pending config of `id`, the row locked for the transaction.
///
/// # Errors
/// Database errors.
pub async fn lock_pending_config(
    conn: impl PgExecutor<'_>,
    id: InstanceId,
) -> Result<Option<Vec<u8>>> {
    Ok(
        sqlx::query_scalar("SELECT pending_config FROM instances WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .flatten(),
    )
}

/// Replaces the sealed pending config of `id` (the same values, sealed again).
///
/// # Errors
/// Database errors.
pub async fn replace_pending_config(
    conn: impl PgExecutor<'_>,
    id: InstanceId,
    sealed: &[u8],
) -> Result<()> {
    sqlx::query("UPDATE instances SET pending_config = $2 WHERE id = $1")
        .bind(id)
        .bind(sealed)
        .execute(conn)
        .await?;
    Ok(())
}

/// Erases the sealed credentials still waiting for Wiro on every agent of `customer` (the
/// version moves, so a job holding the old row cannot write them back); returns how many.
///
/// # Errors
/// Database errors.
pub async fn erase_pending_config_of_customer(
    conn: impl PgExecutor<'_>,
    customer: CustomerId,
) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE instances SET pending_config = NULL, version = version + 1, updated_at = now()
         WHERE customer_id = $1 AND pending_config IS NOT NULL",
    )
    .bind(customer)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_correlator_round_trips_through_an_upstream_description() {
        let (instance, op) = (InstanceId::new(), OperationId::new());
        let description = upstream_description(instance, op);
        assert_eq!(parse_description(&description), Some((instance, op)));
        assert_eq!(parse_description("the operator's own agent"), None);
        assert_eq!(
            parse_description("wiro-reseller order x [wr:not-a-uuid]"),
            None
        );
    }
}
