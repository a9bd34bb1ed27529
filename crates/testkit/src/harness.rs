//! Worker-level tests: a fresh database (from `#[sqlx::test]`), apalis's schema, an in-process
//! simulator and a services handle, with helpers to order, drive and wait for states.

use std::time::Duration;

use domain::Settings;
use domain::db::instances::{self, Instance};
use domain::ids::{CustomerId, InstanceId};
use domain::model::{InstanceState, Plan};
use domain::orders::{self, Actor, Order, ResolvedTemplate};
use domain::sealed::PendingConfig;
use operations::Services;
use sqlx::PgPool;
use tokio::sync::oneshot;
use wiro_sim::{Delays, SimConfig, SimServer};

use crate::{WIRO_KEY, own_pool};

/// A fresh database, the simulator and a services handle on both.
pub struct Harness {
    /// A pool of its own on the test database.
    pub pool: PgPool,
    /// The simulator.
    pub sim: SimServer,
    /// Services pointing at both.
    pub ctx: Services,
}

/// A harness with a well-funded account.
pub async fn harness(pool: PgPool) -> Harness {
    harness_with(pool, SimConfig::with_account(WIRO_KEY, 100_000.0)).await
}

/// A harness with a simulator built from `sim_config` (its delays are made short).
pub async fn harness_with(pool: PgPool, sim_config: SimConfig) -> Harness {
    harness_with_delays(pool, sim_config, Delays::uniform(20)).await
}

/// A harness whose simulator's status machine pauses for `delays`.
pub async fn harness_with_delays(
    pool: PgPool,
    mut sim_config: SimConfig,
    delays: Delays,
) -> Harness {
    domain::setup_job_queue(&pool).await.unwrap();
    sim_config.delays = delays;
    let sim = SimServer::start(sim_config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let pool = own_pool(&pool, 30).await;
    let ctx = crate::services(&pool, crate::settings_for(&sim), "test-worker");
    Harness { pool, sim, ctx }
}

/// The customer with external id `external` (created when new).
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

/// Orders a Starter `slug` for `external` (not driven).
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
        orders::Purchase {
            order: &order,
            template: &template,
        },
        Actor {
            name: "test",
            request_id: None,
        },
        &h.ctx.settings.limits,
        None,
    )
    .await
    .unwrap()
}

/// Credentials for the seed template: Instagram connects with the customer's own app only.
pub fn instagram() -> PendingConfig {
    let mut config = PendingConfig::default();
    config.credentials.0.insert(
        "instagram".into(),
        [
            ("authMethod".to_owned(), serde_json::json!("own")),
            ("appId".to_owned(), serde_json::json!("sim-app")),
            ("appSecret".to_owned(), serde_json::json!("sim-app-secret")),
        ]
        .into(),
    );
    config
}

/// Where the simulated consent page sends the browser in tests.
pub const CONSENT_REDIRECT: &str = "http://localhost:5173/integrations/done";

/// Plays the customer's browser on the consent page `authorize_url` (approving) and returns
/// the redirect's query parameters.
pub async fn consent(authorize_url: &str) -> std::collections::BTreeMap<String, String> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = browser
        .get(authorize_url)
        .send()
        .await
        .expect("consent page");
    assert_eq!(
        answer.status(),
        reqwest::StatusCode::FOUND,
        "{authorize_url}"
    );
    let location = answer.headers()["location"].to_str().expect("location");
    reqwest::Url::parse(location)
        .expect("redirect URL")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Connects every account the instance waits for, as a customer would: Connect (own app),
/// consent, and the job polls Wiro until it sees the connection.
pub async fn connect_all(ctx: &Services, instance: &Instance) {
    let guid = instance.wiro_guid.as_deref().expect("deployed");
    for group in &instance.missing_connections {
        let provider = wiro_client::models::OAuthProvider::from_group(group).expect("provider");
        let started = ctx
            .wiro
            .oauth_connect(
                provider,
                &wiro_client::models::OAuthConnectRequest {
                    user_agent_guid: guid.to_owned(),
                    redirect_url: CONSENT_REDIRECT.to_owned(),
                    auth_method: Some("own".into()),
                },
            )
            .await
            .expect("connect");
        let back = consent(&started.authorize_url).await;
        assert_eq!(
            back.get(&format!("{}_connected", provider.redirect_prefix()))
                .map(String::as_str),
            Some("true"),
            "{back:?}"
        );
    }
    let poll_until = chrono::Utc::now() + chrono::Duration::minutes(15);
    domain::agents::connection_started(&ctx.pool, instance.id, poll_until)
        .await
        .expect("poll");
}

