//! `observe::record_fenced`, the lock-free write provisioning steps record observations with:
//! it writes only over the row it was judged against, books a renewal the observation reveals
//! exactly once, and writes nothing (no new version) when nothing changed.

use domain::db::instances::{self, Change};
use domain::model::InstanceState;
use domain::sealed::PendingConfig;
use operations::observe;
use sqlx::PgPool;
use testkit::*;

async fn renewals(pool: &PgPool, id: domain::ids::InstanceId) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE instance_id = $1 AND kind = 'renewal'",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_fenced_observation_writes_only_over_the_row_it_judged_and_books_a_renewal_once(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let ordered = order(&h, "cust-f", "email-assistant", PendingConfig::default()).await;
    drive(&h.ctx, ordered.id).await;
    let running = instances::get(&h.pool, ordered.id).await.unwrap().unwrap();
    assert_eq!(running.state, InstanceState::Running);
    let guid = running.wiro_guid.clone().unwrap();

    // What Wiro shows is what we hold: no write, no new version.
    let agent = h.ctx.wiro.detail(&guid).await.unwrap();
    let same = observe::record_fenced(&h.pool, &running, &agent, Change::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        same.version, running.version,
        "nothing changed, nothing written"
    );

    // Wiro renewed the subscription: the observation books it, once.
    h.sim.sim().advance_days(30);
    let renewed = h.ctx.wiro.detail(&guid).await.unwrap();
    let recorded = observe::record_fenced(&h.pool, &running, &renewed, Change::default())
        .await
        .unwrap()
        .expect("the row was still at the version judged");
    assert!(recorded.version > running.version);
    assert!(recorded.subscription_period_end > running.subscription_period_end);
    assert_eq!(renewals(&h.pool, running.id).await, 1);

    // The same observation over the old row is fenced out: nothing written, nothing booked.
    let stale = observe::record_fenced(&h.pool, &running, &renewed, Change::default())
        .await
        .unwrap();
    assert!(stale.is_none(), "a row that moved on is not overwritten");
    assert_eq!(renewals(&h.pool, running.id).await, 1);

    // A change with no renewal over a stale row is fenced out too (the one-statement path).
    let stopped = Change::to(InstanceState::Stopped);
    assert!(
        observe::record_fenced(&h.pool, &running, &agent, stopped)
            .await
            .unwrap()
            .is_none()
    );
    let now = instances::get(&h.pool, running.id).await.unwrap().unwrap();
    assert_eq!(now.version, recorded.version);
    assert_eq!(now.state, InstanceState::Running);
    assert_ledgers_match(&h).await;
}
