//! What a billing action means now — from a fresh Detail and our own records (Wiro shows no
//! pending cancellation) — what it will charge, and the facts its intent records.

use chrono::{DateTime, Utc};
use domain::db::instances::Instance;
use domain::model::{CancelSource, OperationKind, Pack};
use serde::{Deserialize, Serialize};
use wiro_client::models::UserAgent;

use super::{ActionOutcome, ActionResult, BillingAction, BillingError};
use crate::Services;
use crate::observe::{cents, period_end};

/// The facts taken with the intent; a lost answer is judged against them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The Wiro instance.
    pub guid: String,
    /// Paid until (Unix seconds).
    pub period_end: Option<i64>,
    /// The subscription was active.
    pub active: bool,
    /// `agent-starter` / `agent-pro`.
    pub plan: Option<String>,
    /// The subscription's price per period.
    pub amount_cents: i64,
    /// Extra credits left.
    pub extra_credits: Option<i64>,
    /// Monthly credits left.
    pub monthly_credits: Option<i64>,
    /// What the call charges if it happens (an estimate for an upgrade's proration).
    pub expected_cents: i64,
    /// The pack bought and the credits it adds.
    pub pack: Option<Pack>,
    /// Credits the pack adds.
    pub pack_credits: Option<i64>,
    /// Who asked for a cancellation.
    pub cancel_source: Option<CancelSource>,
    /// Pro's price minus Starter's, in cents (an upgrade: what its proration is a share of;
    /// the retail price is prorated by the same share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wholesale_diff_cents: Option<i64>,
    /// The cancel schedules a downgrade (or the undo withdraws one).
    #[serde(default)]
    pub downgrade: bool,
}

impl Snapshot {
    /// The period end as a time.
    pub fn period_end(&self) -> Option<DateTime<Utc>> {
        self.period_end
            .and_then(|secs| DateTime::from_timestamp(secs, 0))
    }
}

/// What to do.
#[derive(Debug)]
pub(super) struct Plan {
    /// The call.
    pub kind: OperationKind,
    /// The facts recorded with the intent.
    pub snapshot: Snapshot,
    /// Already done: answer this without calling.
    pub already: Option<ActionOutcome>,
}

/// A kind of the flight `action` belongs to (to look for an unresolved call of it).
pub(super) fn flight_kind(action: BillingAction) -> OperationKind {
    match action {
        BillingAction::ExtraCredits { .. } => OperationKind::ExtraCredits,
        BillingAction::Renew
        | BillingAction::Upgrade
        | BillingAction::Cancel { .. }
        | BillingAction::Downgrade { .. }
        | BillingAction::WithdrawDowngrade => OperationKind::Renew,
    }
}

