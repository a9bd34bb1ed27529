//! Bulk provisioning throughput against the simulator with a fixed added upstream latency.
//!
//!     DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
//!       cargo bench -p worker --bench bulk_provision -- [orders] [latency_ms] [concurrency] [rate_limit]
//!
//! With `rate_limit` > 0 the simulator answers 429 to every call beyond that many a second
//! (fault `rate_limit`), and the run reports how many it refused and the rate achieved.
//!
//! Creates a scratch database, starts the real apalis worker and waits until it is idle and
//! listening (as under `reseller up`), submits one batch of the Email Assistant (no OAuth
//! connection to wait for), and prints the wall time from submit to every order Running (the
//! batch's completion, as its commit notifies a listener) against
//! the ideal bound (calls per order × latency × orders ÷ concurrency) and the upstream calls
//! per order; then, beside it, the same calls alone (see `calls_alone`): each order's Deploy,
//! Update, Start and Detail through the same client and limit against a fresh simulator, no
//! database — what this machine's client and simulator allow. `BENCH_TIMELINE=1` adds when the
//! first Deploy intent was written, how long an order took from its intent to Running, how many
//! calls were out at the simulator over each tenth of the wall and over the first 250 ms (where
//! the limit stood part empty), and the calls' mean time and how many were out on average; `BENCH_TABLE_STATS=1` the database work
//! per order (rows per table, and our PL/pgSQL triggers' calls and time). `BENCH_WARMUP=N` runs a
//! batch of N other orders first (as a service that has run a batch before: its database
//! connections warm) and reports the measured batch alone.

mod common;

use std::time::{Duration, Instant};

