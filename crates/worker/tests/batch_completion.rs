//! `batch.completed` is written exactly once, by the change that settles a batch's last order,
//! however many orders settle at the same moment: the unsettled count lives in 64 shards (so a
//! batch's last steps do not queue on one row lock), a chunk's orders in one of them (so two
//! chunks' set-based writes never lock shards in opposite orders), and a step that empties its
//! shard checks every shard under the batch row's lock.

use std::sync::Arc;

use domain::jobs::BULK_CHUNK;
use domain::model::Plan;
use domain::orders::{Actor, BatchOrder, Order, ResolvedTemplate};
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use tokio::sync::Barrier;

/// Orders in the batch: more than the 64 shards, so shards hold several orders each.
const ORDERS: usize = 200;
/// Connections settling orders at once.
const SETTLERS: usize = 16;

async fn submit(h: &Harness) -> uuid::Uuid {
    let template = ResolvedTemplate {
        guid: "b2c3d4e5-f6a7-8901-bcde-f23456789012".into(),
        slug: "email-assistant".into(),
        price_cents: 500,
    };
    let orders: Vec<BatchOrder> = (0..ORDERS)
        .map(|i| BatchOrder {
            customer: format!("shard-{i}"),
            order: Order {
                plan: Plan::Starter,
                title: format!("Shard {i}"),
                config: PendingConfig::default(),
            },
            template: template.clone(),
        })
        .collect();
    let actor = Actor {
        name: "ops:test",
        request_id: None,
    };
    let (batch, _) =
        domain::orders::submit_batch(&h.pool, &h.ctx.sealer, Some("shards"), &orders, actor)
            .await
            .unwrap();
    batch.id.0
}

async fn orders_of(pool: &PgPool, batch: uuid::Uuid) -> Vec<uuid::Uuid> {
    sqlx::query_scalar("SELECT id FROM instances WHERE batch_id = $1 ORDER BY batch_position")
        .bind(batch)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A listener, so the event is written (nothing is written where no endpoint listens).
async fn listen_for_batches(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, url, event_types, secret)
         VALUES (gen_random_uuid(), 'https://hooks.example/batch', ARRAY['batch.completed'], '\\x00')",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn completed_events(pool: &PgPool) -> Vec<serde_json::Value> {
    sqlx::query_scalar::<_, String>(
        "SELECT body FROM webhook_events WHERE type = 'batch.completed' ORDER BY created_at",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|body| serde_json::from_str(body).unwrap())
    .collect()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_batch_whose_orders_settle_all_at_once_completes_exactly_once(pool: PgPool) {
    let h = harness(pool).await;
    listen_for_batches(&h.pool).await;
    let batch = submit(&h).await;
    let ids = orders_of(&h.pool, batch).await;
    assert_eq!(ids.len(), ORDERS);

    // Every order but the last of each settler runs; then the last ones settle together.
    let barrier = Arc::new(Barrier::new(SETTLERS));
    let mut settlers = Vec::new();
    for chunk in ids.chunks(ORDERS.div_ceil(SETTLERS)) {
        let (pool, chunk, barrier) = (h.pool.clone(), chunk.to_vec(), barrier.clone());
        settlers.push(tokio::spawn(async move {
            let (last, rest) = chunk.split_last().unwrap();
            for id in rest {
                settle(&pool, *id).await;
            }
            barrier.wait().await;
            settle(&pool, *last).await;
        }));
    }
    assert_eq!(settlers.len(), SETTLERS);
    for settler in settlers {
        settler.await.unwrap();
    }

    let events = completed_events(&h.pool).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["batch_id"], batch.to_string());
    assert_eq!(
        events[0]["data"]["counts"],
        serde_json::json!({"running": ORDERS})
    );
    let completed: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT completed_at FROM provisioning_batches WHERE id = $1")
            .bind(batch)
            .fetch_one(&h.pool)
            .await
            .unwrap();
    assert!(completed.is_some());

    // A completed batch stays completed: an order that leaves `running` later writes nothing.
    sqlx::query("UPDATE instances SET state = 'starting' WHERE id = $1")
        .bind(ids[0])
        .execute(&h.pool)
        .await
        .unwrap();
    settle(&h.pool, ids[0]).await;
    assert_eq!(completed_events(&h.pool).await.len(), 1);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_batch_with_one_order_left_is_not_complete(pool: PgPool) {
    let h = harness(pool).await;
    let batch = submit(&h).await;
    let ids = orders_of(&h.pool, batch).await;
    // Every shard but one empties; the last order's shard still counts it.
    for id in &ids[..ORDERS - 1] {
        settle(&h.pool, *id).await;
    }
    let completed = |pool: PgPool| async move {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
            "SELECT completed_at FROM provisioning_batches WHERE id = $1",
        )
        .bind(batch)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert!(completed(h.pool.clone()).await.is_none());
    settle(&h.pool, ids[ORDERS - 1]).await;
    assert!(completed(h.pool.clone()).await.is_some());
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_chunks_orders_are_counted_in_one_shard(pool: PgPool) {
    let h = harness(pool).await;
    let batch = submit(&h).await;
    let shards: Vec<(i16, i32)> = sqlx::query_as(
        "SELECT shard, unsettled FROM provisioning_batch_shards WHERE batch_id = $1 ORDER BY shard",
    )
    .bind(batch)
    .fetch_all(&h.pool)
    .await
    .unwrap();
    let expected: Vec<(i16, i32)> = (0..ORDERS.div_ceil(BULK_CHUNK))
        .map(|chunk| {
            let orders = (ORDERS - chunk * BULK_CHUNK).min(BULK_CHUNK);
            (chunk as i16, orders as i32)
        })
        .collect();
    assert_eq!(shards, expected);
}

/// Two chunks whose last writes (each settling its orders in one statement) run at the same
/// moment both commit. Each write updates its shard row once per order, and from the second
/// update on (a row its own transaction wrote) Postgres checks the shard's foreign key, holding
/// KEY SHARE on the batch row; each then empties its shard and locks the batch row to look for
/// completion. With FOR UPDATE there each waited for the other's KEY SHARE until Postgres
/// failed one as a deadlock, a second later (every chunk, once a chunk was a shard).
#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn two_chunks_settling_at_once_both_commit(pool: PgPool) {
    let h = harness(pool).await;
    let batch = submit(&h).await;
    let ids = orders_of(&h.pool, batch).await;
    let (first, second) = (&ids[..BULK_CHUNK], &ids[BULK_CHUNK..2 * BULK_CHUNK]);
    let mut a = h.pool.begin().await.unwrap();
    let mut b = h.pool.begin().await.unwrap();
    // All but each chunk's last order: their shard rows updated again and again.
    settle_many(&mut a, &first[..BULK_CHUNK - 1]).await.unwrap();
    settle_many(&mut b, &second[..BULK_CHUNK - 1])
        .await
        .unwrap();
    // Then each chunk's last, at the same moment: each empties its shard.
    let last = |mut tx: sqlx::Transaction<'static, sqlx::Postgres>, id: uuid::Uuid| async move {
        settle_many(&mut tx, &[id]).await?;
        tx.commit().await
    };
    let (a, b) = tokio::join!(
        last(a, first[BULK_CHUNK - 1]),
        last(b, second[BULK_CHUNK - 1])
    );
    a.expect("the first chunk's write");
    b.expect("the second chunk's write");
    let emptied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM provisioning_batch_shards
         WHERE batch_id = $1 AND shard IN (0, 1) AND unsettled = 0",
    )
    .bind(batch)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(emptied, 2);
}

