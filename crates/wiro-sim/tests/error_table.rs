//! Every row of the overview's "Error Messages" table, produced by the situation the table
//! gives, arrives as its own typed variant.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use wiro_client::models::{
    DeployRequest, MessageRef, OAuthConnectRequest, SendMessageRequest, UpdateRequest,
};
use wiro_client::{Client, Error, WiroError};

fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> WiroError {
    match result {
        Err(Error::Api { error, .. }) => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn raw_deploy(server: &wiro_sim::SimServer, body: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{}/UserAgent/Deploy", server.base_url()))
        .header("x-api-key", KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn send(guid: &str) -> SendMessageRequest {
    SendMessageRequest {
        useragentguid: guid.to_owned(),
        message: "hi".into(),
        sessionkey: None,
        callbackurl: None,
    }
}

#[tokio::test]
async fn every_documented_error_is_returned_by_its_situation_and_typed() {
    let server = sim().await;
    let sim = server.sim();
    let c = client(&server);
    let mut seen: Vec<WiroError> = Vec::new();
    let deploy = |c: &Client, guid: &str, plan: &str| {
        let c = c.clone();
        let request = DeployRequest::prepaid(guid, "table", plan);
        async move { c.deploy(&request).await }
    };

    // Catalog and deploy.
    seen.push(refused(
        deploy(&c, "ffffffff-0000-0000-0000-000000000000", "starter").await,
    ));
    seen.push(refused(
        c.detail("ffffffff-0000-0000-0000-000000000000").await,
    ));
    seen.push(refused(
        deploy(&c, "b8c9d0e1-f2a3-4567-1234-890123456789", "starter").await,
    ));
    seen.push(refused(deploy(&c, SEED_GUID, "").await));
    seen.push(refused(
        deploy(&c, "d4e5f6a7-b8c9-0123-def0-456789012345", "starter").await,
    ));

    // Status machine.
    let setup = deploy_seed(&c, "starter").await;
    seen.push(refused(c.start(&setup.guid).await));
    let running = running_seed(&c, "starter").await;
    sim.freeze_clock(); // hold the short-lived statuses still
    seen.push(refused(c.start(&running.guid).await));
    c.stop(&running.guid).await.unwrap();
    seen.push(refused(c.start(&running.guid).await)); // status 1
    sim.advance_ms(STEP_MS);
    seen.push(refused(c.stop(&running.guid).await));
    c.start(&running.guid).await.unwrap();
    seen.push(refused(c.start(&running.guid).await)); // status 2
    sim.force_status(&running.guid, 5).unwrap();
    seen.push(refused(c.stop(&running.guid).await));
    sim.consume_credits(&running.guid, 1000).unwrap();
    seen.push(refused(c.start(&running.guid).await));
    sim.resume_clock();

    // Update and messaging.
    seen.push(refused(
        c.update(&UpdateRequest {
            guid: setup.guid.clone(),
            categories: Some(vec![]),
            ..Default::default()
        })
        .await,
    ));
    seen.push(refused(
        c.send_message(&send("ffffffff-0000-0000-0000-000000000000"))
            .await,
    ));
    seen.push(refused(c.send_message(&send(&setup.guid)).await));
    seen.push(refused(c.message_detail(&MessageRef::guid("nope")).await));
    let live = running_seed(&c, "pro").await;
    sim.freeze_clock();
    let sent = c.send_message(&send(&live.guid)).await.unwrap();
    c.cancel_message(&MessageRef::guid(&sent.messageguid))
        .await
        .unwrap();
    seen.push(refused(
        c.cancel_message(&MessageRef::guid(&sent.messageguid)).await,
    ));
    sim.resume_clock();
    seen.push(refused(
        c.oauth_connect(
            wiro_client::models::OAuthProvider::Instagram,
            &OAuthConnectRequest {
                user_agent_guid: live.guid.clone(),
                redirect_url: "http://example.com/back".into(),
                auth_method: None,
            },
        )
        .await,
    ));

    // Billing.
    seen.push(refused(c.buy_extra_credits(&setup.guid, "package1").await));
    seen.push(refused(c.buy_extra_credits(&live.guid, "package7").await));
    let email_pro = deploy(&c, "b2c3d4e5-f6a7-8901-bcde-f23456789012", "pro")
        .await
        .unwrap();
    seen.push(refused(
        c.buy_extra_credits(&email_pro.guid, "package3").await,
    ));
    seen.push(refused(c.renew_subscription(&live.guid).await));
    seen.push(refused(c.upgrade_plan(&live.guid, "starter").await));
    let panel = raw_deploy(
        &server,
        json!({"agentguid": SEED_GUID, "title": "panel", "plan": "starter"}),
    )
    .await;
    let panel_guid = panel["useragents"][0]["guid"].as_str().unwrap().to_owned();
    assert!(
        panel["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );
    seen.push(refused(c.renew_subscription(&panel_guid).await));
    sim.complete_checkout(&panel_guid, "starter").unwrap();
    seen.push(refused(c.cancel_subscription(&panel_guid).await));
    let free = deploy(&c, "a7b8c9d0-e1f2-3456-0123-789012345678", "starter")
        .await
        .unwrap();
    sim.set_wallet(KEY, 3.0).unwrap();
    seen.push(refused(deploy(&c, SEED_GUID, "starter").await));
    sim.advance_days(31); // every plan expires: the wallet covers none
    seen.push(refused(c.buy_extra_credits(&live.guid, "package1").await));
    seen.push(refused(c.renew_subscription(&free.guid).await));
    let _ = c
        .update(&UpdateRequest {
            guid: running.guid.clone(),
            ..Default::default()
        })
        .await;
    sim.force_status(&running.guid, 0).unwrap();
    seen.push(refused(c.start(&running.guid).await));

    let expected = vec![
        WiroError::AgentNotFound,
        WiroError::UserAgentNotFound,
        WiroError::AgentNotFoundOrInactive,
        WiroError::ValidPlanRequired,
        WiroError::PricingNotAvailable,
        WiroError::SetupIncomplete,
        WiroError::AlreadyRunning,
        WiroError::CurrentlyStopping,
        WiroError::AlreadyStopped,
        WiroError::AlreadyQueued,
        WiroError::InErrorState,
        WiroError::NoCreditsAvailable,
        WiroError::CategoriesEmpty,
        WiroError::AgentNotFoundOrAccessDenied,
        WiroError::AgentNotRunning { status: 6 },
        WiroError::MessageNotFound,
        WiroError::MessageNotCancellable {
            status: "agent_cancel".into(),
        },
        WiroError::InvalidRedirectUrl,
        WiroError::ExtraCreditsProOnly,
        WiroError::InvalidPack,
        WiroError::PackNotAvailable,
        WiroError::SubscriptionAlreadyActive,
        WiroError::CannotDowngrade,
        WiroError::NoExpiredSubscription,
        WiroError::StripeCancelViaPortal,
        WiroError::InsufficientWalletBalance {
            required: 9.0,
            available: 3.0,
        },
        WiroError::SubscriptionRequiredForExtraCredits,
        WiroError::RenewalPricingNotAvailable,
        WiroError::SubscriptionRequiredToStart,
    ];
    assert_eq!(seen, expected);
    // All 29 rows of the table, each once.
    let distinct: BTreeMap<String, ()> = seen.iter().map(|e| (format!("{e:?}"), ())).collect();
    assert_eq!(distinct.len(), 29);
    assert!(!seen.iter().any(|e| matches!(e, WiroError::Other { .. })));
}
