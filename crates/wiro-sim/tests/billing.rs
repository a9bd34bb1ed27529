//! Wallet, subscriptions and credits against the simulator's clock.

mod common;

use common::*;
use wiro_client::WiroError;
use wiro_client::models::{AgentStatus, DeployRequest};

#[tokio::test]
async fn a_period_end_renews_from_the_wallet_and_resets_the_agent_to_stopped() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let before = c.detail(&agent.guid).await.unwrap().subscription.unwrap();
    server.sim().advance_days(30);
    let after = c.detail(&agent.guid).await.unwrap();
    let sub = after.subscription.clone().unwrap();
    assert!(sub.is_active());
    assert_eq!(
        sub.currentperiodend.unwrap().0 - before.currentperiodend.unwrap().0,
        30 * 86_400
    );
    assert_eq!(
        after.status,
        AgentStatus::Stopped,
        "renewal resets the agent to Stopped"
    );
    let kinds: Vec<_> = server.sim().ledger().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, ["deploy", "renewal"]);
}

#[tokio::test]
async fn a_wallet_that_cannot_cover_renewal_lets_the_plan_expire_and_start_is_refused() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    server.sim().set_wallet(KEY, 5.0).unwrap();
    server.sim().advance_days(31);
    let detail = c.detail(&agent.guid).await.unwrap();
    assert_eq!(detail.subscription.clone().unwrap().status, "expired");
    assert_eq!(detail.status, AgentStatus::Stopped);
    let err = c.start(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::SubscriptionRequiredToStart));
    let err = c.renew_subscription(&agent.guid).await.unwrap_err();
    assert_eq!(
        err.wiro(),
        Some(&WiroError::InsufficientWalletBalance {
            required: 9.0,
            available: 5.0
        })
    );
    server.sim().set_wallet(KEY, 50.0).unwrap();
    let renewed = c.renew_subscription(&agent.guid).await.unwrap();
    assert!(renewed.charged());
    assert_eq!(
        (renewed.plan.as_deref(), renewed.amount),
        (Some("agent-starter"), Some(9.0))
    );
    let detail = c.detail(&agent.guid).await.unwrap();
    assert!(detail.subscription.clone().unwrap().is_active());
    assert_eq!(detail.monthly_credits(), Some(1000));
}

#[tokio::test]
async fn cancel_takes_effect_at_period_end_and_renew_before_it_undoes_the_cancel() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let cancelled = c.cancel_subscription(&agent.guid).await.unwrap();
    let period_end = c
        .detail(&agent.guid)
        .await
        .unwrap()
        .subscription
        .unwrap()
        .currentperiodend;
    assert_eq!(cancelled.cancels_at, period_end);
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().status,
        AgentStatus::Running
    );
    let undo = c.renew_subscription(&agent.guid).await.unwrap();
    assert_eq!(undo.action, "undo-cancel");
    assert!(!undo.charged());
    let err = c.renew_subscription(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::SubscriptionAlreadyActive));

    c.cancel_subscription(&agent.guid).await.unwrap();
    server.sim().advance_days(30);
    let detail = c.detail(&agent.guid).await.unwrap();
    assert_eq!(detail.subscription.clone().unwrap().status, "expired");
    assert_eq!(
        server.sim().ledger().len(),
        1,
        "a cancelled plan is not renewed"
    );
}

#[tokio::test]
async fn upgrade_charges_the_prorated_difference_and_downgrade_is_refused() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    // 13 days into the period, 17 days remain: (29 - 9) × 17 / 30 = 11.33.
    server.sim().advance_days(13);
    let upgraded = c.upgrade_plan(&agent.guid, "pro").await.unwrap();
    assert_eq!(upgraded.plan.as_deref(), Some("agent-pro"));
    assert_eq!(upgraded.prorated_charge, 11.33);
    assert_eq!(upgraded.new_monthly_credits, Some(5000));
    let err = c.upgrade_plan(&agent.guid, "starter").await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::CannotDowngrade));
    let charges: Vec<_> = server
        .sim()
        .ledger()
        .iter()
        .map(|c| (c.kind, c.amount))
        .collect();
    assert_eq!(charges, [("deploy", 9.0), ("upgrade", 11.33)]);
}

#[tokio::test]
async fn extra_credit_packs_are_pro_only_and_expire_after_six_months() {
    let server = sim().await;
    let c = client(&server);
    let starter = running_seed(&c, "starter").await;
    let err = c
        .buy_extra_credits(&starter.guid, "package1")
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::ExtraCreditsProOnly));
    let err = c
        .buy_extra_credits(&starter.guid, "package9")
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::InvalidPack));

    let pro = running_seed(&c, "pro").await;
    let bought = c.buy_extra_credits(&pro.guid, "package1").await.unwrap();
    assert!(bought.url.is_none());
    let detail = c.detail(&pro.guid).await.unwrap();
    assert_eq!(detail.extracredits, Some(1000));
    assert!(detail.extracreditsexpiry.is_some());
    // Keep the plan alive across six renewals, then the pack is gone.
    server.sim().advance_days(181);
    let detail = c.detail(&pro.guid).await.unwrap();
    assert!(detail.subscription.clone().unwrap().is_active());
    assert_eq!(detail.extracredits, Some(0));
}

#[tokio::test]
async fn credits_run_out_and_start_is_refused_without_credits() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    server.sim().consume_credits(&agent.guid, 1000).unwrap();
    c.stop(&agent.guid).await.unwrap();
    wait_for_status(&c, &agent.guid, AgentStatus::Stopped).await;
    let err = c.start(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::NoCreditsAvailable));
}

#[tokio::test]
async fn deploy_refusals_name_the_plan_and_pricing_problems() {
    let server = sim().await;
    let c = client(&server);
    let mut request = DeployRequest::prepaid(SEED_GUID, "x", "gold");
    let err = c.deploy(&request).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::ValidPlanRequired));
    request.agentguid = "d4e5f6a7-b8c9-0123-def0-456789012345".into(); // pro-only template
    request.plan = "starter".into();
    let err = c.deploy(&request).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::PricingNotAvailable));
    server.sim().set_wallet(KEY, 1.5).unwrap();
    let err = deploy_seed_expect_err(&c).await;
    assert_eq!(
        err.wiro(),
        Some(&WiroError::InsufficientWalletBalance {
            required: 9.0,
            available: 1.5
        })
    );
    assert!(
        server.sim().ledger().is_empty(),
        "a refused deploy charges nothing"
    );
    assert!(server.sim().instances().is_empty(), "and creates nothing");
}

async fn deploy_seed_expect_err(c: &wiro_client::Client) -> wiro_client::Error {
    c.deploy(&DeployRequest::prepaid(SEED_GUID, "x", "starter"))
        .await
        .unwrap_err()
}
