//! Exactly-once Deploy with real worker processes: one killed (SIGKILL) after Wiro applied its
//! Deploy but before it could record it, one frozen (SIGSTOP) past its heartbeat so a second
//! worker takes the job over while the first is still holding the call.

use std::process::{Command, Stdio};

use std::time::Duration;
use testkit::process::Guard;

use domain::db::{alerts, instances, ledger, operations};
use domain::model::{InstanceState, OperationState, Plan};
use domain::orders::{self, Actor, Order, ResolvedTemplate};
use domain::sealed::{PendingConfig, Sealer};
use sqlx::PgPool;
use wiro_sim::{Delays, FaultMode, FaultSpec, SimConfig, SimServer};

const KEY: &str = "process-test-key";

struct Setup {
    pool: PgPool,
    sim: SimServer,
    database_url: String,
    credentials_key: String,
}

async fn setup(pool: PgPool) -> Setup {
    domain::setup_job_queue(&pool).await.unwrap();
    let mut config = SimConfig::with_account(KEY, 1000.0);
    config.delays = Delays::uniform(20);
    let sim = SimServer::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let database = pool.connect_options().get_database().unwrap().to_owned();
    let mut url = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(&format!("/{database}"));
    Setup {
        pool,
        sim,
        database_url: url.to_string(),
        credentials_key: Sealer::generate_key(),
    }
}

fn spawn_worker(s: &Setup, name: &str) -> Guard {
    Guard(
        Command::new(env!("CARGO_BIN_EXE_reseller"))
            .arg("worker")
            .env("DATABASE_URL", &s.database_url)
            .env("WIRO_BASE_URL", s.sim.base_url())
            .env("WIRO_API_KEY", KEY)
            .env("RESELLER_SECURITY__CREDENTIALS_KEY", &s.credentials_key)
            .env("RESELLER_WORKER__NAME", name)
            .env("RESELLER_WORKER__METRICS_LISTEN", "")
            .env("RESELLER_WORKER__HEARTBEAT_INTERVAL", "500ms")
            .env("RESELLER_WORKER__MISSED_HEARTBEATS", "2")
            .env("RESELLER_WORKER__POLL_INTERVAL", "100ms")
            .env("RESELLER_WIRO__TIMEOUT", "2s")
            .env("RESELLER_PROVISIONING__DEPLOY_LEASE", "4s")
            .env("RESELLER_PROVISIONING__BACKOFF_BASE", "100ms")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the reseller binary runs"),
    )
}

async fn place(s: &Setup) -> domain::ids::InstanceId {
    let customer = domain::db::customers::upsert(&s.pool, "crash-customer", None)
        .await
        .unwrap();
    // A template that needs no credentials and no account connection: it runs by itself.
    let template = ResolvedTemplate {
        guid: "b2c3d4e5-f6a7-8901-bcde-f23456789012".into(),
        slug: "email-assistant".into(),
        price_cents: 500,
    };
    let order = Order {
        plan: Plan::Starter,
        title: "Crash test bot".into(),
        config: PendingConfig::default(),
    };
    let sealer = Sealer::from_base64(&s.credentials_key).unwrap();
    orders::place_order(
        &s.pool,
        &sealer,
        customer.id,
        orders::Purchase {
            order: &order,
            template: &template,
        },
        Actor {
            name: "test",
            request_id: None,
        },
        &domain::Settings::defaults().unwrap().limits,
        None,
    )
    .await
    .unwrap()
    .id
}

async fn until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn running(s: &Setup, id: domain::ids::InstanceId) -> bool {
    instances::get(&s.pool, id).await.unwrap().unwrap().state == InstanceState::Running
}

async fn queue_idle(s: &Setup) -> bool {
    let busy: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM apalis.jobs WHERE job_type IN ('provision', 'provision-bulk', 'provision-bulk-chunk') AND status IN ('Pending', 'Queued', 'Running')",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    busy == 0
}