use domain::model::InstanceState;
use domain::orders::{Actor, ResolvedTemplate};
use wiro_sim::FaultSpec;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; skip flags.
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let get = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let orders = get(1, 1000) as usize;
    let latency_ms = get(2, 20);
    let concurrency = get(3, 16) as usize;
    let rate_limit = get(4, 0) as u32;

    let scratch = common::Scratch::create("reseller_bench", 2 * concurrency as u32 + 10).await?;
    let pool = scratch.pool.clone();
    let sim = common::simulator(1_000_000.0, latency_ms).await?;
    if rate_limit > 0 {
        sim.sim()
            .add_fault(FaultSpec::rate_limit(rate_limit))
            .map_err(anyhow::Error::msg)?;
    }
    let ctx = common::services(&pool, &sim, |s| {
        s.worker.provision_concurrency = concurrency;
        s.worker.poll_interval = Duration::from_millis(100);
    })?;
    let sealer = ctx.sealer.clone();

    // A template that runs without an OAuth connection (Instagram's would wait for the
    // customer's consent in awaiting_connection).
    let template = ResolvedTemplate {
        guid: "b2c3d4e5-f6a7-8901-bcde-f23456789012".into(),
        slug: "email-assistant".into(),
        price_cents: 500,
    };
    let batch = testkit::batch_of(&template, orders, "bench");

    // As under `reseller up`: the worker is running and idle when the batch comes, so its
    // start (pools, registration, listeners) is not in the figure.
    let (stop, worker) = common::spawn_worker(ctx);
    testkit::wait_worker_listening(&pool, Duration::from_secs(30)).await;

    // `BENCH_WARMUP=N`: a batch of N other orders first, so the measured one meets the
    // database connections a running service has (their backends' caches loaded, our trigger
    // functions compiled, sqlx's statements prepared) instead of the first batch's fresh ones.
    let warm = std::env::var("BENCH_WARMUP")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    if warm > 0 {
        warm_up(&pool, &sealer, &template, warm).await?;
        println!("warmed up              {warm} orders before the measured batch");
        if std::env::var_os("BENCH_TABLE_STATS").is_some() {
            sqlx::query("SELECT pg_stat_reset()").execute(&pool).await?;
        }
    }
    // The moment the batch's completion commits, not the next poll's: polling every 20 ms put
    // 0 – 20 ms (10 on average) of waiting into every wall.
    let mut completed = completion_listener(&pool).await?;
    let calls_before = sim.sim().call_counts();
    let refused_before = sim.sim().fault_rules().last().map_or(0, |r| r.fired);
    let held_before = upstream_time();
    let busy_before = machine_busy_seconds();
    let own_before = own_busy_seconds();
    let submitted = Instant::now();
    let sampler = std::env::var_os("BENCH_TIMELINE")
        .is_some()
        .then(|| sample_in_flight(sim.sim().clone(), submitted));
    domain::orders::submit_batch(
        &pool,
        &sealer,
        Some("bench"),
        &batch,
        Actor {
            name: "bench",
            request_id: None,
        },
    )
    .await?;
    let submit_time = submitted.elapsed();
    wait_completed(&mut completed, &pool, "bench").await?;
    let wall = submitted.elapsed();
    // It holds one of the pool's connections, which closing the pool would wait for.
    drop(completed);
    let running: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = $1")
        .bind(InstanceState::Running.as_str())
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        running as usize == orders + warm,
        "the batch completed with {running} of {} orders Running",
        orders + warm
    );
    let in_flight = match sampler {
        Some((stop, samples)) => {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            Some(samples.await?)
        }
        None => None,
    };
    let busy = machine_busy_seconds() - busy_before;
    let own = own_busy_seconds() - own_before;
    let _ = stop.send(());
    let _ = worker.await;

    let alone = calls_alone(&template.guid, orders, latency_ms, concurrency).await?;
    let mut calls = sim.sim().call_counts();
    for (endpoint, before) in calls_before {
        if let Some(n) = calls.get_mut(&endpoint) {
            *n -= before;
        }
    }
    let total_calls: u64 = calls.values().sum();
    let per_order = total_calls as f64 / orders as f64;
    let ideal = Duration::from_secs_f64(
        per_order * latency_ms as f64 / 1000.0 * orders as f64 / concurrency as f64,
    );
    println!("orders                 {orders}");
    println!("added latency per call {latency_ms} ms");
    println!("worker concurrency     {concurrency}");
    println!("batch submit           {:.3} s", submit_time.as_secs_f64());
    println!("wall time to all Running {:.2} s", wall.as_secs_f64());
    println!("upstream calls         {total_calls} ({per_order:.2} per order): {calls:?}");
    println!(
        "ideal bound            {:.2} s  (calls/order × latency × orders ÷ concurrency)",
        ideal.as_secs_f64()
    );
    println!(
        "same calls alone       {:.2} s  (no database: this client and simulator at this limit; ours is {:.2}× it)",
        alone.as_secs_f64(),
        wall.as_secs_f64() / alone.as_secs_f64()
    );
    println!(
        "machine CPU per order  {:.2} ms (every core's busy time from submit to all Running: \
         Postgres, worker and simulator; run on an otherwise idle machine)",
        busy * 1000.0 / orders as f64
    );
    println!(
        "  of which this process {:.2} ms (worker and simulator); the rest {:.2} ms (Postgres, \
         the kernel, anything else running)",
        own * 1000.0 / orders as f64,
        (busy - own) * 1000.0 / orders as f64
    );
    println!(
        "efficiency             {:.0} %",
        ideal.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
    if rate_limit > 0 {
        let refused = sim.sim().fault_rules().last().map_or(0, |r| r.fired) - refused_before;
        let accepted = total_calls - refused;
        println!(
            "rate limit             {rate_limit}/s: {refused} calls refused with 429, {accepted} accepted = {:.1}/s over the run",
            accepted as f64 / wall.as_secs_f64()
        );
        let failed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = 'failed'")
                .fetch_one(&pool)
                .await?;
        println!("orders failed          {failed}");
    }
    println!(
        "duplicates upstream    {}",
        sim.sim().instances().len() as i64 - (orders + warm) as i64
    );

    if std::env::var_os("BENCH_TIMELINE").is_some() {
        // Where the wall time goes, from our own records (apalis's `lock_at` is written when a
        // started job's event is flushed, not when it starts): each order from its Deploy
        // intent to Running, in ms after submit began.
        let submit_at = chrono::Utc::now() - chrono::Duration::from_std(submitted.elapsed())?;
        let (first_intent, last_running, p50, p90): (f64, f64, f64, f64) = sqlx::query_as(
            "WITH o AS (
                 SELECT EXTRACT(EPOCH FROM (op.started_at - $1))::float8 * 1000 AS intent,
                        EXTRACT(EPOCH FROM (i.updated_at - $1))::float8 * 1000 AS running
                 FROM operations op JOIN instances i ON i.id = op.instance_id
                 WHERE op.kind = 'deploy' AND op.started_at >= $1)
             SELECT min(intent), max(running),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY running - intent),
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY running - intent)
             FROM o",
        )
        .bind(submit_at)
        .fetch_one(&pool)
        .await?;
        println!(
            "timeline               first Deploy intent at {first_intent:.0} ms, last order \
             Running at {last_running:.0} ms; an order from intent to Running p50 {p50:.0} ms, \
             p90 {p90:.0} ms"
        );
        // The calls out at the simulator, sampled every millisecond: their mean over each
        // tenth of the wall, and over the first 250 ms by 10 ms, shows where the limit stood
        // part empty.
        if let Some(samples) = in_flight {
            let tenth = (wall.as_millis() as u64).div_ceil(10).max(1);
            println!(
                "calls out by tenth     {} (at the simulator, sampled every ms)",
                means_by(&samples, tenth, 10)
            );
            println!(
                "calls out by 10 ms     {} (the first 250 ms: the batch commits, the chunks begin)",
                means_by(&samples, 10, 25)
            );
        }
        // The calls themselves, as the client timed them (from its turn under the limit to the
        // answer decoded): their mean, and how many were out on average over the wall.
        let (held, count) = upstream_time();
        let (held, count) = (held - held_before.0, count - held_before.1);
        println!(
            "upstream calls held    {:.1} ms each on average; {:.1} in flight on average over the wall (limit {concurrency})",
            held * 1000.0 / count.max(1) as f64,
            held / wall.as_secs_f64()
        );
    }
    if std::env::var_os("BENCH_TABLE_STATS").is_some() {
        // Where the database work goes, per order: other backends flush their counters when
        // idle, at most once a second.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT schemaname || '.' || relname, seq_scan, seq_tup_read,
                    COALESCE(idx_tup_fetch, 0), n_tup_ins, n_tup_upd
             FROM pg_stat_user_tables
             WHERE seq_tup_read + COALESCE(idx_tup_fetch, 0) + n_tup_ins + n_tup_upd > 0
             ORDER BY seq_tup_read + COALESCE(idx_tup_fetch, 0) DESC",
        )
        .fetch_all(&pool)
        .await?;
        let per = |n: i64| n as f64 / orders as f64;
        println!(
            "per order: table, seq scans, rows read by seq scans, rows fetched by index, inserted, updated"
        );
        for (table, seq, seq_read, idx_fetch, ins, upd) in rows {
            println!(
                "  {table:<40} {:>7.2} {:>9.1} {:>9.1} {:>6.2} {:>6.2}",
                per(seq),
                per(seq_read),
                per(idx_fetch),
                per(ins),
                per(upd)
            );
        }
        // Our triggers, timed by Postgres (`track_functions = 'pl'`, set on the scratch
        // database with `BENCH_TABLE_STATS`): calls and time per order, the function's own
        // time and with what it called.
        let functions: Vec<(String, i64, f64, f64)> = sqlx::query_as(
            "SELECT funcname, calls, self_time, total_time FROM pg_stat_user_functions
             ORDER BY self_time DESC",
        )
        .fetch_all(&pool)
        .await?;
        println!("per order: PL/pgSQL function, calls, self µs, total µs");
        for (function, calls, self_ms, total_ms) in functions {
            println!(
                "  {function:<40} {:>7.2} {:>9.1} {:>9.1}",
                per(calls),
                self_ms * 1000.0 / orders as f64,
                total_ms * 1000.0 / orders as f64
            );
        }
        let (xacts,): (i64,) = sqlx::query_as(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await?;
        println!("transactions per order (whole run) {:.1}", per(xacts));
    }
    scratch.drop_now().await
}

