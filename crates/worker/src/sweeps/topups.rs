//! Credit top-up. For active subscriptions whose remaining credits (monthly + extra) fall below
//! `billing.topup_threshold`: a Pro instance gets `billing.topup_pack` bought from the wallet —
//! at most once per threshold crossing (the instance is disarmed until credits rise above the
//! threshold again) and at most `billing.topup_monthly_cap` packs per customer per calendar
//! month; a Starter instance follows `billing.starter_policy` (upgrade to Pro, or alert only).

use std::collections::HashMap;

use domain::config::StarterPolicy;
use domain::db::instances::{self, Change, Instance};
use domain::db::{alerts, topups};
use domain::model::{CustomerStatus, InstanceState};
use futures::TryStreamExt;
use operations::Services;
use operations::billing::{self, BillingAction, BillingError};
use operations::observe;
use operations::protocol::Requester;
use wiro_client::models::UserAgent;

use super::{Statuses, for_each};

/// What a top-up sweep did.
#[derive(Debug, Default)]
pub struct TopupReport {
    /// Agents MyAgents listed.
    pub listed: usize,
    /// Agents whose credits were read (Detail): the ones MyAgents could not clear.
    pub candidates: usize,
    /// Items that failed (retried next sweep).
    pub failures: usize,
}

/// Runs the sweep: MyAgents (one call per page) says which agents may need credits; only those
/// cost a Detail, the one place Wiro shows monthly credits.
///
/// # Errors
/// When MyAgents cannot be read; database failures.
pub async fn run(ctx: &Services) -> anyhow::Result<TopupReport> {
    let threshold = ctx.settings.billing.topup_threshold;
    if threshold <= 0 {
        return Ok(TopupReport::default());
    }
    let upstream: Vec<UserAgent> = ctx
        .wiro
        .my_agents_pages(wiro_client::MY_AGENTS_MAX_PAGE)
        .try_concat()
        .await?;
    let ours = instances::deployed(&ctx.pool).await?;
    let by_guid: HashMap<&str, &Instance> = ours
        .iter()
        .filter_map(|i| i.wiro_guid.as_deref().map(|g| (g, i)))
        .collect();
    let candidates: Vec<Instance> = upstream
        .iter()
        .filter_map(|agent| {
            let instance = by_guid.get(agent.guid.as_str())?;
            may_need_credits(instance, agent, threshold).then(|| (*instance).clone())
        })
        .collect();
    let statuses = Statuses::of(&ctx.pool, candidates.iter().map(|i| i.customer_id)).await?;
    let count = candidates.len();
    let failures = for_each(ctx, candidates, |instance| {
        let statuses = &statuses;
        async move { top_up_one(ctx, instance, statuses).await }
    })
    .await;
    Ok(TopupReport {
        listed: upstream.len(),
        candidates: count,
        failures,
    })
}

/// Whether an agent's credits may call for the policy, judged from what MyAgents shows (its
/// subscription, extra credits) and our record, without its monthly credits (only in Detail).
/// A fleet whose agents hold no extra credits still costs one Detail per active agent.
fn may_need_credits(instance: &Instance, agent: &UserAgent, threshold: i64) -> bool {
    if instance.subscription_status.as_deref() != Some("active")
        || matches!(
            instance.state,
            InstanceState::Failed | InstanceState::Deploying | InstanceState::Pending
        )
    {
        return false;
    }
    if !agent
        .subscription
        .as_ref()
        .is_some_and(wiro_client::models::Subscription::is_active)
    {
        return false; // expired: nothing to top up; reconciliation and renewals record it
    }
    if !instance.topup_armed {
        return true; // a crossing was handled: Detail shows when credits are back above
    }
    // Above the line whatever the monthly credits are; below it only Detail can tell. (Our
    // stored monthly credits are as old as the last Detail, and the agent may have run since.)
    agent.extracredits.unwrap_or(0) < threshold
}

/// The policy for one agent now, outside the schedule (its credits ran out): the same rules
/// as the sweep — one action per threshold crossing, the monthly cap, the Starter policy.
///
/// # Errors
/// Database and upstream failures.
pub(crate) async fn top_up_now(ctx: &Services, id: domain::ids::InstanceId) -> anyhow::Result<()> {
    if ctx.settings.billing.topup_threshold <= 0 {
        return Ok(());
    }
    let Some(instance) = instances::get(&ctx.pool, id).await? else {
        return Ok(());
    };
    top_up_one(ctx, instance, &Statuses::new(&ctx.pool)).await
}

