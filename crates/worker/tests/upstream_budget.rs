//! Politeness towards Wiro: a bulk batch against a Wiro that answers 429 above N calls a
//! second finishes with no order failed (the adaptive limits back off and recover). Two
//! processes sharing one budget are in `shared_budget.rs`.

use std::time::Duration;

use domain::model::{InstanceState, Plan};
use domain::orders::Actor;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::FaultSpec;

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_bulk_batch_against_a_rate_limited_wiro_finishes_with_no_order_failed(pool: PgPool) {
    const ORDERS: usize = 60;
    const LIMIT: u32 = 40;
    let h = harness(pool).await;
    let ctx = context_with(&h, "polite-worker", |s| {
        s.worker.provision_concurrency = 32;
    });
    h.sim.sim().add_fault(FaultSpec::rate_limit(LIMIT)).unwrap();
    let template = template(&h, "email-assistant", Plan::Starter).await;
    let batch = batch_of(&template, ORDERS, "polite");
    domain::orders::submit_batch(
        &h.pool,
        &h.ctx.sealer,
        Some("polite"),
        &batch,
        Actor {
            name: "test",
            request_id: None,
        },
    )
    .await
    .unwrap();
    let (_stop, _worker) = spawn_worker(&ctx);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (running, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'running'),
                    count(*) FILTER (WHERE state = 'failed')
             FROM instances",
        )
        .fetch_one(&h.pool)
        .await
        .unwrap();
        assert_eq!(failed, 0, "no order fails because Wiro said 429");
        if running as usize == ORDERS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{running} of {ORDERS} running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = h.sim.sim().fault_rules()[0].fired;
    let view = ctx.wiro.config().throttle.as_ref().unwrap().view();
    assert!(
        refused > 0,
        "the limit was reached (else this test shows nothing)"
    );
    assert!(view.cuts >= 1, "the client backed off: {view:?}");
    let accepted = h.sim.sim().call_counts().values().sum::<u64>() - refused;
    assert!(
        refused < accepted,
        "backing off kept the refusals below the calls that went through: {refused} refused, {accepted} accepted"
    );
    assert_eq!(
        h.sim.sim().instances().len(),
        ORDERS,
        "one Deploy per order"
    );
    for instance in domain::db::instances::deployed(&h.pool).await.unwrap() {
        assert_eq!(instance.state, InstanceState::Running);
    }
    assert_ledgers_match(&h).await;
}
