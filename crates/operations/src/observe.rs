//! What a Wiro instance record tells us, and the one place that writes it. [`record`] stores an
//! observation under a row lock and, in the same transaction, books every renewal the new
//! period end reveals (`renewal:<instance>:<period end>`): whichever path sees a new period end
//! first — reconciliation, a sweep's refresh, a provisioning step, a billing call — books it,
//! and no order of sweeps can lose or double a charge.

use chrono::{DateTime, Duration, Utc};
use domain::db::instances::{self, Change, Instance};
use domain::db::ledger::{self, NewCharge};
use domain::ids::InstanceId;
use domain::model::ChargeKind;
use sqlx::PgConnection;
use wiro_client::models::{AgentStatus, OAuthProvider, Subscription, UserAgent};

/// Length of a billing period (Wiro bills monthly; its periods are 30 days).
pub const PERIOD: Duration = Duration::days(domain::forecast::PERIOD_DAYS);

/// Status, setup and credits as observed upstream. Fields Wiro did not send are left alone.
/// The subscription is not in here: only [`record`] writes it, booking what it reveals.
pub fn observed(agent: &UserAgent) -> Change {
    let mut change = Change {
        wiro_status: Some(Some(agent.status.code() as i16)),
        ..Change::default()
    };
    if agent.configuration.is_some() || agent.setuprequired.is_some() {
        change.setup_required = Some(setup_required(agent));
    }
    if agent.configuration.is_some() {
        change.missing_credentials = Some(missing_credentials(agent));
    }
    if let Some(monthly) = agent.monthly_credits() {
        change.monthly_credits = Some(Some(monthly));
    }
    if let Some(extra) = agent.extracredits {
        change.extra_credits = Some(Some(extra));
    }
    change
}

/// Wiro's `setuprequired`, or status 6 when the field is absent.
pub fn setup_required(agent: &UserAgent) -> bool {
    agent.setuprequired.unwrap_or(false) || agent.status == AgentStatus::SetupRequired
}

/// Fields Wiro strips from every response (notes §6.1, merge rule 8).
const STRIPPED_BY_WIRO: [&str; 4] = ["accessToken", "refreshToken", "clientSecret", "appSecret"];

/// Editable fields still empty in non-optional credential groups, as `group.field`. An OAuth
/// group's own-app fields (`appId`, `clientSecret`...) count only in own mode: with Wiro's app
/// they stay empty for good. Secrets Wiro strips from every answer cannot be seen, so they are
/// never reported missing (Wiro's `setuprequired` still says whether something is).
pub fn missing_credentials(agent: &UserAgent) -> Vec<String> {
    let Some(config) = &agent.configuration else {
        return Vec::new();
    };
    let mut missing: Vec<String> = config
        .credentials
        .iter()
        .filter(|(_, group)| group.optional != Some(true))
        .flat_map(|(name, group)| {
            let own = group.fields.get("authMethod").and_then(|v| v.as_str()) == Some("own");
            let app_fields = OAuthProvider::from_group(name).map_or(&[][..], |p| p.app_fields());
            group
                .missing_editable_fields()
                .into_iter()
                .filter(move |field| own || !app_fields.contains(&field.as_str()))
                .filter(|field| !STRIPPED_BY_WIRO.contains(&field.as_str()))
                .map(move |field| format!("{name}.{field}"))
        })
        .collect();
    missing.sort();
    missing
}

/// Dollars as cents.
pub fn cents(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

/// The end of a subscription's period as a time.
pub fn period_end(sub: &Subscription) -> Option<DateTime<Utc>> {
    sub.currentperiodend
        .and_then(|t| DateTime::from_timestamp(t.0, 0))
}

/// What we had stored of a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    /// Paid until.
    pub period_end: Option<DateTime<Utc>>,
    /// Active (false: expired, or never seen).
    pub active: bool,
}

/// What an observation does to the stored subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriptionUpdate {
    /// Take the observed plan, amount and status (false: the observation is older than ours).
    pub write: bool,
    /// The status to store.
    pub active: bool,
    /// The period end to store (never moves backwards).
    pub period_end: Option<DateTime<Utc>>,
    /// Period ends of renewals the observation reveals, each paid once.
    pub renewals: Vec<DateTime<Utc>>,
}

