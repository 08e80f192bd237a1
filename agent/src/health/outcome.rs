//! What one run of a check found. "The check failed" (an observation) is
//! kept apart from "the checker broke" (an error: the check could not run,
//! e.g. no D-Bus or no library), which makes the check `unknown`.

/// The result of one run of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// All is well; the detail says what was seen ("primary", "42 % used").
    Ok(String),
    /// Working, but needs attention (disk nearly full, standby lagging).
    Warn(String),
    /// Not working.
    Fail(String),
}

/// `Err` carries why the check could not run at all.
pub type CheckResult = Result<Observation, String>;