/// Runs the real apalis worker until the returned sender is dropped or fired.
pub fn spawn_worker(
    ctx: &Services,
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

/// Waits until a worker started with [`spawn_worker`] is as ready as a long-running one:
/// every queue's worker has registered with apalis and each has run its `LISTEN` (a queue's
/// storage listens on a connection of its own).
pub async fn wait_worker_listening(pool: &PgPool, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let ready: bool = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM apalis.workers) = $1
                AND (SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND query LIKE 'LISTEN %') >= $1",
        )
        .bind(domain::jobs::QUEUES.len() as i64)
        .fetch_one(pool)
        .await
        .unwrap();
        if ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker's queues did not all register and listen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
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
pub async fn drive(ctx: &Services, id: InstanceId) {
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

/// Our ledger must equal the simulator's: per instance and kind, count and amount (a
/// contained duplicate is a Deploy charge to Wiro).
pub async fn assert_ledgers_match(h: &Harness) {
    assert_ledgers_equal(&h.pool, &h.sim).await;
}

/// [`assert_ledgers_match`] for any pool and simulator.
pub async fn assert_ledgers_equal(pool: &PgPool, sim: &SimServer) {
    let (ours, theirs) = ledgers(pool, sim).await;
    assert_eq!(ours, theirs, "our ledger differs from the simulator's");
}

/// Both ledgers as sorted `(instance guid, kind, cents)` rows.
pub async fn ledgers(
    pool: &PgPool,
    sim: &SimServer,
) -> (Vec<(String, String, i64)>, Vec<(String, String, i64)>) {
    let ours = domain::db::ledger::list(pool, &Default::default(), None, 100_000)
        .await
        .unwrap();
    let mut ours: Vec<(String, String, i64)> = ours
        .iter()
        .map(|e| {
            let kind = match e.kind {
                domain::model::ChargeKind::DuplicateDeploy => "deploy",
                other => other.as_str(),
            };
            (
                e.wiro_guid.clone().unwrap_or_default(),
                kind.to_owned(),
                e.amount_cents,
            )
        })
        .collect();
    let mut theirs: Vec<(String, String, i64)> = sim
        .sim()
        .ledger()
        .iter()
        .map(|c| {
            (
                c.instance_guid.clone(),
                c.kind.to_owned(),
                (c.amount * 100.0).round() as i64,
            )
        })
        .collect();
    ours.sort();
    theirs.sort();
    (ours, theirs)
}

/// A context sharing the harness's key, with `tweak` applied to its settings.
pub fn context_with(h: &Harness, name: &str, tweak: impl FnOnce(&mut Settings)) -> Services {
    let mut settings = (*h.ctx.settings).clone();
    tweak(&mut settings);
    settings.validate().unwrap();
    crate::services(&h.pool, settings, name)
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
        orders::Purchase {
            order: &order,
            template: &template,
        },
        Actor {
            name: "test",
            request_id: None,
        },
        &h.ctx.settings.limits,
        None,
    )
    .await
    .unwrap();
    let settled = wait_for(
        &h.pool,
        instance.id,
        &[InstanceState::Running, InstanceState::AwaitingConnection],
        Duration::from_secs(30),
    )
    .await;
    if settled.state == InstanceState::AwaitingConnection {
        connect_all(&h.ctx, &settled).await;
    }
    wait_for(
        &h.pool,
        instance.id,
        &[InstanceState::Running],
        Duration::from_secs(30),
    )
    .await
}

/// `n` Starter orders of `template` for customers `<prefix>-0`, `<prefix>-1`, ..., default
/// configuration: the body of an ops batch.
pub fn batch_of(template: &ResolvedTemplate, n: usize, prefix: &str) -> Vec<orders::BatchOrder> {
    (0..n)
        .map(|i| orders::BatchOrder {
            customer: format!("{prefix}-{i}"),
            order: Order {
                plan: Plan::Starter,
                title: format!("{prefix} {i}"),
                config: PendingConfig::default(),
            },
            template: template.clone(),
        })
        .collect()
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
