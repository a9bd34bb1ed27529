//! Money moves exactly once on every path, and the ledger sees every move: sweeps in any order,
//! a customer's cancel, packs judged by their credits, operations that cannot be settled yet.

use std::time::Duration;

use domain::db::{alerts, customers, instances, operations as ops};
use domain::model::{CancelSource, CustomerStatus, InstanceState, OperationState, Pack, Plan};
use domain::sealed::PendingConfig;
use operations::billing::{self, ActionResult, BillingAction, BillingError};
use operations::protocol::Requester;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::{FaultMode, FaultSpec};
use worker::sweeps::{customer_status, reconcile, renewals, topups};

const SETTLE: Duration = Duration::from_secs(30);

const CUSTOMER: Requester<'static> = Requester {
    actor: "customer:test",
    request_id: None,
    capped: true,
};

fn fault(endpoint: &str, mode: FaultMode, count: Option<u64>) -> FaultSpec {
    FaultSpec {
        endpoint: endpoint.into(),
        mode,
        status: Some(503),
        latency_ms: None,
        probability: None,
        count,
        rate_per_s: None,
    }
}

#[derive(Clone, Copy, Debug)]
enum Sweep {
    Reconcile,
    Renewals,
    Topups,
}

async fn sweep(h: &Harness, which: Sweep) {
    match which {
        Sweep::Reconcile => drop(reconcile::run(&h.ctx).await.unwrap()),
        Sweep::Renewals => drop(renewals::run(&h.ctx).await.unwrap()),
        Sweep::Topups => drop(topups::run(&h.ctx).await.unwrap()),
    }
}

