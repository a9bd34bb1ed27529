//! Money-moving calls other than Deploy — RenewSubscription, UpgradePlan, CreateExtraCredit-
//! Checkout — and CancelSubscription, under the same discipline as Deploy: an intent row with
//! the facts before the call, the call (never retried blindly), a fenced result write, and the
//! charge in the ledger under a reference that names it once. When the answer is lost, the
//! instance's Detail is compared with the facts before the call to learn whether it happened.

use chrono::{DateTime, Utc};
use domain::db::audit::{self, NewAudit};
use domain::db::instances::{self, Instance};
use domain::db::ledger::{self, NewCharge};
use domain::db::operations::{self, Operation};
use domain::model::{ChargeKind, OperationKind, OperationState};
use serde::{Deserialize, Serialize};
use wiro_client::Outcome;
use wiro_client::models::UserAgent;

use crate::Services;
use crate::observe::observed;

/// A billing action on one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BillingAction {
    /// RenewSubscription: renew an expired plan (charged) or undo a pending cancel (free).
    Renew,
    /// UpgradePlan to Pro (prorated charge).
    Upgrade,
    /// CreateExtraCreditCheckout with the wallet.
    ExtraCredits {
        /// `package1`..`package3`.
        pack: String,
    },
    /// CancelSubscription at period end (free).
    Cancel,
}

impl BillingAction {
    fn kind(&self) -> OperationKind {
        match self {
            BillingAction::Renew => OperationKind::Renew,
            BillingAction::Upgrade => OperationKind::Upgrade,
            BillingAction::ExtraCredits { .. } => OperationKind::ExtraCredits,
            BillingAction::Cancel => OperationKind::Cancel,
        }
    }
}

/// What happened.
#[derive(Clone, Debug, Serialize)]
pub struct BillingOutcome {
    /// `renewed`, `undo-cancel`, `upgraded`, `credits_added`, `cancelled`.
    pub result: &'static str,
    /// Cents charged (0 for free actions).
    pub charged_cents: i64,
    /// Whether we learned it happened only by checking upstream after a lost answer.
    pub adopted: bool,
    /// The instance after the action.
    pub instance: Instance,
}

/// Why an action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The instance has no Wiro guid yet.
    #[error("the agent is not deployed yet")]
    NotDeployed,
    /// Another action of the same kind is still unresolved.
    #[error("another {0} of this agent is in progress")]
    InFlight(&'static str),
    /// Wiro refused (nothing happened); the typed reason is inside.
    #[error("{0}")]
    Refused(wiro_client::Error),
    /// Wiro could not be reached or failed; nothing happened (checked upstream).
    #[error("{0}")]
    Upstream(wiro_client::Error),
    /// The answer was lost and the upstream check could not tell either way; the reconciliation
    /// sweep will resolve it.
    #[error("the outcome is unknown until the next reconciliation: {0}")]
    Unknown(wiro_client::Error),
    /// Database or other internal failure.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<domain::Error> for BillingError {
    fn from(e: domain::Error) -> Self {
        BillingError::Internal(e.into())
    }
}

/// The facts an unknown outcome is judged against.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Before {
    plan: Option<String>,
    active: bool,
    period_end: Option<i64>,
    cancel_at_period_end: bool,
    extra_expiry: Option<i64>,
    /// What the action will charge if it happens, in cents (estimate for proration).
    expected_cents: i64,
    action: Option<BillingAction>,
}

fn before(agent: &UserAgent, expected_cents: i64, action: &BillingAction) -> Before {
    let sub = agent.subscription.as_ref();
    Before {
        plan: sub.map(|s| s.plan.clone()),
        active: sub.is_some_and(|s| s.is_active()),
        period_end: sub.and_then(|s| s.currentperiodend).map(|t| t.0),
        cancel_at_period_end: sub.and_then(|s| s.cancelatperiodend).unwrap_or(false),
        extra_expiry: agent.extracreditsexpiry.map(|t| t.0),
        expected_cents,
        action: Some(action.clone()),
    }
}

