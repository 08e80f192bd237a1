//! systemd unit check over D-Bus: load state, ActiveState/SubState, restart
//! count and the result of the last run of a unit, turned into what an
//! operator needs to read.
//!
//! Talks to `org.freedesktop.systemd1` on the shared [`Bus`] with small
//! proxies of its own on `zbus` (tokio): `Manager.LoadUnit` for the unit's object, then one
//! `Properties.GetAll` on `org.freedesktop.systemd1.Unit`, so that
//! ActiveState and SubState come from one snapshot (separate reads of a
//! crash-looping unit give pairs like "activating (running)"), then the
//! type-specific `Result` and, for services, `NRestarts` and the main
//! process's exit.
//!
//! [`failed_units`] asks `Manager.ListUnitsFiltered(["failed"])` for every
//! unit of the node in the `failed` state, whatever the role.
//!
//! The checks have no timeout of their own: the engine bounds every check.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::dbus::Bus;
use super::outcome::{CheckResult, Observation};

const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

/// Unit types systemd knows, by suffix, with the interface that carries
/// their `Result` property (`None`: the type has none).
const UNIT_TYPES: [(&str, Option<&str>); 11] = [
    ("service", Some(SERVICE_IFACE)),
    ("socket", Some("org.freedesktop.systemd1.Socket")),
    ("target", None),
    ("device", None),
    ("mount", Some("org.freedesktop.systemd1.Mount")),
    ("automount", Some("org.freedesktop.systemd1.Automount")),
    ("swap", Some("org.freedesktop.systemd1.Swap")),
    ("timer", Some("org.freedesktop.systemd1.Timer")),
    ("path", Some("org.freedesktop.systemd1.Path")),
    ("slice", None),
    ("scope", Some("org.freedesktop.systemd1.Scope")),
];

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    /// The unit's object, loading it from disk when it is not in memory
    /// (`GetUnit` answers "not loaded" for an inactive unit systemd has
    /// garbage-collected; `LoadUnit` gives its states, or `not-found`).
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    /// The loaded units in one of `states` (ActiveState, LoadState or
    /// SubState values), as `systemctl list-units --state=` lists them.
    fn list_units_filtered(&self, states: &[&str]) -> zbus::Result<Vec<ListedUnit>>;

    /// Restarts the unit, or starts it if it is not running.
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
}

/// One row of `ListUnits`: name, description, load, active and sub state,
/// follower, object path, job id, job type, job path.
type ListedUnit = (
    String,
    String,
    String,
    String,
    String,
    String,
    OwnedObjectPath,
    u32,
    String,
    OwnedObjectPath,
);

#[zbus::proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Properties {
    fn get(&self, interface: &str, name: &str) -> zbus::Result<OwnedValue>;
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
}

/// ActiveState/SubState/NRestarts of `unit` (a unit name; one without a
/// type suffix is taken as a `.service`, as `systemctl` does).
///
/// - `Ok("active (running)")`; `Warn("active (running), restarted N times")`
///   when systemd has restarted it since it was last started by hand;
/// - `Warn` while it starts, reloads or stops (`"activating (start) since …"`);
/// - `Fail` when it is inactive or failed (`"failed (failed) since …:
///   exit-code, status 3"`), waiting to be restarted after a crash, not
///   found, masked or not loadable;
/// - `Err` when the question cannot be asked: no bus, systemd not on it,
///   access denied, a reply that is not what systemd sends.
pub async fn check(bus: &Bus, unit: &str) -> CheckResult {
    let name = &unit_name(unit);
    match ask(bus, |conn| async move { query(&conn, name).await }).await? {
        Ok(Answer::State(state)) => Ok(observe(name, &state)),
        Ok(Answer::Refused(why)) => Ok(Observation::Fail(format!("unit {name:?}: {why}"))),
        Err(failure) => Err(failure.describe(&bus.name())),
    }
}