/// Three agents over three periods — one renewing Starter, one Pro whose credits run low every
/// period (a pack each time), one its customer cancelled — with the sweeps in `order`: our
/// ledger equals the simulator's, the cancelled one is never renewed and stops.
async fn three_periods_with_sweeps_in(pool: PgPool, order: [Sweep; 3]) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let starter = running_order(&h, "a", "instagram-manager", Plan::Starter, instagram()).await;
    let pro = running_order(
        &h,
        "b",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    let leaving = running_order(
        &h,
        "c",
        "email-assistant",
        Plan::Starter,
        PendingConfig::default(),
    )
    .await;
    let cancel = BillingAction::Cancel {
        source: CancelSource::Customer,
    };
    billing::perform(&h.ctx, &leaving, cancel, CUSTOMER, None)
        .await
        .unwrap();
    let pro_guid = pro.wiro_guid.clone().unwrap();
    for period in 1..=3 {
        // Credits run low mid-period, then the period ends; the sweeps run in `order` at both.
        let left = h
            .sim
            .sim()
            .instances()
            .into_iter()
            .find(|u| u.guid == pro_guid)
            .map(|u| u.monthly_credits + u.extra_credits)
            .unwrap();
        h.sim.sim().consume_credits(&pro_guid, left - 300).unwrap();
        for which in order {
            sweep(&h, which).await;
        }
        h.sim.sim().advance_days(30);
        for which in order {
            sweep(&h, which).await;
        }
        wait_all_settled(&h.pool, SETTLE).await;
        assert_eq!(sim_charges(&h, "renewal"), 2 * period, "period {period}");
        assert_ledgers_match(&h).await;
    }
    assert_eq!(
        sim_charges(&h, "extra_credits"),
        3,
        "one pack per low period"
    );
    for id in [starter.id, pro.id] {
        let agent = instances::get(&h.pool, id).await.unwrap().unwrap();
        assert_eq!(
            agent.state,
            InstanceState::Running,
            "{:?}",
            agent.last_error
        );
    }
    let gone = instances::get(&h.pool, leaving.id).await.unwrap().unwrap();
    assert_eq!(gone.state, InstanceState::Stopped);
    assert_eq!(gone.subscription_status.as_deref(), Some("expired"));
    assert_eq!(gone.cancelled_by(), Some(CancelSource::Customer));
    let upstream = h.sim.sim().instances();
    let c = upstream
        .iter()
        .find(|u| Some(&u.guid) == gone.wiro_guid.as_ref())
        .unwrap();
    assert!(!c.subscription_active, "the customer's cancel held");
    assert_eq!(c.status, 0);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn with_reconcile_first_every_renewal_and_pack_is_booked_once_over_three_periods(
    pool: PgPool,
) {
    three_periods_with_sweeps_in(pool, [Sweep::Reconcile, Sweep::Renewals, Sweep::Topups]).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn with_top_ups_first_every_renewal_and_pack_is_booked_once_over_three_periods(pool: PgPool) {
    three_periods_with_sweeps_in(pool, [Sweep::Topups, Sweep::Reconcile, Sweep::Renewals]).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn with_renewals_first_every_renewal_and_pack_is_booked_once_over_three_periods(
    pool: PgPool,
) {
    three_periods_with_sweeps_in(pool, [Sweep::Renewals, Sweep::Topups, Sweep::Reconcile]).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_customers_cancel_survives_every_sweep_and_a_suspension_and_reactivation(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let agent = running_order(
        &h,
        "wish",
        "email-assistant",
        Plan::Starter,
        PendingConfig::default(),
    )
    .await;
    let cancel = BillingAction::Cancel {
        source: CancelSource::Customer,
    };
    let done = billing::perform(&h.ctx, &agent, cancel, CUSTOMER, None)
        .await
        .unwrap();
    assert_eq!(done.outcome.result, ActionResult::Cancelled);
    // Every sweep, and the customer suspended and reactivated, before the period ends.
    for status in [CustomerStatus::Suspended, CustomerStatus::Active] {
        customers::change_status(&h.pool, agent.customer_id, status, "ops:test", None)
            .await
            .unwrap();
        customer_status::apply(&h.ctx, agent.customer_id)
            .await
            .unwrap();
        wait_all_settled(&h.pool, SETTLE).await;
    }
    for which in [Sweep::Renewals, Sweep::Reconcile, Sweep::Topups] {
        sweep(&h, which).await;
    }
    let upstream = h.sim.sim().instances();
    assert!(
        upstream[0].cancel_at_period_end,
        "nothing of ours took it back"
    );
    let current = instances::get(&h.pool, agent.id).await.unwrap().unwrap();
    assert_eq!(current.cancelled_by(), Some(CancelSource::Customer));
    // The period ends: no renewal, and the agent stops.
    h.sim.sim().advance_days(31);
    for which in [
        Sweep::Renewals,
        Sweep::Reconcile,
        Sweep::Topups,
        Sweep::Renewals,
    ] {
        sweep(&h, which).await;
    }
    wait_all_settled(&h.pool, SETTLE).await;
    assert_eq!(sim_charges(&h, "renewal"), 0, "no renewal charge");
    let stopped = instances::get(&h.pool, agent.id).await.unwrap().unwrap();
    assert_eq!(
        stopped.state,
        InstanceState::Stopped,
        "{:?}",
        stopped.last_error
    );
    assert_eq!(h.sim.sim().instances()[0].status, 0);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_second_pack_whose_answer_is_lost_is_found_by_its_credits_not_the_earliest_expiry(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let agent = running_order(
        &h,
        "packs",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    let pack = BillingAction::ExtraCredits {
        pack: Pack::Package1,
    };
    billing::perform(&h.ctx, &agent, pack, CUSTOMER, None)
        .await
        .unwrap();
    // The second pack's answer is lost. The earliest pack's expiry does not move; the extra
    // credits do.
    h.sim
        .sim()
        .add_fault(fault(
            "UserAgent/CreateExtraCreditCheckout",
            FaultMode::DropResponse,
            Some(1),
        ))
        .unwrap();
    let lost = billing::perform(&h.ctx, &agent, pack, CUSTOMER, None).await;
    let Err(BillingError::InDoubt(op)) = lost else {
        panic!("expected in doubt, got {lost:?}");
    };
    settle_until_resolved(&h, op).await;
    let settled = ops::get(&h.pool, op).await.unwrap().unwrap();
    assert_eq!(settled.state, OperationState::Adopted);
    assert_eq!(sim_charges(&h, "extra_credits"), 2);
    assert_ledgers_match(&h).await;
}

/// Runs the settle sweep until `op` is resolved (fails after 30 s).
async fn settle_until_resolved(h: &Harness, op: domain::ids::OperationId) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        operations::settle::sweep(&h.ctx).await.unwrap();
        let current = ops::get(&h.pool, op).await.unwrap().unwrap();
        if !current.state.is_unresolved() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "operation {op} never settled: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_operation_whose_evidence_cannot_be_read_stays_in_doubt_is_alerted_then_settles(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let agent = running_order(
        &h,
        "doubt",
        "email-assistant",
        Plan::Starter,
        PendingConfig::default(),
    )
    .await;
    h.sim
        .sim()
        .add_fault(fault(
            "UserAgent/UpgradePlan",
            FaultMode::DropResponse,
            Some(1),
        ))
        .unwrap();
    let lost = billing::perform(&h.ctx, &agent, BillingAction::Upgrade, CUSTOMER, None).await;
    let Err(BillingError::InDoubt(op)) = lost else {
        panic!("expected in doubt, got {lost:?}");
    };
    // Wiro cannot be read: the checks cannot decide; after three, ops are told.
    h.sim
        .sim()
        .add_fault(fault("UserAgent/Detail", FaultMode::Error, None))
        .unwrap();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        operations::settle::sweep(&h.ctx).await.unwrap();
        let open = alerts::open(&h.pool, Some("operation_in_doubt"), None, 10)
            .await
            .unwrap();
        if !open.is_empty() {
            assert_eq!(open[0].detail["checks"], 3);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never alerted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        ops::get(&h.pool, op)
            .await
            .unwrap()
            .unwrap()
            .state
            .is_unresolved()
    );
    // Wiro is back: the next sweep settles it from the plan, and the alert closes.
    h.sim.sim().clear_faults();
    settle_until_resolved(&h, op).await;
    assert_eq!(
        ops::get(&h.pool, op).await.unwrap().unwrap().state,
        OperationState::Adopted
    );
    assert!(
        alerts::open(&h.pool, Some("operation_in_doubt"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let upgraded = instances::get(&h.pool, agent.id).await.unwrap().unwrap();
    assert_eq!(upgraded.plan, Plan::Pro);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_customer_status_job_reaches_every_agent_beyond_the_first_page(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    // 500 undeployed orders first, then one deployed: the job must page past the first 500.
    let customer = customer(&h, "big").await;
    let template = template(&h, "email-assistant", Plan::Starter).await;
    let rows: Vec<instances::NewInstance> = (0..domain::db::MAX_PAGE)
        .map(|i| instances::NewInstance {
            id: domain::ids::InstanceId::new(),
            customer_id: customer,
            template_guid: template.guid.clone(),
            template_slug: template.slug.clone(),
            plan: Plan::Starter,
            title: format!("idle {i}"),
            price_cents: template.price_cents,
            pending_config: None,
        })
        .collect();
    instances::insert_many(&h.pool, &rows).await.unwrap();
    sqlx::query("UPDATE instances SET state = 'failed'")
        .execute(&h.pool)
        .await
        .unwrap();
    let last = running_order(
        &h,
        "big",
        "email-assistant",
        Plan::Starter,
        PendingConfig::default(),
    )
    .await;
    customers::change_status(
        &h.pool,
        customer,
        CustomerStatus::Suspended,
        "ops:test",
        None,
    )
    .await
    .unwrap();
    // The status change enqueued the customer job; the worker runs it.
    let stopped = wait_for(&h.pool, last.id, &[InstanceState::Stopped], SETTLE).await;
    assert_eq!(stopped.cancelled_by(), Some(CancelSource::Suspension));
}