/// Judges from Detail whether the action happened; `Some((result, cents))` when it did.
fn happened(action: &BillingAction, pre: &Before, post: &UserAgent) -> Option<(&'static str, i64)> {
    let sub = post.subscription.as_ref();
    let active = sub.is_some_and(|s| s.is_active());
    let period_end = sub.and_then(|s| s.currentperiodend).map(|t| t.0);
    let cancel_pending = sub.and_then(|s| s.cancelatperiodend).unwrap_or(false);
    match action {
        BillingAction::Renew if pre.cancel_at_period_end && active && !cancel_pending => {
            Some(("undo-cancel", 0))
        }
        BillingAction::Renew if active && (!pre.active || period_end > pre.period_end) => {
            Some(("renewed", pre.expected_cents))
        }
        BillingAction::Upgrade
            if sub.is_some_and(|s| s.plan_tier() == "pro")
                && pre.plan.as_deref() != Some("agent-pro") =>
        {
            Some(("upgraded", pre.expected_cents))
        }
        BillingAction::ExtraCredits { .. }
            if post.extracreditsexpiry.map(|t| t.0) > pre.extra_expiry =>
        {
            Some(("credits_added", pre.expected_cents))
        }
        BillingAction::Cancel if cancel_pending => Some(("cancelled", 0)),
        _ => None,
    }
}

/// Runs `action` on `instance` exactly once.
///
/// # Errors
/// [`BillingError`]: refusals carry Wiro's typed reason.
pub async fn perform(
    ctx: &Services,
    instance: &Instance,
    action: BillingAction,
    actor: &str,
    request_id: Option<&str>,
) -> Result<BillingOutcome, BillingError> {
    let guid = instance
        .wiro_guid
        .clone()
        .ok_or(BillingError::NotDeployed)?;
    let kind = action.kind();
    if let Some(op) = operations::in_flight(&ctx.pool, instance.id, kind).await?
        && !resolve_stale(ctx, instance, &op).await?
    {
        return Err(BillingError::InFlight(kind.as_str()));
    }
    let pre_agent = ctx
        .wiro
        .detail(&guid)
        .await
        .map_err(BillingError::Upstream)?;
    let expected = expected_cents(ctx, instance, &action, &pre_agent).await;
    let pre = before(&pre_agent, expected, &action);
    let detail = serde_json::to_value(&pre).map_err(anyhow::Error::from)?;
    let lease = ctx.settings.wiro.timeout + std::time::Duration::from_secs(5);
    let Some(op) = operations::begin(&ctx.pool, instance.id, kind, actor, lease, detail).await?
    else {
        return Err(BillingError::InFlight(kind.as_str()));
    };
    let call = match &action {
        BillingAction::Renew => ctx.wiro.renew_subscription(&guid).await.map(|r| {
            let cents = if r.charged() {
                cents_of(r.amount.unwrap_or_default())
            } else {
                0
            };
            (
                if r.charged() {
                    "renewed"
                } else {
                    "undo-cancel"
                },
                cents,
            )
        }),
        BillingAction::Upgrade => ctx
            .wiro
            .upgrade_plan(&guid, "pro")
            .await
            .map(|r| ("upgraded", cents_of(r.prorated_charge))),
        BillingAction::ExtraCredits { pack } => ctx
            .wiro
            .buy_extra_credits(&guid, pack)
            .await
            .map(|_| ("credits_added", expected)),
        BillingAction::Cancel => ctx
            .wiro
            .cancel_subscription(&guid)
            .await
            .map(|_| ("cancelled", 0)),
    };
    match call {
        Ok((result, cents)) => {
            let post = ctx.wiro.detail(&guid).await.ok();
            record(
                ctx,
                instance,
                &op,
                &action,
                result,
                cents,
                post.as_ref(),
                OperationState::Succeeded,
                actor,
                request_id,
            )
            .await
        }
        Err(error) if error.outcome() == Outcome::NotApplied => {
            operations::resolve(
                &ctx.pool,
                op.id,
                OperationState::Refused,
                None,
                Some(&error.to_string()),
            )
            .await?;
            audit::record(
                &ctx.pool,
                NewAudit {
                    actor,
                    action: audit_action(&action),
                    target: Some(format!("instance:{}", instance.id)),
                    request_id,
                    outcome: &format!(
                        "refused: {}",
                        error
                            .wiro()
                            .map_or_else(|| error.to_string(), ToString::to_string)
                    ),
                    detail: serde_json::json!({}),
                },
            )
            .await?;
            if error.is_transient() {
                Err(BillingError::Upstream(error))
            } else {
                Err(BillingError::Refused(error))
            }
        }
        Err(error) => {
            operations::resolve(
                &ctx.pool,
                op.id,
                OperationState::Unknown,
                None,
                Some(&error.to_string()),
            )
            .await?;
            match ctx.wiro.detail(&guid).await {
                Ok(post) => match happened(&action, &pre, &post) {
                    Some((result, cents)) => {
                        record(
                            ctx,
                            instance,
                            &op,
                            &action,
                            result,
                            cents,
                            Some(&post),
                            OperationState::Adopted,
                            actor,
                            request_id,
                        )
                        .await
                    }
                    None => {
                        operations::resolve(&ctx.pool, op.id, OperationState::NotFound, None, None)
                            .await?;
                        Err(BillingError::Upstream(error))
                    }
                },
                Err(_) => Err(BillingError::Unknown(error)),
            }
        }
    }
}