async fn assert_exactly_once(s: &Setup, id: domain::ids::InstanceId) {
    let upstream = s.sim.sim().instances();
    assert_eq!(upstream.len(), 1, "one upstream instance");
    let charges = s.sim.sim().ledger();
    assert_eq!(charges.len(), 1, "the wallet was charged once");
    let ours = ledger::list(&s.pool, &Default::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(ours.len(), 1);
    assert_eq!(
        ours[0].wiro_guid.as_deref(),
        Some(upstream[0].guid.as_str())
    );
    assert_eq!(
        ours[0].amount_cents,
        (charges[0].amount * 100.0).round() as i64
    );
    let instance = instances::get(&s.pool, id).await.unwrap().unwrap();
    assert_eq!(
        instance.wiro_guid.as_deref(),
        Some(upstream[0].guid.as_str())
    );
    let duplicates = alerts::open(&s.pool, Some("upstream_duplicate"), None, 10)
        .await
        .unwrap();
    assert!(duplicates.is_empty(), "{duplicates:?}");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_worker_killed_between_deploy_and_its_record_is_not_deployed_twice(pool: PgPool) {
    let s = setup(pool).await;
    // Wiro applies the Deploy, then holds the answer: the worker is killed while waiting.
    s.sim
        .sim()
        .add_fault(FaultSpec {
            endpoint: "UserAgent/Deploy".into(),
            mode: FaultMode::StallResponse,
            status: None,
            latency_ms: Some(30_000),
            probability: None,
            count: Some(1),
            rate_per_s: None,
        })
        .unwrap();
    let id = place(&s).await;
    let mut first = spawn_worker(&s, "doomed-worker");
    until(
        "Wiro to apply the Deploy",
        Duration::from_secs(30),
        async || !s.sim.sim().instances().is_empty(),
    )
    .await;
    first.0.kill().unwrap(); // SIGKILL: no chance to record anything
    first.0.wait().unwrap();
    let op = operations::for_instance(&s.pool, id).await.unwrap();
    assert_eq!(
        op[0].state,
        OperationState::Calling,
        "the intent was committed, the outcome never"
    );
    assert!(
        instances::get(&s.pool, id)
            .await
            .unwrap()
            .unwrap()
            .wiro_guid
            .is_none()
    );

    let mut second = spawn_worker(&s, "rescue-worker");
    until("the order to run", Duration::from_secs(60), async || {
        running(&s, id).await
    })
    .await;
    assert_exactly_once(&s, id).await;
    let ops = operations::for_instance(&s.pool, id).await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(
        ops[0].state,
        OperationState::Adopted,
        "found upstream, not deployed again"
    );
    assert_eq!(s.sim.sim().call_counts()["UserAgent/Deploy"], 1);

    // SIGTERM: the worker drains and exits cleanly.
    Command::new("kill")
        .args(["-TERM", &second.0.id().to_string()])
        .status()
        .unwrap();
    let status = second.0.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_frozen_worker_and_its_replacement_record_one_deploy(pool: PgPool) {
    let s = setup(pool).await;
    s.sim
        .sim()
        .add_fault(FaultSpec {
            endpoint: "UserAgent/Deploy".into(),
            mode: FaultMode::StallResponse,
            status: None,
            latency_ms: Some(1_500),
            probability: None,
            count: Some(1),
            rate_per_s: None,
        })
        .unwrap();
    let id = place(&s).await;
    let first = spawn_worker(&s, "frozen-worker");
    until(
        "Wiro to apply the Deploy",
        Duration::from_secs(30),
        async || !s.sim.sim().instances().is_empty(),
    )
    .await;
    // Freeze it mid-call: its heartbeat stops, its job is re-enqueued, another worker runs it.
    Command::new("kill")
        .args(["-STOP", &first.0.id().to_string()])
        .status()
        .unwrap();
    let second = spawn_worker(&s, "replacement-worker");
    until("the order to run", Duration::from_secs(60), async || {
        running(&s, id).await
    })
    .await;
    let ops = operations::for_instance(&s.pool, id).await.unwrap();
    assert_eq!(
        ops[0].state,
        OperationState::Adopted,
        "the replacement adopted the frozen call's instance"
    );

    // Thaw the first worker: its late answer must be fenced out, not recorded again.
    Command::new("kill")
        .args(["-CONT", &first.0.id().to_string()])
        .status()
        .unwrap();
    until(
        "all provisioning jobs to finish",
        Duration::from_secs(60),
        async || queue_idle(&s).await,
    )
    .await;
    assert!(running(&s, id).await);
    assert_exactly_once(&s, id).await;
    drop((first, second)); // killed by their guards
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_worker_frozen_after_its_intent_wakes_past_its_lease_and_does_not_send(pool: PgPool) {
    let s = setup(pool).await;
    let id = place(&s).await;
    // Hold the worker's intent insert until it is frozen: a lock on the table blocks it.
    let mut blocker = s.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE operations IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let worker = spawn_worker(&s, "sleepy-worker");
    until("the intent insert to wait on the lock", Duration::from_secs(30), async || {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO operations%')",
        )
        .fetch_one(&s.pool)
        .await
        .unwrap()
    })
    .await;
    Command::new("kill")
        .args(["-STOP", &worker.0.id().to_string()])
        .status()
        .unwrap();
    let frozen_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    blocker.commit().await.unwrap();
    // The lease (4 s) runs out on the database's clock while the worker sleeps.
    until(
        "the lease to run out",
        Duration::from_secs(30),
        async || {
            sqlx::query_scalar::<_, bool>("SELECT now() > $1 + interval '5 seconds'")
                .bind(frozen_at)
                .fetch_one(&s.pool)
                .await
                .unwrap()
        },
    )
    .await;
    Command::new("kill")
        .args(["-CONT", &worker.0.id().to_string()])
        .status()
        .unwrap();
    until("the order to run", Duration::from_secs(60), async || {
        running(&s, id).await
    })
    .await;
    let states: Vec<OperationState> = operations::for_instance(&s.pool, id)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.state)
        .collect();
    assert_eq!(
        states[0],
        OperationState::NotSent,
        "woken past its lease, it sent nothing: {states:?}"
    );
    assert_eq!(s.sim.sim().call_counts()["UserAgent/Deploy"], 1);
    assert_exactly_once(&s, id).await;
}
