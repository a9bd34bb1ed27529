//! What a Wiro instance record tells us, as a change to our row.

use chrono::{DateTime, Utc};
use domain::db::instances::Change;
use wiro_client::models::{AgentStatus, UserAgent};

/// Status, setup, subscription and credits as observed upstream. Fields Wiro did not send
/// are left alone.
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
    if let Some(sub) = &agent.subscription {
        change.subscription_plan = Some(Some(sub.plan.clone()));
        change.subscription_status = Some(Some(sub.status.clone()));
        change.subscription_period_end = Some(
            sub.currentperiodend
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.0, 0)),
        );
        change.cancel_at_period_end = Some(sub.cancelatperiodend.unwrap_or(false));
        change.subscription_amount_cents = Some(Some((sub.amount * 100.0).round() as i64));
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

/// Editable fields still empty in non-optional credential groups, as `group.field`.
pub fn missing_credentials(agent: &UserAgent) -> Vec<String> {
    let Some(config) = &agent.configuration else {
        return Vec::new();
    };
    let mut missing: Vec<String> = config
        .credentials
        .iter()
        .filter(|(_, group)| group.optional != Some(true))
        .flat_map(|(name, group)| {
            group
                .missing_editable_fields()
                .into_iter()
                .map(move |field| format!("{name}.{field}"))
        })
        .collect();
    missing.sort();
    missing
}
