//! `reseller status`: agents by state, failed jobs, open alerts and the wallet forecast, read
//! from the database.

use std::fmt::Write;

use anyhow::Context;

use crate::runtime;

/// Prints the tables (to a closed pipe, e.g. `| head`, quietly stops).
///
/// # Errors
/// When the database cannot be read.
pub async fn run(
    settings: &domain::Settings,
    days: i64,
    watch: Option<std::time::Duration>,
) -> anyhow::Result<()> {
    let pool = runtime::pool(settings, 2, settings.database.worker_acquire_timeout).await?;
    runtime::require_migrated(&pool).await?;
    let Some(every) = watch else {
        return crate::print_stdout(&report(&pool, days).await?);
    };
    // Redrawn in place on a terminal; appended with a timestamp otherwise (a log, a pipe).
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        let text = report(&pool, days).await?;
        let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC");
        let frame = if terminal {
            format!(
                "\x1b[2J\x1b[H{now} (every {}; Ctrl-C stops)\n\n{text}",
                humantime::format_duration(every)
            )
        } else {
            format!("--- {now}\n{text}")
        };
        crate::print_stdout(&frame)?;
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = runtime::shutdown_signal() => return Ok(()),
        }
    }
}

/// The tables, as text.
async fn report(pool: &sqlx::PgPool, days: i64) -> anyhow::Result<String> {
    let pool = pool.clone();
    let by_state = domain::db::instances::count_by_state(&pool).await?;
    let mut out = String::new();
    writeln!(out, "{:<24} {:>8}", "AGENT STATE", "COUNT")?;
    for state in domain::model::InstanceState::ALL {
        let count = by_state
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, c)| *c);
        writeln!(out, "{:<24} {count:>8}", state.as_str())?;
    }
    let failed: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT job_type, status, count(*) FROM apalis.jobs WHERE status IN ('Failed', 'Killed') GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&pool)
    .await
    .context("reading apalis.jobs (has the worker run its migrations?)")?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<10} {:>8}",
        "FAILED JOBS (QUEUE)", "STATUS", "COUNT"
    )?;
    if failed.is_empty() {
        writeln!(out, "{:<24} {:<10} {:>8}", "-", "-", 0)?;
    }
    for (queue, status, count) in failed {
        writeln!(out, "{queue:<24} {status:<10} {count:>8}")?;
    }
    let alerts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, count(*) FROM alerts WHERE resolved_at IS NULL GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    writeln!(out)?;
    writeln!(out, "{:<24} {:>8}", "OPEN ALERTS", "COUNT")?;
    if alerts.is_empty() {
        writeln!(out, "{:<24} {:>8}", "-", 0)?;
    }
    for (kind, count) in alerts {
        writeln!(out, "{kind:<24} {count:>8}")?;
    }
    let forecast = domain::forecast::forecast(&pool, days, None).await?;
    writeln!(out)?;
    writeln!(out, "WALLET FORECAST, NEXT {days} DAYS")?;
    writeln!(
        out,
        "  renewals due      {:>6}   ${:>10.2}",
        forecast.renewals.len(),
        forecast.renewals_cents as f64 / 100.0
    )?;
    writeln!(
        out,
        "  parked (expired)  {:>6}   ${:>10.2}",
        forecast.parked.len(),
        forecast.parked_cents as f64 / 100.0
    )?;
    writeln!(
        out,
        "  wallet must hold           ${:>10.2}",
        forecast.total_cents as f64 / 100.0
    )?;
    Ok(out)
}
