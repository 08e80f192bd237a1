//! The health state machine and the runner. Every check has an interval, a
//! timeout and failure/success thresholds; its state is `healthy`,
//! `degraded`, `failed` or `unknown`, with the time it last changed and the
//! last error. Checks run concurrently, each bounded by its own timeout, so
//! one slow check never delays the others.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::outcome::{CheckResult, Observation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Healthy,
    Unknown,
    Degraded,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Unknown => "unknown",
            State::Degraded => "degraded",
            State::Failed => "failed",
        }
    }
}

/// How often and how patiently a check runs, and how many results in a row
/// it takes to change its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub interval: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

/// A check's current state and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckStatus {
    pub name: String,
    pub kind: String,
    pub state: State,
    /// When the state last changed (RFC 3339, UTC).
    pub since: String,
    /// What the last run saw.
    pub detail: String,
    /// The last failure or reason the check could not run, if any.
    pub last_error: Option<String>,
    pub duration_ms: u64,
    #[serde(skip, default)]
    failures: u32,
    #[serde(skip, default)]
    successes: u32,
}

/// A state change, for the structured log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub name: String,
    pub from: State,
    pub to: State,
    pub detail: String,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl CheckStatus {
    pub fn new(name: &str, kind: &str, now: SystemTime) -> Self {
        CheckStatus {
            name: name.to_string(),
            kind: kind.to_string(),
            state: State::Unknown,
            since: rfc3339(now),
            detail: "not checked yet".to_string(),
            last_error: None,
            duration_ms: 0,
            failures: 0,
            successes: 0,
        }
    }

    fn bad(&mut self, bad: State, detail: String, policy: &Policy) -> State {
        self.failures += 1;
        self.successes = 0;
        self.detail = detail.clone();
        self.last_error = Some(detail);
        if self.state == State::Unknown || self.failures >= policy.failure_threshold {
            bad
        } else {
            self.state
        }
    }

    /// Feeds one result through the state machine. From `unknown` the first
    /// result decides at once (a node reports its state on the first pass);
    /// between known states, `failure_threshold` bad results in a row are
    /// needed to leave `healthy`, and `success_threshold` good ones to return.
    pub fn record(
        &mut self,
        result: CheckResult,
        policy: &Policy,
        took: Duration,
        now: SystemTime,
    ) -> Option<Transition> {
        self.duration_ms = took.as_millis().min(u128::from(u64::MAX)) as u64;
        let target = match result {
            Ok(Observation::Ok(detail)) => {
                self.successes += 1;
                self.failures = 0;
                self.detail = detail;
                let enough =
                    self.state == State::Unknown || self.successes >= policy.success_threshold;
                if enough {
                    State::Healthy
                } else {
                    self.state
                }
            }
            Ok(Observation::Warn(detail)) => self.bad(State::Degraded, detail, policy),
            Ok(Observation::Fail(detail)) => self.bad(State::Failed, detail, policy),
            Err(reason) => {
                // The checker broke: we do not know, whatever we thought before.
                self.failures = 0;
                self.successes = 0;
                self.detail = reason.clone();
                self.last_error = Some(reason);
                State::Unknown
            }
        };
        if target == self.state {
            return None;
        }
        let from = self.state;
        self.state = target;
        self.since = rfc3339(now);
        Some(Transition {
            name: self.name.clone(),
            from,
            to: target,
            detail: self.detail.clone(),
        })
    }
}

/// The worst state wins; all healthy is healthy.
pub fn overall<'a>(states: impl IntoIterator<Item = &'a State>) -> State {
    states.into_iter().copied().max().unwrap_or(State::Unknown)
}

/// Runs `probe` under `timeout`; a probe that does not answer in time has
/// failed (a hung service is a broken one).
pub async fn run_bounded<F>(probe: F, timeout: Duration) -> (CheckResult, Duration)
where
    F: std::future::Future<Output = CheckResult>,
{
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, probe).await {
        Ok(r) => r,
        Err(_) => Ok(Observation::Fail(format!(
            "no answer within {} s",
            timeout.as_secs_f64()
        ))),
    };
    (result, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        failure_threshold: 3,
        success_threshold: 2,
    };

    fn step(c: &mut CheckStatus, r: CheckResult) -> Option<(State, State)> {
        c.record(r, &POLICY, Duration::from_millis(1), SystemTime::now())
            .map(|t| (t.from, t.to))
    }

    #[test]
    fn thresholds_damp_flapping_and_unknown_decides_at_once() {
        let mut c = CheckStatus::new("db", "postgres", SystemTime::UNIX_EPOCH);
        assert_eq!(c.state, State::Unknown);
        assert_eq!(
            step(&mut c, Ok(Observation::Ok("primary".into()))),
            Some((State::Unknown, State::Healthy))
        );
        // Two failures are not enough to leave healthy; the third is.
        assert_eq!(step(&mut c, Ok(Observation::Fail("refused".into()))), None);
        assert_eq!(step(&mut c, Ok(Observation::Fail("refused".into()))), None);
        assert_eq!(c.state, State::Healthy);
        assert_eq!(
            step(&mut c, Ok(Observation::Fail("refused".into()))),
            Some((State::Healthy, State::Failed))
        );
        assert_eq!(c.last_error.as_deref(), Some("refused"));
        // One success is not enough to come back; two are.
        assert_eq!(step(&mut c, Ok(Observation::Ok("primary".into()))), None);
        assert_eq!(
            step(&mut c, Ok(Observation::Ok("primary".into()))),
            Some((State::Failed, State::Healthy))
        );
        // A checker that cannot run makes the state unknown at once.
        assert_eq!(
            step(&mut c, Err("no D-Bus".into())),
            Some((State::Healthy, State::Unknown))
        );
        assert_eq!(
            step(&mut c, Ok(Observation::Warn("92 % used".into()))),
            Some((State::Unknown, State::Degraded))
        );
    }

    #[test]
    fn overall_is_the_worst() {
        assert_eq!(overall(&[State::Healthy, State::Healthy]), State::Healthy);
        assert_eq!(overall(&[State::Healthy, State::Unknown]), State::Unknown);
        assert_eq!(overall(&[State::Unknown, State::Degraded]), State::Degraded);
        assert_eq!(overall(&[State::Degraded, State::Failed]), State::Failed);
    }

    #[tokio::test]
    async fn a_hung_probe_fails_at_its_timeout() {
        let (r, took) = run_bounded(
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(Observation::Ok("late".into()))
            },
            Duration::from_millis(100),
        )
        .await;
        assert!(matches!(r, Ok(Observation::Fail(ref d)) if d.contains("no answer")));
        assert!(took < Duration::from_secs(5));
    }
}
