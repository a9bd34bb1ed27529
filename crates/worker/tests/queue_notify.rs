//! Workers hear of every job that is due when it is enqueued, whenever its transaction began.
//! apalis's own insert trigger notifies only when the job's `run_at` (the enqueuing process's
//! clock, in whole seconds) is at or before the transaction's start; a transaction that began
//! in an earlier second left its jobs to the next poll (`worker.poll_interval`).

use std::time::Duration;

use domain::ids::InstanceId;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use testkit::*;

/// Sleeps in `tx` until the database's clock has left the second `tx` began in.
async fn outlast_the_starting_second(tx: &mut sqlx::PgConnection) {
    sqlx::query(
        "SELECT pg_sleep(EXTRACT(EPOCH FROM date_trunc('second', now()) + interval '1 second'
                                              - clock_timestamp())::float8 + 0.02)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let later: bool = sqlx::query_scalar(
        "SELECT date_trunc('second', clock_timestamp()) > date_trunc('second', now())",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert!(later, "the transaction still runs in its starting second");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_job_enqueued_by_a_transaction_begun_a_second_earlier_is_run_before_the_next_poll(
    pool: PgPool,
) {
    let h = harness(pool).await;
    // Only a notification can start this worker's fetches once it is listening.
    let ctx = context_with(&h, "notify-worker", |s| {
        s.worker.poll_interval = Duration::from_secs(3600);
    });
    let (_stop, _worker) = spawn_worker(&ctx);
    wait_worker_listening(&h.pool, Duration::from_secs(30)).await;
    let customer = customer(&h, "late-second").await;

    let mut tx = h.pool.begin().await.unwrap();
    outlast_the_starting_second(&mut tx).await;
    domain::jobs::enqueue_customer_status(&mut tx, customer)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM apalis.jobs WHERE job_type = $1 AND status = 'Done')",
        )
        .bind(domain::jobs::CUSTOMER_QUEUE)
        .fetch_one(&h.pool)
        .await
        .unwrap();
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job waits for the next poll, an hour away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn each_job_due_now_is_notified_once_and_one_due_later_not_at_all(pool: PgPool) {
    let h = harness(pool).await;
    let mut listener = PgListener::connect_with(&h.pool).await.unwrap();
    listener.listen("apalis::job::insert").await.unwrap();
    let customer = customer(&h, "once").await;

    // Seen by apalis's trigger (run_at within the transaction's starting second) ...
    let mut tx = h.pool.begin().await.unwrap();
    domain::jobs::enqueue_provision(&mut tx, &[InstanceId::new()])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // ... by ours (a transaction begun a second earlier) ...
    let mut tx = h.pool.begin().await.unwrap();
    outlast_the_starting_second(&mut tx).await;
    domain::jobs::enqueue_customer_status(&mut tx, customer)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // ... and by neither: due in an hour.
    let mut tx = h.pool.begin().await.unwrap();
    domain::jobs::enqueue_provision_in(
        &mut tx,
        &[InstanceId::new()],
        domain::jobs::Lane::Bulk,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // A marker, in the first job's queue: every notification of the jobs before it came first.
    let mut tx = h.pool.begin().await.unwrap();
    domain::jobs::enqueue_provision(&mut tx, &[InstanceId::new()])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut queues = Vec::new();
    for _ in 0..3 {
        let notification = tokio::time::timeout(Duration::from_secs(30), listener.recv())
            .await
            .expect("a notification within 30 s")
            .unwrap();
        let payload: serde_json::Value = serde_json::from_str(notification.payload()).unwrap();
        queues.push(payload["job_type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        queues,
        [
            domain::jobs::PROVISION_QUEUE,
            domain::jobs::CUSTOMER_QUEUE,
            domain::jobs::PROVISION_QUEUE
        ]
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn setting_the_queue_up_again_leaves_the_installed_trigger_alone(pool: PgPool) {
    // Every `reseller up` start sets the queue up; re-creating the trigger would lock
    // apalis.jobs against every job's insert and update while it waits and runs.
    let h = harness(pool).await;
    let trigger = || async {
        sqlx::query_scalar::<_, sqlx::postgres::types::Oid>(
            "SELECT oid FROM pg_trigger WHERE tgname = 'notify_workers_due_since_transaction_start'",
        )
        .fetch_one(&h.pool)
        .await
        .unwrap()
    };
    let before = trigger().await;
    domain::setup_job_queue(&h.pool).await.unwrap();
    assert_eq!(trigger().await, before, "the trigger was created anew");
}
