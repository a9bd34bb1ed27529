//! The scheduled sweeps over a large fleet: what each costs in upstream calls, rows written and
//! wall time, at N agents.
//!
//!     DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!       cargo bench -p worker --bench sweeps -- [agents]
//!
//! Seeds N running Pro agents in the simulator (one real Deploy, cloned in its world) and their
//! map rows in a scratch database (one customer per 10 agents), with 1% of the subscriptions
//! ending inside the renewal window and half of the agents holding more extra credits than the
//! top-up threshold. Then runs, in order: a first reconciliation (every row is new to it), a
//! second one (nothing changed), a third after 1% of the agents bought credits upstream, the
//! top-up sweep and the renewal sweep (each twice: the second finds what the first recorded). For each it prints the wall time, the upstream calls by
//! endpoint beside the bound (⌈N / page⌉ list pages + the agents that need a call) and the map
//! rows written (rows whose version moved).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use sqlx::PgPool;
use wiro_client::models::DeployRequest;
use wiro_sim::SimServer;
use worker::sweeps::{reconcile, renewals, topups};

const PAGE: usize = wiro_client::MY_AGENTS_MAX_PAGE as usize;
const THRESHOLD: i64 = 2000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let agents: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);

    let scratch = common::Scratch::create("reseller_sweeps", 16).await?;
    let pool = scratch.pool.clone();
    let sim = common::simulator(1_000_000_000.0, 0).await?;
    let ctx = common::services(&pool, &sim, |s| s.billing.topup_threshold = THRESHOLD)?;

    let seeded = Instant::now();
    let guids = seed_upstream(&ctx, &sim, agents).await?;
    seed_map(&pool, &guids).await?;
    println!(
        "agents {agents}: seeded in {:.1} s; list page {PAGE}, ops concurrency {}",
        seeded.elapsed().as_secs_f64(),
        ctx.settings.worker.ops_concurrency
    );
    let pages = agents.div_ceil(PAGE) as u64 + 1; // the last page is short or empty
    println!(
        "{:<34} {:>9} {:>12} {:>12} {:>13}",
        "sweep", "wall", "calls", "bound", "rows written"
    );

    let run = Measure::new(&sim, &pool).await?;
    reconcile::run(&ctx).await?;
    run.report("reconcile, first (all rows new)", pages + agents as u64)
        .await?;

    let run = Measure::new(&sim, &pool).await?;
    reconcile::run(&ctx).await?;
    run.report("reconcile, nothing changed", pages).await?;

    let changed = agents / 100;
    {
        let sim = sim.sim();
        let mut world = sim.world();
        for guid in guids.iter().step_by(100).take(changed) {
            let inst = world.instances.get_mut(guid).expect("seeded");
            inst.packs.push(wiro_sim::world::Pack {
                credits: 500,
                expires_at: i64::MAX,
            });
        }
    }
    let run = Measure::new(&sim, &pool).await?;
    reconcile::run(&ctx).await?;
    run.report("reconcile, 1% bought credits", pages).await?;

    let below = guids.len() - guids.len() / 2;
    let run = Measure::new(&sim, &pool).await?;
    topups::run(&ctx).await?;
    run.report("top-ups (half above by extras)", pages + below as u64)
        .await?;
    let run = Measure::new(&sim, &pool).await?;
    topups::run(&ctx).await?;
    run.report("top-ups, again", pages + below as u64).await?;

    let run = Measure::new(&sim, &pool).await?;
    renewals::run(&ctx).await?;
    run.report("renewals (1% inside the window)", changed as u64)
        .await?;
    let run = Measure::new(&sim, &pool).await?;
    renewals::run(&ctx).await?;
    run.report("renewals, again", changed as u64).await?;

    scratch.drop_now().await
}

