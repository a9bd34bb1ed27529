//! Deploy's lost answers under a late upstream and a lagging list, duplicates beyond the bound,
//! a database that lost a Deploy, and orders that must not stay stuck.

use std::time::Duration;

use domain::db::{alerts, instances, ledger, operations as ops};
use domain::model::{ChargeKind, InstanceState, OperationState, Plan};
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::{FaultMode, FaultSpec};
use worker::sweeps::{reconcile, stuck};

const SETTLE: Duration = Duration::from_secs(30);

/// A lease of 3 s and a quiet period of 800 ms: late applies and list lags up to 3.8 s are
/// caught by the second search.
fn quiet(s: &mut domain::Settings) {
    s.operations.quiet_period = Duration::from_millis(800);
}

/// The next call of `endpoint` gets `mode` (with `latency_ms`), `count` times (or always).
fn fault(h: &Harness, endpoint: &str, mode: FaultMode, latency_ms: u64, count: Option<u64>) {
    h.sim
        .sim()
        .add_fault(FaultSpec {
            endpoint: endpoint.into(),
            mode,
            status: None,
            latency_ms: Some(latency_ms),
            probability: None,
            count,
            rate_per_s: None,
        })
        .unwrap();
}

async fn deploy_states(h: &Harness, id: domain::ids::InstanceId) -> Vec<OperationState> {
    ops::for_instance(&h.pool, id)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == domain::model::OperationKind::Deploy)
        .map(|o| o.state)
        .collect()
}

/// The search right after the lease found nothing (a single search would have deployed again):
/// the second one, a quiet period later, found it.
async fn assert_first_search_was_empty(h: &Harness, id: domain::ids::InstanceId) {
    let deploy = &ops::for_instance(&h.pool, id).await.unwrap()[0];
    assert!(deploy.checks >= 1, "{deploy:?}");
    assert!(deploy.absent_since.is_some(), "{deploy:?}");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_deploy_applied_after_its_lease_but_within_the_quiet_period_is_adopted_not_sent_again(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "rescuer", quiet);
    let instance = order(&h, "late", "email-assistant", PendingConfig::default()).await;
    fault(&h, "UserAgent/Deploy", FaultMode::LateApply, 3_400, Some(1));
    drive(&ctx, instance.id).await;
    assert_eq!(
        h.sim.sim().call_counts()["UserAgent/Deploy"],
        1,
        "never sent twice"
    );
    assert_eq!(h.sim.sim().instances().len(), 1);
    assert_eq!(
        deploy_states(&h, instance.id).await,
        [OperationState::Adopted]
    );
    assert_first_search_was_empty(&h, instance.id).await;
    let done = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(done.state, InstanceState::Running, "{:?}", done.last_error);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_deploy_hidden_by_a_lagging_list_is_found_by_the_second_search_not_sent_again(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "rescuer", quiet);
    let instance = order(&h, "lag", "email-assistant", PendingConfig::default()).await;
    fault(&h, "UserAgent/Deploy", FaultMode::DropResponse, 0, Some(1));
    fault(&h, "UserAgent/MyAgents", FaultMode::ListLag, 3_400, None);
    drive(&ctx, instance.id).await;
    assert_eq!(
        h.sim.sim().call_counts()["UserAgent/Deploy"],
        1,
        "never sent twice"
    );
    assert_eq!(
        deploy_states(&h, instance.id).await,
        [OperationState::Adopted]
    );
    assert_first_search_was_empty(&h, instance.id).await;
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_deploy_applied_beyond_the_bound_is_contained_cancelled_and_booked_as_a_duplicate(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "rescuer", quiet);
    let instance = order(&h, "very-late", "email-assistant", PendingConfig::default()).await;
    fault(&h, "UserAgent/Deploy", FaultMode::LateApply, 6_000, Some(1));
    drive(&ctx, instance.id).await;
    assert_eq!(
        deploy_states(&h, instance.id).await,
        [OperationState::NotFound, OperationState::Succeeded]
    );
    // The first Deploy lands after all: reconciliation contains it.
    let deadline = tokio::time::Instant::now() + SETTLE;
    while h.sim.sim().instances().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the late Deploy never landed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reconcile::run(&ctx).await.unwrap();
    let ours = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    let upstream = h.sim.sim().instances();
    let duplicate = upstream
        .iter()
        .find(|u| Some(&u.guid) != ours.wiro_guid.as_ref())
        .unwrap();
    assert!(
        duplicate.cancel_at_period_end,
        "cancelled at Wiro: it never renews"
    );
    let charges = ledger::list(&h.pool, &Default::default(), None, 10)
        .await
        .unwrap();
    let kinds: Vec<ChargeKind> = charges.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ChargeKind::Deploy, ChargeKind::DuplicateDeploy]);
    let alert = alerts::open(&h.pool, Some("upstream_duplicate"), None, 10)
        .await
        .unwrap();
    assert_eq!(alert[0].subject, format!("wiro:{}", duplicate.guid));
    // Reconciling again changes nothing.
    reconcile::run(&ctx).await.unwrap();
    assert_eq!(
        ledger::list(&h.pool, &Default::default(), None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_instance_our_database_lost_is_re_adopted_with_its_charge(pool: PgPool) {
    let h = harness(pool).await;
    let instance = order(&h, "restored", "email-assistant", PendingConfig::default()).await;
    // The order is in the restored database, its Deploy is not: it happened upstream after the
    // backup was taken.
    sqlx::query("DELETE FROM apalis.jobs")
        .execute(&h.pool)
        .await
        .unwrap();
    let lost = h
        .ctx
        .wiro
        .deploy(&wiro_client::models::DeployRequest {
            description: Some(instances::upstream_description(
                instance.id,
                domain::ids::OperationId::new(),
            )),
            ..wiro_client::models::DeployRequest::prepaid(
                &instance.template_guid,
                &instance.title,
                "starter",
            )
        })
        .await
        .unwrap();
    let report = reconcile::run(&h.ctx).await.unwrap();
    assert_eq!(report.adopting, 1, "{report:?}");
    let adopted = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(adopted.wiro_guid.as_deref(), Some(lost.guid.as_str()));
    let (_stop, _worker) = spawn_worker(&h.ctx);
    wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
    assert_eq!(
        h.sim.sim().instances().len(),
        1,
        "adopted, not deployed again"
    );
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_whose_job_was_lost_is_handed_back_by_the_stuck_sweep_and_runs(pool: PgPool) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "sweeper", |s| {
        s.schedules.stuck_after = Duration::ZERO;
        s.schedules.stuck_alert_after = 2;
    });
    let instance = order(&h, "stuck", "email-assistant", PendingConfig::default()).await;
    for round in 1..=2 {
        // Its job ran out of attempts (or was lost): nothing would ever move it again.
        sqlx::query("DELETE FROM apalis.jobs")
            .execute(&h.pool)
            .await
            .unwrap();
        let report = stuck::run(&ctx).await.unwrap();
        assert_eq!(report.requeued, 1, "round {round}: {report:?}");
    }
    let alert = alerts::open(&h.pool, Some("order_stuck"), None, 10)
        .await
        .unwrap();
    assert_eq!(alert.len(), 1, "ops hear of an order stuck again and again");
    // With a live job it is left alone.
    assert_eq!(stuck::run(&ctx).await.unwrap().requeued, 0);
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let running = wait_for(&h.pool, instance.id, &[InstanceState::Running], SETTLE).await;
    assert_eq!(running.requeues, 0, "progress resets the count");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn polling_for_running_has_a_deadline(pool: PgPool) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "impatient", |s| {
        s.provisioning.start_deadline = Duration::from_millis(1);
    });
    let instance = order(&h, "slow", "email-assistant", PendingConfig::default()).await;
    drive(&ctx, instance.id).await;
    let failed = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    assert_eq!(failed.state, InstanceState::Failed);
    assert_eq!(failed.failed_step.as_deref(), Some("start"));
    assert!(failed.last_error.unwrap().contains("did not reach Running"));
}

