//! The deployment's upstream rate budget (`wiro.rate_budget_per_s`), shared by every api and
//! worker process through Postgres. Twice a second each process reports its demand — the
//! calls it sent in the last second, or "as many as it may" when callers had to wait — and
//! takes its share by max-min fairness over every live member's demand: a process that needs
//! less than an equal part gets what it needs (with headroom to grow), the busy ones split the
//! rest evenly. A share never takes more than the other members hold unused (reports are
//! taken one at a time, under a lock), so the shares never add up to more than the budget: a busy
//! newcomer gets its part as the others give theirs back at their next reports. A process
//! that stops reporting stops counting after three periods (1.5 s); its own share lapses
//! after two, so no two processes count the same part of the budget.

use std::sync::Arc;
use std::time::Duration;

use domain::db::budget::{self, Member};
use sqlx::PgPool;
use wiro_client::Throttle;

/// How often a process reports and takes its share.
pub const PERIOD: Duration = Duration::from_millis(500);

/// The demand of a process with callers waiting: as many calls as it is let make.
pub const SATURATED: f64 = 1e9;

/// What a member with `demand` asks for: a quarter more than it uses and one call a second,
/// so it can grow (and an idle process answers its first call at once).
fn wants(demand: f64) -> f64 {
    demand * 1.25 + 1.0
}

/// The fair share of a member wanting `own` among every live member's demand (`own` among
/// them): max-min fairness ("water filling") over what each wants.
pub fn fair_share(budget: f64, own: f64, demands: &[f64]) -> f64 {
    let mut wanted: Vec<f64> = demands.iter().copied().map(wants).collect();
    if wanted.is_empty() {
        wanted.push(wants(own));
    }
    wanted.sort_by(f64::total_cmp);
    let mut remaining = budget;
    let mut left = wanted.len() as f64;
    for want in &wanted {
        let fair = remaining / left;
        if *want > fair {
            // The water level: every member wanting more gets this much.
            return wants(own).min(fair);
        }
        remaining -= want;
        left -= 1.0;
    }
    wants(own)
}

/// `me`'s share: its fair share, but no more than the others leave of the budget.
pub fn share(budget: f64, me: &str, members: &[Member]) -> f64 {
    let demands: Vec<f64> = members.iter().map(|m| m.demand).collect();
    let own = members
        .iter()
        .find(|m| m.member == me)
        .map_or(0.0, |m| m.demand);
    let held: f64 = members
        .iter()
        .filter(|m| m.member != me)
        .map(|m| m.share)
        .sum();
    fair_share(budget, own, &demands).min((budget - held).max(0.0))
}

/// Keeps `throttle`'s share of `budget` current until `stop` resolves, then leaves the budget.
/// Until the first report the share is nothing.
pub async fn keep_share(
    pool: PgPool,
    throttle: Arc<Throttle>,
    member: String,
    budget: f64,
    stop: impl std::future::Future<Output = ()>,
) {
    throttle.set_share(Some(0.0));
    let sync = async {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let view = throttle.view();
            let demand = if throttle.take_waited() || view.waiting > 0 {
                SATURATED
            } else {
                view.sent_last_second as f64
            };
            let decide = |members: &[Member]| share(budget, &member, members);
            // Held for two periods from before the report: the others count it for three
            // from when it was written, so it lapses here before they take it back.
            let asked = tokio::time::Instant::now();
            match budget::report(&pool, &member, demand, PERIOD * 3, decide).await {
                Ok(taken) => {
                    let valid = (PERIOD * 2).saturating_sub(asked.elapsed());
                    throttle.lease_share(taken, valid);
                }
                // The last share lapses on its own: the others will take it back.
                Err(e) => tracing::warn!(error = %e, "upstream budget: could not report"),
            }
        }
    };
    tokio::select! {
        () = sync => {}
        () = stop => {}
    }
    if let Err(e) = budget::leave(&pool, &member).await {
        tracing::warn!(error = %e, "upstream budget: could not leave");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, demand: f64, share: f64) -> Member {
        Member {
            member: name.into(),
            demand,
            share,
        }
    }

    #[test]
    fn busy_processes_split_what_idle_ones_leave() {
        let demands = [SATURATED, SATURATED, 3.0];
        let shares: Vec<f64> = demands
            .iter()
            .map(|d| fair_share(100.0, *d, &demands))
            .collect();
        let sum: f64 = shares.iter().sum();
        assert!((sum - 100.0).abs() < 1e-9, "{shares:?}");
        assert!(
            (shares[2] - wants(3.0)).abs() < 1e-9,
            "the idle one gets what it uses"
        );
        assert!(
            (shares[0] - shares[1]).abs() < 1e-9,
            "the busy ones split evenly"
        );
        assert!((fair_share(40.0, SATURATED, &[SATURATED]) - 40.0).abs() < 1e-9);
    }

    #[test]
    fn a_newcomer_takes_only_what_the_others_leave_until_they_give_it_back() {
        // One busy process holds the whole budget; a second one becomes busy.
        let mut members = vec![member("a", SATURATED, 40.0), member("b", SATURATED, 0.0)];
        let b = share(40.0, "b", &members);
        assert_eq!(b, 0.0, "nothing is left yet");
        members[1].share = b;
        let a = share(40.0, "a", &members);
        assert!((a - 20.0).abs() < 1e-9, "a gives half back: {a}");
        members[0].share = a;
        let b = share(40.0, "b", &members);
        assert!((b - 20.0).abs() < 1e-9, "and b takes it: {b}");
        members[1].share = b;
        let total: f64 = members.iter().map(|m| m.share).sum();
        assert!(total <= 40.0 + 1e-9);
    }
}
