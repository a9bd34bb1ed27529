//! Deploy, setup, the status machine 0–6 with restartafter, MyAgents paging, teams.

mod common;

use std::collections::BTreeMap;

use common::*;
use futures::TryStreamExt;
use serde_json::json;
use wiro_client::models::{
    AgentStatus, CredentialValues, DeployRequest, UpdateConfiguration, UpdateRequest,
};
use wiro_client::{Auth, ClientConfig, WiroError};
use wiro_sim::SimConfig;

#[tokio::test]
async fn a_prepaid_deploy_lands_in_setup_required_with_a_prepaid_subscription() {
    let server = sim().await;
    let c = client(&server);
    let agent = deploy_seed(&c, "starter").await;
    assert_eq!(agent.status, AgentStatus::SetupRequired);
    assert_eq!(agent.pinned, Some(false));
    assert!(
        agent.subscription.is_none(),
        "Deploy has no subscription field"
    );
    assert!(
        agent.setuprequired.is_none(),
        "Deploy has no setuprequired field"
    );

    let detail = c.detail(&agent.guid).await.unwrap();
    assert_eq!(detail.setuprequired, Some(true));
    let sub = detail.subscription.clone().unwrap();
    assert_eq!(sub.plan, "agent-starter");
    assert_eq!(sub.provider.as_deref(), Some("prepaid"));
    assert!(sub.is_active());
    assert_eq!(sub.daysremaining, Some(30));
    assert_eq!(detail.monthly_credits(), Some(1000));
    let ledger = server.sim().ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!((ledger[0].kind, ledger[0].amount), ("deploy", 9.0));
}

#[tokio::test]
async fn credentials_in_a_prepaid_deploy_body_are_ignored() {
    let server = sim().await;
    let raw = reqwest::Client::new();
    let body: serde_json::Value = raw
        .post(format!("{}/UserAgent/Deploy", server.base_url()))
        .header("x-api-key", KEY)
        .json(
            &json!({"agentguid": SEED_GUID, "title": "t", "useprepaid": true, "plan": "starter",
                      "configuration": {"credentials": {"instagram": {"authMethod": "wiro"}}}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["useragents"][0]["status"], 6);
    assert_eq!(
        body["useragents"][0]["configuration"]["credentials"]["instagram"]["authMethod"],
        ""
    );
}

#[tokio::test]
async fn completing_credentials_moves_6_to_0_and_start_runs_through_2_3_to_4() {
    let server = sim().await;
    let c = client(&server);
    let agent = deploy_seed(&c, "starter").await;
    let updated = complete_setup(&c, &agent.guid).await;
    assert_eq!(updated.status, AgentStatus::Stopped);
    assert_eq!(updated.setuprequired, Some(false));
    let sim = server.sim();
    sim.freeze_clock();
    c.start(&agent.guid).await.unwrap();
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().status,
        AgentStatus::Queued
    );
    let err = c.start(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AlreadyQueued));
    sim.advance_ms(STEP_MS);
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().status,
        AgentStatus::Starting
    );
    sim.advance_ms(STEP_MS);
    let running = c.detail(&agent.guid).await.unwrap();
    assert_eq!(running.status, AgentStatus::Running);
    assert!(running.runningat.is_some());
    let err = c.start(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AlreadyRunning));
}

#[tokio::test]
async fn updating_a_running_agent_restarts_it_through_stopping() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let sim = server.sim();
    sim.freeze_clock();
    let updated = complete_setup(&c, &agent.guid).await;
    assert_eq!(
        updated.status,
        AgentStatus::Stopping,
        "restartafter cycle begins"
    );
    let err = c.start(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::CurrentlyStopping));
    let mut seen = Vec::new();
    for _ in 0..3 {
        sim.advance_ms(STEP_MS);
        seen.push(c.detail(&agent.guid).await.unwrap().status);
    }
    assert_eq!(
        seen,
        [
            AgentStatus::Queued,
            AgentStatus::Starting,
            AgentStatus::Running
        ]
    );
}

