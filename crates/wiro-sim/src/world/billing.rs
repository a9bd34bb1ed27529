//! Subscriptions and credits: 30-day prepaid periods that renew when the wallet covers them and
//! expire when it does not, CancelSubscription (at period end) and its undo, UpgradePlan with
//! proration, RenewSubscription, and extra-credit packs (Pro only, 6 months).

use serde_json::{Value, json};

use super::instances::{Caller, PERIOD_MS, str_field, visible_mut};
use super::{Instance, Pack, SimError, SimResult, World};
use crate::clock::{DAY_MS, SimTime};
use crate::money::{cents, dollars};

/// Extra credits are forfeited this long after purchase.
pub const PACK_LIFETIME_MS: i64 = 180 * DAY_MS;

const PACKS: [&str; 3] = ["package1", "package2", "package3"];

/// Billing endpoints need the instance visible and, for team agents, the team header.
fn billing_instance<'a>(
    world: &'a mut World,
    caller: &Caller,
    guid: &str,
) -> Result<&'a mut Instance, SimError> {
    let inst = visible_mut(world, caller, guid, "User agent not found")?;
    match caller.context_refusal(inst) {
        Some(refusal) => Err(refusal),
        None => Ok(inst),
    }
}

/// Resets an instance for a new period: credits refreshed, status back to Stopped.
fn start_new_period(inst: &mut Instance, credits: i64, period_end: SimTime, at: SimTime) {
    inst.monthly_credits = credits;
    if let Some(sub) = inst.subscription.as_mut() {
        sub.period_end = period_end;
        sub.active = true;
        sub.cancel_at_period_end = false;
    }
    if inst.status != 6 {
        inst.status = 0;
        inst.transition_at = None;
        inst.restart_after = false;
    }
    inst.updated_at = at;
}

fn expire(inst: &mut Instance, at: SimTime) {
    if let Some(sub) = inst.subscription.as_mut() {
        sub.active = false;
        sub.cancel_at_period_end = false;
    }
    inst.monthly_credits = 0;
    if matches!(inst.status, 1..=4) {
        inst.status = 0;
        inst.transition_at = None;
        inst.restart_after = false;
    }
    inst.updated_at = at;
}

/// Whether `inst`'s period ended by `now` with its subscription still active (a renewal or an
/// expiry is due).
pub fn period_ended(inst: &Instance, now: SimTime) -> bool {
    inst.subscription
        .as_ref()
        .is_some_and(|sub| sub.active && sub.period_end <= now)
}

/// Forfeits `inst`'s packs expired by `now` (and drops spent ones).
pub fn forfeit_expired_packs(inst: &mut Instance, now: SimTime) {
    inst.packs.retain(|p| p.expires_at > now && p.credits > 0);
}

/// Processes every period end due by `now`, earliest first across instances (they may share a
/// wallet, so order decides who is renewed when money runs short). `World::settle` calls it
/// only when [`period_ended`] found one.
pub fn renew_or_expire_due(world: &mut World, now: SimTime) {
    loop {
        let due = world
            .instances
            .values()
            .filter_map(|inst| {
                let sub = inst.subscription.as_ref()?;
                (sub.active && sub.period_end <= now)
                    .then(|| (sub.period_end, inst.id, inst.guid.clone()))
            })
            .min();
        let Some((at, _, guid)) = due else {
            break;
        };
        renew_or_expire(world, &guid, at);
    }
}

fn renew_or_expire(world: &mut World, guid: &str, at: SimTime) {
    let Some(inst) = world.instances.get(guid) else {
        return;
    };
    let Some(sub) = inst.subscription.clone() else {
        return;
    };
    let credits = world
        .catalog
        .by_id(inst.template_id)
        .and_then(|t| t.pricing.plan(&sub.plan))
        .map_or(0, |p| p.credits);
    let payer = inst.payer_key.clone();
    let renewed = if sub.cancel_at_period_end || sub.amount_cents == 0 {
        false
    } else if sub.provider == "stripe" {
        true // Stripe collects the card; no wallet charge.
    } else {
        world
            .charge(&payer, guid, "renewal", sub.amount_cents, at)
            .is_ok()
    };
    let Some(inst) = world.instances.get_mut(guid) else {
        return;
    };
    if renewed {
        start_new_period(inst, credits, sub.period_end + PERIOD_MS, at);
    } else {
        expire(inst, at);
    }
}

/// `UserAgent/CreateExtraCreditCheckout`.
pub fn extra_credits(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "useragentGuid")
        .unwrap_or_default()
        .to_owned();
    let pack = str_field(body, "pack").unwrap_or_default().to_owned();
    let prepaid = body
        .get("useprepaid")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let inst = billing_instance(world, caller, &guid)?;
    if !PACKS.contains(&pack.as_str()) {
        return Err(SimError::refuse(
            "Invalid pack. Choose package1, package2, or package3.",
        ));
    }
    let sub = inst
        .subscription
        .clone()
        .filter(|s| s.active)
        .ok_or_else(|| {
            SimError::refuse("Active subscription required to purchase extra credits.")
        })?;
    if sub.plan != "pro" {
        return Err(SimError::refuse(
            "Extra credits are available only for Pro plan subscribers. Please upgrade your plan.",
        ));
    }
    let template_id = inst.template_id;
    let price = world
        .catalog
        .by_id(template_id)
        .and_then(|t| t.pricing.extracredits.get(&pack).copied())
        .ok_or_else(|| SimError::refuse("Extra credit pack not available for this agent."))?;
    if !prepaid {
        return Ok(json!({"url": format!("https://checkout.stripe.com/c/pay/sim_pack_{guid}")}));
    }
    world.charge(
        &caller.api_key,
        &guid,
        "extra_credits",
        cents(price.price),
        now,
    )?;
    if let Some(inst) = world.instances.get_mut(&guid) {
        inst.packs.push(Pack {
            credits: price.credits,
            expires_at: now + PACK_LIFETIME_MS,
        });
        inst.updated_at = now;
    }
    Ok(json!({"url": null}))
}