async fn a_failed_order_whose_deploy_landed(
    pool: PgPool,
    policy: domain::config::FailedDeployPolicy,
) -> (Harness, domain::ids::InstanceId) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "policy", |s| {
        s.provisioning.failed_deploy_policy = policy
    });
    let instance = order(&h, "given-up", "email-assistant", PendingConfig::default()).await;
    fault(&h, "UserAgent/Deploy", FaultMode::DropResponse, 0, Some(1));
    // One run: the Deploy's answer is lost, then ops give the order up.
    let next = worker::provision::advance(&ctx, instance.id).await.unwrap();
    assert!(matches!(next, worker::provision::Next::RetryAfter(_)));
    sqlx::query("UPDATE instances SET state = 'failed', last_error = 'given up' WHERE id = $1")
        .bind(instance.id)
        .execute(&h.pool)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        operations::settle::sweep(&ctx).await.unwrap();
        if !deploy_states(&h, instance.id).await[0].is_unresolved() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        deploy_states(&h, instance.id).await,
        [OperationState::Adopted]
    );
    let alert = alerts::open(&h.pool, Some("deploy_landed_after_failure"), None, 10)
        .await
        .unwrap();
    assert_eq!(alert.len(), 1);
    (h, instance.id)
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_failed_order_whose_deploy_landed_is_adopted_by_policy_and_runs(pool: PgPool) {
    let (h, id) =
        a_failed_order_whose_deploy_landed(pool, domain::config::FailedDeployPolicy::Adopt).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    wait_for(&h.pool, id, &[InstanceState::Running], SETTLE).await;
    assert_eq!(h.sim.sim().instances().len(), 1);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_failed_order_whose_deploy_landed_is_cancelled_by_policy_and_never_renews(pool: PgPool) {
    let (h, id) =
        a_failed_order_whose_deploy_landed(pool, domain::config::FailedDeployPolicy::Cancel).await;
    let order = instances::get(&h.pool, id).await.unwrap().unwrap();
    assert_eq!(order.state, InstanceState::Failed);
    assert!(h.sim.sim().instances()[0].cancel_at_period_end);
    h.sim.sim().advance_days(31);
    assert_eq!(sim_charges(&h, "renewal"), 0);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn orders_with_a_plan_and_credentials_still_run_end_to_end(pool: PgPool) {
    // The protocol changes nothing for the common path.
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    running_order(&h, "plain", "instagram-manager", Plan::Pro, instagram()).await;
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_instance_recorded_as_the_orders_own_is_never_contained_as_its_duplicate(pool: PgPool) {
    // A search and a reconciliation can meet on one new instance: whichever records it first,
    // the other must not then cancel the customer's own subscription as a "duplicate".
    let h = harness(pool).await;
    let instance = order(&h, "raced", "email-assistant", PendingConfig::default()).await;
    drive(&h.ctx, instance.id).await;
    let own = instances::get(&h.pool, instance.id).await.unwrap().unwrap();
    let agent = h
        .ctx
        .wiro
        .detail(own.wiro_guid.as_deref().unwrap())
        .await
        .unwrap();
    // `instance` is the stale copy read before the guid was recorded.
    operations::deploy::contain(&h.ctx, &instance, &agent, None)
        .await
        .unwrap();
    assert!(!h.sim.sim().instances()[0].cancel_at_period_end);
    let duplicates: i64 = sqlx::query_scalar("SELECT count(*) FROM upstream_duplicates")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(duplicates, 0);
    assert_ledgers_match(&h).await;
}