#[tokio::test]
async fn a_title_only_update_does_not_restart_and_empty_categories_are_refused() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    let updated = c
        .update(&UpdateRequest {
            guid: agent.guid.clone(),
            title: Some("Renamed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (updated.status, updated.title.as_str()),
        (AgentStatus::Running, "Renamed")
    );
    let err = c
        .update(&UpdateRequest {
            guid: agent.guid.clone(),
            categories: Some(vec![]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::CategoriesEmpty));
}

#[tokio::test]
async fn stop_moves_running_through_stopping_and_queued_straight_to_stopped() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    server.sim().freeze_clock();
    c.stop(&agent.guid).await.unwrap();
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().status,
        AgentStatus::Stopping
    );
    server.sim().advance_ms(STEP_MS);
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().status,
        AgentStatus::Stopped
    );
    let err = c.stop(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AlreadyStopped));

    c.start(&agent.guid).await.unwrap();
    c.stop(&agent.guid).await.unwrap();
    assert_eq!(
        c.detail(&agent.guid).await.unwrap().status,
        AgentStatus::Stopped
    );
}

#[tokio::test]
async fn an_agent_in_error_refuses_stop_and_start_retries_it() {
    let server = sim().await;
    let c = client(&server);
    let agent = running_seed(&c, "starter").await;
    server.sim().force_status(&agent.guid, 5).unwrap();
    let err = c.stop(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::InErrorState));
    c.start(&agent.guid).await.unwrap();
    wait_for_status(&c, &agent.guid, AgentStatus::Running).await;
}

#[tokio::test]
async fn start_before_setup_is_refused_and_unknown_instances_are_not_found() {
    let server = sim().await;
    let c = client(&server);
    let agent = deploy_seed(&c, "starter").await;
    let err = c.start(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::SetupIncomplete));
    let err = c
        .detail("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::UserAgentNotFound));
}