/// Every unit of the node that systemd holds as `failed`: `Ok("none")`, or
/// `Fail("2 failed units: a.service, b.mount")` (sorted; `systemctl
/// reset-failed UNIT` clears one once dealt with). `Err` as for [`check`].
pub async fn failed_units(bus: &Bus) -> CheckResult {
    let listed = ask(bus, |conn| async move { list_failed(&conn).await }).await?;
    let mut names = listed.map_err(|failure| failure.describe(&bus.name()))?;
    names.sort();
    names.dedup();
    Ok(match names.len() {
        0 => Observation::Ok("none".into()),
        1 => Observation::Fail(format!("1 failed unit: {}", names[0])),
        n => Observation::Fail(format!("{n} failed units: {}", names.join(", "))),
    })
}

/// The one action the agent takes on units besides checking them: a
/// restart of `unit`, or its start if it is not running (`RestartUnit`),
/// for a service that reads its inputs only when it starts. `Err` says why
/// it could not ask.
pub async fn restart(bus: &Bus, unit: &str) -> Result<(), String> {
    let name = &unit_name(unit);
    ask(bus, |conn| async move {
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(Failure::from_zbus)?;
        manager
            .restart_unit(name, "replace")
            .await
            .map_err(Failure::from_zbus)
    })
    .await?
    .map(|_job| ())
    .map_err(|failure| failure.describe(&bus.name()))
}

async fn list_failed(conn: &zbus::Connection) -> Result<Vec<String>, Failure> {
    let manager = ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(Failure::from_zbus)?;
    let rows = manager
        .list_units_filtered(&["failed"])
        .await
        .map_err(Failure::from_zbus)?;
    Ok(rows.into_iter().map(|row| row.0).collect())
}

/// Runs `question` on the bus's connection in a turn of its own; when the
/// connection turns out broken (dbus restarted), once more on a new one.
/// The outer `Err`: no new connection could be made.
async fn ask<T, F, Fut>(bus: &Bus, question: F) -> Result<Result<T, Failure>, String>
where
    F: Fn(zbus::Connection) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let _permit = bus.permit().await;
    let (generation, conn) = bus.current();
    Ok(match question(conn).await {
        Err(Failure::Transport(_)) => question(bus.reconnect(generation).await?).await,
        other => other,
    })
}

/// `unit` as systemd names it: `.service` added when it has no known type
/// suffix.
fn unit_name(unit: &str) -> String {
    let unit = unit.trim();
    match unit_type(unit) {
        Some(_) => unit.to_string(),
        None => format!("{unit}.service"),
    }
}

/// The unit's type suffix and the interface of its `Result`, if known.
fn unit_type(unit: &str) -> Option<(&'static str, Option<&'static str>)> {
    let (_, suffix) = unit.rsplit_once('.')?;
    UNIT_TYPES.iter().copied().find(|(t, _)| *t == suffix)
}

/// The facts about a unit that the observation is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct UnitState {
    /// `loaded`, `not-found`, `bad-setting`, `error`, `masked`, …
    load_state: String,
    /// `active`, `reloading`, `inactive`, `failed`, `activating`,
    /// `deactivating`, `maintenance`, `refreshing`, …
    active_state: String,
    /// Type-specific: `running`, `exited`, `dead`, `auto-restart`, …
    sub_state: String,
    /// Automatic restarts since the last start by hand (services only).
    n_restarts: Option<u32>,
    /// `Result` of the last run: `success`, `exit-code`, `signal`, …
    result: Option<String>,
    /// How the main process ended: `"status 3"`, `"SIGKILL"` (services).
    exit: Option<String>,
    /// When ActiveState last changed.
    since: Option<SystemTime>,
    /// systemd's message when the unit could not be loaded.
    load_error: Option<String>,
}

