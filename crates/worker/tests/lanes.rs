//! A customer's own order does not queue behind an ops batch: batches run in the bulk lane
//! (its own queue and slots), customers' orders in the interactive lane.

use std::time::Duration;

use domain::model::{InstanceState, Plan};
use domain::orders::{Actor, Order};
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::{FaultMode, FaultSpec};

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_customers_order_placed_after_a_large_batch_runs_before_most_of_it(pool: PgPool) {
    const BATCH: usize = 80;
    let h = harness(pool).await;
    // Slow enough that the batch takes seconds with two orders at a time.
    h.sim
        .sim()
        .add_fault(FaultSpec {
            endpoint: "*".into(),
            mode: FaultMode::Latency,
            status: None,
            latency_ms: Some(15),
            probability: None,
            count: None,
            rate_per_s: None,
        })
        .unwrap();
    let ctx = context_with(&h, "lane-worker", |s| {
        s.worker.provision_concurrency = 2;
    });
    let template = template(&h, "email-assistant", Plan::Starter).await;
    let batch = batch_of(&template, BATCH, "bulk");
    let actor = Actor {
        name: "test",
        request_id: None,
    };
    domain::orders::submit_batch(&h.pool, &h.ctx.sealer, Some("big"), &batch, actor)
        .await
        .unwrap();
    let (_stop, _worker) = spawn_worker(&ctx);
    // The batch is under way when the customer orders.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running(&h).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batch never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let customer = customer(&h, "impatient").await;
    let order = Order {
        plan: Plan::Starter,
        title: "mine".into(),
        config: PendingConfig::default(),
    };
    let mine = domain::orders::place_order(
        &h.pool,
        &h.ctx.sealer,
        customer,
        domain::orders::Purchase {
            order: &order,
            template: &template,
        },
        actor,
        &h.ctx.settings.limits,
        None,
    )
    .await
    .unwrap();
    wait_for(
        &h.pool,
        mine.id,
        &[InstanceState::Running],
        Duration::from_secs(60),
    )
    .await;
    let batch_running = running(&h).await - 1;
    assert!(
        (batch_running as usize) < BATCH / 2,
        "the customer's order waited for {batch_running} of {BATCH} batch orders"
    );
}

async fn running(h: &Harness) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = 'running'")
        .fetch_one(&h.pool)
        .await
        .unwrap()
}