/// One real Deploy, set up and running, cloned `n - 1` times in the simulator's world. Every
/// other agent holds more extra credits than the threshold; every 100th ends its period inside
/// the renewal window.
async fn seed_upstream(
    ctx: &operations::Services,
    sim: &SimServer,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut deploy =
        DeployRequest::prepaid("a1b2c3d4-e5f6-7890-abcd-ef1234567890", "sweep bench", "pro");
    deploy.pinned = Some(false);
    let first = ctx.wiro.deploy(&deploy).await?.guid;
    let sim = sim.sim();
    let now = sim.now();
    let mut world = sim.world();
    let mut template = world.instances.get(&first).expect("deployed").clone();
    template.status = 4;
    let mut guids = Vec::with_capacity(n);
    for i in 0..n {
        let mut inst = template.clone();
        inst.guid = if i == 0 {
            first.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        inst.id = template.id + i as i64;
        if i % 2 == 0 {
            inst.packs.push(wiro_sim::world::Pack {
                credits: THRESHOLD * 2,
                expires_at: i64::MAX,
            });
        }
        if i % 100 == 0
            && let Some(sub) = inst.subscription.as_mut()
        {
            sub.period_end = now + wiro_sim::DAY_MS;
        }
        guids.push(inst.guid.clone());
        world.instances.insert(inst.guid.clone(), inst);
    }
    Ok(guids)
}

/// Our map rows for the seeded agents: running, as the provisioning would have left them.
async fn seed_map(pool: &PgPool, guids: &[String]) -> anyhow::Result<()> {
    let customers = guids.len().div_ceil(10) as i64;
    sqlx::query(
        "INSERT INTO customers (id, external_id)
         SELECT md5('c' || g)::uuid, 'bench-' || g FROM generate_series(0, $1 - 1) g",
    )
    .bind(customers)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO instances (id, customer_id, template_guid, template_slug, plan, title,
                                price_cents, wiro_guid, state, desired_state, wiro_status,
                                setup_required)
         SELECT md5('i' || n)::uuid, md5('c' || ((n - 1) / 10))::uuid,
                'a1b2c3d4-e5f6-7890-abcd-ef1234567890', 'instagram-manager', 'pro',
                'agent ' || n, 2900, guid, 'running', 'running', 4, false
         FROM unnest($1::text[]) WITH ORDINALITY AS t(guid, n)",
    )
    .bind(guids)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Upstream calls and row versions before a sweep, to report what it cost.
struct Measure<'a> {
    sim: &'a SimServer,
    pool: &'a PgPool,
    started: Instant,
    calls: BTreeMap<String, u64>,
    versions: HashMap<uuid::Uuid, i64>,
}

impl<'a> Measure<'a> {
    async fn new(sim: &'a SimServer, pool: &'a PgPool) -> anyhow::Result<Self> {
        let versions = versions(pool).await?;
        Ok(Self {
            sim,
            pool,
            calls: sim.sim().call_counts(),
            versions,
            started: Instant::now(),
        })
    }

    async fn report(self, name: &str, bound: u64) -> anyhow::Result<()> {
        let wall = self.started.elapsed();
        let after = self.sim.sim().call_counts();
        let by_endpoint: Vec<String> = after
            .iter()
            .filter_map(|(endpoint, n)| {
                let d = n - self.calls.get(endpoint).copied().unwrap_or(0);
                (d > 0).then(|| format!("{}={d}", endpoint.trim_start_matches("UserAgent/")))
            })
            .collect();
        let calls: u64 = after.values().sum::<u64>() - self.calls.values().sum::<u64>();
        let now = versions(self.pool).await?;
        let written = now
            .iter()
            .filter(|(id, v)| self.versions.get(id) != Some(v))
            .count();
        println!(
            "{name:<34} {:>7.2} s {calls:>12} {bound:>12} {written:>13}   {}",
            wall.as_secs_f64(),
            by_endpoint.join(" ")
        );
        Ok(())
    }
}

async fn versions(pool: &PgPool) -> anyhow::Result<HashMap<uuid::Uuid, i64>> {
    let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as("SELECT id, version FROM instances")
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().collect())
}