/// A listener told the key of every batch whose completion commits (`completed_at`, written by
/// the change that settles its last order): a trigger of this scratch database only.
async fn completion_listener(pool: &sqlx::PgPool) -> anyhow::Result<sqlx::postgres::PgListener> {
    sqlx::raw_sql(
        "CREATE FUNCTION bench_batch_completed() RETURNS TRIGGER LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_notify('bench_batch_completed', NEW.key); RETURN NULL; END $$;
         CREATE TRIGGER bench_batch_completed AFTER UPDATE OF completed_at ON provisioning_batches
         FOR EACH ROW WHEN (OLD.completed_at IS NULL AND NEW.completed_at IS NOT NULL)
         EXECUTE FUNCTION bench_batch_completed();",
    )
    .execute(pool)
    .await?;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("bench_batch_completed").await?;
    Ok(listener)
}

/// Waits until the batch `key` completes (every order settled); fails early if an order failed
/// or waits for a connection (the batch would not complete while one waits).
async fn wait_completed(
    listener: &mut sqlx::postgres::PgListener,
    pool: &sqlx::PgPool,
    key: &str,
) -> anyhow::Result<()> {
    loop {
        match tokio::time::timeout(Duration::from_millis(500), listener.recv()).await {
            Ok(note) => {
                if note?.payload() == key {
                    return Ok(());
                }
            }
            Err(_) => {
                let stuck: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM instances WHERE state IN ('failed', 'awaiting_connection')",
                )
                .fetch_one(pool)
                .await?;
                anyhow::ensure!(stuck == 0, "{stuck} orders failed or wait for a connection");
            }
        }
    }
}

