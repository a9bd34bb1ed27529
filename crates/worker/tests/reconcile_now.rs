//! Asking for a reconciliation now (a worker's start, an agent Wiro no longer has): asks in the
//! same second share a sweep while one is still to run, and get one of their own once it has
//! run — a worker restarted within the second of its previous start still reconciles.

use domain::jobs::{self, SWEEP_QUEUE, SweepKind};
use sqlx::PgPool;
use testkit::*;

async fn sweeps(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE job_type = $1")
        .bind(SWEEP_QUEUE)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Marks every sweep as apalis marks a job that ran to its end.
async fn run_them_all(pool: &PgPool) {
    sqlx::query("UPDATE apalis.jobs SET status = 'Done', done_at = now() WHERE job_type = $1")
        .bind(SWEEP_QUEUE)
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn asks_in_one_second_share_a_sweep_until_it_has_run_then_get_their_own(pool: PgPool) {
    let h = harness(pool).await;
    let tick = 1_800_000_000;
    assert!(
        jobs::reconcile_now(&h.pool, tick).await.unwrap(),
        "the first ask enqueues"
    );
    assert!(
        !jobs::reconcile_now(&h.pool, tick).await.unwrap(),
        "an ask while it waits shares it"
    );
    assert_eq!(sweeps(&h.pool).await, 1);

    run_them_all(&h.pool).await;
    assert!(
        jobs::reconcile_now(&h.pool, tick).await.unwrap(),
        "an ask after the sweep ran gets one of its own"
    );
    assert!(
        !jobs::reconcile_now(&h.pool, tick).await.unwrap(),
        "and the next ask shares that one"
    );
    assert_eq!(sweeps(&h.pool).await, 2);

    run_them_all(&h.pool).await;
    assert!(jobs::reconcile_now(&h.pool, tick).await.unwrap());
    assert_eq!(sweeps(&h.pool).await, 3);
    // A scheduled tick still runs once, whatever ran before.
    assert!(
        !jobs::enqueue_sweep(&h.pool, SweepKind::Reconcile, tick)
            .await
            .unwrap()
    );
    assert_eq!(sweeps(&h.pool).await, 3);
}