#[tokio::test]
async fn non_editable_and_unknown_credentials_are_silently_ignored() {
    let server = sim().await;
    let c = client(&server);
    let agent = deploy_seed(&c, "starter").await;
    let mut instagram = BTreeMap::new();
    instagram.insert("igUsername".to_owned(), json!("sneaky"));
    let mut openai = BTreeMap::new();
    openai.insert("model".to_owned(), json!("cheap"));
    let updated = c
        .update(&UpdateRequest {
            guid: agent.guid.clone(),
            configuration: Some(UpdateConfiguration {
                credentials: CredentialValues(
                    [
                        ("instagram".to_owned(), instagram),
                        ("openai".to_owned(), openai),
                        ("madeup".to_owned(), BTreeMap::new()),
                    ]
                    .into(),
                ),
                custom_skills: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let creds = updated.configuration.unwrap().credentials;
    assert_eq!(creds["instagram"].fields["igUsername"], "");
    assert_eq!(creds["openai"].fields["model"], "openai/gpt-5.2");
    assert!(!creds.contains_key("madeup"));
    assert_eq!(updated.status, AgentStatus::SetupRequired);
}

#[tokio::test]
async fn my_agents_pages_until_a_short_page() {
    let server = sim().await;
    let c = client(&server);
    for i in 0..45 {
        c.deploy(&DeployRequest::prepaid(
            SEED_GUID,
            &format!("bot {i}"),
            "starter",
        ))
        .await
        .unwrap();
    }
    let pages: Vec<_> = c.my_agents_pages(20).try_collect().await.unwrap();
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![20, 20, 5]
    );
    let ids: Vec<i64> = pages.iter().flatten().map(|a| a.id).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 45, "no instance listed twice");
    let row = &pages[0][0];
    assert!(row.subscription.is_some() && row.agent.is_some() && row.createdat.is_some());
    assert!(
        row.configuration.is_none(),
        "MyAgents rows carry no configuration"
    );
    assert_eq!(server.sim().call_counts()["UserAgent/MyAgents"], 3);
}

#[tokio::test]
async fn a_team_deploy_needs_membership_and_lists_under_the_team() {
    let mut config = SimConfig::with_account(KEY, 100.0);
    config.team_guid = Some("team-1".into());
    let server = sim_with(config).await;
    let personal = client(&server);
    let team_config = ClientConfig::new(
        &server.base_url(),
        Some(Auth::ApiKey(KEY.to_owned().into())),
    )
    .unwrap()
    .with_team(Some("team-1".into()));
    let team = wiro_client::Client::new(team_config).unwrap();
    let agent = deploy_seed(&team, "starter").await;
    assert_eq!(agent.teamguid.as_deref(), Some("team-1"));
    assert_eq!(team.my_agents(&Default::default()).await.unwrap().len(), 1);
    assert!(
        personal
            .my_agents(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    // Detail falls back to membership; billing and messaging need the team context, and the
    // overview names the refusal word for word: "Agent not found".
    assert!(personal.detail(&agent.guid).await.is_ok());
    let err = personal.cancel_subscription(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AgentNotFound));
    let err = personal.message_sessions(&agent.guid).await.unwrap_err();
    assert_eq!(err.wiro(), Some(&WiroError::AgentNotFound));

    let stranger_config = ClientConfig::new(
        &server.base_url(),
        Some(Auth::ApiKey(KEY.to_owned().into())),
    )
    .unwrap()
    .with_team(Some("team-2".into()));
    let stranger = wiro_client::Client::new(stranger_config).unwrap();
    let err = deploy_seed_err(&stranger).await;
    assert_eq!(err.wiro(), Some(&WiroError::NotTeamMember));
}

async fn deploy_seed_err(c: &wiro_client::Client) -> wiro_client::Error {
    c.deploy(&DeployRequest::prepaid(SEED_GUID, "x", "starter"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn reads_walk_the_instances_only_when_something_fell_due_or_changed() {
    let server = sim().await;
    let c = client(&server);
    let agent = deploy_seed(&c, "starter").await;
    complete_setup(&c, &agent.guid).await;
    let sim = server.sim();
    sim.freeze_clock();
    c.start(&agent.guid).await.unwrap();
    // Settles what the Start wrote; from here nothing changes until the queue's delay ends.
    let passes = sim.settle_passes();
    for _ in 0..20 {
        let detail = c.detail(&agent.guid).await.unwrap();
        assert_eq!(detail.status, AgentStatus::Queued);
    }
    assert_eq!(
        sim.settle_passes(),
        passes,
        "twenty reads with nothing due and nothing written walked the instances"
    );

    // Time moves on by itself (no write, no `advance`): reads alone see each transition as it
    // falls due.
    sim.resume_clock();
    let mut polls = 0;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while c.detail(&agent.guid).await.unwrap().status != AgentStatus::Running {
            polls += 1;
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("reads alone see the agent reach Running");
    let walked = sim.settle_passes() - passes;
    assert_eq!(
        walked, 0,
        "each transition that fell due (queued → starting → running) is found by its time, not \
         by a walk: {walked} passes for {polls} reads"
    );
}

#[tokio::test]
async fn a_write_to_one_agent_revisits_that_agent_alone_and_its_transitions_still_fall_due() {
    let server = sim().await;
    let c = client(&server);
    let sim = server.sim();
    let mut agents = Vec::new();
    for _ in 0..3 {
        let agent = deploy_seed(&c, "starter").await;
        complete_setup(&c, &agent.guid).await;
        agents.push(agent);
    }
    sim.freeze_clock();
    let passes = sim.settle_passes();

    // Deploy, Update, Start, Stop and a cancel each change one agent.
    let fresh = deploy_seed(&c, "starter").await;
    complete_setup(&c, &fresh.guid).await;
    for agent in &agents {
        c.start(&agent.guid).await.unwrap();
    }
    c.stop(&agents[2].guid).await.unwrap();
    c.cancel_subscription(&fresh.guid).await.unwrap();
    let status = |guid: String| {
        let c = &c;
        async move { c.detail(&guid).await.unwrap().status }
    };
    assert_eq!(status(agents[0].guid.clone()).await, AgentStatus::Queued);
    assert_eq!(status(agents[2].guid.clone()).await, AgentStatus::Stopped);
    assert_eq!(status(fresh.guid.clone()).await, AgentStatus::Stopped);
    assert_eq!(
        sim.settle_passes(),
        passes,
        "writes to one agent each made a call walk every agent"
    );

    // Their timers still fall due: queued → starting → running, with no write in between.
    sim.advance_ms(STEP_MS);
    assert_eq!(status(agents[1].guid.clone()).await, AgentStatus::Starting);
    sim.advance_ms(STEP_MS);
    for agent in &agents[..2] {
        assert_eq!(status(agent.guid.clone()).await, AgentStatus::Running);
    }
    assert_eq!(status(agents[2].guid.clone()).await, AgentStatus::Stopped);
    assert_eq!(
        sim.settle_passes(),
        passes,
        "time moving on walked them all"
    );

    // Any other write (here the operator setting a wallet) makes the next call walk them all.
    sim.set_wallet(KEY, 500.0).unwrap();
    status(agents[0].guid.clone()).await;
    assert_eq!(sim.settle_passes(), passes + 1);
}