/// The observation for `unit` in `state`; pure.
fn observe(unit: &str, s: &UnitState) -> Observation {
    let states = format!("{} ({})", s.active_state, s.sub_state);
    let since = s
        .since
        .map(|t| format!(" since {}", humantime::format_rfc3339_seconds(t)))
        .unwrap_or_default();
    let restarts = match s.n_restarts {
        Some(n) if n > 0 => format!(", restarted {n} time{}", if n == 1 { "" } else { "s" }),
        _ => String::new(),
    };
    // What went wrong last: "exit-code, status 3"; nothing for success.
    let cause = match (s.result.as_deref(), s.exit.as_deref()) {
        (Some("success") | None, _) => None,
        (Some(result), Some(exit)) => Some(format!("{result}, {exit}")),
        (Some(result), None) => Some(result.to_string()),
    };
    let cause_suffix = cause.as_ref().map(|c| format!(": {c}")).unwrap_or_default();
    let down = matches!(s.active_state.as_str(), "inactive" | "failed" | "");

    // A unit systemd cannot load: the file is gone, masked or broken. One
    // still running (its file removed or masked after it started) is
    // reported by its state, with a warning.
    let load_problem = match s.load_state.as_str() {
        "not-found" => Some(("not found".to_string(), "its unit file is gone")),
        "masked" => Some(("is masked".to_string(), "it is masked")),
        "bad-setting" | "error" => {
            let detail = s
                .load_error
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Some((
                format!(
                    "cannot be loaded ({}){detail}; see journalctl -u {unit}",
                    s.load_state
                ),
                "its unit file cannot be loaded",
            ))
        }
        _ => None,
    };
    if let Some((fail, warn)) = load_problem {
        return if down {
            Observation::Fail(format!("unit {unit} {fail}"))
        } else {
            Observation::Warn(format!("{states}{restarts}, but {warn}"))
        };
    }

    match s.active_state.as_str() {
        "active" if restarts.is_empty() => Observation::Ok(states),
        "active" => Observation::Warn(format!("{states}{restarts}")),
        // Down after a crash, waiting for its restart (or starting again
        // after crashing): not serving.
        "activating" if s.sub_state == "auto-restart" || !restarts.is_empty() => {
            Observation::Fail(format!("{states}{since}{cause_suffix}{restarts}"))
        }
        "activating" | "reloading" | "deactivating" | "maintenance" | "refreshing" => {
            Observation::Warn(format!("{states}{since}{restarts}"))
        }
        "inactive" | "failed" => {
            Observation::Fail(format!("{states}{since}{cause_suffix}{restarts}"))
        }
        "" => Observation::Fail(format!("unit {unit} has no state")),
        // A state newer than this agent: say it as it is.
        _ => Observation::Warn(format!("{states}{since}{restarts}")),
    }
}

/// What systemd answered.
enum Answer {
    State(UnitState),
    /// LoadUnit refused the name (not a valid unit name).
    Refused(String),
}

/// Why the question could not be answered.
#[derive(Debug)]
enum Failure {
    /// The bus answered with a D-Bus error.
    Remote { name: String, message: String },
    /// No answer: the connection failed.
    Transport(String),
    /// An answer that is not what systemd sends.
    Reply(String),
}

impl Failure {
    fn from_zbus(e: zbus::Error) -> Failure {
        match e {
            zbus::Error::MethodError(name, message, _) => Failure::Remote {
                name: name.to_string(),
                message: message.unwrap_or_default(),
            },
            zbus::Error::FDO(e) => match *e {
                zbus::fdo::Error::ZBus(e) => Failure::from_zbus(e),
                other => {
                    use zbus::DBusError;
                    Failure::Remote {
                        name: other.name().to_string(),
                        message: other.description().unwrap_or_default().to_string(),
                    }
                }
            },
            zbus::Error::Variant(e) => Failure::Reply(e.to_string()),
            zbus::Error::InvalidReply => Failure::Reply("invalid reply".to_string()),
            other => Failure::Transport(other.to_string()),
        }
    }

    fn describe(&self, bus: &str) -> String {
        match self {
            Failure::Remote { name, message } => match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                    format!("systemd is not on {bus}: {message}")
                }
                // The bus tried to start systemd for us (its activation
                // file runs /bin/false where systemd is not PID 1).
                n if n.starts_with("org.freedesktop.DBus.Error.Spawn.") => {
                    format!("systemd is not on {bus}: {message}")
                }
                "org.freedesktop.DBus.Error.AccessDenied" => {
                    format!("access to systemd on {bus} denied: {message}")
                }
                _ => format!("systemd on {bus} answered {name}: {message}"),
            },
            Failure::Transport(e) => format!("lost {bus}: {e}"),
            Failure::Reply(e) => format!("unexpected reply from systemd on {bus}: {e}"),
        }
    }

    /// The property or interface does not exist (older systemd, a unit
    /// type without it).
    fn is_absent(&self) -> bool {
        matches!(self, Failure::Remote { name, .. } if matches!(name.as_str(),
            "org.freedesktop.DBus.Error.UnknownProperty"
            | "org.freedesktop.DBus.Error.UnknownInterface"
            | "org.freedesktop.DBus.Error.InvalidArgs"))
    }
}

