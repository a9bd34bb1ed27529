//! Test harness: a fresh database (from `#[sqlx::test]`), apalis's schema, an in-process
//! simulator, settings with short timeouts, and helpers to order and to wait for states.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use domain::Settings;
use domain::db::instances::{self, Instance};
use domain::ids::{CustomerId, InstanceId};
use domain::model::{InstanceState, Plan};
use domain::orders::{self, Actor, Order, ResolvedTemplate};
use domain::sealed::{PendingConfig, Sealer};
use secrecy::SecretString;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::oneshot;
use wiro_sim::{Delays, SimConfig, SimServer};
use worker::JobContext;

pub const KEY: &str = "worker-test-key";

pub struct Harness {
    pub pool: PgPool,
    pub sim: SimServer,
    pub ctx: JobContext,
}

/// Settings pointing at `sim` with short timeouts and fast job timings.
pub fn settings_for(sim: &SimServer) -> Settings {
    let mut s = Settings::defaults().unwrap();
    s.wiro.base_url = sim.base_url();
    s.wiro.api_key = SecretString::from(KEY.to_owned());
    s.wiro.timeout = Duration::from_secs(2);
    s.wiro.connect_timeout = Duration::from_secs(1);
    s.provisioning.deploy_lease = Duration::from_secs(3);
    s.provisioning.backoff_base = Duration::from_millis(50);
    s.provisioning.backoff_max = Duration::from_millis(400);
    s.provisioning.wait_running_inline = Duration::from_secs(5);
    s.security.credentials_key = SecretString::from(Sealer::generate_key());
    worker::runner::fast_timings(&mut s);
    s.validate().unwrap();
    s
}

/// Its own pool on the test database, sized for a worker (the test's pool allows only 5).
pub async fn own_pool(pool: &PgPool, size: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap()
}

pub async fn harness(pool: PgPool) -> Harness {
    harness_with(pool, SimConfig::with_account(KEY, 100_000.0)).await
}

