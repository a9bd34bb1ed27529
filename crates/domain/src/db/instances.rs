//! Instances: one per order, mapping a customer to a Wiro instance guid, with our provisioning
//! state. Every state change is a fenced update on `version`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, Postgres, QueryBuilder};

use crate::error::{Error, Result};
use crate::ids::{CustomerId, InstanceId};
use crate::model::{DesiredState, InstanceState, Plan};

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
    /// Sealed credentials still to send.
    #[serde(skip)]
    pub pending_config: Option<Vec<u8>>,
    /// `agent-starter` / `agent-pro` as Wiro reports it.
    pub subscription_plan: Option<String>,
    /// `active` / `expired`.
    pub subscription_status: Option<String>,
    /// End of the paid period.
    pub subscription_period_end: Option<DateTime<Utc>>,
    /// Cancellation scheduled at period end.
    pub cancel_at_period_end: bool,
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
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version.
    pub version: i64,
}

impl Instance {
    /// The tag in the upstream title that identifies this order: `[wr:<id>]`.
    pub fn correlator(&self) -> String {
        correlator(self.id)
    }

    /// The title sent to Wiro: the customer's title plus the correlator.
    pub fn upstream_title(&self) -> String {
        upstream_title(&self.title, self.id)
    }
}

/// `[wr:<instance id>]`.
pub fn correlator(id: InstanceId) -> String {
    format!("[wr:{id}]")
}

/// The title sent to Wiro.
pub fn upstream_title(title: &str, id: InstanceId) -> String {
    format!("{title} {}", correlator(id))
}

/// Reads our instance id back from an upstream title, if it carries a correlator.
pub fn parse_correlator(upstream_title: &str) -> Option<InstanceId> {
    let start = upstream_title.rfind("[wr:")? + 4;
    let end = start + upstream_title[start..].find(']')?;
    upstream_title[start..end].parse().ok()
}

const COLUMNS: &str = "id, customer_id, template_guid, template_slug, plan, title, price_cents, \
    wiro_guid, state, desired_state, wiro_status, setup_required, missing_credentials, \
    pending_config, subscription_plan, subscription_status, subscription_period_end, \
    cancel_at_period_end, subscription_amount_cents, monthly_credits, extra_credits, last_error, failed_step, \
    step_failures, error_restarts, last_error_restart_at, topup_armed, created_at, updated_at, version";

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
    let ids: Vec<InstanceId> = rows.iter().map(|r| r.id).collect();
    let customers: Vec<CustomerId> = rows.iter().map(|r| r.customer_id).collect();
    let guids: Vec<&str> = rows.iter().map(|r| r.template_guid.as_str()).collect();
    let slugs: Vec<&str> = rows.iter().map(|r| r.template_slug.as_str()).collect();
    let plans: Vec<&str> = rows.iter().map(|r| r.plan.as_str()).collect();
    let titles: Vec<&str> = rows.iter().map(|r| r.title.as_str()).collect();
    let prices: Vec<i64> = rows.iter().map(|r| r.price_cents).collect();
    let configs: Vec<Option<Vec<u8>>> = rows.iter().map(|r| r.pending_config.clone()).collect();
    sqlx::query(
        "INSERT INTO instances (id, customer_id, template_guid, template_slug, plan, title,
                                price_cents, pending_config, state)
         SELECT *, 'pending' FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                         $6::text[], $7::bigint[], $8::bytea[])",
    )
    .bind(&ids)
    .bind(&customers)
    .bind(&guids)
    .bind(&slugs)
    .bind(&plans)
    .bind(&titles)
    .bind(&prices)
    .bind(&configs)
    .execute(conn)
    .await?;
    Ok(())
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

/// By id, only if `customer` owns it.
///
/// # Errors
/// Database errors.
pub async fn get_for_customer(
    conn: impl PgExecutor<'_>,
    customer: CustomerId,
    id: InstanceId,
) -> Result<Option<Instance>> {
    let sql = format!("SELECT {COLUMNS} FROM instances WHERE id = $1 AND customer_id = $2");
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
         ORDER BY id LIMIT $5"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(filter.customer)
        .bind(filter.state.map(InstanceState::as_str))
        .bind(filter.wiro_status)
        .bind(after)
        .bind(limit)
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
#[derive(Clone, Debug, Default)]
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
    /// Pending cancel.
    pub cancel_at_period_end: Option<bool>,
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
}

impl Change {
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
    set!("state", change.state.map(InstanceState::as_str));
    set!(
        "desired_state",
        change.desired_state.map(DesiredState::as_str)
    );
    set!("wiro_guid", change.wiro_guid);
    set!("wiro_status", change.wiro_status);
    set!("setup_required", change.setup_required);
    set!("missing_credentials", change.missing_credentials);
    set!("pending_config", change.pending_config);
    set!("title", change.title);
    set!("plan", change.plan.map(Plan::as_str));
    set!("subscription_plan", change.subscription_plan);
    set!("subscription_status", change.subscription_status);
    set!("subscription_period_end", change.subscription_period_end);
    set!("cancel_at_period_end", change.cancel_at_period_end);
    set!(
        "subscription_amount_cents",
        change.subscription_amount_cents
    );
    set!("monthly_credits", change.monthly_credits);
    set!("extra_credits", change.extra_credits);
    set!("last_error", change.last_error);
    set!("failed_step", change.failed_step);
    set!("step_failures", change.step_failures);
    set!("error_restarts", change.error_restarts);
    set!("last_error_restart_at", change.last_error_restart_at);
    set!("topup_armed", change.topup_armed);
    q.push(" WHERE id = ").push_bind(id);
    q.push(" AND version = ").push_bind(version);
    q.push(" RETURNING ").push(COLUMNS);
    Ok(q.build_query_as::<Instance>().fetch_optional(conn).await?)
}

/// Deployed instances whose subscription needs the renewal sweep: expired, ending within
/// `horizon`, or with a pending cancellation (to undo or keep, depending on the customer).
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
           AND (subscription_status = 'expired' OR cancel_at_period_end OR subscription_period_end <= $1)
         ORDER BY subscription_period_end NULLS FIRST, id"
    );
    Ok(sqlx::query_as::<_, Instance>(sqlx::AssertSqlSafe(sql))
        .bind(horizon)
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

/// Records the Wiro guid of a fresh deploy and moves to `configuring` — only if no guid is
/// recorded yet (the instance is deployed at most once). False when one already is.
///
/// # Errors
/// Database errors (a guid already mapped to another instance is a unique violation).
pub async fn set_deployed(
    conn: impl PgExecutor<'_>,
    id: InstanceId,
    wiro_guid: &str,
    wiro_status: i16,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE instances
         SET wiro_guid = $2, wiro_status = $3, state = 'configuring', last_error = NULL,
             failed_step = NULL, step_failures = 0, version = version + 1, updated_at = now()
         WHERE id = $1 AND wiro_guid IS NULL",
    )
    .bind(id)
    .bind(wiro_guid)
    .bind(wiro_status)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_correlator_round_trips_through_an_upstream_title() {
        let id = InstanceId::new();
        let title = upstream_title("Shop bot [wr:nonsense]", id);
        assert_eq!(parse_correlator(&title), Some(id));
        assert_eq!(parse_correlator("no tag here"), None);
        assert_eq!(parse_correlator("[wr:not-a-uuid]"), None);
    }
}