async fn query(conn: &zbus::Connection, unit: &str) -> Result<Answer, Failure> {
    let manager = ManagerProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(Failure::from_zbus)?;
    let path = match manager.load_unit(unit).await.map_err(Failure::from_zbus) {
        Ok(path) => path,
        Err(Failure::Remote { name, message })
            if name == "org.freedesktop.DBus.Error.InvalidArgs" =>
        {
            return Ok(Answer::Refused(message));
        }
        Err(e) => return Err(e),
    };
    let props = PropertiesProxy::builder(conn)
        .path(path)
        .map_err(Failure::from_zbus)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(Failure::from_zbus)?;

    let result_iface = unit_type(unit).and_then(|(_, iface)| iface);
    let is_service = result_iface == Some(SERVICE_IFACE);
    let (all, result, n_restarts, exit_code, exit_status) = tokio::join!(
        props.get_all(UNIT_IFACE),
        optional(&props, result_iface, "Result"),
        optional(&props, is_service.then_some(SERVICE_IFACE), "NRestarts"),
        optional(&props, is_service.then_some(SERVICE_IFACE), "ExecMainCode"),
        optional(
            &props,
            is_service.then_some(SERVICE_IFACE),
            "ExecMainStatus"
        ),
    );
    let mut all = all.map_err(Failure::from_zbus)?;

    let since = match take::<u64>(&mut all, "StateChangeTimestamp")? {
        0 => None,
        us => UNIX_EPOCH.checked_add(Duration::from_micros(us)),
    };
    let load_error = all
        .remove("LoadError")
        .and_then(|v| <(String, String)>::try_from(v).ok())
        .map(|(_, message)| message);
    let exit = match (
        convert::<i32>("ExecMainCode", exit_code?)?,
        convert::<i32>("ExecMainStatus", exit_status?)?,
    ) {
        (Some(code), Some(status)) => describe_exit(code, status),
        _ => None,
    };
    Ok(Answer::State(UnitState {
        load_state: take(&mut all, "LoadState")?,
        active_state: take(&mut all, "ActiveState")?,
        sub_state: take(&mut all, "SubState")?,
        n_restarts: convert("NRestarts", n_restarts?)?,
        result: convert("Result", result?)?,
        exit,
        since,
        load_error,
    }))
}

/// Property `name` of `iface`, `None` when there is no such interface
/// (`iface` `None`) or property.
async fn optional(
    props: &PropertiesProxy<'_>,
    iface: Option<&str>,
    name: &str,
) -> Result<Option<OwnedValue>, Failure> {
    let Some(iface) = iface else {
        return Ok(None);
    };
    match props.get(iface, name).await.map_err(Failure::from_zbus) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_absent() => Ok(None),
        Err(e) => Err(e),
    }
}

/// An optional property's value as `T`.
fn convert<T>(name: &str, value: Option<OwnedValue>) -> Result<Option<T>, Failure>
where
    T: TryFrom<OwnedValue>,
{
    match value {
        None => Ok(None),
        Some(v) => T::try_from(v)
            .map(Some)
            .map_err(|_| Failure::Reply(format!("property {name} has an unexpected type"))),
    }
}

/// A property of the Unit interface, which systemd always sends.
fn take<T>(all: &mut HashMap<String, OwnedValue>, name: &str) -> Result<T, Failure>
where
    T: TryFrom<OwnedValue>,
{
    let v = all
        .remove(name)
        .ok_or_else(|| Failure::Reply(format!("property {name} missing")))?;
    T::try_from(v).map_err(|_| Failure::Reply(format!("property {name} has an unexpected type")))
}

