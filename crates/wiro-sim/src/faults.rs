//! Fault injection: added latency, HTTP errors, and "apply the call, then drop the response" —
//! the failure that makes exactly-once hard, since the caller cannot tell it from a refusal.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// What a rule does when it fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// Answer `status` without doing the work (503 and 429 are the usual ones).
    Error,
    /// Wait `latency_ms`, then behave normally.
    Latency,
    /// Do the work, then close the connection without answering.
    DropResponse,
    /// Do the work, then wait `latency_ms` before answering (a caller killed or frozen in that
    /// window has spent the money without hearing so).
    StallResponse,
    /// Close the connection without answering and do the work `latency_ms` later: an upstream
    /// that applies a call after its caller gave up on it.
    LateApply,
    /// `UserAgent/MyAgents` hides instances created less than `latency_ms` ago (a list that
    /// lags behind writes), for as long as the rule is set.
    ListLag,
    /// Answer HTTP 429 (without doing the work) to every call above `rate_per_s` calls in the
    /// last second; the calls it lets through count, the refused ones do not.
    RateLimit,
}

/// A rule as posted to `POST /admin/faults`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FaultSpec {
    /// Endpoint path such as `UserAgent/Deploy`, or `*` for every endpoint.
    pub endpoint: String,
    /// What to do.
    pub mode: FaultMode,
    /// HTTP status for `error` (default 503).
    #[serde(default)]
    pub status: Option<u16>,
    /// Delay for `latency`.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Fire with this probability (0..=1) ...
    #[serde(default)]
    pub probability: Option<f64>,
    /// ... or for the next `count` matching calls. With neither, the rule always fires.
    #[serde(default)]
    pub count: Option<u64>,
    /// Calls per second `rate_limit` lets through.
    #[serde(default)]
    pub rate_per_s: Option<u32>,
}

impl FaultSpec {
    /// `mode` on `endpoint` (`*` for every endpoint), always firing, with no parameters yet.
    pub fn new(endpoint: &str, mode: FaultMode) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            mode,
            status: None,
            latency_ms: None,
            probability: None,
            count: None,
            rate_per_s: None,
        }
    }

    /// Every call to `endpoint` (`*` for every endpoint) waits `ms` before it is answered.
    pub fn latency(endpoint: &str, ms: u64) -> Self {
        Self {
            latency_ms: Some(ms),
            ..Self::new(endpoint, FaultMode::Latency)
        }
    }

    /// `rate_limit` on every endpoint: HTTP 429 beyond `per_s` calls a second.
    pub fn rate_limit(per_s: u32) -> Self {
        Self {
            endpoint: "*".into(),
            mode: FaultMode::RateLimit,
            status: None,
            latency_ms: None,
            probability: None,
            count: None,
            rate_per_s: Some(per_s),
        }
    }

    /// Checks the numbers make sense; the message names the bad field.
    ///
    /// # Errors
    /// A text naming the field that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoint.trim().is_empty() {
            return Err("endpoint must name a path such as UserAgent/Deploy, or *".into());
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probability must be between 0 and 1, got {p}"));
        }
        if let Some(s) = self.status
            && !(400..=599).contains(&s)
        {
            return Err(format!(
                "status must be an HTTP error status (400-599), got {s}"
            ));
        }
        if matches!(
            self.mode,
            FaultMode::Latency
                | FaultMode::StallResponse
                | FaultMode::LateApply
                | FaultMode::ListLag
        ) && self.latency_ms.is_none()
        {
            return Err(
                "latency_ms is required for modes latency, stall_response, late_apply and list_lag"
                    .into(),
            );
        }
        if self.mode == FaultMode::RateLimit && self.rate_per_s.is_none_or(|n| n == 0) {
            return Err("rate_per_s (at least 1) is required for mode rate_limit".into());
        }
        if self.mode == FaultMode::ListLag && self.endpoint != "UserAgent/MyAgents" {
            return Err("list_lag applies only to endpoint UserAgent/MyAgents".into());
        }
        Ok(())
    }
}

/// A stored rule.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRule {
    /// Id for listing.
    pub id: u64,
    /// The rule.
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// How many times it fired (for `rate_limit`: calls refused with 429).
    pub fired: u64,
    /// `rate_limit`: when the calls let through in the last second arrived.
    #[serde(skip)]
    admitted: std::collections::VecDeque<std::time::Instant>,
}

/// What the server must do for one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Sleep before handling.
    pub latency_ms: u64,
    /// Answer this status instead of handling.
    pub error_status: Option<u16>,
    /// Handle, then drop the connection.
    pub drop_response: bool,
    /// Handle, then sleep before answering.
    pub stall_after_ms: u64,
    /// Drop the connection now and handle the call this much later.
    pub late_apply_ms: Option<u64>,
    /// MyAgents hides instances younger than this.
    pub list_lag_ms: u64,
}

/// The active rules.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    next_id: u64,
}

impl Faults {
    /// Adds a rule; returns its id.
    pub fn add(&mut self, spec: FaultSpec) -> u64 {
        self.next_id += 1;
        self.rules.push(FaultRule {
            id: self.next_id,
            spec,
            fired: 0,
            admitted: std::collections::VecDeque::new(),
        });
        self.next_id
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules, for `GET /admin/faults`.
    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.clone()
    }

