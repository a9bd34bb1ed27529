//! Provisioning against the simulator, each test with a fresh database.

use std::time::Duration;

use domain::agents;
use domain::db::{instances, ledger, operations};
use domain::model::{InstanceState, OperationState};
use domain::orders::Actor;
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::{FaultMode, FaultSpec, SimConfig};

const SETTLE: Duration = Duration::from_secs(30);
/// A template that needs no credentials and no account connection: its orders run by
/// themselves, which is what these tests of the pipeline need.
const RUNS_BY_ITSELF: &str = "email-assistant";

fn fault(endpoint: &str, mode: FaultMode) -> FaultSpec {
    FaultSpec::new(endpoint, mode)
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_single_order_reaches_running_with_the_map_row_filled(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let instance = order(&h, "cust-1", "instagram-manager", instagram()).await;
    // Instagram needs the customer's account: the agent waits until it is connected.
    let waiting = wait_for(
        &h.pool,
        instance.id,
        &[InstanceState::AwaitingConnection],
        SETTLE,
    )
    .await;
    assert_eq!(waiting.missing_connections, ["instagram"]);
    assert_eq!(
        h.sim.sim().instances()[0].status,
        0,
        "deployed and configured, not started"
    );
    connect_all(&h.ctx, &waiting).await;
    let done = wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
    assert!(done.missing_connections.is_empty());

    let upstream = h.sim.sim().instances();
    assert_eq!(upstream.len(), 1);
    assert_eq!(done.wiro_guid.as_deref(), Some(upstream[0].guid.as_str()));
    assert_eq!(done.wiro_status, Some(4));
    assert!(!done.setup_required);
    assert!(
        done.pending_config.is_none(),
        "credentials are not kept once Wiro has them"
    );
    assert_eq!(done.subscription_status.as_deref(), Some("active"));
    assert!(done.subscription_period_end.is_some());
    // Deployed the way the mission asks: prepaid, unpinned, the customer's title untouched,
    // and our correlator (the order and its Deploy operation) in the description.
    assert!(!upstream[0].pinned);
    assert_eq!(upstream[0].title, instance.title);
    let deploy = &operations::for_instance(&h.pool, instance.id)
        .await
        .unwrap()[0];
    assert_eq!(
        upstream[0]
            .description
            .as_deref()
            .and_then(instances::parse_description),
        Some((instance.id, deploy.id))
    );
    assert_eq!(upstream[0].status, 4);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_missing_credentials_waits_then_completes_when_they_arrive(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let instance = order(&h, "cust-2", "wordpress-blogger", PendingConfig::default()).await;
    let waiting = wait_for(
        &h.pool,
        instance.id,
        &[InstanceState::AwaitingCredentials],
        SETTLE,
    )
    .await;
    assert!(waiting.setup_required);
    assert_eq!(
        waiting.missing_credentials,
        ["wordpress.appPassword", "wordpress.url", "wordpress.user"]
    );
    assert_eq!(waiting.wiro_status, Some(6));

    let mut config = PendingConfig::default();
    config.credentials.0.insert(
        "wordpress".into(),
        [
            (
                "url".to_owned(),
                serde_json::json!("https://blog.example.com"),
            ),
            ("user".to_owned(), serde_json::json!("editor")),
            ("appPassword".to_owned(), serde_json::json!("abcd efgh")),
        ]
        .into(),
    );
    agents::update_config(
        &h.pool,
        &h.ctx.sealer,
        waiting.customer_id,
        instance.id,
        None,
        config,
        Actor {
            name: "test",
            request_id: None,
        },
    )
    .await
    .unwrap();
    let done = wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
    assert!(done.missing_credentials.is_empty());
    assert_eq!(h.sim.sim().instances().len(), 1, "no second deploy");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_permanent_refusal_fails_the_order_with_wiros_reason_and_ops_can_retry(pool: PgPool) {
    let h = harness_with(pool, SimConfig::with_account(WIRO_KEY, 1.0)).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let instance = order(&h, "cust-3", RUNS_BY_ITSELF, PendingConfig::default()).await;
    let failed = wait_for(&h.pool, instance.id, &[InstanceState::Failed], SETTLE).await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("Insufficient wallet balance. Required: $5, Available: $1")
    );
    assert_eq!(failed.failed_step.as_deref(), Some("deploy"));
    assert!(h.sim.sim().ledger().is_empty());
    assert_eq!(
        h.sim.sim().call_counts()["UserAgent/Deploy"],
        1,
        "a refused Deploy is not sent again"
    );

    h.sim.sim().set_wallet(WIRO_KEY, 50.0).unwrap();
    agents::retry_failed(
        &h.pool,
        instance.id,
        Actor {
            name: "ops:test",
            request_id: None,
        },
    )
    .await
    .unwrap();
    wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_unknown_template_fails_with_agent_not_found(pool: PgPool) {
    let h = harness(pool).await;
    let customer = customer(&h, "cust-4").await;
    let template = domain::orders::ResolvedTemplate {
        guid: "00000000-0000-0000-0000-00000000dead".into(),
        slug: "gone".into(),
        price_cents: 900,
    };
    let order = domain::orders::Order {
        plan: domain::model::Plan::Starter,
        title: "x".into(),
        config: PendingConfig::default(),
    };
    let instance = domain::orders::place_order(
        &h.pool,
        &h.ctx.sealer,
        customer,
        domain::orders::Purchase {
            order: &order,
            template: &template,
        },
        Actor {
            name: "t",
            request_id: None,
        },
        &domain::Settings::defaults().unwrap().limits,
        None,
    )
    .await
    .unwrap();
    drive(&h.ctx, instance.id).await;
    let failed = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(failed.state, InstanceState::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("Agent not found"));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_deploy_applied_but_dropped_is_adopted_not_repeated(pool: PgPool) {
    let h = harness(pool).await;
    h.sim
        .sim()
        .add_fault(FaultSpec {
            count: Some(1),
            ..fault("UserAgent/Deploy", FaultMode::DropResponse)
        })
        .unwrap();
    let instance = order(&h, "cust-5", RUNS_BY_ITSELF, PendingConfig::default()).await;
    drive(&h.ctx, instance.id).await;

    let done = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(done.state, InstanceState::Running);
    assert_eq!(h.sim.sim().instances().len(), 1);
    assert_eq!(
        h.sim.sim().call_counts()["UserAgent/Deploy"],
        1,
        "never deployed twice"
    );
    let ops = operations::for_instance(&h.pool, instance.id)
        .await
        .unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].state, OperationState::Adopted);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn bursts_of_5xx_and_429_delay_orders_but_never_duplicate_them(pool: PgPool) {
    let h = harness(pool).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            order(
                &h,
                &format!("burst-{i}"),
                RUNS_BY_ITSELF,
                PendingConfig::default(),
            )
            .await
            .id,
        );
    }
    // The orders are in; now every call may fail, and the first Deploys are rate limited.
    let sim = h.sim.sim();
    sim.add_fault(FaultSpec {
        status: Some(503),
        probability: Some(0.3),
        ..fault("*", FaultMode::Error)
    })
    .unwrap();
    sim.add_fault(FaultSpec {
        status: Some(429),
        count: Some(5),
        ..fault("UserAgent/Deploy", FaultMode::Error)
    })
    .unwrap();
    let (_stop, _worker) = spawn_worker(&h.ctx);
    for id in &ids {
        wait_for(
            &h.pool,
            *id,
            &[InstanceState::Running],
            Duration::from_secs(60),
        )
        .await;
    }
    assert_eq!(h.sim.sim().instances().len(), 10);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn two_workers_racing_one_order_deploy_it_once(pool: PgPool) {
    let h = harness(pool).await;
    // The first Deploy is applied, then its answer is held for a second: the other worker
    // finds the intent with a live lease and must wait instead of deploying.
    h.sim
        .sim()
        .add_fault(FaultSpec {
            count: Some(1),
            latency_ms: Some(1000),
            ..fault("UserAgent/Deploy", FaultMode::StallResponse)
        })
        .unwrap();
    let instance = order(&h, "cust-6", RUNS_BY_ITSELF, PendingConfig::default()).await;
    let other = services(&h.pool, (*h.ctx.settings).clone(), "second-worker");
    let (a, b) = tokio::join!(drive(&h.ctx, instance.id), drive(&other, instance.id));
    let ((), ()) = (a, b);

    let done = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(done.state, InstanceState::Running, "{:?}", done.last_error);
    assert_eq!(h.sim.sim().instances().len(), 1);
    assert_eq!(h.sim.sim().call_counts()["UserAgent/Deploy"], 1);
    assert_eq!(
        ledger::list(&h.pool, &Default::default(), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_intent_left_by_a_crashed_worker_is_resolved_upstream_before_any_new_deploy(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let instance = order(&h, "cust-7", RUNS_BY_ITSELF, PendingConfig::default()).await;
    // A worker committed its intent and died before sending: the lease runs out, the search
    // finds nothing, and only then is Deploy sent.
    let ghost = operations::begin(
        &h.pool,
        operations::NewOperation {
            instance: instance.id,
            kind: domain::model::OperationKind::Deploy,
            worker: "dead-worker",
            actor: "worker:dead-worker",
            request_id: None,
            lease: Duration::from_millis(300),
            detail: serde_json::json!({"title": instance.title}),
            fence: None,
        },
    )
    .await
    .unwrap()
    .unwrap();
    instances::update(
        &h.pool,
        instance.id,
        instance.version,
        instances::Change::to(InstanceState::Deploying),
    )
    .await
    .unwrap();
    drive(&h.ctx, instance.id).await;
    let ops = operations::for_instance(&h.pool, instance.id)
        .await
        .unwrap();
    assert_eq!(ops[0].id, ghost.id);
    assert_eq!(ops[0].state, OperationState::NotFound);
    assert_eq!(ops[1].state, OperationState::Succeeded);
    assert_eq!(h.sim.sim().instances().len(), 1);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn stop_and_start_move_the_agent_and_are_recorded(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let instance = order(&h, "cust-8", RUNS_BY_ITSELF, PendingConfig::default()).await;
    let running = wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
    let actor = Actor {
        name: "customer:cust-8",
        request_id: None,
    };
    agents::set_desired_state(
        &h.pool,
        Some(running.customer_id),
        instance.id,
        domain::model::DesiredState::Stopped,
        actor,
    )
    .await
    .unwrap();
    let stopped = wait_for(&h.pool, instance.id, &[InstanceState::Stopped], SETTLE).await;
    assert_eq!(stopped.wiro_status, Some(0));
    assert_eq!(h.sim.sim().instances()[0].status, 0);
    agents::set_desired_state(
        &h.pool,
        Some(running.customer_id),
        instance.id,
        domain::model::DesiredState::Running,
        actor,
    )
    .await
    .unwrap();
    wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn bulk_orders_with_five_percent_faults_end_with_one_instance_each(pool: PgPool) {
    let h = harness(pool).await;
    let sim = h.sim.sim();
    sim.add_fault(FaultSpec {
        probability: Some(0.05),
        ..fault("UserAgent/Deploy", FaultMode::DropResponse)
    })
    .unwrap();
    sim.add_fault(FaultSpec {
        status: Some(503),
        probability: Some(0.05),
        ..fault("*", FaultMode::Error)
    })
    .unwrap();
    sim.add_fault(FaultSpec {
        status: Some(429),
        probability: Some(0.02),
        ..fault("*", FaultMode::Error)
    })
    .unwrap();
    let mut settings = settings_for(&h.sim);
    settings.worker.provision_concurrency = 16;
    let ctx = services(&h.pool, settings, "bulk-worker");
    let items: Vec<domain::orders::BatchOrder> = {
        let template = template(&h, RUNS_BY_ITSELF, domain::model::Plan::Starter).await;
        (0..500)
            .map(|i| domain::orders::BatchOrder {
                customer: format!("bulk-{i}"),
                order: domain::orders::Order {
                    plan: domain::model::Plan::Starter,
                    title: format!("Bulk {i}"),
                    config: PendingConfig::default(),
                },
                template: template.clone(),
            })
            .collect()
    };
    let (batch, created) = domain::orders::submit_batch(
        &h.pool,
        &ctx.sealer,
        Some("bulk-500"),
        &items,
        Actor {
            name: "ops:test",
            request_id: None,
        },
    )
    .await
    .unwrap();
    assert!(created);
    let (_stop, _worker) = spawn_worker(&ctx);
    let all = wait_all_settled(&h.pool, Duration::from_secs(240)).await;
    assert_eq!(all.len(), 500);
    let running = all
        .iter()
        .filter(|i| i.state == InstanceState::Running)
        .count();
    assert_eq!(
        running, 500,
        "every order ends Running (no permanent errors were injected)"
    );
    let upstream = h.sim.sim().instances();
    assert_eq!(upstream.len(), 500, "0 duplicates");
    let mut correlators: Vec<_> = upstream.iter().map(|u| u.title.clone()).collect();
    correlators.sort();
    correlators.dedup();
    assert_eq!(correlators.len(), 500);
    let counts = domain::db::batches::counts(&h.pool, batch.id)
        .await
        .unwrap();
    assert_eq!(counts.get("running"), Some(&500));
    assert_ledgers_match(&h).await;

    // Submitting the same batch again changes nothing.
    let (again, created) = domain::orders::submit_batch(
        &h.pool,
        &ctx.sealer,
        Some("bulk-500"),
        &items,
        Actor {
            name: "ops:test",
            request_id: None,
        },
    )
    .await
    .unwrap();
    assert!(!created);
    assert_eq!(again.id, batch.id);
    assert_eq!(
        instances::list(&h.pool, &Default::default(), None, 10_000)
            .await
            .unwrap()
            .len(),
        500
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_of_a_customer_suspended_meanwhile_is_deployed_but_never_started(pool: PgPool) {
    let h = harness(pool).await;
    let instance = order(&h, "cust-late", RUNS_BY_ITSELF, PendingConfig::default()).await;
    domain::db::customers::set_status(
        &h.pool,
        instance.customer_id,
        domain::model::CustomerStatus::Suspended,
    )
    .await
    .unwrap();
    drive(&h.ctx, instance.id).await;
    let done = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(done.state, InstanceState::Stopped);
    assert!(
        done.wiro_guid.is_some(),
        "the paid order is deployed and kept"
    );
    assert_eq!(
        h.sim.sim().call_counts().get("UserAgent/Start"),
        None,
        "never started"
    );
}