/// `ExecMainCode`/`ExecMainStatus` (a `si_code` of `waitid` and the exit
/// status or signal) as "status 3" or "SIGKILL"; `None` before the main
/// process has ever ended.
fn describe_exit(code: i32, status: i32) -> Option<String> {
    match code {
        libc::CLD_EXITED => Some(format!("status {status}")),
        libc::CLD_KILLED | libc::CLD_DUMPED => {
            let name = nix::sys::signal::Signal::try_from(status)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {status}"));
            Some(if code == libc::CLD_DUMPED {
                format!("{name}, core dumped")
            } else {
                name
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    //! The state → observation mapping, on its own.

    use super::*;

    fn state(load: &str, active: &str, sub: &str) -> UnitState {
        UnitState {
            load_state: load.into(),
            active_state: active.into(),
            sub_state: sub.into(),
            ..UnitState::default()
        }
    }

    const T: u64 = 1_795_425_982;

    fn at() -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(T))
    }

    #[test]
    fn active_is_ok_and_restarts_warn() {
        let u = "owui.service";
        let mut s = state("loaded", "active", "running");
        s.n_restarts = Some(0);
        s.since = at();
        assert_eq!(observe(u, &s), Observation::Ok("active (running)".into()));
        s.n_restarts = None;
        assert_eq!(observe(u, &s), Observation::Ok("active (running)".into()));
        s.n_restarts = Some(1);
        assert_eq!(
            observe(u, &s),
            Observation::Warn("active (running), restarted 1 time".into())
        );
        s.n_restarts = Some(7);
        s.result = Some("exit-code".into());
        assert_eq!(
            observe(u, &s),
            Observation::Warn("active (running), restarted 7 times".into())
        );
        let oneshot = state("loaded", "active", "exited");
        assert_eq!(
            observe(u, &oneshot),
            Observation::Ok("active (exited)".into())
        );
        let target = state("loaded", "active", "active");
        assert_eq!(
            observe("multi-user.target", &target),
            Observation::Ok("active (active)".into())
        );
    }

    #[test]
    fn transitions_warn() {
        for (active, sub) in [
            ("activating", "start"),
            ("activating", "start-pre"),
            ("reloading", "reload"),
            ("deactivating", "stop-sigterm"),
            ("maintenance", "cleaning"),
            ("refreshing", "refreshing"),
        ] {
            let mut s = state("loaded", active, sub);
            s.since = at();
            assert_eq!(
                observe("u.service", &s),
                Observation::Warn(format!("{active} ({sub}) since 2026-11-23T09:26:22Z")),
            );
        }
        // A state this agent does not know yet is reported as it is.
        let s = state("loaded", "hibernating", "zzz");
        assert_eq!(
            observe("u.service", &s),
            Observation::Warn("hibernating (zzz)".into())
        );
    }

    #[test]
    fn down_fails_with_since_and_cause() {
        let mut s = state("loaded", "failed", "failed");
        s.since = at();
        s.result = Some("exit-code".into());
        s.exit = Some("status 3".into());
        s.n_restarts = Some(0);
        assert_eq!(
            observe("u.service", &s),
            Observation::Fail(
                "failed (failed) since 2026-11-23T09:26:22Z: exit-code, status 3".into()
            )
        );
        s.result = Some("start-limit-hit".into());
        s.exit = Some("SIGKILL".into());
        s.n_restarts = Some(5);
        assert_eq!(
            observe("u.service", &s),
            Observation::Fail(
                "failed (failed) since 2026-11-23T09:26:22Z: start-limit-hit, SIGKILL, \
                 restarted 5 times"
                    .into()
            )
        );
        // Stopped by hand: no cause to report.
        let mut s = state("loaded", "inactive", "dead");
        s.result = Some("success".into());
        s.exit = Some("SIGTERM".into());
        s.since = at();
        assert_eq!(
            observe("u.service", &s),
            Observation::Fail("inactive (dead) since 2026-11-23T09:26:22Z".into())
        );
        // Never started: no timestamp.
        let s = state("loaded", "inactive", "dead");
        assert_eq!(
            observe("u.service", &s),
            Observation::Fail("inactive (dead)".into())
        );
    }

    #[test]
    fn crash_loop_fails() {
        let mut s = state("loaded", "activating", "auto-restart");
        s.result = Some("exit-code".into());
        s.exit = Some("status 1".into());
        s.n_restarts = Some(12);
        assert_eq!(
            observe("u.service", &s),
            Observation::Fail(
                "activating (auto-restart): exit-code, status 1, restarted 12 times".into()
            )
        );
        // Starting again after crashing: still down.
        let mut s = state("loaded", "activating", "start");
        s.n_restarts = Some(3);
        s.result = Some("signal".into());
        s.exit = Some("SIGSEGV, core dumped".into());
        assert_eq!(
            observe("u.service", &s),
            Observation::Fail(
                "activating (start): signal, SIGSEGV, core dumped, restarted 3 times".into()
            )
        );
    }

    #[test]
    fn load_problems_fail() {
        let mut s = state("not-found", "inactive", "dead");
        s.load_error = Some("Unit x.service not found.".into());
        assert_eq!(
            observe("x.service", &s),
            Observation::Fail("unit x.service not found".into())
        );
        let s = state("masked", "inactive", "dead");
        assert_eq!(
            observe("x.service", &s),
            Observation::Fail("unit x.service is masked".into())
        );
        let mut s = state("bad-setting", "inactive", "dead");
        s.load_error = Some("Unit x.service has a bad unit file setting.".into());
        assert_eq!(
            observe("x.service", &s),
            Observation::Fail(
                "unit x.service cannot be loaded (bad-setting): Unit x.service has a bad unit \
                 file setting.; see journalctl -u x.service"
                    .into()
            )
        );
        let s = state("error", "failed", "failed");
        assert_eq!(
            observe("x.service", &s),
            Observation::Fail(
                "unit x.service cannot be loaded (error); see journalctl -u x.service".into()
            )
        );
    }

    #[test]
    fn running_without_unit_file_warns() {
        let mut s = state("not-found", "active", "running");
        s.n_restarts = Some(2);
        assert_eq!(
            observe("x.service", &s),
            Observation::Warn(
                "active (running), restarted 2 times, but its unit file is gone".into()
            )
        );
        let s = state("masked", "active", "running");
        assert_eq!(
            observe("x.service", &s),
            Observation::Warn("active (running), but it is masked".into())
        );
    }

    #[test]
    fn empty_state_fails() {
        let s = state("loaded", "", "");
        assert_eq!(
            observe("x.service", &s),
            Observation::Fail("unit x.service has no state".into())
        );
    }

    #[test]
    fn unit_names_get_service_suffix() {
        assert_eq!(unit_name("open-webui"), "open-webui.service");
        assert_eq!(unit_name("open-webui.service"), "open-webui.service");
        assert_eq!(
            unit_name("postgresql@15-main"),
            "postgresql@15-main.service"
        );
        assert_eq!(unit_name("var-lib-owui.mount"), "var-lib-owui.mount");
        assert_eq!(unit_name("owui-backup.timer"), "owui-backup.timer");
        assert_eq!(unit_name("a.b"), "a.b.service");
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(
            describe_exit(libc::CLD_EXITED, 3).as_deref(),
            Some("status 3")
        );
        assert_eq!(
            describe_exit(libc::CLD_KILLED, 9).as_deref(),
            Some("SIGKILL")
        );
        assert_eq!(
            describe_exit(libc::CLD_DUMPED, 11).as_deref(),
            Some("SIGSEGV, core dumped")
        );
        assert_eq!(
            describe_exit(libc::CLD_KILLED, 99).as_deref(),
            Some("signal 99")
        );
        assert_eq!(describe_exit(0, 0), None);
    }

    /// The daemon runs checks on a multi-threaded runtime and shares one
    /// Bus among them.
    #[allow(dead_code)]
    fn check_future_is_send(
        bus: &Bus,
    ) -> impl std::future::Future<Output = CheckResult> + Send + '_ {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Bus>();
        check(bus, "x")
    }
}