    /// Decides the faults for one call of `endpoint`. Latencies add up; the first firing error or
    /// drop rule wins. Count-limited rules are used up as they fire and then removed.
    pub fn plan(&mut self, endpoint: &str) -> FaultPlan {
        let mut plan = FaultPlan::default();
        let mut rng = rand::rng();
        for rule in &mut self.rules {
            let spec = &rule.spec;
            if spec.endpoint != "*" && spec.endpoint != endpoint {
                continue;
            }
            let blocking = matches!(
                spec.mode,
                FaultMode::Error
                    | FaultMode::DropResponse
                    | FaultMode::LateApply
                    | FaultMode::RateLimit
            );
            if blocking
                && (plan.error_status.is_some()
                    || plan.drop_response
                    || plan.late_apply_ms.is_some())
            {
                continue;
            }
            if spec.mode == FaultMode::RateLimit {
                // A sliding one-second window of the calls let through.
                let now = std::time::Instant::now();
                let second = std::time::Duration::from_secs(1);
                while rule
                    .admitted
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= second)
                {
                    rule.admitted.pop_front();
                }
                if rule.admitted.len() >= spec.rate_per_s.unwrap_or(1) as usize {
                    rule.fired += 1;
                    plan.error_status = Some(429);
                } else {
                    rule.admitted.push_back(now);
                }
                continue;
            }
            let fires = match (spec.count, spec.probability) {
                (Some(0), _) => false,
                (Some(_), _) => true,
                (None, Some(p)) => rng.random::<f64>() < p,
                (None, None) => true,
            };
            if !fires {
                continue;
            }
            rule.fired += 1;
            if let Some(n) = rule.spec.count.as_mut() {
                *n -= 1;
            }
            match rule.spec.mode {
                FaultMode::Latency => plan.latency_ms += rule.spec.latency_ms.unwrap_or(0),
                FaultMode::Error => plan.error_status = Some(rule.spec.status.unwrap_or(503)),
                FaultMode::DropResponse => plan.drop_response = true,
                FaultMode::StallResponse => {
                    plan.stall_after_ms += rule.spec.latency_ms.unwrap_or(0)
                }
                FaultMode::LateApply => {
                    plan.late_apply_ms = Some(rule.spec.latency_ms.unwrap_or(0))
                }
                FaultMode::ListLag => {
                    plan.list_lag_ms = plan.list_lag_ms.max(rule.spec.latency_ms.unwrap_or(0))
                }
                FaultMode::RateLimit => {} // decided above
            }
        }
        self.rules.retain(|r| r.spec.count != Some(0));
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(endpoint: &str, mode: FaultMode, count: Option<u64>) -> FaultSpec {
        FaultSpec {
            endpoint: endpoint.into(),
            mode,
            status: Some(503),
            latency_ms: Some(20),
            probability: None,
            count,
            rate_per_s: None,
        }
    }

    #[test]
    fn rate_limit_lets_n_calls_a_second_through_and_refuses_the_rest_with_429() {
        let mut faults = Faults::default();
        let mut limit = spec("*", FaultMode::RateLimit, None);
        limit.rate_per_s = Some(3);
        assert!(limit.validate().is_ok());
        faults.add(limit);
        let answers: Vec<Option<u16>> = (0..5)
            .map(|_| faults.plan("UserAgent/Detail").error_status)
            .collect();
        assert_eq!(answers, [None, None, None, Some(429), Some(429)]);
        assert_eq!(faults.list()[0].fired, 2);
        let mut unset = spec("*", FaultMode::RateLimit, None);
        unset.rate_per_s = None;
        assert!(unset.validate().unwrap_err().contains("rate_per_s"));
    }

    #[test]
    fn a_counted_rule_fires_exactly_count_times_then_disappears() {
        let mut faults = Faults::default();
        faults.add(spec("UserAgent/Deploy", FaultMode::DropResponse, Some(2)));
        assert!(faults.plan("UserAgent/Deploy").drop_response);
        assert!(!faults.plan("UserAgent/Detail").drop_response);
        assert!(faults.plan("UserAgent/Deploy").drop_response);
        assert!(!faults.plan("UserAgent/Deploy").drop_response);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn latency_adds_up_and_the_first_error_wins() {
        let mut faults = Faults::default();
        faults.add(spec("*", FaultMode::Latency, None));
        faults.add(spec("Agent/List", FaultMode::Latency, None));
        faults.add(spec("Agent/List", FaultMode::Error, Some(1)));
        faults.add(spec("Agent/List", FaultMode::DropResponse, Some(1)));
        let plan = faults.plan("Agent/List");
        assert_eq!(plan.latency_ms, 40);
        assert_eq!(plan.error_status, Some(503));
        assert!(!plan.drop_response);
        assert!(faults.plan("Agent/List").drop_response);
    }

    #[test]
    fn late_apply_blocks_like_a_drop_and_list_lag_only_fits_my_agents() {
        let mut faults = Faults::default();
        faults.add(spec("UserAgent/Deploy", FaultMode::LateApply, Some(1)));
        faults.add(spec("UserAgent/Deploy", FaultMode::DropResponse, Some(1)));
        let plan = faults.plan("UserAgent/Deploy");
        assert_eq!(plan.late_apply_ms, Some(20));
        assert!(!plan.drop_response);
        let lag = spec("UserAgent/Detail", FaultMode::ListLag, None);
        assert!(lag.validate().unwrap_err().contains("MyAgents"));
        let mut faults = Faults::default();
        faults.add(spec("UserAgent/MyAgents", FaultMode::ListLag, None));
        assert_eq!(faults.plan("UserAgent/MyAgents").list_lag_ms, 20);
        assert_eq!(faults.plan("UserAgent/MyAgents").list_lag_ms, 20);
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut bad = spec("x", FaultMode::Error, None);
        bad.probability = Some(1.5);
        assert!(bad.validate().unwrap_err().contains("probability"));
    }
}