/// Judges an observed subscription against the stored one.
///
/// - An older period end than ours is a stale read: nothing changes.
/// - The same period end: an expiry sticks (a renewal would have moved the period end).
/// - A later period end: renewals happened. From an active subscription, a whole number of
///   periods later are Wiro's automatic renewals, one per period. Otherwise the subscription
///   expired and was renewed explicitly (a renewal starts a period at the moment it is made):
///   the periods ending at the observed end and every 30 days before it, back to the first
///   that ends after our end plus one period, were paid.
pub fn judge_subscription(
    stored: StoredSubscription,
    seen_end: Option<DateTime<Utc>>,
    seen_active: bool,
) -> SubscriptionUpdate {
    let Some(seen) = seen_end else {
        return SubscriptionUpdate {
            write: true,
            active: seen_active,
            period_end: stored.period_end,
            renewals: Vec::new(),
        };
    };
    let Some(ours) = stored.period_end else {
        return SubscriptionUpdate {
            write: true,
            active: seen_active,
            period_end: Some(seen),
            renewals: Vec::new(),
        };
    };
    if seen < ours {
        return SubscriptionUpdate {
            write: false,
            active: stored.active,
            period_end: Some(ours),
            renewals: Vec::new(),
        };
    }
    if seen == ours {
        return SubscriptionUpdate {
            write: true,
            active: stored.active && seen_active,
            period_end: Some(ours),
            renewals: Vec::new(),
        };
    }
    let gap = seen - ours;
    let whole = (gap.num_seconds() as f64 / PERIOD.num_seconds() as f64).round() as i32;
    let renewals = if stored.active
        && whole >= 1
        && (gap - PERIOD * whole).num_seconds().abs() <= Duration::days(1).num_seconds()
    {
        (1..=whole).map(|n| ours + PERIOD * n).collect()
    } else {
        let beyond = (gap - PERIOD).num_seconds().max(0);
        let count = (beyond + PERIOD.num_seconds() - 1) / PERIOD.num_seconds();
        (0..count.max(1) as i32)
            .map(|n| seen - PERIOD * n)
            .rev()
            .collect()
    };
    SubscriptionUpdate {
        write: true,
        active: seen_active,
        period_end: Some(seen),
        renewals,
    }
}

/// Stores what `agent` shows about instance `id` together with `change` (the caller's own
/// step, e.g. a new state), under a row lock, booking every renewal the observation reveals.
/// With `fence`, nothing is written unless the row is still at that version (`None` returned).
///
/// # Errors
/// Database errors.
pub async fn record(
    conn: &mut PgConnection,
    id: InstanceId,
    fence: Option<i64>,
    agent: &UserAgent,
    change: Change,
) -> domain::Result<Option<Instance>> {
    let Some(current) = instances::lock(&mut *conn, id).await? else {
        return Ok(None);
    };
    if fence.is_some_and(|version| version != current.version) {
        return Ok(None);
    }
    if current.wiro_guid.as_deref() != Some(agent.guid.as_str()) {
        // A read of the agent's earlier Wiro instance (before a downgrade switched it), or of
        // one it does not have yet: it says nothing about the current one.
        return Ok(None);
    }
    let (merged, renewals) = planned(&current, agent, change);
    if !renewals.is_empty() && current.cancel_at_period_end {
        tracing::warn!(instance = %current.id, "renewed despite a recorded cancellation; clearing our record");
    }
    if let Some(sub) = &agent.subscription {
        for end in &renewals {
            ledger::record(
                &mut *conn,
                NewCharge {
                    customer_id: current.customer_id,
                    instance_id: current.id,
                    kind: ChargeKind::Renewal,
                    amount_cents: cents(sub.amount),
                    reference: ledger::renewal_reference(current.id, *end),
                    wiro_guid: Some(&agent.guid),
                    operation_id: None,
                    estimated: false,
                },
            )
            .await?;
        }
    }
    if merged.is_empty() {
        // What Wiro shows is what we hold: no write, no new version.
        return Ok(Some(current));
    }
    instances::update(&mut *conn, id, current.version, merged).await
}

/// What recording `agent` over the stored `current` would do: the change to write (the
/// observation with the caller's `change` laid over it and the subscription it shows, minus
/// what the row already holds) and the period ends of the renewals it reveals. Pure: a sweep
/// uses it to skip agents where nothing changed without locking their rows.
pub fn planned(
    current: &Instance,
    agent: &UserAgent,
    change: Change,
) -> (Change, Vec<DateTime<Utc>>) {
    let mut merged = observed(agent);
    overlay(&mut merged, change);
    let renewals = match &agent.subscription {
        Some(sub) => subscription_fields(current, sub, &mut merged),
        None => Vec::new(),
    };
    (merged.without_effect_on(current), renewals)
}

/// [`record`] in a transaction of its own.
///
/// # Errors
/// Database errors.
pub async fn record_now(
    pool: &sqlx::PgPool,
    id: InstanceId,
    fence: Option<i64>,
    agent: &UserAgent,
    change: Change,
) -> domain::Result<Option<Instance>> {
    let mut tx = pool.begin().await?;
    let recorded = record(&mut tx, id, fence, agent, change).await?;
    tx.commit().await?;
    Ok(recorded)
}

/// [`record`] fenced on the row `current` the caller read (written only if the instance is
/// still at `current.version`), without a lock when nothing is to be booked: the version
/// fence guarantees the stored subscription is the one judged, so one `UPDATE` does what lock,
/// judge and write do. An observation that reveals renewals books them through [`record`]'s
/// transaction. `None` when the row moved on (or `agent` is not its Wiro instance). When there
/// is nothing to write, `current` comes back as it is without a round trip: nothing is written,
/// so nothing can be overwritten, and the next fenced write finds out if the row moved.
///
/// # Errors
/// Database errors.
pub async fn record_fenced(
    pool: &sqlx::PgPool,
    current: &Instance,
    agent: &UserAgent,
    change: Change,
) -> domain::Result<Option<Instance>> {
    match fenced_write(current, agent, change.clone()) {
        FencedWrite::NotOurs => Ok(None),
        FencedWrite::Locked => {
            record_now(pool, current.id, Some(current.version), agent, change).await
        }
        FencedWrite::Nothing => Ok(Some(current.clone())),
        FencedWrite::Write(merged) => {
            instances::update(pool, current.id, current.version, *merged).await
        }
    }
}

