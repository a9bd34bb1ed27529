//! The documented body of every webhook request, per event type (version 1 of each; a
//! breaking change gets a new type, e.g. `agent.state_changed.v2`, sent next to the old one).
//! The bodies themselves are written by the database triggers of the `webhooks` migration in
//! the transaction of the change they report; the end-to-end tests read every body they
//! receive into [`WebhookEvent`] and compare its fields with the body's, so document and
//! triggers agree.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What every agent event says about the agent.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentFacts {
    /// Our agent id.
    pub agent_id: Uuid,
    /// The customer's id in your SaaS (the JWT `sub`).
    pub customer: String,
    /// Template slug.
    pub template: String,
    /// `starter` or `pro`.
    pub plan: String,
    /// The agent's title.
    pub title: String,
}

/// `agent.state_changed`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentStateChanged {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// The state before.
    pub from: String,
    /// The state now (see the agent's `state`).
    pub to: String,
}

/// `agent.failed`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentFailed {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// The step that failed (`deploy`, `configure`, `start`...).
    pub step: Option<String>,
    /// Wiro's (or our) reason.
    pub reason: Option<String>,
}

/// `agent.awaiting_credentials`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentAwaitingCredentials {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// Fields still missing, as `group.field`.
    pub missing_credentials: Vec<String>,
}

/// `agent.awaiting_connection`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AgentAwaitingConnection {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// Accounts still to connect, by provider.
    pub missing_connections: Vec<String>,
}

/// `subscription.cancelled`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SubscriptionCancelled {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// When the subscription ends.
    pub cancels_at: Option<DateTime<Utc>>,
    /// Who cancelled: `customer`, `ops` or `suspension`.
    pub source: Option<String>,
    /// A downgrade's cancel: the plan the agent comes back on at `cancels_at`.
    pub downgrade_to: Option<String>,
}

/// `subscription.expired`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SubscriptionExpired {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// The end of the last paid period.
    pub period_end: Option<DateTime<Utc>>,
}

/// `subscription.renewed` and `credits.topped_up`: a charge in the ledger.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct Charged {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// What Wiro charged the operator's wallet, in cents.
    pub amount_cents: i64,
    /// The ledger reference (`renewal:<agent>:<period end>`, `extra_credits:<operation>`).
    pub reference: String,
}

/// `message.completed` and `message.failed`: a message sent to an agent ended (learnt from
/// Wiro's callback, confirmed by Message/Detail, or by polling). Read the answer at
/// `GET /v1/agents/{agent_id}/messages/{message_id}`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct MessageFinished {
    /// The agent.
    #[serde(flatten)]
    pub agent: AgentFacts,
    /// The message (Wiro's message guid).
    pub message_id: String,
    /// Its session.
    pub session: String,
    /// When we learnt it ended.
    pub finished_at: DateTime<Utc>,
}

/// `batch.completed`: every order of a bulk batch has left the in-progress states.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BatchCompleted {
    /// The batch (`GET /v1/admin/provisioning-batches/{batch_id}`).
    pub batch_id: Uuid,
    /// Its idempotency key, if it had one.
    pub key: Option<String>,
    /// Orders in it.
    pub total: i64,
    /// Who submitted it.
    pub created_by: String,
    /// Orders per state when it completed (`running`, `failed`, `awaiting_credentials`...).
    pub counts: std::collections::BTreeMap<String, i64>,
}

/// `alert.raised`, `subscription.renewal_parked` and `credits.low`: an ops alert.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct AlertRaised {
    /// The alert (`GET /v1/admin/alerts`).
    pub alert_id: i64,
    /// Its kind (`renewal_parked`, `credits_low`, `webhook_endpoint_disabled`...).
    pub kind: String,
    /// What it is about.
    pub subject: String,
    /// The agent, when it is about one.
    pub agent_id: Option<Uuid>,
    /// Facts (amounts, reasons).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// The body of a webhook request: `type`, `timestamp` (when the change was committed) and
/// `data`. Verify the `webhook-signature` header (Standard Webhooks) before trusting it, and
/// deduplicate on `webhook-id`: delivery is at least once.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(tag = "type")]
pub enum WebhookEvent {
    /// Any change of an agent's state.
    #[serde(rename = "agent.state_changed")]
    AgentStateChanged {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// What changed.
        data: AgentStateChanged,
    },
    /// The agent runs.
    #[serde(rename = "agent.running")]
    AgentRunning {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The agent.
        data: AgentFacts,
    },
    /// Provisioning failed (ops can retry).
    #[serde(rename = "agent.failed")]
    AgentFailed {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// Why.
        data: AgentFailed,
    },
    /// The agent waits for credentials.
    #[serde(rename = "agent.awaiting_credentials")]
    AgentAwaitingCredentials {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// What is missing.
        data: AgentAwaitingCredentials,
    },
    /// The agent waits for an account to be connected.
    #[serde(rename = "agent.awaiting_connection")]
    AgentAwaitingConnection {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// What is missing.
        data: AgentAwaitingConnection,
    },
    /// A period was paid (automatically by Wiro, or by our renewal).
    #[serde(rename = "subscription.renewed")]
    SubscriptionRenewed {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The charge.
        data: Charged,
    },
    /// A renewal the wallet could not pay waits for ops.
    #[serde(rename = "subscription.renewal_parked")]
    SubscriptionRenewalParked {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The alert.
        data: AlertRaised,
    },
    /// The subscription ends at the period end.
    #[serde(rename = "subscription.cancelled")]
    SubscriptionCancelled {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// When and why.
        data: SubscriptionCancelled,
    },
    /// The subscription expired.
    #[serde(rename = "subscription.expired")]
    SubscriptionExpired {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// Until when it was paid.
        data: SubscriptionExpired,
    },
    /// Credits fell below the top-up threshold and policy left it to ops.
    #[serde(rename = "credits.low")]
    CreditsLow {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The alert.
        data: AlertRaised,
    },
    /// A credit pack was bought.
    #[serde(rename = "credits.topped_up")]
    CreditsToppedUp {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The charge.
        data: Charged,
    },
    /// The agent ran out of credits (`out_of_credits`).
    #[serde(rename = "credits.exhausted")]
    CreditsExhausted {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The agent.
        data: AgentFacts,
    },
    /// The agent answered a message (`agent_end`).
    #[serde(rename = "message.completed")]
    MessageCompleted {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The message.
        data: MessageFinished,
    },
    /// A message failed or was cancelled (`agent_error`, `agent_cancel`).
    #[serde(rename = "message.failed")]
    MessageFailed {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The message.
        data: MessageFinished,
    },
    /// A bulk batch's orders all settled.
    #[serde(rename = "batch.completed")]
    BatchCompleted {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The batch.
        data: BatchCompleted,
    },
    /// An ops alert was raised.
    #[serde(rename = "alert.raised")]
    AlertRaised {
        /// Committed at.
        timestamp: DateTime<Utc>,
        /// The alert.
        data: AlertRaised,
    },
}