/// Decides the call. Nothing is sent for an action that would change nothing.
pub(super) fn decide(
    services: &Services,
    current: &Instance,
    action: BillingAction,
    pre: &UserAgent,
) -> Result<Plan, BillingError> {
    let sub = pre.subscription.as_ref();
    let active = sub.is_some_and(wiro_client::models::Subscription::is_active);
    let mut snapshot = Snapshot {
        guid: pre.guid.clone(),
        period_end: sub.and_then(period_end).map(|t| t.timestamp()),
        active,
        plan: sub.map(|s| s.plan.clone()),
        amount_cents: sub.map_or(0, |s| cents(s.amount)),
        extra_credits: pre.extracredits,
        monthly_credits: pre.monthly_credits(),
        ..Snapshot::default()
    };
    let plan = |kind, snapshot| Plan {
        kind,
        snapshot,
        already: None,
    };
    Ok(match action {
        BillingAction::Renew if active && current.cancel_at_period_end => {
            plan(OperationKind::UndoCancel, snapshot)
        }
        BillingAction::Renew if active => {
            return Err(BillingError::Pointless(
                "subscription_already_active",
                "the subscription is active and no cancellation is pending".into(),
            ));
        }
        BillingAction::Renew => {
            snapshot.expected_cents = snapshot.amount_cents;
            plan(OperationKind::Renew, snapshot)
        }
        BillingAction::Upgrade if sub.is_some_and(|s| s.plan_tier() == "pro") => {
            return Err(BillingError::Pointless(
                "already_pro",
                "the agent is already on the Pro plan".into(),
            ));
        }
        BillingAction::Upgrade => {
            snapshot.expected_cents = proration(pre);
            snapshot.wholesale_diff_cents = plan_difference(pre);
            plan(OperationKind::Upgrade, snapshot)
        }
        BillingAction::ExtraCredits { .. } if !active => {
            // Wiro refuses it ("Active subscription required to purchase extra credits."):
            // nothing to send.
            return Err(BillingError::Pointless(
                "subscription_required",
                "the subscription is not active; renew it before buying credits".into(),
            ));
        }
        BillingAction::ExtraCredits { pack } => {
            let price = services
                .settings
                .billing
                .pack(&current.template_slug, pack)
                .ok_or_else(|| BillingError::PackNotOffered(pack, current.template_slug.clone()))?;
            snapshot.expected_cents = price.price_cents;
            snapshot.pack = Some(pack);
            snapshot.pack_credits = Some(price.credits);
            plan(OperationKind::ExtraCredits, snapshot)
        }
        BillingAction::Cancel { .. } if current.downgrade_to.0.is_some() => {
            return Err(BillingError::Pointless(
                "downgrade_pending",
                "a downgrade is scheduled at the period end; withdraw it before cancelling".into(),
            ));
        }
        BillingAction::Downgrade { .. } if current.downgrade_to.0.is_some() => Plan {
            kind: OperationKind::Cancel,
            snapshot,
            already: Some(ActionOutcome {
                result: ActionResult::DowngradeScheduled,
                charged_cents: 0,
                cancels_at: current.cancels_at,
            }),
        },
        BillingAction::Downgrade { .. } if sub.is_none_or(|s| s.plan_tier() != "pro") => {
            return Err(BillingError::Pointless(
                "not_pro",
                "only an agent on the Pro plan can be downgraded".into(),
            ));
        }
        BillingAction::Downgrade { .. } if !active => {
            return Err(BillingError::Pointless(
                "subscription_required",
                "the subscription is not active; there is no period end to downgrade at".into(),
            ));
        }
        BillingAction::Downgrade { .. } if current.cancel_at_period_end => {
            return Err(BillingError::Pointless(
                "cancel_pending",
                "the subscription is already cancelled at the period end; renew it (take the \
                 cancel back) before scheduling a downgrade"
                    .into(),
            ));
        }
        BillingAction::Downgrade { source } => {
            snapshot.cancel_source = Some(source);
            snapshot.downgrade = true;
            plan(OperationKind::Cancel, snapshot)
        }
        BillingAction::WithdrawDowngrade if current.downgrade_to.0.is_none() => {
            return Err(BillingError::Pointless(
                "no_downgrade",
                "no downgrade is scheduled for this agent".into(),
            ));
        }
        BillingAction::WithdrawDowngrade if !active => {
            // The period ended: the switch to the new plan is under way.
            return Err(BillingError::Pointless(
                "downgrade_under_way",
                "the period has ended; the downgrade is under way and can no longer be withdrawn"
                    .into(),
            ));
        }
        BillingAction::WithdrawDowngrade => {
            snapshot.downgrade = true;
            plan(OperationKind::UndoCancel, snapshot)
        }
        BillingAction::Cancel { .. } if active && current.cancel_at_period_end => Plan {
            kind: OperationKind::Cancel,
            snapshot,
            already: Some(ActionOutcome {
                result: ActionResult::Cancelled,
                charged_cents: 0,
                cancels_at: current.cancels_at,
            }),
        },
        BillingAction::Cancel { source } => {
            snapshot.cancel_source = Some(source);
            plan(OperationKind::Cancel, snapshot)
        }
    })
}

/// Pro's price minus Starter's, in cents, from Detail's `agent.pricing`.
fn plan_difference(agent: &UserAgent) -> Option<i64> {
    let pricing = agent.agent.as_ref()?.pricing.as_ref()?;
    Some(cents(
        pricing.pro.as_ref()?.price - pricing.starter.as_ref()?.price,
    ))
}

/// What UpgradePlan charges, as Wiro computes it: the price difference for the days left,
/// over a 30-day period (`daysremaining` and `agent.pricing` are in Detail). Used only when the
/// answer (`proratedCharge`) was lost.
fn proration(agent: &UserAgent) -> i64 {
    let pricing = agent.agent.as_ref().and_then(|a| a.pricing.as_ref());
    let (Some(pro), Some(starter)) = (
        pricing.and_then(|p| p.pro.as_ref()),
        pricing.and_then(|p| p.starter.as_ref()),
    ) else {
        return 0;
    };
    let days = agent
        .subscription
        .as_ref()
        .and_then(|s| s.daysremaining)
        .unwrap_or(0)
        .max(0);
    (cents(pro.price - starter.price) * days + 15) / 30
}
