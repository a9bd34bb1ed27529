//! The purge sweep: expired idempotency keys go, a key whose operation is still in doubt stays.

use domain::jobs::SweepKind;
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use uuid::Uuid;

async fn operation(pool: &PgPool, instance: Uuid, state: &str) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO operations (id, instance_id, kind, state, worker, lease_until)
         VALUES ($1, $2, 'message_send', $3, 'test', now() - interval '1 hour')",
    )
    .bind(id)
    .bind(instance)
    .bind(state)
    .execute(pool)
    .await
    .unwrap();
    id
}

async fn key(pool: &PgPool, key: &str, expired: bool, status: Option<i16>, op: Option<Uuid>) {
    sqlx::query(
        "INSERT INTO idempotency_keys (caller, key, request_hash, status, operation_id, expires_at)
         VALUES ('customer:purge', $1, '\\x00', $2, $3,
                 CASE WHEN $4 THEN now() - interval '1 day' ELSE now() + interval '1 day' END)",
    )
    .bind(key)
    .bind(status)
    .bind(op)
    .bind(expired)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn expired_keys_are_purged_but_never_one_whose_operation_is_in_doubt(pool: PgPool) {
    let h = harness(pool).await;
    let instance = order(&h, "purge", "instagram-manager", PendingConfig::default())
        .await
        .id
        .0;
    let in_doubt = operation(&h.pool, instance, "unknown").await;
    let calling = operation(&h.pool, instance, "calling").await;
    let settled = operation(&h.pool, instance, "succeeded").await;
    key(&h.pool, "expired-answered", true, Some(200), None).await;
    key(&h.pool, "expired-unanswered", true, None, None).await;
    key(&h.pool, "expired-settled", true, None, Some(settled)).await;
    key(&h.pool, "expired-in-doubt", true, None, Some(in_doubt)).await;
    key(&h.pool, "expired-calling", true, None, Some(calling)).await;
    key(&h.pool, "live", false, Some(200), None).await;

    worker::sweeps::run(&h.ctx, SweepKind::Purge).await.unwrap();

    let mut left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&h.pool)
        .await
        .unwrap();
    left.sort();
    assert_eq!(left, ["expired-calling", "expired-in-doubt", "live"]);

    // A second sweep finds nothing more to do.
    let report = worker::sweeps::purge::run(&h.ctx).await.unwrap();
    assert_eq!(report.idempotency_keys, 0);
}