/// Submits a batch of `orders` orders of other customers and waits until all are Running.
async fn warm_up(
    pool: &sqlx::PgPool,
    sealer: &domain::sealed::Sealer,
    template: &ResolvedTemplate,
    orders: usize,
) -> anyhow::Result<()> {
    let batch = testkit::batch_of(template, orders, "warm-up");
    let actor = Actor {
        name: "bench",
        request_id: None,
    };
    domain::orders::submit_batch(pool, sealer, Some("bench-warm-up"), &batch, actor).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let running: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE state = $1")
            .bind(InstanceState::Running.as_str())
            .fetch_one(pool)
            .await?;
        if running as usize == orders {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the warm-up batch did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples the calls out at `sim` about every millisecond from `since` until told to stop:
/// (ms after `since`, calls out).
fn sample_in_flight(
    sim: wiro_sim::Simulator,
    since: Instant,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<Vec<(u64, usize)>>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let told = stop.clone();
    let samples = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval_at(since.into(), Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !told.load(std::sync::atomic::Ordering::Relaxed) {
            let at = tick.tick().await;
            samples.push((
                at.duration_since(since.into()).as_millis() as u64,
                sim.calls_in_flight(),
            ));
        }
        samples
    });
    (stop, samples)
}

/// The samples' mean calls out in each of the first `buckets` spans of `span_ms`, rounded.
fn means_by(samples: &[(u64, usize)], span_ms: u64, buckets: u64) -> String {
    (0..buckets)
        .map(|bucket| {
            let (sum, n) = samples
                .iter()
                .filter(|(at, _)| at / span_ms == bucket)
                .fold((0, 0), |(sum, n), (_, out)| (sum + out, n + 1));
            if n == 0 {
                "-".to_owned()
            } else {
                format!("{:.0}", sum as f64 / f64::from(n))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bound the machine sets, measured: `orders` times Deploy → Update → Start → Detail (the
/// calls an order of the batch makes) through a client built as the worker's and limited to
/// `concurrency` calls in flight, against a fresh simulator with the same added latency, with
/// twice `concurrency` orders under way so the limit is never idle for want of an order. No
/// database, no queue, no records: the wall time of the calls alone.
async fn calls_alone(
    template: &str,
    orders: usize,
    latency_ms: u64,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    use futures::StreamExt as _;
    use wiro_client::models::{DeployRequest, UpdateConfiguration, UpdateRequest};

    let sim = common::simulator(1_000_000.0, latency_ms).await?;
    let settings = common::settings_for(&sim)?;
    let client = wiro_client::Client::new(settings.wiro_client_config()?)?.limited(concurrency);
    let started = Instant::now();
    let runs = futures::stream::iter(0..orders)
        .map(|i| {
            let client = &client;
            async move {
                let agent = client
                    .deploy(&DeployRequest {
                        agentguid: template.to_owned(),
                        title: format!("Alone {i}"),
                        description: None,
                        useprepaid: true,
                        plan: "starter".to_owned(),
                        pinned: Some(false),
                    })
                    .await?;
                client
                    .update(&UpdateRequest {
                        guid: agent.guid.clone(),
                        title: Some(format!("Alone {i}")),
                        configuration: Some(UpdateConfiguration::default()),
                        ..UpdateRequest::default()
                    })
                    .await?;
                client.start(&agent.guid).await?;
                client.detail(&agent.guid).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(2 * concurrency);
    let results: Vec<anyhow::Result<()>> = runs.collect().await;
    let elapsed = started.elapsed();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(elapsed)
}

/// Every upstream call attempt's time summed, and their count (the client's observer).
fn upstream_time() -> (f64, u64) {
    let mut held = 0.0;
    let mut count = 0;
    for family in domain::metrics::METRICS.registry.gather() {
        if !family.name().ends_with("upstream_call_duration_seconds") {
            continue;
        }
        for metric in family.get_metric() {
            let histogram = metric.get_histogram();
            held += histogram.get_sample_sum();
            count += histogram.get_sample_count();
        }
    }
    (held, count)
}

/// Seconds every core spent busy since boot (`/proc/stat`: user, nice, system, irq, softirq);
/// 0 where there is no `/proc`.
/// This process's CPU time (user + system, every thread), from /proc/self/stat.
fn own_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name may hold spaces: fields are counted after its closing parenthesis
    // (utime and stime are fields 14 and 15 of the line, the 12th and 13th after it).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // USER_HZ is 100 on Linux.
    fields.iter().sum::<f64>() / 100.0
}

fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let fields: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6].iter().filter_map(|i| fields.get(*i)).sum();
    // USER_HZ is 100 on Linux.
    busy / 100.0
}