/// Resolves an unresolved operation whose lease ran out (its caller died): true when it is
/// resolved now and a new one may start.
///
/// # Errors
/// Database failures.
pub async fn resolve_stale(
    ctx: &Services,
    instance: &Instance,
    op: &Operation,
) -> anyhow::Result<bool> {
    if op.lease_active(Utc::now()) {
        return Ok(false);
    }
    let Some(guid) = &instance.wiro_guid else {
        return Ok(false);
    };
    let pre: Before = serde_json::from_value(op.detail.clone()).unwrap_or_default();
    let Some(action) = pre.action.clone() else {
        operations::resolve(&ctx.pool, op.id, OperationState::NotFound, None, None).await?;
        return Ok(true);
    };
    let Ok(post) = ctx.wiro.detail(guid).await else {
        return Ok(false);
    };
    match happened(&action, &pre, &post) {
        Some((result, cents)) => {
            let actor = format!("worker:{}", ctx.worker_name);
            record(
                ctx,
                instance,
                op,
                &action,
                result,
                cents,
                Some(&post),
                OperationState::Adopted,
                &actor,
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        None => {
            operations::resolve(&ctx.pool, op.id, OperationState::NotFound, None, None).await?;
        }
    }
    Ok(true)
}

#[expect(clippy::too_many_arguments, reason = "one place writes every outcome")]
async fn record(
    ctx: &Services,
    instance: &Instance,
    op: &Operation,
    action: &BillingAction,
    result: &'static str,
    cents: i64,
    post: Option<&UserAgent>,
    how: OperationState,
    actor: &str,
    request_id: Option<&str>,
) -> Result<BillingOutcome, BillingError> {
    let mut tx = ctx.pool.begin().await.map_err(anyhow::Error::from)?;
    if !operations::resolve(&mut *tx, op.id, how, instance.wiro_guid.as_deref(), None).await? {
        // Someone else resolved it (and recorded its charge) first.
        drop(tx);
        let current = instances::get(&ctx.pool, instance.id)
            .await?
            .unwrap_or_else(|| instance.clone());
        return Ok(BillingOutcome {
            result,
            charged_cents: 0,
            adopted: true,
            instance: current,
        });
    }
    if cents > 0
        && let Some(kind) = charge_kind(action)
    {
        ledger::record(
            &mut *tx,
            NewCharge {
                customer_id: instance.customer_id,
                instance_id: instance.id,
                kind,
                amount_cents: cents,
                reference: reference(action, instance, op, post),
                wiro_guid: instance.wiro_guid.as_deref(),
            },
        )
        .await?;
    }
    audit::record(
        &mut *tx,
        NewAudit {
            actor,
            action: audit_action(action),
            target: Some(format!("instance:{}", instance.id)),
            request_id,
            outcome: "ok",
            detail: serde_json::json!({"result": result, "charged_cents": cents, "adopted": how == OperationState::Adopted}),
        },
    )
    .await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    let updated = match post {
        Some(agent) => {
            instances::update_with(&ctx.pool, instance.id, |_| Some(observed(agent))).await?
        }
        None => None,
    };
    let instance = match updated {
        Some(i) => i,
        None => instances::get(&ctx.pool, instance.id)
            .await?
            .unwrap_or_else(|| instance.clone()),
    };
    Ok(BillingOutcome {
        result,
        charged_cents: cents,
        adopted: how == OperationState::Adopted,
        instance,
    })
}

fn charge_kind(action: &BillingAction) -> Option<ChargeKind> {
    match action {
        BillingAction::Renew => Some(ChargeKind::Renewal),
        BillingAction::Upgrade => Some(ChargeKind::Upgrade),
        BillingAction::ExtraCredits { .. } => Some(ChargeKind::ExtraCredits),
        BillingAction::Cancel => None,
    }
}

/// The ledger reference: a renewal is named by the period it pays for (so an automatic renewal
/// seen by reconciliation and an explicit one cannot both be counted); a pack by its operation.
fn reference(
    action: &BillingAction,
    instance: &Instance,
    op: &Operation,
    post: Option<&UserAgent>,
) -> String {
    match action {
        BillingAction::Renew => {
            let end = post
                .and_then(|a| a.subscription.as_ref())
                .and_then(|s| s.currentperiodend)
                .map_or_else(|| op.id.to_string(), |t| t.0.to_string());
            renewal_reference(instance, &end)
        }
        BillingAction::Upgrade => format!("upgrade:{}", instance.id),
        BillingAction::ExtraCredits { .. } => format!("extra_credits:{}", op.id),
        BillingAction::Cancel => format!("cancel:{}", op.id),
    }
}

/// `renewal:<instance>:<period end>`.
pub fn renewal_reference(instance: &Instance, period_end: &str) -> String {
    format!("renewal:{}:{period_end}", instance.id)
}

fn audit_action(action: &BillingAction) -> &'static str {
    match action {
        BillingAction::Renew => "subscription.renew",
        BillingAction::Upgrade => "subscription.upgrade",
        BillingAction::ExtraCredits { .. } => "credits.buy",
        BillingAction::Cancel => "subscription.cancel",
    }
}

fn cents_of(dollars: f64) -> i64 {
    (dollars * 100.0).round() as i64
}

/// What the action should charge, from the template's prices (for the lost-answer case).
async fn expected_cents(
    ctx: &Services,
    instance: &Instance,
    action: &BillingAction,
    agent: &UserAgent,
) -> i64 {
    let sub = agent.subscription.as_ref();
    match action {
        BillingAction::Cancel => 0,
        BillingAction::Renew => sub.map_or(instance.price_cents, |s| cents_of(s.amount)),
        BillingAction::Upgrade | BillingAction::ExtraCredits { .. } => {
            let Ok(template) = ctx.wiro.agent_detail(&instance.template_guid, false).await else {
                return 0;
            };
            match action {
                BillingAction::ExtraCredits { pack } => template
                    .pricing
                    .extracredits
                    .get(pack)
                    .map_or(0, |p| cents_of(p.price)),
                _ => {
                    let (Some(pro), Some(starter)) =
                        (template.pricing.pro, template.pricing.starter)
                    else {
                        return 0;
                    };
                    let end = sub.and_then(|s| s.currentperiodend).map_or(0, |t| t.0);
                    let days_left = ((end - Utc::now().timestamp()).max(0) + 86_399) / 86_400;
                    (cents_of(pro.price - starter.price) * days_left + 15) / 30
                }
            }
        }
    }
}

/// Period end as a timestamp.
pub fn period_end(agent: &UserAgent) -> Option<DateTime<Utc>> {
    agent
        .subscription
        .as_ref()
        .and_then(|s| s.currentperiodend)
        .and_then(|t| DateTime::from_timestamp(t.0, 0))
}
