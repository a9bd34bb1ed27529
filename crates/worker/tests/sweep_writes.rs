//! Sweeps cost what changed, not what exists: a reconciliation that finds nothing new writes
//! no row, the top-up sweep reads credits (Detail) only for agents MyAgents cannot clear, and
//! a listing older than a job's write is not judged against it.

use std::collections::BTreeMap;
use std::time::Duration;

use domain::db::instances::{self, Instance};
use domain::model::{InstanceState, Plan};
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use worker::sweeps::{reconcile, topups};

const SETTLE: Duration = Duration::from_secs(30);

async fn versions(h: &Harness, agents: &[&Instance]) -> Vec<i64> {
    let mut out = Vec::new();
    for a in agents {
        out.push(
            instances::get(&h.pool, a.id)
                .await
                .unwrap()
                .unwrap()
                .version,
        );
    }
    out
}

fn calls(h: &Harness, endpoint: &str) -> u64 {
    let counts: BTreeMap<String, u64> = h.sim.sim().call_counts();
    counts.get(endpoint).copied().unwrap_or(0)
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_reconciliation_that_finds_nothing_new_writes_no_row(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let mut agents = Vec::new();
    for name in ["one", "two", "three"] {
        agents.push(
            running_order(
                &h,
                name,
                "email-assistant",
                Plan::Pro,
                PendingConfig::default(),
            )
            .await,
        );
    }
    reconcile::run(&h.ctx).await.unwrap(); // whatever the provisioning left unseen is recorded
    let refs: Vec<&Instance> = agents.iter().collect();
    let before = versions(&h, &refs).await;

    let quiet = reconcile::run(&h.ctx).await.unwrap();
    assert_eq!(quiet.observed, 3);
    assert_eq!(quiet.written, 0, "nothing changed upstream: {quiet:?}");
    assert_eq!(versions(&h, &refs).await, before, "no row was touched");

    // Wiro stops one agent: that row, and only that one, is written (and it is restarted).
    let stopped = agents[1].wiro_guid.as_deref().unwrap();
    h.sim.sim().force_status(stopped, 0).unwrap();
    let one = reconcile::run(&h.ctx).await.unwrap();
    assert_eq!(one.written, 1, "{one:?}");
    let after = versions(&h, &refs).await;
    assert_eq!((after[0], after[2]), (before[0], before[2]));
    assert!(after[1] > before[1]);
    wait_for(&h.pool, agents[1].id, &[InstanceState::Running], SETTLE).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_top_up_sweep_reads_credits_only_where_myagents_cannot_clear_the_agent(pool: PgPool) {
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let ctx = context_with(&h, "topup-worker", |s| {
        s.billing.topup_threshold = 2000;
    });
    let plenty = running_order(
        &h,
        "rich",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    let spare = running_order(
        &h,
        "lean",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    // The first holds more extra credits than the threshold: above the line whatever its
    // monthly credits are, as MyAgents shows.
    {
        let sim = h.sim.sim();
        let mut world = sim.world();
        let inst = world
            .instances
            .get_mut(plenty.wiro_guid.as_deref().unwrap())
            .unwrap();
        inst.packs.push(wiro_sim::world::Pack {
            credits: 3000,
            expires_at: i64::MAX,
        });
    }
    let details = calls(&h, "UserAgent/Detail");
    let report = topups::run(&ctx).await.unwrap();
    assert_eq!(report.listed, 2, "{report:?}");
    assert_eq!(report.candidates, 1, "{report:?}");
    assert_eq!(
        calls(&h, "UserAgent/Detail") - details,
        1,
        "one Detail, for the agent without extra credits"
    );
    // And the agent it read is the one without: spend its credits and it is the one topped up.
    h.sim
        .sim()
        .consume_credits(spare.wiro_guid.as_deref().unwrap(), 3500)
        .unwrap();
    topups::run(&ctx).await.unwrap();
    assert_eq!(sim_charges(&h, "extra_credits"), 1);
    let charges = h.sim.sim().ledger();
    assert!(
        charges.iter().any(|c| c.kind == "extra_credits"
            && Some(c.instance_guid.as_str()) == spare.wiro_guid.as_deref()),
        "{charges:?}"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_listing_older_than_a_jobs_write_never_restarts_the_agent_the_job_recorded(pool: PgPool) {
    use domain::db::instances::Change;
    use wiro_sim::{FaultMode, FaultSpec};
    let h = harness(pool).await;
    let (_stop, _worker) = spawn_worker(&h.ctx);
    let agent = running_order(
        &h,
        "late-listing",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    let guid = agent.wiro_guid.clone().unwrap();
    // A start in progress: Wiro shows it Stopped, our row says starting.
    let starting = instances::update(
        &h.pool,
        agent.id,
        agent.version,
        Change::to(InstanceState::Starting),
    )
    .await
    .unwrap()
    .unwrap();
    h.sim.sim().force_status(&guid, 0).unwrap();
    let jobs = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs")
            .fetch_one(&h.pool)
            .await
            .unwrap();
        n
    };
    let jobs_before = jobs().await;
    let listed_before = calls(&h, "UserAgent/MyAgents");
    // MyAgents is answered 1 s after Wiro made the page (within the client's timeout): the
    // start completes meanwhile.
    h.sim
        .sim()
        .add_fault(FaultSpec {
            latency_ms: Some(1_000),
            count: Some(1),
            ..FaultSpec::new("UserAgent/MyAgents", FaultMode::StallResponse)
        })
        .unwrap();
    let sweep = tokio::spawn({
        let ctx = h.ctx.clone();
        async move { reconcile::run(&ctx).await.unwrap() }
    });
    let asked = tokio::time::Instant::now() + SETTLE;
    while calls(&h, "UserAgent/MyAgents") == listed_before {
        assert!(tokio::time::Instant::now() < asked, "MyAgents never asked");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.sim.sim().force_status(&guid, 4).unwrap();
    let running = Change {
        wiro_status: Some(Some(4)),
        ..Change::to(InstanceState::Running)
    };
    let recorded = instances::update(&h.pool, agent.id, starting.version, running)
        .await
        .unwrap()
        .unwrap();

    let report = sweep.await.unwrap();
    assert_eq!(
        calls(&h, "UserAgent/MyAgents"),
        listed_before + 1,
        "the sweep judged the page made before the write"
    );
    let now = instances::get(&h.pool, agent.id).await.unwrap().unwrap();
    assert_eq!(now.state, InstanceState::Running, "not restarted");
    assert_eq!(report.written_meanwhile, 1, "{report:?}");
    assert_eq!(
        now.version, recorded.version,
        "the stale listing wrote nothing"
    );
    assert_eq!(jobs().await, jobs_before, "no provisioning job was queued");
}
