//! A new batch's orders run in chunks whose Deploys begin and are recorded set-based: each
//! order is still deployed and charged exactly once, a chunk run twice at once changes nothing,
//! an order that changed while its chunk's Deploy was in flight is recorded the single order's
//! way, an order slow to start goes on as its own job instead of holding its chunk, and the
//! chunks' calls stay within the lane's limit while one chunk more than it holds runs.

use std::time::Duration;

use domain::db::{alerts, audit, instances, ledger, operations as ops, queue};
use domain::ids::InstanceId;
use domain::jobs::{BULK_CHUNK, BULK_CHUNK_QUEUE, ProvisionChunk};
use domain::model::{ChargeKind, InstanceState, OperationKind, OperationState, Plan};
use domain::orders::Actor;
use sqlx::PgPool;
use testkit::*;
use wiro_sim::{Delays, FaultSpec, SimConfig};

const SETTLE: Duration = Duration::from_secs(30);

/// Every Deploy answers after `ms`.
fn deploy_latency(ms: u64) -> FaultSpec {
    FaultSpec::latency("UserAgent/Deploy", ms)
}

/// Submits a batch of `n` orders; returns its chunk jobs' payloads.
async fn submit(h: &Harness, n: usize) -> Vec<ProvisionChunk> {
    let template = template(h, "email-assistant", Plan::Starter).await;
    let actor = Actor {
        name: "ops:test",
        request_id: None,
    };
    domain::orders::submit_batch(
        &h.pool,
        &h.ctx.sealer,
        None,
        &batch_of(&template, n, "c"),
        actor,
    )
    .await
    .unwrap();
    let payloads: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT job FROM apalis.jobs WHERE job_type = $1 ORDER BY run_at, id")
            .bind(BULK_CHUNK_QUEUE)
            .fetch_all(&h.pool)
            .await
            .unwrap();
    payloads
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect()
}

