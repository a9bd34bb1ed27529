//! The deployment's shared upstream rate budget: each process reports its demand and records
//! the share it takes (`upstream_budget_members`).

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Result;

/// A live member as the others see it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct Member {
    /// Its name (the process's worker name).
    pub member: String,
    /// Calls per second it wants.
    pub demand: f64,
    /// The share it holds now.
    pub share: f64,
}

/// Records `member`'s `demand`, then — under a lock that lets one report decide at a time —
/// lets `decide` pick its share from the live members (itself included) and
/// records it. Members silent for longer than `live` do not count; after a minute they are
/// deleted. Returns the share.
///
/// # Errors
/// Database errors.
pub async fn report(
    pool: &PgPool,
    member: &str,
    demand: f64,
    live: Duration,
    decide: impl FnOnce(&[Member]) -> f64,
) -> Result<f64> {
    let mut tx = pool.begin().await?;
    // One report at a time, deployment-wide, taken before any row: each report writes its own
    // row and then locks every live one, so two overlapping reports locking rows in different
    // orders deadlocked (Postgres aborts one after `deadlock_timeout`, and that process's
    // share lapses); and a newcomer's first row would be invisible to a report deciding at
    // the same moment.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('wiro-reseller: upstream budget report'))")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO upstream_budget_members (member, demand) VALUES ($1, $2)
         ON CONFLICT (member) DO UPDATE SET demand = EXCLUDED.demand, seen_at = now()",
    )
    .bind(member)
    .bind(demand.max(0.0))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM upstream_budget_members WHERE seen_at < now() - interval '1 minute'")
        .execute(&mut *tx)
        .await?;
    let members: Vec<Member> = sqlx::query_as(
        "SELECT member, demand, share FROM upstream_budget_members
         WHERE seen_at > now() - make_interval(secs => $1)
         ORDER BY member FOR UPDATE",
    )
    .bind(live.as_secs_f64())
    .fetch_all(&mut *tx)
    .await?;
    let share = decide(&members).max(0.0);
    sqlx::query("UPDATE upstream_budget_members SET share = $2 WHERE member = $1")
        .bind(member)
        .bind(share)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(share)
}

/// Forgets `member` (a process shutting down hands its share back at once).
///
/// # Errors
/// Database errors.
pub async fn leave(pool: &PgPool, member: &str) -> Result<()> {
    sqlx::query("DELETE FROM upstream_budget_members WHERE member = $1")
        .bind(member)
        .execute(pool)
        .await?;
    Ok(())
}
