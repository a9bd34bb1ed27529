//! Retention: the purge sweep deletes what is past its `[retention]` age and nothing else —
//! never the ledger, never money's paper trail before the accounting retention, never anything
//! unresolved — and over a simulated year of scheduled sweeps the operational tables stay flat.

use std::time::Duration;

use domain::jobs::{self, SweepKind};
use domain::model::{InstanceState, Plan};
use domain::sealed::PendingConfig;
use sqlx::PgPool;
use testkit::*;
use uuid::Uuid;

const SETTLE: Duration = Duration::from_secs(30);

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap();
}

async fn texts(pool: &PgPool, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(pool)
        .await
        .unwrap();
    out.sort();
    out
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn a_purge_deletes_what_is_past_its_age_and_never_money_or_anything_unresolved(pool: PgPool) {
    let h = harness(pool).await;
    let agent = order(&h, "keeper", "instagram-manager", PendingConfig::default()).await;
    let (instance, customer) = (agent.id.0, agent.customer_id.0);
    let p = &h.pool;
    // Jobs: done long ago, done yesterday, failed long ago but still to be retried.
    exec(p, "DELETE FROM apalis.jobs").await;
    for (id, status, attempts, age) in [
        ("old-done", "Done", 1, "20 days"),
        ("young-done", "Done", 1, "1 day"),
        ("old-retrying", "Failed", 1, "20 days"),
        ("old-given-up", "Failed", 25, "20 days"),
    ] {
        exec(
            p,
            &format!(
                "INSERT INTO apalis.jobs (job, id, job_type, status, attempts, max_attempts, done_at)
                 VALUES ('\\x7b7d', '{id}', 'provision', '{status}', {attempts}, 25,
                         now() - interval '{age}')"
            ),
        )
        .await;
    }
    // Webhook events: settled and old, pending and old, settled and young (the endpoint also
    // subscribes to what the rows below cause: those events are young).
    exec(
        p,
        "INSERT INTO webhook_endpoints (id, url, secret)
         VALUES ('00000000-0000-0000-0000-0000000000e1', 'https://hooks.example/x', '\\x00')",
    )
    .await;
    for (id, state, age) in [
        (
            "00000000-0000-0000-0000-000000000001",
            "delivered",
            "40 days",
        ),
        ("00000000-0000-0000-0000-000000000002", "pending", "40 days"),
        ("00000000-0000-0000-0000-000000000003", "failed", "2 days"),
    ] {
        exec(
            p,
            &format!(
                "INSERT INTO webhook_events (id, type, body, created_at)
                 VALUES ('{id}', 'agent.running', '{{}}', now() - interval '{age}')"
            ),
        )
        .await;
        exec(
            p,
            &format!(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, state)
                 VALUES ('{id}', '00000000-0000-0000-0000-0000000000e1', '{state}')"
            ),
        )
        .await;
        exec(
            p,
            &format!(
                "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, duration_ms)
                 VALUES ('{id}', '00000000-0000-0000-0000-0000000000e1', 1, 5)"
            ),
        )
        .await;
    }
    // Messages: old, old but still polled for its reply, young.
    for (guid, polled, age) in [
        ("msg-old", false, "200 days"),
        ("msg-old-polled", true, "200 days"),
        ("msg-young", false, "10 days"),
    ] {
        exec(
            p,
            &format!(
                "INSERT INTO messages (wiro_guid, instance_id, customer_id, session, created_at,
                                       next_poll_at)
                 VALUES ('{guid}', '{instance}', '{customer}', 's', now() - interval '{age}',
                         CASE WHEN {polled} THEN now() ELSE NULL END)"
            ),
        )
        .await;
    }
    // Alerts: resolved long ago, open since long ago.
    exec(
        p,
        &format!(
            "INSERT INTO alerts (kind, subject, instance_id, resolved_at)
             VALUES ('credits_low', 'old-resolved', '{instance}', now() - interval '100 days'),
                    ('credits_low', 'old-open', '{instance}', NULL)"
        ),
    )
    .await;
    // Operations and audit: past the accounting retention, inside it, in doubt; the ledger.
    for (detail, kind, state, age) in [
        ("op-8y", "renew", "succeeded", "8 years"),
        ("op-1y", "renew", "succeeded", "1 year"),
        ("op-8y-in-doubt", "upgrade", "unknown", "8 years"),
        ("send-old", "message_send", "succeeded", "200 days"),
    ] {
        exec(
            p,
            &format!(
                "INSERT INTO operations (id, instance_id, kind, state, worker, lease_until,
                                         detail, started_at, finished_at)
                 VALUES ('{}', '{instance}', '{kind}', '{state}', 'test', now(),
                         '{{\"name\": \"{detail}\"}}', now() - interval '{age}',
                         now() - interval '{age}')",
                Uuid::new_v4()
            ),
        )
        .await;
    }
    exec(
        p,
        "INSERT INTO audit_log (at, actor, action, outcome)
         VALUES (now() - interval '8 years', 'ops:x', 'audit-8y', 'ok'),
                (now() - interval '1 year', 'ops:x', 'audit-1y', 'ok')",
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO ledger_entries (customer_id, instance_id, kind, amount_cents, reference,
                                         created_at)
             VALUES ('{customer}', '{instance}', 'renewal', 900, 'renewal:ancient',
                     now() - interval '9 years')"
        ),
    )
    .await;

    let report = worker::sweeps::purge::run(&h.ctx).await.unwrap();

    assert_eq!(
        texts(p, "SELECT id FROM apalis.jobs").await,
        ["old-retrying", "young-done"],
        "{report:?}"
    );
    assert_eq!(
        texts(
            p,
            "SELECT id::text FROM webhook_events WHERE id::text LIKE '00000000-%'"
        )
        .await,
        [
            "00000000-0000-0000-0000-000000000002",
            "00000000-0000-0000-0000-000000000003"
        ]
    );
    assert_eq!(
        texts(p, "SELECT DISTINCT event_id::text FROM webhook_attempts WHERE event_id::text LIKE '00000000-%'").await,
        [
            "00000000-0000-0000-0000-000000000002",
            "00000000-0000-0000-0000-000000000003"
        ],
        "attempts go with their event"
    );
    assert_eq!(
        texts(p, "SELECT wiro_guid FROM messages").await,
        ["msg-old-polled", "msg-young"]
    );
    assert_eq!(texts(p, "SELECT subject FROM alerts").await, ["old-open"]);
    assert_eq!(
        texts(
            p,
            "SELECT detail->>'name' FROM operations WHERE detail ? 'name'"
        )
        .await,
        ["op-1y", "op-8y-in-doubt"]
    );
    assert!(
        texts(p, "SELECT action FROM audit_log")
            .await
            .contains(&"audit-1y".to_owned())
            && !texts(p, "SELECT action FROM audit_log")
                .await
                .contains(&"audit-8y".to_owned())
    );
    assert_eq!(
        texts(
            p,
            "SELECT reference FROM ledger_entries WHERE reference = 'renewal:ancient'"
        )
        .await,
        ["renewal:ancient"],
        "the ledger is never purged"
    );
    assert_eq!(report.finished_jobs, 2);
}