/// What [`record_fenced`] writes for `agent` and `change` over `current`.
#[derive(Debug)]
pub enum FencedWrite {
    /// `agent` is not the instance's (nothing is written).
    NotOurs,
    /// It reveals a renewal: booked with it, under the row lock (`record_now`).
    Locked,
    /// Nothing would change.
    Nothing,
    /// This change, fenced on `current`'s version (a caller may write many together:
    /// `instances::update_many`).
    Write(Box<Change>),
}

/// Plans [`record_fenced`]'s write without making it.
pub fn fenced_write(current: &Instance, agent: &UserAgent, change: Change) -> FencedWrite {
    if current.wiro_guid.as_deref() != Some(agent.guid.as_str()) {
        return FencedWrite::NotOurs;
    }
    let (merged, renewals) = planned(current, agent, change);
    if !renewals.is_empty() {
        FencedWrite::Locked
    } else if merged.is_empty() {
        FencedWrite::Nothing
    } else {
        FencedWrite::Write(Box::new(merged))
    }
}

/// Puts the observed subscription into `change` and returns the renewals it reveals.
fn subscription_fields(
    current: &Instance,
    sub: &Subscription,
    change: &mut Change,
) -> Vec<DateTime<Utc>> {
    let stored = StoredSubscription {
        period_end: current.subscription_period_end,
        active: current.subscription_status.as_deref() == Some("active"),
    };
    let update = judge_subscription(stored, period_end(sub), sub.is_active());
    if !update.write {
        return Vec::new();
    }
    if !update.renewals.is_empty() && current.cancel_at_period_end {
        // The subscription went on although we recorded a cancel: Wiro no longer holds it.
        change.cancel_at_period_end = Some(false);
        change.cancel_source = Some(None);
        change.cancels_at = Some(None);
        change.downgrade_to = Some(None);
    }
    change.subscription_plan = Some(Some(sub.plan.clone()));
    change.subscription_status = Some(Some(
        if update.active { "active" } else { "expired" }.to_owned(),
    ));
    change.subscription_period_end = Some(update.period_end);
    change.subscription_amount_cents = Some(Some(cents(sub.amount)));
    update.renewals
}

/// Lays `top` over `base`: every field `top` sets wins.
fn overlay(base: &mut Change, top: Change) {
    // The pattern has no `..`: a field added to `Change` fails to compile until it is listed
    // here, instead of being dropped silently.
    macro_rules! take {
        ($($field:ident),+ $(,)?) => {
            let Change { $($field),+ } = top;
            $(if $field.is_some() { base.$field = $field; })+
        };
    }
    take!(
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
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(days)
    }

    fn active(days: i64) -> StoredSubscription {
        StoredSubscription {
            period_end: Some(at(days)),
            active: true,
        }
    }

    #[test]
    fn whole_periods_after_an_active_end_are_automatic_renewals() {
        let update = judge_subscription(active(30), Some(at(90)), true);
        assert_eq!(update.renewals, vec![at(60), at(90)]);
        assert_eq!(update.period_end, Some(at(90)));
    }

    #[test]
    fn an_older_period_end_is_a_stale_read_and_changes_nothing() {
        let update = judge_subscription(active(60), Some(at(30)), true);
        assert!(!update.write);
        assert!(update.renewals.is_empty());
    }

    #[test]
    fn an_expiry_sticks_at_the_same_period_end() {
        let expired = StoredSubscription {
            period_end: Some(at(30)),
            active: false,
        };
        let update = judge_subscription(expired, Some(at(30)), true);
        assert!(!update.active);
        assert!(update.renewals.is_empty());
        assert!(!judge_subscription(active(30), Some(at(30)), false).active);
    }

    #[test]
    fn a_renewal_after_expiry_is_one_charge_at_the_new_period_end() {
        let expired = StoredSubscription {
            period_end: Some(at(30)),
            active: false,
        };
        let update = judge_subscription(expired, Some(at(41)), true);
        assert_eq!(update.renewals, vec![at(41)]);
        // Expired, renewed 11 days later (paid until day 71), then renewed automatically once.
        let update = judge_subscription(expired, Some(at(101)), true);
        assert_eq!(update.renewals, vec![at(71), at(101)]);
    }

    #[test]
    fn an_odd_gap_from_an_active_end_is_an_unseen_expiry_and_renewal() {
        let update = judge_subscription(active(30), Some(at(45)), true);
        assert_eq!(update.renewals, vec![at(45)]);
    }

    #[test]
    fn the_first_observation_books_nothing() {
        let none = StoredSubscription {
            period_end: None,
            active: false,
        };
        assert!(
            judge_subscription(none, Some(at(30)), true)
                .renewals
                .is_empty()
        );
    }
}
