//! Deployed instances (`UserAgent/*`): Deploy, MyAgents, Detail, Update, Start, Stop.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::UnixTime;
use super::catalog::Pricing;
use super::configuration::{AgentConfiguration, CredentialValues, CustomSkillValue};
use super::lenient::opt_time;

/// An instance's numeric status (0–6). Unknown numbers are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgentStatus {
    /// 0: not running; Start launches it.
    Stopped,
    /// 1: shutting down.
    Stopping,
    /// 2: waiting for a worker.
    Queued,
    /// 3: container starting.
    Starting,
    /// 4: live.
    Running,
    /// 5: failed; Start retries.
    Error,
    /// 6: credentials missing.
    SetupRequired,
    /// A status this client does not know.
    Unknown(i64),
}

impl AgentStatus {
    /// The wire number.
    pub fn code(self) -> i64 {
        match self {
            AgentStatus::Stopped => 0,
            AgentStatus::Stopping => 1,
            AgentStatus::Queued => 2,
            AgentStatus::Starting => 3,
            AgentStatus::Running => 4,
            AgentStatus::Error => 5,
            AgentStatus::SetupRequired => 6,
            AgentStatus::Unknown(n) => n,
        }
    }

    /// From the wire number.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => AgentStatus::Stopped,
            1 => AgentStatus::Stopping,
            2 => AgentStatus::Queued,
            3 => AgentStatus::Starting,
            4 => AgentStatus::Running,
            5 => AgentStatus::Error,
            6 => AgentStatus::SetupRequired,
            n => AgentStatus::Unknown(n),
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl Serialize for AgentStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for AgentStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = super::lenient::LenientInt::deserialize(d)?;
        Ok(AgentStatus::from_code(n.0))
    }
}

/// Body of `UserAgent/Deploy`. Use [`DeployRequest::prepaid`] for API integrations.
#[derive(Clone, Debug, Serialize)]
pub struct DeployRequest {
    /// Template guid.
    pub agentguid: String,
    /// Instance display name.
    pub title: String,
    /// Optional description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Pay from the wallet (the only programmatic mode).
    pub useprepaid: bool,
    /// `starter` or `pro`.
    pub plan: String,
    /// Whether the instance shows in the operator's pinned list (default true upstream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
}

impl DeployRequest {
    /// A prepaid, unpinned deploy: what a reseller sends for each customer.
    pub fn prepaid(agentguid: &str, title: &str, plan: &str) -> Self {
        Self {
            agentguid: agentguid.to_owned(),
            title: title.to_owned(),
            description: None,
            useprepaid: true,
            plan: plan.to_owned(),
            pinned: Some(false),
        }
    }
}

/// Answer of Deploy, Detail, Update (and Start/Stop with an empty list).
#[derive(Clone, Debug, Deserialize)]
pub struct UserAgentsResponse {
    /// The instances (one for Deploy/Detail/Update, none for Start/Stop).
    #[serde(default)]
    pub useragents: Vec<UserAgent>,
}

/// Body of `UserAgent/MyAgents`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MyAgentsRequest {
    /// Sort column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
    /// `ASC` or `DESC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// Page size (max 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<u32>,
    /// Category filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// `{guid}`: the body of Detail, Start, Stop, CancelSubscription and RenewSubscription.
#[derive(Clone, Debug, Serialize)]
pub struct GuidRequest {
    /// Instance guid.
    pub guid: String,
}

/// Body of `UserAgent/Update`. Only the fields set are sent.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpdateRequest {
    /// Instance guid.
    pub guid: String,
    /// New display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// New description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New categories (must not be empty when given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// Credentials and custom skills to merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration: Option<UpdateConfiguration>,
}

/// The `configuration` of an Update.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UpdateConfiguration {
    /// Credential values to merge per group.
    #[serde(skip_serializing_if = "CredentialValues::is_empty")]
    pub credentials: CredentialValues,
    /// Custom skill changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_skills: Vec<CustomSkillValue>,
}

