//! Credit top-up. For active subscriptions whose remaining credits (monthly + extra) fall below
//! `billing.topup_threshold`: a Pro instance gets `billing.topup_pack` bought from the wallet —
//! at most once per threshold crossing (the instance is disarmed until credits rise above the
//! threshold again) and at most `billing.topup_monthly_cap` packs per customer per calendar
//! month; a Starter instance follows `billing.starter_policy` (upgrade to Pro, or alert only).

use chrono::{Datelike, TimeZone, Utc};
use domain::db::alerts;
use domain::db::instances::{self, Change, Instance};
use domain::model::{CustomerStatus, InstanceState};

use super::{Statuses, for_each};
use operations::Services;
use operations::billing::{self, BillingAction};
use operations::observe::observed;

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

async fn top_up_one(ctx: &Services, instance: Instance, statuses: &Statuses) -> anyhow::Result<()> {
    if statuses.get(instance.customer_id).await? != CustomerStatus::Active {
        return Ok(());
    }
    let Some(guid) = instance.wiro_guid.as_deref() else {
        return Ok(());
    };
    let agent = ctx.wiro.detail(guid).await?;
    let credits = agent.monthly_credits().unwrap_or(0) + agent.extracredits.unwrap_or(0);
    let threshold = ctx.settings.billing.topup_threshold;
    let subject = alerts::instance_subject(instance.id);
    if credits >= threshold {
        // Above the line (again): the next crossing may top up.
        instances::update_with(&ctx.pool, instance.id, |_| {
            Some(Change {
                topup_armed: Some(true),
                ..observed(&agent)
            })
        })
        .await?;
        alerts::resolve(&ctx.pool, "credits_low", &subject).await?;
        return Ok(());
    }
    // Disarm (only if armed): one action per crossing, even with concurrent sweeps.
    let disarmed = instances::update_with(&ctx.pool, instance.id, |current| {
        current.topup_armed.then(|| Change {
            topup_armed: Some(false),
            ..observed(&agent)
        })
    })
    .await?;
    let Some(instance) = disarmed else {
        instances::update_with(&ctx.pool, instance.id, |_| Some(observed(&agent))).await?;
        return Ok(()); // this crossing was handled already
    };
    let tier = agent
        .subscription
        .as_ref()
        .map(|s| s.plan_tier().to_owned())
        .unwrap_or_default();
    let detail = serde_json::json!({"credits": credits, "threshold": threshold});
    if tier == "pro" {
        buy_pack(ctx, &instance, &subject, detail).await
    } else if ctx.settings.billing.starter_policy == "upgrade" {
        match billing::perform(ctx, &instance, BillingAction::Upgrade, &ctx.actor(), None).await {
            Ok(_) => Ok(()),
            Err(e) => {
                rearm(ctx, &instance).await?;
                alerts::raise(
                    &ctx.pool,
                    "topup_failed",
                    &subject,
                    Some(instance.id),
                    serde_json::json!({"reason": e.to_string()}),
                )
                .await?;
                Ok(())
            }
        }
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
) -> anyhow::Result<()> {
    let now = Utc::now();
    let month_start = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let this_month: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auto_topups WHERE customer_id = $1 AND created_at >= $2",
    )
    .bind(instance.customer_id)
    .bind(month_start)
    .fetch_one(&ctx.pool)
    .await?;
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
    let pack = ctx.settings.billing.topup_pack.clone();
    match billing::perform(
        ctx,
        instance,
        BillingAction::ExtraCredits { pack: pack.clone() },
        &ctx.actor(),
        None,
    )
    .await
    {
        Ok(outcome) => {
            sqlx::query("INSERT INTO auto_topups (customer_id, instance_id, pack, charged_cents) VALUES ($1, $2, $3, $4)")
                .bind(instance.customer_id)
                .bind(instance.id)
                .bind(&pack)
                .bind(outcome.charged_cents)
                .execute(&ctx.pool)
                .await?;
            alerts::resolve(&ctx.pool, "topup_failed", subject).await?;
            Ok(())
        }
        Err(e) => {
            rearm(ctx, instance).await?;
            alerts::raise(
                &ctx.pool,
                "topup_failed",
                subject,
                Some(instance.id),
                serde_json::json!({"reason": e.to_string()}),
            )
            .await?;
            Ok(())
        }
    }
}

/// A failed purchase does not use up the crossing: try again next sweep.
async fn rearm(ctx: &Services, instance: &Instance) -> anyhow::Result<()> {
    instances::update_with(&ctx.pool, instance.id, |_| {
        Some(Change {
            topup_armed: Some(true),
            ..Change::default()
        })
    })
    .await?;
    Ok(())
}
