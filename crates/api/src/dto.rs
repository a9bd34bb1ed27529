//! Response and shared request shapes. JSON is snake_case; ids are UUIDs; money is in cents.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::db::agent_view::AgentRow;
use domain::model::{DesiredState, InstanceState, Plan};
use domain::sealed::PendingConfig;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use wiro_client::models::{CredentialValues, CustomSkillValue};

use crate::error::ApiError;

/// A customer's agent instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// Our id of the agent.
    pub id: Uuid,
    /// The customer's external id.
    pub customer: String,
    /// Template slug.
    pub template: String,
    /// Template guid at Wiro.
    pub template_guid: String,
    /// Plan ordered.
    #[schema(value_type = String, example = "starter")]
    pub plan: Plan,
    /// Display title.
    pub title: String,
    /// Our state: pending, deploying, configuring, awaiting_credentials, awaiting_connection,
    /// starting, running, out_of_credits (credits ran out; the operator's top-up policy acts
    /// and the agent starts again by itself once credits are back), stopping, stopped or
    /// failed.
    #[schema(value_type = String, example = "running")]
    pub state: InstanceState,
    /// What the agent should be: running or stopped.
    #[schema(value_type = String, example = "running")]
    pub desired_state: DesiredState,
    /// The Wiro instance guid, once deployed.
    pub wiro_guid: Option<String>,
    /// Last observed Wiro status: 0 stopped, 1 stopping, 2 queued, 3 starting, 4 running,
    /// 5 error, 6 setup required.
    pub wiro_status: Option<i16>,
    /// Wiro needs credentials before the agent can start.
    pub setup_required: bool,
    /// Credential fields still missing, as `group.field`.
    pub missing_credentials: Vec<String>,
    /// Accounts still to connect (`POST /v1/agents/{id}/connections/{provider}`), by provider.
    pub missing_connections: Vec<String>,
    /// When the customer deleted it (ops see deleted agents; customers do not).
    pub deleted_at: Option<DateTime<Utc>>,
    /// The subscription as last observed.
    pub subscription: Option<SubscriptionView>,
    /// Credits as last observed.
    pub credits: CreditsView,
    /// Why provisioning failed (state `failed`), or the last transient error.
    pub last_error: Option<String>,
    /// Ordered.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Subscription facts.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// `agent-starter` or `agent-pro`.
    pub plan: Option<String>,
    /// `active` or `expired`.
    pub status: Option<String>,
    /// End of the paid period.
    pub period_end: Option<DateTime<Utc>>,
    /// A cancellation is pending: the subscription ends at `cancels_at` instead of renewing.
    /// (Wiro shows this nowhere; it is our record of the cancel.)
    pub cancel_at_period_end: bool,
    /// When a cancelled subscription ends (or ended).
    pub cancels_at: Option<DateTime<Utc>>,
    /// A scheduled downgrade: at `cancels_at` the agent (same id) comes back on this plan, on
    /// a new Wiro instance (`POST /v1/agents/{id}/subscription/downgrade`).
    #[schema(value_type = Option<String>, example = "starter")]
    pub downgrade_to: Option<Plan>,
}

/// Remaining credits.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditsView {
    /// Monthly allowance left.
    pub monthly: Option<i64>,
    /// Purchased credits left.
    pub extra: Option<i64>,
}

impl AgentView {
    /// From our row (an [`Instance`](domain::db::instances::Instance) or the hot read's
    /// narrower [`AgentRow`]) and the customer's external id.
    pub fn new(instance: impl Into<AgentRow>, customer: &str) -> Self {
        let instance: AgentRow = instance.into();
        let subscription = (instance.subscription_status.is_some()
            || instance.subscription_plan.is_some())
        .then(|| SubscriptionView {
            plan: instance.subscription_plan.clone(),
            status: instance.subscription_status.clone(),
            period_end: instance.subscription_period_end,
            cancel_at_period_end: instance.cancel_at_period_end
                && instance.subscription_status.as_deref() == Some("active"),
            cancels_at: instance
                .cancel_at_period_end
                .then_some(instance.cancels_at)
                .flatten(),
            downgrade_to: instance.downgrade_to.0,
        });
        Self {
            id: instance.id.0,
            customer: customer.to_owned(),
            template: instance.template_slug,
            template_guid: instance.template_guid,
            plan: instance.plan,
            title: instance.title,
            state: instance.state,
            desired_state: instance.desired_state,
            wiro_guid: instance.wiro_guid,
            wiro_status: instance.wiro_status,
            setup_required: instance.setup_required,
            missing_credentials: instance.missing_credentials,
            missing_connections: instance.missing_connections,
            deleted_at: instance.deleted_at,
            subscription,
            credits: CreditsView {
                monthly: instance.monthly_credits,
                extra: instance.extra_credits,
            },
            last_error: instance.last_error,
            created_at: instance.created_at,
            updated_at: instance.updated_at,
        }
    }
}