/// Every Deploy upstream ran once per order, and each order has one settled Deploy, one charge
/// and one `deploy` audit entry.
async fn assert_each_deployed_once(h: &Harness, ids: &[InstanceId]) {
    assert_eq!(h.sim.sim().instances().len(), ids.len());
    assert_eq!(
        h.sim.sim().call_counts()["UserAgent/Deploy"],
        ids.len() as u64
    );
    let charges = ledger::list(&h.pool, &Default::default(), None, 1000)
        .await
        .unwrap();
    assert_eq!(charges.len(), ids.len());
    for id in ids {
        let deploys: Vec<_> = ops::for_instance(&h.pool, *id)
            .await
            .unwrap()
            .into_iter()
            .filter(|o| o.kind == OperationKind::Deploy)
            .collect();
        assert_eq!(deploys.len(), 1, "{id}: {deploys:?}");
        assert!(
            matches!(
                deploys[0].state,
                OperationState::Succeeded | OperationState::Adopted
            ),
            "{deploys:?}"
        );
        let mine: Vec<_> = charges
            .iter()
            .filter(|c| c.instance_id == Some(*id))
            .collect();
        assert_eq!(mine.len(), 1, "{id}");
        assert_eq!(mine[0].kind, ChargeKind::Deploy);
        assert_eq!(mine[0].operation_id, Some(deploys[0].id));
        let target = format!("instance:{id}");
        let entries = audit::list(&h.pool, Some("deploy"), Some(&target), None, 10)
            .await
            .unwrap();
        assert_eq!(entries.len(), 1, "{id}: {entries:?}");
    }
    assert_ledgers_match(h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_batch_is_queued_in_chunks_whose_orders_the_stuck_sweep_sees_as_live(pool: PgPool) {
    let h = harness(pool).await;
    let chunks = submit(&h, BULK_CHUNK * 2 + 3).await;
    let mut sizes: Vec<usize> = chunks.iter().map(|c| c.instance_ids.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [3, BULK_CHUNK, BULK_CHUNK]);
    let mut live = queue::live_provision_jobs(&h.pool).await.unwrap();
    let mut queued: Vec<InstanceId> = chunks.into_iter().flat_map(|c| c.instance_ids).collect();
    live.sort();
    queued.sort();
    assert_eq!(
        live, queued,
        "every order of a waiting chunk has a live job"
    );
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_chunk_run_twice_at_once_or_late_deploys_and_charges_each_order_once(pool: PgPool) {
    let h = harness(pool).await;
    let chunk = submit(&h, BULK_CHUNK).await.remove(0);
    // Slow Deploys: the second run reads the orders while the first one's calls are out.
    h.sim.sim().add_fault(deploy_latency(300)).unwrap();
    let stale = instances::get_many(&h.pool, &chunk.instance_ids)
        .await
        .unwrap();
    let other = context_with(&h, "second-worker", |_| {});
    let (a, b) = tokio::join!(
        worker::provision::advance_chunk(&h.ctx, &chunk.instance_ids),
        worker::provision::advance_chunk(&other, &chunk.instance_ids)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 2 * BULK_CHUNK);
    // A late run that still holds the orders as they were before: no intent, no call.
    let late = operations::deploy::chunk::deploy_chunk(&h.ctx, &stale)
        .await
        .unwrap();
    assert!(late.is_empty(), "{late:?}");
    for id in &chunk.instance_ids {
        drive(&h.ctx, *id).await;
        let done = instances::get(&h.pool, *id).await.unwrap().unwrap();
        assert_eq!(done.state, InstanceState::Running, "{:?}", done.last_error);
    }
    assert_each_deployed_once(&h, &chunk.instance_ids).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_order_given_up_while_its_chunks_deploy_was_out_is_recorded_by_the_failed_order_policy(
    pool: PgPool,
) {
    let h = harness(pool).await;
    let chunk = submit(&h, BULK_CHUNK).await.remove(0);
    h.sim.sim().add_fault(deploy_latency(500)).unwrap();
    let run = {
        let (ctx, ids) = (h.ctx.clone(), chunk.instance_ids.clone());
        tokio::spawn(async move { worker::provision::advance_chunk(&ctx, &ids).await })
    };
    // Every intent is written (the calls are out): ops give the first order up.
    let given_up = chunk.instance_ids[0];
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let calling: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM operations WHERE kind = 'deploy' AND state = 'calling'",
        )
        .fetch_one(&h.pool)
        .await
        .unwrap();
        if calling == BULK_CHUNK as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the intents never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sqlx::query("UPDATE instances SET state = 'failed', last_error = 'given up' WHERE id = $1")
        .bind(given_up)
        .execute(&h.pool)
        .await
        .unwrap();
    run.await.unwrap().unwrap();
    let alert = alerts::open(&h.pool, Some("deploy_landed_after_failure"), None, 10)
        .await
        .unwrap();
    assert_eq!(alert.len(), 1, "{alert:?}");
    assert_eq!(alert[0].instance_id, Some(given_up));
    // The default policy adopts it: provisioning resumes with that instance.
    for id in &chunk.instance_ids {
        drive(&h.ctx, *id).await;
        wait_for(&h.pool, *id, &[InstanceState::Running], SETTLE).await;
    }
    assert_each_deployed_once(&h, &chunk.instance_ids).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn orders_slow_to_start_go_on_as_their_own_jobs_instead_of_holding_their_chunk(pool: PgPool) {
    // Agents take 8 s from Start to Running: far longer than a chunk waits for them (twice
    // here: once below, once as the queued job).
    let delays = Delays::uniform(20).with_start_delay_ms(8_000);
    let h = harness_with_delays(pool, SimConfig::with_account(WIRO_KEY, 100_000.0), delays).await;
    let chunk = submit(&h, BULK_CHUNK).await.remove(0);
    // A single order waits for Running inline as long as it takes; a chunk does not.
    let ctx = context_with(&h, "slow-starts", |s| {
        s.provisioning.wait_running_inline = Duration::from_secs(60);
    });
    let chunk_ctx = worker::provision::chunk_services(&ctx);
    let nexts = worker::provision::advance_chunk(&chunk_ctx, &chunk.instance_ids)
        .await
        .unwrap();
    assert_eq!(nexts.len(), BULK_CHUNK);
    for (id, next) in &nexts {
        assert!(
            matches!(next, worker::provision::Next::RetryAfter(_)),
            "{id}: {next:?}"
        );
        let order = instances::get(&h.pool, *id).await.unwrap().unwrap();
        assert_eq!(
            order.state,
            InstanceState::Starting,
            "{id}: returned before Running"
        );
    }

    // Through the queue: the chunk's job ends and each order goes on in the bulk lane.
    let (_stop, _worker) = spawn_worker(&ctx);
    for id in &chunk.instance_ids {
        wait_for(&h.pool, *id, &[InstanceState::Running], SETTLE).await;
    }
    let follow_ups: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT convert_from(job, 'UTF8')::jsonb ->> 'instance_id')
         FROM apalis.jobs WHERE job_type = 'provision-bulk'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert_eq!(follow_ups, BULK_CHUNK as i64, "one follow-up job per order");
    assert_each_deployed_once(&h, &chunk.instance_ids).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_set_based_update_changes_only_the_rows_still_at_their_version(pool: PgPool) {
    use domain::db::instances::Change;
    let h = harness(pool).await;
    let ids = submit(&h, 3).await.remove(0).instance_ids;
    let rows = instances::get_many(&h.pool, &ids).await.unwrap();
    let row = |id: InstanceId| rows.iter().find(|r| r.id == id).unwrap().clone();
    let (moved, stale, renamed) = (row(ids[0]), row(ids[1]), row(ids[2]));
    // Someone else changes the second order first.
    instances::update(
        &h.pool,
        stale.id,
        stale.version,
        Change::to(InstanceState::Failed),
    )
    .await
    .unwrap()
    .unwrap();
    let mut conn = h.pool.acquire().await.unwrap();
    let title = Change {
        title: Some("renamed".into()),
        ..Change::default()
    };
    let written = instances::update_many(
        &mut conn,
        vec![
            (
                moved.id,
                moved.version,
                Change::to(InstanceState::Deploying),
            ),
            (
                stale.id,
                stale.version,
                Change::to(InstanceState::Deploying),
            ),
            (renamed.id, renamed.version, title),
        ],
    )
    .await
    .unwrap();
    let mut written_ids: Vec<InstanceId> = written.iter().map(|r| r.id).collect();
    written_ids.sort();
    let mut expected = vec![moved.id, renamed.id];
    expected.sort();
    assert_eq!(written_ids, expected, "the stale row is left out");
    let now = |id| instances::get(&h.pool, id);
    let moved_now = now(moved.id).await.unwrap().unwrap();
    assert_eq!(moved_now.state, InstanceState::Deploying);
    assert_eq!(moved_now.version, moved.version + 1);
    assert!(moved_now.state_changed_at > moved.state_changed_at);
    assert_eq!(
        now(stale.id).await.unwrap().unwrap().state,
        InstanceState::Failed
    );
    let renamed_now = now(renamed.id).await.unwrap().unwrap();
    assert_eq!(renamed_now.title, "renamed");
    assert_eq!(
        renamed_now.state,
        InstanceState::Pending,
        "only what the change sets"
    );
    assert_eq!(renamed_now.state_changed_at, renamed.state_changed_at);
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_chunks_orders_are_recorded_as_a_single_order_is(pool: PgPool) {
    // Agents start at once: the chunk records its orders Running together.
    let delays = Delays::uniform(20).with_start_delay_ms(0);
    let h = harness_with_delays(pool, SimConfig::with_account(WIRO_KEY, 100_000.0), delays).await;
    chunk_and_single_order_record_the_same_facts(&h).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_chunks_orders_polled_to_running_are_recorded_as_a_single_order_is(pool: PgPool) {
    // Still starting at the chunk's first Detail: each goes on polling the single order's way.
    let delays = Delays::uniform(20).with_start_delay_ms(50);
    let h = harness_with_delays(pool, SimConfig::with_account(WIRO_KEY, 100_000.0), delays).await;
    chunk_and_single_order_record_the_same_facts(&h).await;
}

async fn chunk_and_single_order_record_the_same_facts(h: &Harness) {
    let single = order(h, "single", "email-assistant", Default::default()).await;
    drive(&h.ctx, single.id).await;
    let chunk = submit(h, 2).await.remove(0);
    worker::provision::advance_chunk(&h.ctx, &chunk.instance_ids)
        .await
        .unwrap();
    let facts = |i: &domain::db::instances::Instance| {
        (
            (
                i.state,
                i.wiro_status,
                i.setup_required,
                i.missing_credentials.clone(),
                i.missing_connections.clone(),
                i.pending_config.is_some(),
            ),
            i.subscription_plan.clone(),
            i.subscription_status.clone(),
            i.subscription_amount_cents,
            i.monthly_credits,
            i.extra_credits,
            i.step_failures,
            i.last_error.clone(),
        )
    };
    let single = instances::get(&h.pool, single.id).await.unwrap().unwrap();
    assert_eq!(single.state, InstanceState::Running);
    for id in &chunk.instance_ids {
        let mine = instances::get(&h.pool, *id).await.unwrap().unwrap();
        assert_eq!(facts(&mine), facts(&single));
        assert!(mine.subscription_period_end.is_some());
    }
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_chunk_starts_its_orders_together_but_never_a_suspended_customers(pool: PgPool) {
    let delays = Delays::uniform(20).with_start_delay_ms(0);
    let h = harness_with_delays(pool, SimConfig::with_account(WIRO_KEY, 100_000.0), delays).await;
    let chunk = submit(&h, 4).await.remove(0);
    let rows = instances::get_many(&h.pool, &chunk.instance_ids)
        .await
        .unwrap();
    let suspended = rows[0].clone();
    domain::db::customers::set_status(
        &h.pool,
        suspended.customer_id,
        domain::model::CustomerStatus::Suspended,
    )
    .await
    .unwrap();
    let nexts = worker::provision::advance_chunk(&h.ctx, &chunk.instance_ids)
        .await
        .unwrap();
    assert!(
        nexts
            .iter()
            .all(|(_, next)| *next == worker::provision::Next::Done),
        "{nexts:?}"
    );
    for id in &chunk.instance_ids {
        let now = instances::get(&h.pool, *id).await.unwrap().unwrap();
        let expected = if *id == suspended.id {
            InstanceState::Stopped
        } else {
            InstanceState::Running
        };
        assert_eq!(now.state, expected, "{id}");
        assert_eq!(
            now.wiro_status,
            Some(if *id == suspended.id { 0 } else { 4 })
        );
    }
    let calls = h.sim.sim().call_counts();
    assert_eq!(
        calls["UserAgent/Start"], 3,
        "once per active customer's order"
    );
    // Running at once: one Detail after each Start, one for the agent that stops.
    assert_eq!(calls["UserAgent/Detail"], 4);
    assert_each_deployed_once(&h, &chunk.instance_ids).await;
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn an_orders_first_detail_does_not_wait_for_its_chunks_slowest_start(pool: PgPool) {
    let h = harness(pool).await;
    let chunk = submit(&h, BULK_CHUNK).await.remove(0);
    // The chunk's first Start is held far longer than the test waits; the others are answered.
    let mut held = FaultSpec::latency("UserAgent/Start", 600_000);
    held.count = Some(1);
    h.sim.sim().add_fault(held).unwrap();
    let run = {
        let (ctx, ids) = (h.ctx.clone(), chunk.instance_ids.clone());
        tokio::spawn(async move { worker::provision::advance_chunk(&ctx, &ids).await })
    };
    let deadline = tokio::time::Instant::now() + SETTLE;
    let details = || {
        let calls = h.sim.sim().call_counts();
        calls.get("UserAgent/Detail").copied().unwrap_or(0)
    };
    while details() < (BULK_CHUNK - 1) as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} Details while one Start was held",
            details()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(details(), (BULK_CHUNK - 1) as u64);
    assert_eq!(
        h.sim.sim().calls_in_flight(),
        1,
        "the held Start is still out"
    );
    assert!(!run.is_finished());
    run.abort();
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_batchs_calls_stay_within_provision_concurrency_while_one_chunk_more_runs(pool: PgPool) {
    let h = harness(pool).await;
    // Every call takes 30 ms: the chunks' calls overlap whenever the chunks do.
    h.sim.sim().add_fault(FaultSpec::latency("*", 30)).unwrap();
    let ctx = context_with(&h, "one-chunk-of-calls", |s| {
        s.worker.provision_concurrency = BULK_CHUNK;
    });
    let chunks = submit(&h, 2 * BULK_CHUNK).await;
    assert_eq!(chunks.len(), 2);
    let (_stop, _worker) = spawn_worker(&ctx);
    let ids: Vec<InstanceId> = chunks.iter().flat_map(|c| c.instance_ids.clone()).collect();
    for id in &ids {
        wait_for(&h.pool, *id, &[InstanceState::Running], SETTLE).await;
    }
    type At = chrono::DateTime<chrono::Utc>;
    let deadline = tokio::time::Instant::now() + SETTLE;
    let ran = loop {
        let ran: Vec<(At, At)> = sqlx::query_as(
            "SELECT lock_at, done_at FROM apalis.jobs WHERE job_type = $1 AND done_at IS NOT NULL",
        )
        .bind(BULK_CHUNK_QUEUE)
        .fetch_all(&h.pool)
        .await
        .unwrap();
        if ran.len() == 2 {
            break ran;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chunk jobs not done"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        ran[0].0 < ran[1].1 && ran[1].0 < ran[0].1,
        "both chunks ran at once: {ran:?}"
    );
    let most = h.sim.sim().most_calls_in_flight();
    assert!(
        (2..=BULK_CHUNK).contains(&most),
        "the upstream saw {most} calls at once: at most provision_concurrency"
    );
    assert_each_deployed_once(&h, &ids).await;
}