/// `UserAgent/CancelSubscription`: prepaid only; ends at period end.
pub fn cancel(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default().to_owned();
    let inst = billing_instance(world, caller, &guid)?;
    let sub = inst
        .subscription
        .as_mut()
        .filter(|s| s.active)
        .ok_or_else(|| SimError::refuse("No active subscription found to cancel"))?;
    if sub.provider == "stripe" {
        return Err(SimError::refuse(
            "Stripe subscriptions must be cancelled via Stripe portal",
        ));
    }
    sub.cancel_at_period_end = true;
    let cancels_at = crate::clock::secs(sub.period_end);
    inst.updated_at = now;
    Ok(json!({"cancelsAt": cancels_at}))
}

/// `UserAgent/UpgradePlan`: Starter → Pro, charging the price difference for the days left.
pub fn upgrade(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default().to_owned();
    let target = str_field(body, "plan").unwrap_or_default().to_owned();
    let inst = billing_instance(world, caller, &guid)?;
    let sub = inst
        .subscription
        .clone()
        .filter(|s| s.active)
        .ok_or_else(|| {
            SimError::refuse(
                "Active subscription required to start agent. Please renew your subscription.",
            )
        })?;
    if target != "pro" {
        if sub.plan == "pro" && target == "starter" {
            return Err(SimError::refuse(
                "Cannot downgrade from Pro to Starter. Cancel your subscription instead.",
            ));
        }
        return Err(SimError::refuse(
            "Valid plan required when using prepaid (starter or pro)",
        ));
    }
    if sub.plan == "pro" {
        return Err(SimError::refuse("Subscription is already active"));
    }
    let template_id = inst.template_id;
    let pricing = world
        .catalog
        .by_id(template_id)
        .map(|t| t.pricing.clone())
        .unwrap_or_default();
    let (Some(pro), Some(starter)) = (pricing.pro, pricing.starter) else {
        return Err(SimError::refuse("Pricing not available for this plan"));
    };
    let days_left = ((sub.period_end - now).max(0) + DAY_MS - 1) / DAY_MS;
    let charge = (cents(pro.price - starter.price) * days_left + 15) / 30;
    world.charge(&caller.api_key, &guid, "upgrade", charge, now)?;
    if let Some(inst) = world.instances.get_mut(&guid) {
        if let Some(sub) = inst.subscription.as_mut() {
            sub.plan = "pro".to_owned();
            sub.amount_cents = cents(pro.price);
        }
        inst.monthly_credits = pro.credits;
        inst.updated_at = now;
    }
    Ok(json!({
        "plan": "agent-pro",
        "proratedCharge": dollars(charge),
        "newMonthlyCredits": pro.credits,
    }))
}

/// `UserAgent/RenewSubscription`: undo a pending cancel (free) or renew an expired plan.
pub fn renew(world: &mut World, caller: &Caller, body: &Value, now: SimTime) -> SimResult {
    let guid = str_field(body, "guid").unwrap_or_default().to_owned();
    let inst = billing_instance(world, caller, &guid)?;
    let Some(sub) = inst.subscription.as_mut() else {
        return Err(SimError::refuse("No expired subscription found to renew"));
    };
    if sub.active {
        if sub.cancel_at_period_end {
            sub.cancel_at_period_end = false;
            inst.updated_at = now;
            return Ok(json!({"action": "undo-cancel"}));
        }
        return Err(SimError::refuse("Subscription is already active"));
    }
    let sub = sub.clone();
    if sub.amount_cents <= 0 {
        return Err(SimError::refuse("Renewal pricing not available"));
    }
    let template_id = inst.template_id;
    let credits = world
        .catalog
        .by_id(template_id)
        .and_then(|t| t.pricing.plan(&sub.plan))
        .map_or(0, |p| p.credits);
    world.charge(&caller.api_key, &guid, "renewal", sub.amount_cents, now)?;
    if let Some(inst) = world.instances.get_mut(&guid) {
        start_new_period(inst, credits, now + PERIOD_MS, now);
    }
    Ok(json!({
        "action": "renewed",
        "plan": format!("agent-{}", sub.plan),
        "amount": dollars(sub.amount_cents),
    }))
}

/// Spends `credits` the way the runtime does: monthly first, then packs oldest first. Returns
/// false when both pools were already empty.
pub fn consume(inst: &mut Instance, credits: i64) -> bool {
    if inst.monthly_credits + inst.extra_credits() <= 0 {
        return false;
    }
    let mut left = credits;
    let from_monthly = left.min(inst.monthly_credits.max(0));
    inst.monthly_credits -= from_monthly;
    left -= from_monthly;
    for pack in &mut inst.packs {
        if left == 0 {
            break;
        }
        let take = left.min(pack.credits);
        pack.credits -= take;
        left -= take;
    }
    inst.packs.retain(|p| p.credits > 0);
    true
}