/// Runs one schedule tick of `kinds` through the queue and the real worker, and waits for the
/// jobs to finish.
async fn tick(h: &Harness, at: i64, kinds: &[SweepKind]) {
    for kind in kinds {
        assert!(jobs::enqueue_sweep(&h.pool, *kind, at).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM apalis.jobs
             WHERE job_type = 'sweeps' AND status NOT IN ('Done', 'Killed')",
        )
        .fetch_one(&h.pool)
        .await
        .unwrap();
        if open == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweeps of tick {at} never finished"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn over_a_simulated_year_of_sweeps_the_operational_tables_stay_flat(pool: PgPool) {
    let h = harness(pool).await;
    let ctx = context_with(&h, "year-worker", |s| {
        s.retention.finished_jobs = Duration::from_secs(14 * 86_400);
    });
    let (_stop, _worker) = spawn_worker(&ctx);
    let agent = running_order(
        &h,
        "yearly",
        "email-assistant",
        Plan::Pro,
        PendingConfig::default(),
    )
    .await;
    let kinds = [
        SweepKind::Reconcile,
        SweepKind::Renewals,
        SweepKind::Topups,
        SweepKind::Settle,
        SweepKind::Stuck,
        SweepKind::Purge,
    ];
    let mut jobs_by_week = Vec::new();
    for week in 1..=52_i64 {
        // A week passes upstream and on our business clock; the sweeps of its ticks run.
        h.sim.sim().advance_days(7);
        domain::db::clock::advance(&h.pool, Duration::from_secs(7 * 86_400))
            .await
            .unwrap();
        tick(&h, week, &kinds).await;
        jobs_by_week.push(count(&h.pool, "apalis.jobs").await);
    }
    // Every tick leaves its jobs (and restarts leave provisioning jobs); what finished more
    // than 14 days ago goes: never more than three weeks of ticks. Without the purge the
    // table grows by at least six rows a week.
    let bound = 3 * kinds.len() as i64 + 2;
    assert!(
        jobs_by_week.iter().all(|n| *n <= bound),
        "apalis.jobs kept growing past {bound}: {jobs_by_week:?}"
    );
    // The money stays: a year of renewals, each once, in our ledger as in Wiro's.
    wait_for(&h.pool, agent.id, &[InstanceState::Running], SETTLE).await;
    let renewals: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ledger_entries WHERE kind = 'renewal' AND instance_id = $1",
    )
    .bind(agent.id.0)
    .fetch_one(&h.pool)
    .await
    .unwrap();
    assert!(renewals >= 11, "renewals booked: {renewals}");
    assert_ledgers_match(&h).await;
}
