//! A rolling upgrade runs the previous release's processes beside this one's: this worker runs
//! the jobs the previous release enqueued (its payloads, from `tests/payloads/<release>/`), the
//! previous release's worker reads this one's payloads (it ignores fields it does not know),
//! and `migrate` leaves a newer release's migrations in place (a rollback).

use std::time::Duration;

use domain::jobs::{CUSTOMER_QUEUE, PROVISION_QUEUE, SWEEP_QUEUE};
use domain::model::InstanceState;
use serde::Deserialize;
use sqlx::PgPool;
use testkit::harness::{customer, harness, order, spawn_worker, wait_for};

/// Releases whose payloads this worker must still run.
const PREVIOUS: &[&str] = &["0.1.0"];

fn payload(release: &str, queue: &str, fill: &[(&str, String)]) -> Vec<u8> {
    let path = format!(
        "{}/tests/payloads/{release}/{queue}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (key, value) in fill {
        text = text.replace(&format!("{{{key}}}"), value);
    }
    text.trim().as_bytes().to_vec()
}

async fn push(pool: &PgPool, queue: &str, bytes: Vec<u8>) {
    let task = apalis_core::task::builder::TaskBuilder::new(bytes).build();
    let mut conn = pool.acquire().await.unwrap();
    apalis_postgres::queries::push_tasks(&mut *conn, queue, vec![task])
        .await
        .unwrap();
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn this_worker_runs_every_queues_payloads_of_the_previous_release(pool: PgPool) {
    for release in PREVIOUS {
        let h = harness(pool.clone()).await;
        let external = format!("upgrade-{release}");
        let instance = order(&h, &external, "email-assistant", Default::default()).await;
        // Only the previous release's job for it: as if its API had taken the order.
        sqlx::query("DELETE FROM apalis.jobs")
            .execute(&h.pool)
            .await
            .unwrap();
        push(
            &h.pool,
            PROVISION_QUEUE,
            payload(
                release,
                "provision",
                &[("instance_id", instance.id.to_string())],
            ),
        )
        .await;
        let who = customer(&h, &external).await;
        push(
            &h.pool,
            CUSTOMER_QUEUE,
            payload(release, "customer", &[("customer_id", who.to_string())]),
        )
        .await;
        push(
            &h.pool,
            SWEEP_QUEUE,
            payload(release, "sweeps", &[("tick", "1796000000".to_owned())]),
        )
        .await;

        let (stop, worker) = spawn_worker(&h.ctx);
        let running = wait_for(
            &h.pool,
            instance.id,
            &[InstanceState::Running],
            Duration::from_secs(30),
        )
        .await;
        assert!(running.wiro_guid.is_some());
        // Every job of the old format ran to completion, none failed on its payload.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let open: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT job_type, status, last_result::text FROM apalis.jobs WHERE status <> 'Done'",
            )
            .fetch_all(&h.pool)
            .await
            .unwrap();
            assert!(
                open.iter()
                    .all(|(_, status, _)| status != "Failed" && status != "Killed"),
                "{release}: {open:?}"
            );
            if open.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{release}: {open:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let done: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT job_type FROM apalis.jobs WHERE status = 'Done' ORDER BY 1",
        )
        .fetch_all(&h.pool)
        .await
        .unwrap();
        assert_eq!(done, [CUSTOMER_QUEUE, PROVISION_QUEUE, SWEEP_QUEUE]);
        let _ = stop.send(());
        worker.await.unwrap().unwrap();
    }
}

/// `ProvisionInstance` and `ApplyCustomerStatus` as release 0.1.0 declared them.
#[derive(Deserialize)]
struct ProvisionInstanceV010 {
    instance_id: uuid::Uuid,
}
#[derive(Deserialize)]
struct ApplyCustomerStatusV010 {
    customer_id: uuid::Uuid,
}

#[test]
fn the_previous_releases_worker_reads_this_releases_payloads() {
    let id = domain::ids::InstanceId::new();
    let current = serde_json::to_vec(&domain::jobs::ProvisionInstance {
        instance_id: id,
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
    })
    .unwrap();
    let old: ProvisionInstanceV010 = serde_json::from_slice(&current).unwrap();
    assert_eq!(old.instance_id.to_string(), id.to_string());
    let customer = domain::ids::CustomerId::new();
    let current = serde_json::to_vec(&domain::jobs::ApplyCustomerStatus {
        customer_id: customer,
        traceparent: None,
    })
    .unwrap();
    let old: ApplyCustomerStatusV010 = serde_json::from_slice(&current).unwrap();
    assert_eq!(old.customer_id.to_string(), customer.to_string());
}

#[sqlx::test(migrations = false)]
async fn migrate_leaves_a_newer_releases_migrations_in_place(pool: PgPool) {
    domain::migrate(&pool).await.unwrap();
    // A newer release applied one more (additive) migration; this release's `migrate` (a
    // rollback's Job) must neither fail on it nor undo it.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99991231000000, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    domain::migrate(&pool).await.unwrap();
    assert!(domain::pending_migrations(&pool).await.unwrap().is_empty());
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version = 99991231000000")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept, 1);
}