pub async fn harness_with(pool: PgPool, mut sim_config: SimConfig) -> Harness {
    apalis_postgres::PostgresStorage::setup(&pool)
        .await
        .unwrap();
    sim_config.delays = Delays::uniform(20);
    let sim = SimServer::start(sim_config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let pool = own_pool(&pool, 30).await;
    let ctx = context(&pool, settings_for(&sim), "test-worker");
    Harness { pool, sim, ctx }
}

pub fn context(pool: &PgPool, settings: Settings, name: &str) -> JobContext {
    let wiro = wiro_client::Client::new(settings.wiro_client_config().unwrap()).unwrap();
    let sealer = Sealer::from_base64(secrecy::ExposeSecret::expose_secret(
        &settings.security.credentials_key,
    ))
    .unwrap();
    JobContext {
        pool: pool.clone(),
        wiro,
        sealer,
        settings: Arc::new(settings),
        worker_name: Arc::from(name),
    }
}

pub async fn customer(h: &Harness, external: &str) -> CustomerId {
    domain::db::customers::upsert(&h.pool, external, None)
        .await
        .unwrap()
        .id
}

/// Resolves a template slug through the simulator's catalog, as the API does.
pub async fn template(h: &Harness, slug: &str, plan: Plan) -> ResolvedTemplate {
    let agent = h.ctx.wiro.agent_detail(slug, false).await.unwrap();
    ResolvedTemplate {
        guid: agent.guid,
        slug: agent.slug,
        price_cents: (agent.pricing.plan(plan.as_str()).unwrap().price * 100.0).round() as i64,
    }
}

pub async fn order(h: &Harness, external: &str, slug: &str, config: PendingConfig) -> Instance {
    let customer = customer(h, external).await;
    let template = template(h, slug, Plan::Starter).await;
    let order = Order {
        plan: Plan::Starter,
        title: format!("{external} bot"),
        config,
    };
    orders::place_order(
        &h.pool,
        &h.ctx.sealer,
        customer,
        &order,
        &template,
        Actor {
            name: "test",
            request_id: None,
        },
    )
    .await
    .unwrap()
}

/// Credentials for the seed template.
pub fn instagram() -> PendingConfig {
    let mut config = PendingConfig::default();
    config.credentials.0.insert(
        "instagram".into(),
        [("authMethod".to_owned(), serde_json::json!("wiro"))].into(),
    );
    config
}

/// Runs the real apalis worker until the returned sender is dropped or fired.
pub fn spawn_worker(
    ctx: &JobContext,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(worker::runner::run(ctx.clone(), async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

/// Waits until the instance reaches one of `states` (polling the database).
pub async fn wait_for(
    pool: &PgPool,
    id: InstanceId,
    states: &[InstanceState],
    within: Duration,
) -> Instance {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let instance = instances::get(pool, id).await.unwrap().unwrap();
        if states.contains(&instance.state) {
            return instance;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} stuck in {} (last error: {:?}) waiting for {states:?}",
            instance.state,
            instance.last_error
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until no instance is in progress any more; returns them all.
pub async fn wait_all_settled(pool: &PgPool, within: Duration) -> Vec<Instance> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let all = instances::list(pool, &Default::default(), None, 10_000)
            .await
            .unwrap();
        let busy: Vec<_> = all.iter().filter(|i| i.state.is_in_progress()).collect();
        if busy.is_empty() {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} instances still in progress, e.g. {} in {} ({:?})",
            busy.len(),
            busy[0].id,
            busy[0].state,
            busy[0].last_error
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drives one instance in-process with `advance` (no queue) until it is done.
pub async fn drive(ctx: &JobContext, id: InstanceId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match worker::provision::advance(ctx, id).await.unwrap() {
            worker::provision::Next::Done => return,
            worker::provision::Next::RetryAfter(wait) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{id} never finished"
                );
                tokio::time::sleep(wait.min(Duration::from_millis(200))).await;
            }
        }
    }
}

/// Our ledger must equal the simulator's: same instances, same amounts, nothing twice.
pub async fn assert_ledgers_match(h: &Harness) {
    let ours = domain::db::ledger::list(&h.pool, &Default::default(), None, 10_000)
        .await
        .unwrap();
    let theirs = h.sim.sim().ledger();
    let mut ours: Vec<(String, i64)> = ours
        .iter()
        .map(|e| (e.wiro_guid.clone().unwrap_or_default(), e.amount_cents))
        .collect();
    let mut theirs: Vec<(String, i64)> = theirs
        .iter()
        .map(|c| (c.instance_guid.clone(), (c.amount * 100.0).round() as i64))
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "our ledger differs from the simulator's");
}

/// A context sharing the harness's key, with `tweak` applied to its settings.
pub fn context_with(h: &Harness, name: &str, tweak: impl FnOnce(&mut Settings)) -> JobContext {
    let mut settings = (*h.ctx.settings).clone();
    tweak(&mut settings);
    settings.validate().unwrap();
    context(&h.pool, settings, name)
}

/// Orders and waits for Running; returns the instance.
pub async fn running_order(
    h: &Harness,
    external: &str,
    slug: &str,
    plan: Plan,
    config: PendingConfig,
) -> Instance {
    let customer = customer(h, external).await;
    let template = template(h, slug, plan).await;
    let order = Order {
        plan,
        title: format!("{external} {slug}"),
        config,
    };
    let instance = orders::place_order(
        &h.pool,
        &h.ctx.sealer,
        customer,
        &order,
        &template,
        Actor {
            name: "test",
            request_id: None,
        },
    )
    .await
    .unwrap();
    wait_for(
        &h.pool,
        instance.id,
        &[InstanceState::Running],
        Duration::from_secs(30),
    )
    .await
}

/// Ledger rows of a kind in the simulator.
pub fn sim_charges(h: &Harness, kind: &str) -> usize {
    h.sim
        .sim()
        .ledger()
        .iter()
        .filter(|c| c.kind == kind)
        .count()
}
