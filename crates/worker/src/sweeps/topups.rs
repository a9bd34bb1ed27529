//! Credit top-up. For active subscriptions whose remaining credits (monthly + extra) fall below
//! `billing.topup_threshold`: a Pro instance gets `billing.topup_pack` bought from the wallet —
//! at most once per threshold crossing (the instance is disarmed until credits rise above the
//! threshold again) and at most `billing.topup_monthly_cap` packs per customer per calendar
//! month; a Starter instance follows `billing.starter_policy` (upgrade to Pro, or alert only).

use domain::config::StarterPolicy;
use domain::db::instances::{self, Change, Instance};
use domain::db::{alerts, topups};
use domain::model::{CustomerStatus, InstanceState};
use operations::Services;
use operations::billing::{self, BillingAction, BillingError};
use operations::observe;
use operations::protocol::Requester;

use super::{Statuses, for_each};

/// What a top-up sweep did.
#[derive(Debug, Default)]
pub struct TopupReport {
    /// Instances looked at.
    pub candidates: usize,
    /// Items that failed (retried next sweep).
    pub failures: usize,
}

/// Runs the sweep.
///
/// # Errors
/// Database failures.
pub async fn run(ctx: &Services) -> anyhow::Result<TopupReport> {
    if ctx.settings.billing.topup_threshold <= 0 {
        return Ok(TopupReport::default());
    }
    let candidates: Vec<Instance> = instances::deployed(&ctx.pool)
        .await?
        .into_iter()
        .filter(|i| i.subscription_status.as_deref() == Some("active"))
        .filter(|i| {
            !matches!(
                i.state,
                InstanceState::Failed | InstanceState::Deploying | InstanceState::Pending
            )
        })
        .collect();
    let statuses = Statuses::new(&ctx.pool);
    let count = candidates.len();
    let failures = for_each(ctx, candidates, |instance| {
        let statuses = &statuses;
        async move { top_up_one(ctx, instance, statuses).await }
    })
    .await;
    Ok(TopupReport {
        candidates: count,
        failures,
    })
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
