//! Scheduled work against the simulator's clock: renewals over billing periods, a short wallet,
//! top-ups, reconciliation, and the schedules ticking in two workers at once.

use std::time::Duration;

use domain::db::{alerts, customers, instances};
use domain::model::{CustomerStatus, InstanceState, Plan};
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::SimConfig;
use worker::sweeps::{reconcile, renewals, topups};

const SETTLE: Duration = Duration::from_secs(30);

async fn open_alerts(h: &Harness, kind: &str) -> Vec<alerts::Alert> {
    alerts::open(&h.pool, Some(kind), None, 100).await.unwrap()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn over_three_periods_active_agents_renew_and_run_and_a_suspended_one_stays_stopped(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let a1 = running_order(
        &h,
        "active",
        "instagram-manager",
        Plan::Starter,
        instagram(),
    )
    .await;
    let a2 = running_order(
        &h,
        "active",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    let b = running_order(
        &h,
        "suspended",
        "instagram-manager",
        Plan::Starter,
        instagram(),
    )
    .await;

    customers::change_status(
        &h.pool,
        b.customer_id,
        CustomerStatus::Suspended,
        "ops:test",
        None,
    )
    .await
    .unwrap();
    // The status change enqueued the job that applies it; the worker runs it (applying it here
    // as well would race that job for the agent's subscription).
    let stopped = wait_for(&h.pool, b.id, &[InstanceState::Stopped], SETTLE).await;
    assert!(
        stopped.cancel_at_period_end,
        "suspension cancels renewal at period end"
    );

    for period in 1..=3 {
        h.sim.sim().advance_days(30);
        reconcile::run(&h.ctx).await.unwrap();
        renewals::run(&h.ctx).await.unwrap();
        for id in [a1.id, a2.id] {
            let running = wait_for(&h.pool, id, &[InstanceState::Running], SETTLE).await;
            assert_eq!(
                running.subscription_status.as_deref(),
                Some("active"),
                "period {period}"
            );
        }
        assert_eq!(
            sim_charges(&h, "renewal"),
            2 * period,
            "two renewals per period, none for the suspended"
        );
    }
    let upstream = h.sim.sim().instances();
    let b_upstream = upstream
        .iter()
        .find(|u| Some(&u.guid) == stopped.wiro_guid.as_ref())
        .unwrap();
    assert!(
        !b_upstream.subscription_active,
        "the suspended customer's plan expired"
    );
    assert_eq!(b_upstream.status, 0);
    assert_eq!(
        instances::get(&h.pool, b.id).await.unwrap().unwrap().state,
        InstanceState::Stopped
    );
    for u in upstream.iter().filter(|u| u.subscription_active) {
        assert_eq!(u.status, 4, "renewed agents run again");
    }
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_short_wallet_renews_what_it_can_parks_the_rest_and_the_forecast_saw_it(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            running_order(
                &h,
                &format!("wallet-{i}"),
                "instagram-manager",
                Plan::Starter,
                instagram(),
            )
            .await
            .id,
        );
    }
    h.sim.sim().set_wallet(WIRO_KEY, 10.0).unwrap();
    let forecast = domain::forecast::forecast(&h.pool, 31, Some(1000))
        .await
        .unwrap();
    assert_eq!(forecast.renewals.len(), 3);
    assert_eq!(forecast.total_cents, 2700);
    assert_eq!(
        forecast.shortfall_cents,
        Some(1700),
        "the forecast predicts the shortfall"
    );
    assert!(forecast.first_uncovered.is_some());

    h.sim.sim().advance_days(30);
    reconcile::run(&h.ctx).await.unwrap();
    renewals::run(&h.ctx).await.unwrap();
    assert_eq!(
        sim_charges(&h, "renewal"),
        1,
        "the wallet covered one renewal"
    );
    let parked = open_alerts(&h, "renewal_parked").await;
    assert_eq!(parked.len(), 2);
    for alert in &parked {
        assert_eq!(alert.detail["required_cents"], 900);
        assert_eq!(alert.detail["available_cents"], 100);
    }
    assert_ledgers_match(&h).await;

    h.sim.sim().set_wallet(WIRO_KEY, 100.0).unwrap();
    renewals::run(&h.ctx).await.unwrap();
    assert!(
        open_alerts(&h, "renewal_parked").await.is_empty(),
        "renewed once the wallet allowed it"
    );
    for id in ids {
        wait_for(&h.pool, id, &[InstanceState::Running], SETTLE).await;
    }
    assert_eq!(sim_charges(&h, "renewal"), 3);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_pro_agent_gets_one_pack_per_threshold_crossing_within_the_monthly_cap(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let ctx = context_with(&h, "topup-worker", |s| {
        s.billing.topup_threshold = 2000;
        s.billing.topup_pack = domain::model::Pack::Package1;
        s.billing.topup_monthly_cap = 2;
    });
    let agent = running_order(&h, "burner", "instagram-manager", Plan::Pro, instagram()).await;
    let guid = agent.wiro_guid.clone().unwrap();
    let sim = h.sim.sim();

    sim.consume_credits(&guid, 4500).unwrap(); // 500 left: below the line
    topups::run(&ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "extra_credits"), 1);
    topups::run(&ctx).await.unwrap(); // 1500: still below, but this crossing is done
    assert_eq!(sim_charges(&h, "extra_credits"), 1, "once per crossing");

    sim.advance_days(30); // renewal refills the monthly allowance: above the line again
    reconcile::run(&h.ctx).await.unwrap();
    topups::run(&ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "extra_credits"), 1);
    sim.consume_credits(&guid, 5500).unwrap(); // second crossing
    topups::run(&ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "extra_credits"), 2);

    sim.advance_days(30);
    reconcile::run(&h.ctx).await.unwrap();
    topups::run(&ctx).await.unwrap();
    sim.consume_credits(&guid, 5500).unwrap(); // third crossing: over the monthly cap
    topups::run(&ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "extra_credits"), 2, "the monthly cap holds");
    assert_eq!(open_alerts(&h, "topup_cap_reached").await.len(), 1);
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_starter_agent_below_the_threshold_alerts_or_upgrades_as_configured(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let alerting = context_with(&h, "alert-policy", |s| {
        s.billing.topup_threshold = 500;
        s.billing.starter_policy = domain::config::StarterPolicy::Alert;
    });
    let upgrading = context_with(&h, "upgrade-policy", |s| {
        s.billing.topup_threshold = 500;
        s.billing.starter_policy = domain::config::StarterPolicy::Upgrade;
    });
    let a = running_order(
        &h,
        "starter-a",
        "instagram-manager",
        Plan::Starter,
        instagram(),
    )
    .await;
    h.sim
        .sim()
        .consume_credits(a.wiro_guid.as_deref().unwrap(), 900)
        .unwrap();
    topups::run(&alerting).await.unwrap();
    assert_eq!(open_alerts(&h, "credits_low").await.len(), 1);
    assert_eq!(
        sim_charges(&h, "upgrade") + sim_charges(&h, "extra_credits"),
        0,
        "alert only"
    );

    let b = running_order(&h, "starter-b", "support-telegram", Plan::Starter, {
        let mut c = PendingConfig::default();
        c.credentials.0.insert(
            "telegram".into(),
            [
                ("botToken".to_owned(), serde_json::json!("t")),
                ("allowedUsers".to_owned(), serde_json::json!(["1"])),
            ]
            .into(),
        );
        c
    })
    .await;
    h.sim
        .sim()
        .consume_credits(b.wiro_guid.as_deref().unwrap(), 900)
        .unwrap();
    topups::run(&upgrading).await.unwrap();
    assert_eq!(sim_charges(&h, "upgrade"), 1, "upgraded to Pro");
    let upgraded = instances::get(&h.pool, b.id).await.unwrap().unwrap();
    assert_eq!(upgraded.subscription_plan.as_deref(), Some("agent-pro"));
    assert_ledgers_match(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_agent_in_error_is_restarted_and_failed_for_ops_past_the_cap(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let agent = running_order(&h, "flaky", "instagram-manager", Plan::Starter, instagram()).await;
    let guid = agent.wiro_guid.clone().unwrap();
    h.sim.sim().force_status(&guid, 5).unwrap();
    reconcile::run(&h.ctx).await.unwrap();
    let back = wait_for(&h.pool, agent.id, &[InstanceState::Running], SETTLE).await;
    assert_eq!(back.error_restarts, 1);
    assert_eq!(h.sim.sim().instances()[0].status, 4, "restarted upstream");
    reconcile::run(&h.ctx).await.unwrap();
    assert_eq!(
        instances::get(&h.pool, agent.id)
            .await
            .unwrap()
            .unwrap()
            .error_restarts,
        0,
        "reset once it runs"
    );

    let no_more = context_with(&h, "capped", |s| s.schedules.error_restart_cap = 0);
    h.sim.sim().force_status(&guid, 5).unwrap();
    reconcile::run(&no_more).await.unwrap();
    let failed = instances::get(&h.pool, agent.id).await.unwrap().unwrap();
    assert_eq!(failed.state, InstanceState::Failed);
    assert!(failed.last_error.unwrap().contains("Error (5)"));
    assert_eq!(open_alerts(&h, "error_restarts_exhausted").await.len(), 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn drift_is_reported_an_orphan_upstream_and_a_row_whose_instance_is_gone(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let agent = running_order(&h, "drift", "instagram-manager", Plan::Starter, instagram()).await;
    // Behind our back: one carrying a correlator of an order we never placed, one of the
    // operator's own without any.
    let stranger = domain::ids::InstanceId::new();
    let rogue = h
        .ctx
        .wiro
        .deploy(&wiro_client::models::DeployRequest {
            description: Some(domain::db::instances::upstream_description(
                stranger,
                domain::ids::OperationId::new(),
            )),
            ..wiro_client::models::DeployRequest::prepaid(
                "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
                "Rogue",
                "starter",
            )
        })
        .await
        .unwrap();
    h.ctx
        .wiro
        .deploy(&wiro_client::models::DeployRequest::prepaid(
            "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
            "Operator's own bot",
            "starter",
        ))
        .await
        .unwrap();
    h.sim
        .sim()
        .delete_instance(agent.wiro_guid.as_deref().unwrap())
        .unwrap();

    let report = reconcile::run(&h.ctx).await.unwrap();
    assert_eq!((report.quarantined, report.missing), (1, 1), "{report:?}");
    let orphans = open_alerts(&h, "upstream_orphan").await;
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].subject, format!("wiro:{}", rogue.guid));
    let missing = open_alerts(&h, "upstream_missing").await;
    assert_eq!(missing[0].instance_id, Some(agent.id));
    let flagged = instances::get(&h.pool, agent.id).await.unwrap().unwrap();
    assert_eq!(flagged.state, InstanceState::Failed);
    assert!(flagged.last_error.unwrap().contains("User agent not found"));
    // A second sweep raises nothing new.
    reconcile::run(&h.ctx).await.unwrap();
    assert_eq!(open_alerts(&h, "upstream_orphan").await.len(), 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn two_workers_ticking_the_schedules_make_one_sweep_per_tick_and_one_renewal_per_period(
    pool: PgPool,
) {
    let h = harness_with(pool, SimConfig::with_account(WIRO_KEY, 100_000.0)).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            running_order(
                &h,
                &format!("tick-{i}"),
                "instagram-manager",
                Plan::Starter,
                instagram(),
            )
            .await
            .id,
        );
    }
    // Let the plans expire (empty wallet), then fund it: two renewal sweeps race.
    h.sim.sim().set_wallet(WIRO_KEY, 0.0).unwrap();
    h.sim.sim().advance_days(30);
    reconcile::run(&h.ctx).await.unwrap();
    h.sim.sim().set_wallet(WIRO_KEY, 1000.0).unwrap();

    let every_second = |s: &mut domain::Settings| {
        s.schedules.enabled = true;
        s.schedules.reconcile = "*/1 * * * * *".into();
        s.schedules.renewals = "*/1 * * * * *".into();
        s.schedules.topups = "*/1 * * * * *".into();
    };
    let first = context_with(&h, "scheduler-1", every_second);
    let second = context_with(&h, "scheduler-2", every_second);
    let (stop1, w1) = spawn_worker(&first);
    let (stop2, w2) = spawn_worker(&second);
    // Let both schedulers tick a few times: wait for three renewal ticks to be enqueued.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ticks: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = 'sweeps' AND idempotency_key LIKE 'renewals:%'",
        )
        .fetch_one(&h.pool)
        .await
        .unwrap();
        if ticks >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedulers never ticked three times"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop1.send(());
    let _ = stop2.send(());
    let _ = w1.await;
    let _ = w2.await;

    let per_key: Vec<(String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM apalis.jobs WHERE job_type = 'sweeps' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap();
    assert!(
        per_key
            .iter()
            .filter(|(k, _)| k.starts_with("renewals:"))
            .count()
            >= 3,
        "{per_key:?}"
    );
    assert!(
        per_key.iter().all(|(_, n)| *n == 1),
        "one sweep per tick: {per_key:?}"
    );
    // The schedulers are gone: what their sweeps left (a renewal whose answer a loaded
    // machine lost, a restart not yet made) is what the next settle and reconcile sweeps
    // finish, so run those until every agent runs.
    let deadline = tokio::time::Instant::now() + SETTLE;
    for id in ids {
        loop {
            let instance = instances::get(&h.pool, id).await.unwrap().unwrap();
            if instance.state == InstanceState::Running {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} stuck in {} (last error: {:?})",
                instance.state,
                instance.last_error
            );
            operations::settle::sweep(&h.ctx).await.unwrap();
            reconcile::run(&h.ctx).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(
        sim_charges(&h, "renewal"),
        3,
        "one renewal per instance for the period"
    );
    assert_ledgers_match(&h).await;
}

/// The ledger's webhook events (`ledger_webhook_events`, fired only for these kinds since
/// `20261201000002_trigger_conditions`): a top-up and a renewal each write theirs, for their
/// agent; the Deploy's charge writes none.
#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn top_ups_and_renewals_write_their_webhook_events_and_a_deploys_charge_none(pool: PgPool) {
    let h = harness(pool).await;
    // An endpoint listening for the ledger's events only (`.invalid` never resolves: the
    // events are written whatever becomes of their delivery).
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, event_types, secret)
         VALUES (gen_random_uuid(), 'https://hooks.invalid/in',
                 ARRAY['subscription.renewed', 'credits.topped_up'], '\\x00')",
    )
    .execute(&h.pool)
    .await
    .unwrap();
    let events = |kind: &'static str| {
        let pool = h.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<uuid::Uuid>>(
                "SELECT instance_id FROM webhook_events WHERE type = $1",
            )
            .bind(kind)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let ctx = context_with(&h, "topup-worker", |s| {
        s.billing.topup_threshold = 2000;
        s.billing.topup_pack = domain::model::Pack::Package1;
    });
    let agent = running_order(&h, "burner", "instagram-manager", Plan::Pro, instagram()).await;
    let guid = agent.wiro_guid.clone().unwrap();
    assert_eq!(sim_charges(&h, "deploy"), 1);
    assert!(events("credits.topped_up").await.is_empty());
    assert!(events("subscription.renewed").await.is_empty());

    h.sim.sim().consume_credits(&guid, 4500).unwrap();
    topups::run(&ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "extra_credits"), 1);
    assert_eq!(events("credits.topped_up").await, vec![Some(agent.id.0)]);

    h.sim.sim().advance_days(30);
    reconcile::run(&h.ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "renewal"), 1);
    assert_eq!(events("subscription.renewed").await, vec![Some(agent.id.0)]);
    assert_ledgers_match(&h).await;
}