async fn top_up_one(ctx: &Services, instance: Instance, statuses: &Statuses) -> anyhow::Result<()> {
    if statuses.get(instance.customer_id).await? != CustomerStatus::Active {
        return Ok(());
    }
    let Some(guid) = instance.wiro_guid.as_deref() else {
        return Ok(());
    };
    let agent = ctx.wiro.detail(guid).await?;
    let subscribed = agent
        .subscription
        .as_ref()
        .is_some_and(wiro_client::models::Subscription::is_active);
    if !subscribed {
        // Expired since we last looked: nothing to top up (renewal refreshes the credits).
        observe::record_now(&ctx.pool, instance.id, None, &agent, Change::default()).await?;
        return Ok(());
    }
    let credits = agent.monthly_credits().unwrap_or(0) + agent.extracredits.unwrap_or(0);
    let threshold = ctx.settings.billing.topup_threshold;
    let subject = alerts::instance_subject(instance.id);
    if credits >= threshold {
        // Above the line (again): the next crossing may top up.
        let armed = Change {
            topup_armed: Some(true),
            ..Change::default()
        };
        observe::record_now(&ctx.pool, instance.id, None, &agent, armed).await?;
        alerts::resolve(&ctx.pool, "credits_low", &subject).await?;
        return Ok(());
    }
    // Disarm (only if armed): one action per crossing, even with concurrent sweeps.
    let current = observe::record_now(&ctx.pool, instance.id, None, &agent, Change::default())
        .await?
        .unwrap_or(instance);
    if !current.topup_armed {
        return Ok(()); // this crossing was handled already
    }
    let disarm = Change {
        topup_armed: Some(false),
        ..Change::default()
    };
    let Some(instance) = instances::update(&ctx.pool, current.id, current.version, disarm).await?
    else {
        return Ok(()); // changed meanwhile: the next sweep decides
    };
    let tier = agent
        .subscription
        .as_ref()
        .map(|s| s.plan_tier().to_owned())
        .unwrap_or_default();
    let detail = serde_json::json!({"credits": credits, "threshold": threshold});
    let actor = ctx.actor();
    let who = Requester {
        actor: &actor,
        request_id: None,
        capped: true,
    };
    if tier == "pro" {
        buy_pack(ctx, &instance, &subject, detail, who).await
    } else if ctx.settings.billing.starter_policy == StarterPolicy::Upgrade {
        let result = billing::perform(ctx, &instance, BillingAction::Upgrade, who, None).await;
        settled(ctx, &instance, &subject, result.map(|_| ())).await
    } else {
        alerts::raise(
            &ctx.pool,
            "credits_low",
            &subject,
            Some(instance.id),
            detail,
        )
        .await?;
        Ok(())
    }
}

async fn buy_pack(
    ctx: &Services,
    instance: &Instance,
    subject: &str,
    detail: serde_json::Value,
    who: Requester<'_>,
) -> anyhow::Result<()> {
    let this_month = topups::count_this_month(&ctx.pool, instance.customer_id).await?;
    let cap = ctx.settings.billing.topup_monthly_cap;
    if this_month >= cap {
        let detail =
            serde_json::json!({"cap": cap, "bought_this_month": this_month, "low": detail});
        alerts::raise(
            &ctx.pool,
            "topup_cap_reached",
            subject,
            Some(instance.id),
            detail,
        )
        .await?;
        return Ok(());
    }
    let pack = ctx.settings.billing.topup_pack;
    let action = BillingAction::ExtraCredits { pack };
    let result = match billing::perform(ctx, instance, action, who, None).await {
        Ok(done) => {
            let cents = done.outcome.charged_cents;
            topups::record(&ctx.pool, instance.customer_id, instance.id, pack, cents).await?;
            Ok(())
        }
        Err(e) => Err(e),
    };
    settled(ctx, instance, subject, result).await
}

/// After an automatic purchase: a success clears the failure alert; a failure re-arms the
/// crossing (the next sweep tries again) and alerts; one in doubt is the settle sweep's.
async fn settled(
    ctx: &Services,
    instance: &Instance,
    subject: &str,
    result: Result<(), BillingError>,
) -> anyhow::Result<()> {
    match result {
        Ok(()) => {
            alerts::resolve(&ctx.pool, "topup_failed", subject).await?;
        }
        Err(BillingError::InDoubt(op)) => {
            tracing::warn!(instance = %instance.id, operation = %op, "top-up in doubt");
        }
        Err(e) => {
            let rearm = Change {
                topup_armed: Some(true),
                ..Change::default()
            };
            instances::update_with(&ctx.pool, instance.id, |_| Some(rearm.clone())).await?;
            alerts::raise(
                &ctx.pool,
                "topup_failed",
                subject,
                Some(instance.id),
                serde_json::json!({"reason": e.to_string()}),
            )
            .await?;
        }
    }
    Ok(())
}