/// Credentials in Wiro's own shape: `{group: {field: value}}`.
pub type CredentialsInput = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

/// A custom skill change.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct CustomSkillInput {
    /// Skill key, e.g. `content-tone`.
    pub key: String,
    /// New content.
    #[serde(default)]
    pub value: Option<String>,
    /// Turn it on or off.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Checks credentials (groups and fields named sensibly, values bounded) and builds the
/// config to seal.
///
/// # Errors
/// 422 naming the field.
pub fn pending_config(
    field: &str,
    credentials: Option<CredentialsInput>,
    custom_skills: Option<Vec<CustomSkillInput>>,
) -> Result<PendingConfig, ApiError> {
    let credentials = credentials.unwrap_or_default();
    if credentials.len() > 50 {
        return Err(ApiError::validation(format!(
            "{field}.credentials: at most 50 groups"
        )));
    }
    for (group, fields) in &credentials {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 100
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !name_ok(group) {
            return Err(ApiError::validation(format!(
                "{field}.credentials: invalid group name {group:?}"
            )));
        }
        for (name, value) in fields {
            if !name_ok(name) {
                return Err(ApiError::validation(format!(
                    "{field}.credentials.{group}: invalid field name {name:?}"
                )));
            }
            if value.to_string().len() > 64 * 1024 {
                return Err(ApiError::validation(format!(
                    "{field}.credentials.{group}.{name}: value too long (64 KiB max)"
                )));
            }
        }
    }
    let custom_skills = custom_skills.unwrap_or_default();
    for (i, skill) in custom_skills.iter().enumerate() {
        if skill.key.trim().is_empty() || skill.key.len() > 100 {
            return Err(ApiError::validation(format!(
                "{field}.custom_skills[{i}].key: must be 1 to 100 characters"
            )));
        }
        if skill.value.as_ref().is_some_and(|v| v.len() > 64 * 1024) {
            return Err(ApiError::validation(format!(
                "{field}.custom_skills[{i}].value: too long (64 KiB max)"
            )));
        }
    }
    Ok(PendingConfig {
        credentials: CredentialValues(credentials),
        custom_skills: custom_skills
            .into_iter()
            .map(|s| CustomSkillValue {
                key: s.key,
                value: s.value,
                enabled: s.enabled,
            })
            .collect(),
    })
}

/// Parses a plan name.
///
/// # Errors
/// 422 naming the field.
pub fn plan(field: &str, value: &str) -> Result<Plan, ApiError> {
    value.parse().map_err(|_| {
        ApiError::validation(format!(
            "{field}: must be \"starter\" or \"pro\", got {value:?}"
        ))
    })
}

/// A JSON body allowed up to `api.batch_body_limit_bytes` (the bulk-order route only; every
/// other route keeps the small `api.body_limit_bytes`). Errors are those of `web::Json`.
#[derive(Debug)]
pub struct BulkJson<T>(pub T);

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for BulkJson<T> {
    type Error = actix_web::Error;
    type Future = futures::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let limit = req
            .app_data::<actix_web::web::Data<crate::state::AppState>>()
            .map_or(0, |state| state.settings.api.batch_body_limit_bytes);
        let body = actix_web::dev::JsonBody::<T>::new(req, payload, None, true).limit(limit);
        let req = req.clone();
        Box::pin(async move {
            body.await
                .map(BulkJson)
                .map_err(|e| crate::error::json_error(e, &req))
        })
    }
}