/// A chunk's write: one statement moves `ids` to `running`.
async fn settle_many(conn: &mut sqlx::PgConnection, ids: &[uuid::Uuid]) -> sqlx::Result<()> {
    sqlx::query("UPDATE instances SET state = 'running', version = version + 1 WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await
        .map(drop)
}

/// One order's last step: its own transaction moves it to `running`.
async fn settle(pool: &PgPool, id: uuid::Uuid) {
    sqlx::query("UPDATE instances SET state = 'running', version = version + 1 WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

/// During a rollout the previous release's pods still submit batches their way (the orders'
/// instances, then a row per order in `provisioning_batch_items`): such a batch is counted into
/// its shards and marked on its instances, so its last order completes it (migration
/// `20261202000003_batch_membership_on_instances`).
#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_batch_the_previous_release_submits_completes(pool: PgPool) {
    let h = harness(pool).await;
    listen_for_batches(&h.pool).await;
    let customer = customer(&h, "previous-release").await;
    let batch = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO provisioning_batches (id, key, created_by, total) VALUES ($1, 'old', 'ops', 20)",
    )
    .bind(batch)
    .execute(&h.pool)
    .await
    .unwrap();
    let ids: Vec<uuid::Uuid> = (0..20).map(|_| uuid::Uuid::new_v4()).collect();
    // The previous release's statements, as it sent them.
    sqlx::query(
        "INSERT INTO instances (id, customer_id, template_guid, template_slug, plan, title,
                                price_cents, state)
         SELECT id, $2, 'g', 'email-assistant', 'starter', 'Old', 500, 'pending'
         FROM unnest($1::uuid[]) AS id",
    )
    .bind(&ids)
    .bind(customer.0)
    .execute(&h.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO provisioning_batch_items (batch_id, position, customer_id, instance_id)
         SELECT $1, p, $2, $3[p + 1] FROM generate_series(0, 19) AS p",
    )
    .bind(batch)
    .bind(customer.0)
    .bind(&ids)
    .execute(&h.pool)
    .await
    .unwrap();

    assert_eq!(orders_of(&h.pool, batch).await, ids);
    for id in &ids[..19] {
        settle(&h.pool, *id).await;
    }
    assert!(completed_events(&h.pool).await.is_empty());
    settle(&h.pool, ids[19]).await;
    let events = completed_events(&h.pool).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["data"]["counts"],
        serde_json::json!({"running": 20})
    );
}
