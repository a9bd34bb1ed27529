//! Job pickup: how long a customer's order waits between being committed (the API answers 202
//! in that transaction) and a worker taking its job — on an idle system, and while an ops batch
//! keeps every provisioning slot busy.
//!
//!     DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!       cargo bench -p worker --bench pickup -- [orders] [batch] [latency_ms]
//!
//! Defaults: 200 single orders, a batch of 2,000, 20 ms added to every upstream call, the
//! shipped worker settings (8 provisioning slots, 1 s poll interval; new work arrives by
//! NOTIFY). Pickup is read from the database after the run — the first `lock_at` of the order's
//! jobs minus the order's `created_at` (the start of the transaction that committed it and its
//! job; apalis's own `run_at` has whole-second resolution) — so measuring adds no polling. Targets: p50 ≤ 10 ms, p99 ≤ 50 ms, both phases.

mod common;

use std::time::Duration;

use domain::model::Plan;
use domain::orders::{Actor, BatchOrder, Order, Purchase, ResolvedTemplate};
use domain::sealed::{PendingConfig, Sealer};
use sqlx::PgPool;

fn template() -> ResolvedTemplate {
    // Runs without an OAuth connection.
    ResolvedTemplate {
        guid: "b2c3d4e5-f6a7-8901-bcde-f23456789012".into(),
        slug: "email-assistant".into(),
        price_cents: 500,
    }
}

fn order(title: String) -> Order {
    Order {
        plan: Plan::Starter,
        title,
        config: PendingConfig::default(),
    }
}

/// Places `n` single orders, one every `gap`, as the API does; returns their ids.
async fn single_orders(
    pool: &PgPool,
    sealer: &Sealer,
    limits: &domain::config::LimitSettings,
    prefix: &str,
    n: usize,
    gap: Duration,
) -> anyhow::Result<Vec<uuid::Uuid>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let customer = domain::db::customers::upsert(pool, &format!("{prefix}-{i}"), None)
            .await?
            .id;
        let order = order(format!("{prefix} {i}"));
        let instance = domain::orders::place_order(
            pool,
            sealer,
            customer,
            Purchase {
                order: &order,
                template: &template(),
            },
            Actor {
                name: "bench",
                request_id: None,
            },
            limits,
            None,
        )
        .await?;
        ids.push(instance.id.0);
        tokio::time::sleep(gap).await;
    }
    Ok(ids)
}

/// Pickup latency (ms) of each instance's first provisioning job, sorted.
async fn pickups(pool: &PgPool, ids: &[uuid::Uuid]) -> anyhow::Result<Vec<f64>> {
    let mut waits: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM min(j.lock_at) - i.created_at)::float8 * 1000
         FROM instances i
         JOIN apalis.jobs j ON j.job_type = 'provision' AND j.lock_at IS NOT NULL
          AND (convert_from(j.job, 'UTF8')::jsonb ->> 'instance_id')::uuid = i.id
         WHERE i.id = ANY($1)
         GROUP BY i.id, i.created_at",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(
        waits.len() == ids.len(),
        "{} of {} orders were picked up",
        waits.len(),
        ids.len()
    );
    waits.sort_by(f64::total_cmp);
    Ok(waits)
}

fn report(phase: &str, waits: &[f64]) {
    let at = |q: f64| waits[((waits.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99) = (at(0.5), at(0.99));
    println!(
        "{phase:<34} n={:<4} p50 {p50:>7.1} ms (target 10, {})  p99 {p99:>7.1} ms (target 50, {})  max {:>7.1} ms",
        waits.len(),
        if p50 <= 10.0 { "met" } else { "missed" },
        if p99 <= 50.0 { "met" } else { "missed" },
        waits[waits.len() - 1]
    );
}

async fn wait_picked_up(pool: &PgPool, ids: &[uuid::Uuid]) -> anyhow::Result<()> {
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM instances WHERE id = ANY($1) AND state = 'pending'",
        )
        .bind(ids)
        .fetch_one(pool)
        .await?;
        if open == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let get = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let orders = get(1, 200) as usize;
    let batch_size = get(2, 2000) as usize;
    let latency_ms = get(3, 20);

    let scratch = common::Scratch::create("reseller_pickup", 30).await?;
    let pool = scratch.pool.clone();
    let sim = common::simulator(1_000_000.0, latency_ms).await?;
    // The shipped worker settings (slots, poll interval).
    let ctx = common::services(&pool, &sim, |_| {})?;
    let sealer = ctx.sealer.clone();
    let (stop, worker) = common::spawn_worker(ctx);
    common::settle().await;

    let gap = Duration::from_millis(50);
    let limits = domain::Settings::defaults()?.limits;
    let idle = single_orders(&pool, &sealer, &limits, "idle", orders, gap).await?;
    wait_picked_up(&pool, &idle).await?;
    report("idle system", &pickups(&pool, &idle).await?);

    let batch: Vec<BatchOrder> = (0..batch_size)
        .map(|i| BatchOrder {
            customer: format!("batch-{i}"),
            order: order(format!("Batch {i}")),
            template: template(),
        })
        .collect();
    domain::orders::submit_batch(
        &pool,
        &sealer,
        Some("pickup-bench"),
        &batch,
        Actor {
            name: "bench",
            request_id: None,
        },
    )
    .await?;
    // Until the batch has started, then the customers' orders arrive while it runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let busy = single_orders(&pool, &sealer, &limits, "busy", orders, gap).await?;
    wait_picked_up(&pool, &busy).await?;
    let pending_batch: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances i JOIN customers c ON c.id = i.customer_id
         WHERE c.external_id LIKE 'batch-%' AND i.state = 'pending'",
    )
    .fetch_one(&pool)
    .await?;
    report(
        &format!("during a batch of {batch_size} ({pending_batch} still waiting)"),
        &pickups(&pool, &busy).await?,
    );

    let _ = stop.send(());
    let _ = worker.await;
    scratch.drop_now().await
}