/// A deployed instance as Deploy, MyAgents, Detail and Update return it. Fields an endpoint does
/// not return are `None` (MyAgents has no `configuration`; Deploy has no `subscription`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserAgent {
    /// Numeric id.
    pub id: i64,
    /// Instance guid: what every other call takes.
    pub guid: String,
    /// Owner account uuid.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The template's numeric id.
    pub agentid: i64,
    /// The team the instance belongs to (null for personal).
    #[serde(default)]
    pub teamguid: Option<String>,
    /// Display name.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Status 0–6.
    pub status: AgentStatus,
    /// Whether pinned in the operator's dashboard.
    #[serde(default)]
    pub pinned: Option<bool>,
    /// True while credentials are missing (Detail, MyAgents, Update).
    #[serde(default)]
    pub setuprequired: Option<bool>,
    /// Sanitized configuration (Deploy, Detail, Update).
    #[serde(default)]
    pub configuration: Option<AgentConfiguration>,
    /// Subscription (Detail, MyAgents); `null` when there is none.
    #[serde(default)]
    pub subscription: Option<Subscription>,
    /// Template summary.
    #[serde(default)]
    pub agent: Option<AgentSummary>,
    /// Extra credits remaining.
    #[serde(default)]
    pub extracredits: Option<i64>,
    /// When the earliest extra-credit pack expires.
    #[serde(default, deserialize_with = "opt_time")]
    pub extracreditsexpiry: Option<UnixTime>,
    /// Stripe portal URL (Stripe subscriptions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripeportalurl: Option<String>,
    /// Stripe plan-change URL (Stripe subscriptions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripeupdateurl: Option<String>,
    /// Stripe cancel URL (Stripe subscriptions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripecancelurl: Option<String>,
    /// Creation time.
    #[serde(default, deserialize_with = "opt_time")]
    pub createdat: Option<UnixTime>,
    /// Last change.
    #[serde(default, deserialize_with = "opt_time")]
    pub updatedat: Option<UnixTime>,
    /// Last Start.
    #[serde(default, deserialize_with = "opt_time")]
    pub startedat: Option<UnixTime>,
    /// When it last reached Running.
    #[serde(default, deserialize_with = "opt_time")]
    pub runningat: Option<UnixTime>,
}

impl UserAgent {
    /// Monthly credits remaining, from `configuration.rateLimit` when present.
    pub fn monthly_credits(&self) -> Option<i64> {
        self.configuration
            .as_ref()
            .and_then(|c| c.rate_limit.as_ref())
            .and_then(|r| r.monthly_credits)
    }
}

/// The template summary nested in an instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    /// Template id.
    pub id: i64,
    /// Template title.
    #[serde(default)]
    pub title: Option<String>,
    /// Template slug.
    #[serde(default)]
    pub slug: Option<String>,
    /// Cover image.
    #[serde(default)]
    pub cover: Option<String>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Prices.
    #[serde(default)]
    pub pricing: Option<Pricing>,
}

/// A subscription as Detail and MyAgents show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// `agent-starter` or `agent-pro`.
    pub plan: String,
    /// `active` or `expired`.
    pub status: String,
    /// Dollars per period.
    #[serde(default)]
    pub amount: f64,
    /// `usd`.
    #[serde(default)]
    pub currency: Option<String>,
    /// End of the paid period.
    #[serde(default, deserialize_with = "opt_time")]
    pub currentperiodend: Option<UnixTime>,
    /// The same as an ISO date.
    #[serde(default)]
    pub renewaldate: Option<String>,
    /// Whole days left in the period.
    #[serde(default)]
    pub daysremaining: Option<i64>,
    /// A scheduled plan change, if any (shape undocumented).
    #[serde(default)]
    pub pendingdowngrade: Option<serde_json::Value>,
    /// `prepaid` or `stripe`. (No documented field shows a pending cancellation: the reseller
    /// remembers its own.)
    #[serde(default)]
    pub provider: Option<String>,
}

impl Subscription {
    /// `starter` or `pro` from `agent-starter` / `agent-pro`.
    pub fn plan_tier(&self) -> &str {
        self.plan.strip_prefix("agent-").unwrap_or(&self.plan)
    }

    /// True while the subscription is paid up.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}
