//! systemd unit check over D-Bus: load state, ActiveState/SubState, restart
//! count and the result of the last run of a unit, turned into what an
//! operator needs to read.
//!
//! Talks to `org.freedesktop.systemd1` with small proxies of its own on
//! `zbus` (tokio): `Manager.LoadUnit` for the unit's object, then one
//! `Properties.GetAll` on `org.freedesktop.systemd1.Unit`, so that
//! ActiveState and SubState come from one snapshot (separate reads of a
//! crash-looping unit give pairs like "activating (running)"), then the
//! type-specific `Result` and, for services, `NRestarts` and the main
//! process's exit.
//!
//! The check has no timeout of its own: the engine bounds every check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use super::outcome::{CheckResult, Observation};

/// The longest [`Bus::connect`] waits for the bus to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks that run at once on one [`Bus`]; more wait their turn. Each has
/// up to 5 calls in flight, and dbus-daemon answers a connection with more
/// than 128 pending calls with `LimitsExceeded` (its default
/// `max_replies_per_connection`).
const MAX_CONCURRENT_CHECKS: usize = 16;

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
}

#[zbus::proxy(
    interface = "org.freedesktop.DBus.Properties",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Properties {
    fn get(&self, interface: &str, name: &str) -> zbus::Result<OwnedValue>;
    fn get_all(&self, interface: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
}

/// Where to reach systemd: the system bus by default, or an explicit
/// address (tests: `"unix:path=/proc/<pid>/root/run/dbus/system_bus_socket"`).
///
/// Cheap to clone and to share across tasks: clones share one connection.
/// A connection the bus has dropped (dbus restarted) is replaced on the
/// next check that finds it broken.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    address: Option<String>,
    /// The connection and a generation number, so that checks that all
    /// find the same connection broken replace it once.
    conn: Mutex<(u64, zbus::Connection)>,
    /// See [`MAX_CONCURRENT_CHECKS`].
    checks: tokio::sync::Semaphore,
}

impl Bus {
    /// Connects to the system bus (`None`) or to `address` (a D-Bus
    /// address such as `unix:path=/run/dbus/system_bus_socket`). `Err`
    /// says why not, for a check that is then `unknown`.
    pub async fn connect(address: Option<&str>) -> Result<Bus, String> {
        let conn = open(address).await?;
        Ok(Bus {
            inner: Arc::new(Inner {
                address: address.map(str::to_string),
                conn: Mutex::new((0, conn)),
                checks: tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
            }),
        })
    }

    /// The connection, for other services on the same bus (timedated).
    pub fn connection(&self) -> zbus::Connection {
        self.current().1
    }

    fn current(&self) -> (u64, zbus::Connection) {
        match self.inner.conn.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces connection `generation` with a new one, unless another
    /// check has done so already; returns the connection to use.
    async fn reconnect(&self, generation: u64) -> Result<zbus::Connection, String> {
        let (now, conn) = self.current();
        if now != generation {
            return Ok(conn);
        }
        let fresh = open(self.inner.address.as_deref()).await?;
        let mut guard = match self.inner.conn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.0 == generation {
            *guard = (generation.wrapping_add(1), fresh.clone());
            Ok(fresh)
        } else {
            Ok(guard.1.clone())
        }
    }
}

/// What [`Bus::connect`] and the error messages call the bus.
fn bus_name(address: Option<&str>) -> String {
    match address {
        None => "the system bus".to_string(),
        Some(a) => format!("D-Bus at {a}"),
    }
}

async fn open(address: Option<&str>) -> Result<zbus::Connection, String> {
    let name = bus_name(address);
    let builder = match address {
        None => zbus::connection::Builder::system(),
        Some(a) => zbus::connection::Builder::address(a),
    }
    .map_err(|e| format!("cannot connect to {name}: {e}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, builder.build()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(format!("cannot connect to {name}: {e}")),
        Err(_) => Err(format!(
            "cannot connect to {name}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
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
    let name = unit_name(unit);
    // Never closed, so this always gives a permit.
    let _permit = bus.inner.checks.acquire().await.ok();
    let (generation, conn) = bus.current();
    let state = match query(&conn, &name).await {
        Err(Failure::Transport(_)) => {
            // The connection may be gone (dbus restarted): one new try.
            let conn = bus.reconnect(generation).await?;
            query(&conn, &name).await
        }
        other => other,
    };
    match state {
        Ok(Answer::State(state)) => Ok(observe(&name, &state)),
        Ok(Answer::Refused(why)) => Ok(Observation::Fail(format!("unit {name:?}: {why}"))),
        Err(failure) => Err(failure.describe(&bus_name(bus.inner.address.as_deref()))),
    }
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

#[cfg(test)]
pub(crate) mod nspawn {
    //! A real systemd for tests: a minimal Debian bookworm tree built once
    //! with mmdebstrap and cached under /var/tmp (keyed by what goes into
    //! it), booted with systemd-nspawn. `--volatile=overlay` keeps the cache
    //! clean; the test's unit files are bound in read-only at
    //! /usr/local/lib/systemd/system, a directory systemd reads units from.
    //! The container's system bus is reached from the host through
    //! /proc/<leader>/root.
    //!
    //! Needs root, mmdebstrap, systemd-nspawn and, for the first build,
    //! Debian's mirror (taken from the host's apt sources, or
    //! `OWUI_NSPAWN_MIRROR`). Without them the tests fail and say so.

    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use zbus::proxy::CacheProperties;
    use zbus::zvariant::OwnedObjectPath;

    use super::{Bus, PropertiesProxy};

    const SUITE: &str = "bookworm";
    const VARIANT: &str = "minbase";
    const PACKAGES: &str = "systemd,systemd-sysv,dbus";
    /// Bumped when the way the tree is built changes.
    const RECIPE: &str = "1";
    const SETUP: &str =
        "run .ci/run as root: it installs mmdebstrap, systemd-container (systemd-nspawn) and dbus";
    /// Where test unit files go inside the container.
    const UNIT_DIR: &str = "/usr/local/lib/systemd/system";

    /// systemd's manager, for tests that start, stop and break units.
    #[zbus::proxy(
        interface = "org.freedesktop.systemd1.Manager",
        default_service = "org.freedesktop.systemd1",
        default_path = "/org/freedesktop/systemd1",
        gen_blocking = false
    )]
    pub(crate) trait Control {
        fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
        fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
        fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
        fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
        fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    }

    /// Writes unit file `name` into `dir`.
    pub(crate) fn write_unit(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    /// Masks `name` in `dir` (a link to /dev/null, as `systemctl mask` makes).
    pub(crate) fn mask_unit(dir: &Path, name: &str) {
        std::os::unix::fs::symlink("/dev/null", dir.join(name)).unwrap();
    }

    /// A booted container; SIGTERM to systemd-nspawn when dropped (also
    /// when the test panics).
    pub(crate) struct Container {
        child: Child,
        /// The container's PID 1 as the host sees it; 0 until known.
        leader: u32,
        log: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Container {
        /// Boots systemd with the unit files in `units` and waits until it
        /// has finished booting (SystemState running or degraded).
        pub(crate) async fn boot(units: &Path) -> Container {
            let rootfs = rootfs();
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let name = format!(
                "owui-t{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("nspawn.log");
            let out = fs::File::create(&log).unwrap();
            let child = Command::new("systemd-nspawn")
                .arg("-D")
                .arg(&rootfs)
                .args(["-b", "--register=no", "--keep-unit", "--private-network"])
                .args(["-M", &name, "--console=pipe", "--volatile=overlay"])
                .arg(format!("--bind-ro={}:{UNIT_DIR}", units.display()))
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run systemd-nspawn: {e}; {SETUP}"));
            let mut c = Container {
                child,
                leader: 0,
                log,
                _dir: dir,
            };
            let start = Instant::now();
            c.leader = c.wait_for("the container's PID 1", Duration::from_secs(10), |c| {
                leader_of(c.child.id())
            });
            let socket = c.socket();
            c.wait_for(
                "the container's system bus",
                Duration::from_secs(30),
                |_| socket.exists().then_some(()),
            );
            c.wait_until_booted(start).await;
            c
        }

        /// The container's system bus, as a D-Bus address.
        pub(crate) fn address(&self) -> String {
            format!("unix:path={}", self.socket().display())
        }

        /// The container's PID 1, as the host sees it.
        #[allow(dead_code)]
        pub(crate) fn leader(&self) -> u32 {
            self.leader
        }

        fn socket(&self) -> PathBuf {
            PathBuf::from(format!(
                "/proc/{}/root/run/dbus/system_bus_socket",
                self.leader
            ))
        }

        /// A manager proxy on a connection of its own.
        pub(crate) async fn control(&self) -> ControlProxy<'static> {
            let conn = zbus::connection::Builder::address(self.address().as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            ControlProxy::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .unwrap()
        }

        /// The main PID of service `unit` (0 when it has none), asked on a
        /// connection of its own.
        pub(crate) async fn main_pid(&self, unit: &str) -> Result<u32, String> {
            let e = |e: zbus::Error| e.to_string();
            let conn = zbus::connection::Builder::address(self.address().as_str())
                .map_err(e)?
                .build()
                .await
                .map_err(e)?;
            let control = ControlProxy::builder(&conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(e)?;
            let path = control.load_unit(unit).await.map_err(e)?;
            let props = PropertiesProxy::builder(&conn)
                .path(path)
                .map_err(e)?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(e)?;
            let v = props
                .get("org.freedesktop.systemd1.Service", "MainPID")
                .await
                .map_err(e)?;
            u32::try_from(v).map_err(|x| x.to_string())
        }

        /// The container's journal for `unit` (for messages of failed tests).
        pub(crate) fn journal(&self, unit: &str) -> String {
            match Command::new("nsenter")
                .arg("-t")
                .arg(self.leader.to_string())
                .args(["-m", "-p", "--", "journalctl", "--no-pager"])
                .args(["-o", "short-precise", "-n", "60", "-u", unit])
                .output()
            {
                Ok(out) => format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => format!("(nsenter journalctl: {e})"),
            }
        }

        fn log(&self) -> String {
            fs::read_to_string(&self.log).unwrap_or_default()
        }

        /// Polls `probe` until it gives a value; fails the test when
        /// systemd-nspawn exits or `within` passes.
        fn wait_for<T>(
            &mut self,
            what: &str,
            within: Duration,
            probe: impl Fn(&Container) -> Option<T>,
        ) -> T {
            let deadline = Instant::now() + within;
            loop {
                if let Some(v) = probe(self) {
                    return v;
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "systemd-nspawn exited ({status}) before {what} appeared; its output:\n{}",
                        self.log()
                    );
                }
                if Instant::now() > deadline {
                    panic!(
                        "no {what} after {within:?}; systemd-nspawn's output:\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        async fn wait_until_booted(&self, start: Instant) {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let last = match self.system_state().await {
                    Ok(s) if s == "running" || s == "degraded" => break,
                    Ok(s) => s,
                    Err(e) => e,
                };
                assert!(
                    Instant::now() < deadline,
                    "systemd did not finish booting (last: {last}); systemd-nspawn's output:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            eprintln!("container booted in {:?}", start.elapsed());
        }

        async fn system_state(&self) -> Result<String, String> {
            let bus = Bus::connect(Some(&self.address())).await?;
            let (_, conn) = bus.current();
            let props = PropertiesProxy::builder(&conn)
                .path("/org/freedesktop/systemd1")
                .map_err(|e| e.to_string())?
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            let v = props
                .get("org.freedesktop.systemd1.Manager", "SystemState")
                .await
                .map_err(|e| e.to_string())?;
            String::try_from(v).map_err(|e| e.to_string())
        }
    }

    impl Drop for Container {
        fn drop(&mut self) {
            let nspawn = Pid::from_raw(self.child.id() as i32);
            let _ = kill(nspawn, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match self.child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break,
                }
            }
            // Did not halt in time: killing PID 1 ends the whole container.
            if self.leader != 0 {
                let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The child of systemd-nspawn `pid` that is PID 1 of its own PID
    /// namespace.
    fn leader_of(pid: u32) -> Option<u32> {
        let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace() {
                let status =
                    fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
                let ns_pid = status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|l| l.split_whitespace().last());
                if ns_pid == Some("1") {
                    return child.parse().ok();
                }
            }
        }
        None
    }

    /// The cached tree, built on first use (once per test process; a
    /// concurrent process building the same tree loses the rename race
    /// harmlessly).
    fn rootfs() -> PathBuf {
        static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        match ROOTFS.get_or_init(build_rootfs) {
            Ok(path) => path.clone(),
            Err(e) => panic!("{e}"),
        }
    }

    fn build_rootfs() -> Result<PathBuf, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err(format!("the systemd-nspawn tests need root; {SETUP}"));
        }
        if !on_path("systemd-nspawn") {
            return Err(format!("systemd-nspawn not found; {SETUP}"));
        }
        let key = fnv1a(&[RECIPE, SUITE, VARIANT, PACKAGES]);
        let name = format!("owui-nspawn-rootfs-{key:016x}");
        let dir = Path::new("/var/tmp").join(&name);
        if dir.is_dir() {
            return Ok(dir);
        }
        if !on_path("mmdebstrap") {
            return Err(format!("mmdebstrap not found; {SETUP}"));
        }
        remove_stale_builds(&name);
        let tmp = Path::new("/var/tmp").join(format!("{name}.tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let mirror = mirror();
        let mut cmd = Command::new("mmdebstrap");
        cmd.arg(format!("--variant={VARIANT}"))
            .arg(format!("--include={PACKAGES}"))
            .arg(SUITE)
            .arg(&tmp);
        cmd.args(&mirror);
        let start = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mmdebstrap: {e}; {SETUP}"))?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&tmp);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
            return Err(format!(
                "mmdebstrap {SUITE} (mirror {}) failed ({}); {SETUP}\n{}",
                mirror.as_deref().unwrap_or("mmdebstrap's default"),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        match fs::rename(&tmp, &dir) {
            Ok(()) => {}
            Err(_) if dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
            }
            Err(e) => {
                return Err(format!(
                    "cannot move {} to {}: {e}",
                    tmp.display(),
                    dir.display()
                ))
            }
        }
        eprintln!("built {} in {:?}", dir.display(), start.elapsed());
        Ok(dir)
    }

    /// Half-built trees of test processes that are gone.
    fn remove_stale_builds(name: &str) {
        let Ok(entries) = fs::read_dir("/var/tmp") else {
            return;
        };
        let prefix = format!("{name}.tmp-");
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    fn on_path(tool: &str) -> bool {
        let path = std::env::var("PATH").unwrap_or_default();
        let found = path
            .split(':')
            .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
            .any(|d| Path::new(d).join(tool).is_file());
        found
    }

    /// `OWUI_NSPAWN_MIRROR`, else the host's apt source for the suite.
    fn mirror() -> Option<String> {
        if let Ok(m) = std::env::var("OWUI_NSPAWN_MIRROR") {
            return Some(m);
        }
        let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
        if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
            let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            more.sort();
            files.extend(more);
        }
        files.iter().find_map(|f| {
            let text = fs::read_to_string(f).ok()?;
            if f.extension().is_some_and(|e| e == "sources") {
                deb822_mirror(&text, SUITE)
            } else {
                one_line_mirror(&text, SUITE)
            }
        })
    }

    /// The first `URIs:` of a deb822 stanza whose `Suites:` has `suite`.
    pub(super) fn deb822_mirror(text: &str, suite: &str) -> Option<String> {
        text.split("\n\n").find_map(|stanza| {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let suites = field("Suites")?;
            let types = field("Types").unwrap_or_else(|| "deb".into());
            (suites.split_whitespace().any(|s| s == suite)
                && types.split_whitespace().any(|t| t == "deb"))
            .then(|| field("URIs"))
            .flatten()
            .and_then(|uris| uris.split_whitespace().next().map(str::to_string))
        })
    }

    /// The URI of the first `deb URI SUITE …` line for `suite`.
    pub(super) fn one_line_mirror(text: &str, suite: &str) -> Option<String> {
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            if words.next() != Some("deb") {
                return None;
            }
            let mut uri = words.next()?;
            if uri.starts_with('[') {
                // Options: skip to the word after the closing bracket.
                while !uri.ends_with(']') {
                    uri = words.next()?;
                }
                uri = words.next()?;
            }
            (words.next() == Some(suite)).then(|| uri.to_string())
        })
    }

    /// FNV-1a, 64 bits: a cache key stable across Rust releases.
    fn fnv1a(parts: &[&str]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for b in part.bytes().chain([0]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

#[cfg(test)]
mod nspawn_tests {
    //! Against a real systemd booted in systemd-nspawn (see [`super::nspawn`]).

    use std::path::Path;
    use std::time::Instant;

    use super::nspawn::{self, mask_unit, write_unit, Container};
    use super::*;

    /// Type=exec: active only once the program has been executed.
    const SLEEPER: &str = "[Service]\nType=exec\nExecStart=/bin/sleep infinity\n";

    /// Runs the check until `want` holds (each run bounded by 5 s, all of
    /// them by 20 s); returns the matching observation.
    async fn eventually(
        c: &Container,
        bus: &Bus,
        unit: &str,
        what: &str,
        want: impl Fn(&Observation) -> bool,
    ) -> Observation {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), check(bus, unit)).await;
            if let Ok(Ok(o)) = &got {
                if want(o) {
                    return o.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{unit}: expected {what}, last saw {got:?}; its journal:\n{}",
                c.journal(unit)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn fail_starting(o: &Observation, prefix: &str) -> bool {
        matches!(o, Observation::Fail(d) if d.starts_with(prefix))
    }

    /// "… since 2026-11-23T09:26:22Z…" with a plausible time.
    fn assert_recent_since(detail: &str) {
        let at = detail
            .split_once(" since ")
            .and_then(|(_, rest)| rest.split([':', ',']).next().map(|_| &rest[..20]))
            .unwrap_or_else(|| panic!("no since in {detail:?}"));
        let t = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at:?}: {e}"));
        let age = SystemTime::now().duration_since(t).unwrap_or_default();
        assert!(age < Duration::from_secs(120), "since {at} is not recent");
    }

    async fn booted(units: &Path) -> (Container, Bus) {
        let c = Container::boot(units).await;
        let bus = Bus::connect(Some(&c.address())).await.unwrap();
        (c, bus)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unit_stopped_and_started() {
        let units = tempfile::tempdir().unwrap();
        write_unit(units.path(), "owui-ok.service", SLEEPER);
        write_unit(
            units.path(),
            "owui-oneshot.service",
            "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
        );
        let (c, bus) = booted(units.path()).await;
        let systemd = c.control().await;

        // Never started: inactive, and no time to report.
        assert_eq!(
            check(&bus, "owui-ok.service").await,
            Ok(Observation::Fail("inactive (dead)".into()))
        );
        systemd
            .start_unit("owui-ok.service", "replace")
            .await
            .unwrap();
        eventually(&c, &bus, "owui-ok.service", "active", |o| {
            *o == Observation::Ok("active (running)".into())
        })
        .await;
        // A name without a suffix is a service, as with systemctl.
        assert_eq!(
            check(&bus, "owui-ok").await,
            Ok(Observation::Ok("active (running)".into()))
        );

        systemd
            .stop_unit("owui-ok.service", "replace")
            .await
            .unwrap();
        let stopped = eventually(&c, &bus, "owui-ok.service", "inactive", |o| {
            fail_starting(o, "inactive (dead)")
        })
        .await;
        let Observation::Fail(detail) = stopped else {
            unreachable!()
        };
        // Stopped by hand: no failure cause. The time is there until
        // systemd unloads the unused unit (then LoadUnit gives a fresh one).
        assert!(!detail.contains(": "), "{detail}");
        if detail != "inactive (dead)" {
            assert_recent_since(&detail);
        }

        systemd
            .start_unit("owui-ok.service", "replace")
            .await
            .unwrap();
        eventually(&c, &bus, "owui-ok.service", "active again", |o| {
            *o == Observation::Ok("active (running)".into())
        })
        .await;

        systemd
            .start_unit("owui-oneshot.service", "replace")
            .await
            .unwrap();
        eventually(&c, &bus, "owui-oneshot.service", "active (exited)", |o| {
            *o == Observation::Ok("active (exited)".into())
        })
        .await;
        // Not a service: no restart count, no Result interface.
        assert_eq!(
            check(&bus, "multi-user.target").await,
            Ok(Observation::Ok("active (active)".into()))
        );

        // One connection, many concurrent checks (the daemon's pattern).
        let start = Instant::now();
        let runs: Vec<_> = (0..64)
            .map(|i| {
                let bus = bus.clone();
                let unit = if i % 2 == 0 {
                    "owui-ok.service"
                } else {
                    "owui-oneshot.service"
                };
                tokio::spawn(async move { check(&bus, unit).await })
            })
            .collect();
        for run in runs {
            let got = run.await.unwrap();
            assert!(matches!(got, Ok(Observation::Ok(_))), "{got:?}");
        }
        eprintln!("64 concurrent checks in {:?}", start.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn broken_units_fail_with_reason() {
        let units = tempfile::tempdir().unwrap();
        write_unit(
            units.path(),
            "owui-exit.service",
            "[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
        );
        write_unit(
            units.path(),
            "owui-killed.service",
            "[Service]\nExecStart=/bin/sh -c 'kill -KILL $$$$'\n",
        );
        // No ExecStart: systemd refuses to load it.
        write_unit(units.path(), "owui-bad.service", "[Service]\nType=simple\n");
        mask_unit(units.path(), "owui-masked.service");
        let (c, bus) = booted(units.path()).await;
        let systemd = c.control().await;

        assert_eq!(
            check(&bus, "owui-missing.service").await,
            Ok(Observation::Fail(
                "unit owui-missing.service not found".into()
            ))
        );
        assert_eq!(
            check(&bus, "owui-masked.service").await,
            Ok(Observation::Fail(
                "unit owui-masked.service is masked".into()
            ))
        );
        assert_eq!(
            check(&bus, "owui-bad.service").await,
            Ok(Observation::Fail(
                "unit owui-bad.service cannot be loaded (bad-setting): Unit owui-bad.service \
                 has a bad unit file setting.; see journalctl -u owui-bad.service"
                    .into()
            ))
        );
        let bad_name = check(&bus, "no such/unit").await;
        assert!(
            matches!(&bad_name, Ok(Observation::Fail(d)) if d.contains("not valid")),
            "{bad_name:?}"
        );

        systemd
            .start_unit("owui-exit.service", "replace")
            .await
            .unwrap();
        let failed = eventually(&c, &bus, "owui-exit.service", "failed", |o| {
            fail_starting(o, "failed (failed) since ")
        })
        .await;
        let Observation::Fail(detail) = failed else {
            unreachable!()
        };
        assert!(detail.ends_with(": exit-code, status 3"), "{detail}");
        assert_recent_since(&detail);

        systemd
            .start_unit("owui-killed.service", "replace")
            .await
            .unwrap();
        let killed = eventually(&c, &bus, "owui-killed.service", "failed", |o| {
            fail_starting(o, "failed (failed) since ")
        })
        .await;
        assert!(
            matches!(&killed, Observation::Fail(d) if d.ends_with(": signal, SIGKILL")),
            "{killed:?}"
        );

        // reset-failed: back to a plain inactive unit with no cause.
        systemd
            .reset_failed_unit("owui-exit.service")
            .await
            .unwrap();
        let reset = check(&bus, "owui-exit.service").await;
        assert!(
            matches!(&reset, Ok(Observation::Fail(d)) if d.starts_with("inactive (dead)")),
            "{reset:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restarts_are_counted() {
        let units = tempfile::tempdir().unwrap();
        write_unit(
            units.path(),
            "owui-crash.service",
            "[Unit]\nStartLimitIntervalSec=0\n\
             [Service]\nExecStart=/bin/false\nRestart=on-failure\nRestartSec=100ms\n",
        );
        // Fails twice, then runs.
        write_unit(
            units.path(),
            "owui-flaky.service",
            "[Service]\n\
             ExecStart=/bin/sh -c 'n=$$(cat /run/owui-flaky 2>/dev/null || echo 0); \
             echo $$((n + 1)) > /run/owui-flaky; \
             [ $$n -ge 2 ] && exec sleep infinity; exit 1'\n\
             Restart=on-failure\nRestartSec=100ms\n",
        );
        let (c, bus) = booted(units.path()).await;
        let systemd = c.control().await;

        systemd
            .start_unit("owui-crash.service", "replace")
            .await
            .unwrap();
        let looping = eventually(&c, &bus, "owui-crash.service", "a crash loop", |o| {
            matches!(o, Observation::Fail(d)
                if d.starts_with("activating (auto-restart) since ")
                && d.contains(": exit-code, status 1, restarted ")
                && !d.ends_with("restarted 1 time")
                && !d.ends_with("restarted 2 times"))
        })
        .await;
        eprintln!("crash loop: {looping:?}");
        // Stopped by hand: down for good. A stop that catches the process
        // failing leaves the unit `failed` (its count kept) rather than
        // `inactive`; reset-failed clears both.
        systemd
            .stop_unit("owui-crash.service", "replace")
            .await
            .unwrap();
        eventually(&c, &bus, "owui-crash.service", "stopped", |o| {
            matches!(o, Observation::Fail(d)
                if d.starts_with("inactive (dead)") || d.starts_with("failed (failed)"))
        })
        .await;
        // NoSuchUnit when systemd has already unloaded the inactive unit.
        let _ = systemd.reset_failed_unit("owui-crash.service").await;
        let reset = check(&bus, "owui-crash.service").await;
        assert!(
            matches!(&reset, Ok(Observation::Fail(d))
                if d.starts_with("inactive (dead)") && !d.contains("restarted")),
            "{reset:?}"
        );

        systemd
            .start_unit("owui-flaky.service", "replace")
            .await
            .unwrap();
        eventually(
            &c,
            &bus,
            "owui-flaky.service",
            "running after 2 restarts",
            |o| *o == Observation::Warn("active (running), restarted 2 times".into()),
        )
        .await;
        // Restarted by hand: the operator has seen it; healthy again.
        systemd
            .restart_unit("owui-flaky.service", "replace")
            .await
            .unwrap();
        eventually(
            &c,
            &bus,
            "owui-flaky.service",
            "running, count reset",
            |o| *o == Observation::Ok("active (running)".into()),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_a_dbus_restart() {
        let units = tempfile::tempdir().unwrap();
        write_unit(units.path(), "owui-ok.service", SLEEPER);
        let (c, bus) = booted(units.path()).await;
        let systemd = c.control().await;
        systemd
            .start_unit("owui-ok.service", "replace")
            .await
            .unwrap();
        eventually(&c, &bus, "owui-ok.service", "active", |o| {
            matches!(o, Observation::Ok(_))
        })
        .await;

        // The old connection dies with the old dbus-daemon; the socket
        // (held by systemd) stays. Wait, on connections of their own, for
        // a new dbus-daemon.
        let old = c.main_pid("dbus.service").await.unwrap();
        assert_ne!(old, 0);
        let _ = systemd.restart_unit("dbus.service", "replace").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = c.main_pid("dbus.service").await;
            if matches!(now, Ok(pid) if pid != old && pid != 0) {
                break;
            }
            assert!(Instant::now() < deadline, "dbus did not come back: {now:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The shared Bus finds its connection broken and replaces it.
        let after = check(&bus, "owui-ok.service").await;
        assert_eq!(
            after,
            Ok(Observation::Ok("active (running)".into())),
            "{}",
            c.journal("owui-ok.service")
        );
        assert_eq!(bus.current().0, 1, "the connection was replaced once");
    }

    #[tokio::test]
    async fn connect_errors_are_reasons() {
        let got = Bus::connect(Some("unix:path=/nonexistent/owui/bus_socket")).await;
        let err = got.map(|_| ()).unwrap_err();
        assert!(
            err.starts_with("cannot connect to D-Bus at unix:path=/nonexistent/owui/bus_socket: "),
            "{err}"
        );
        let err = Bus::connect(Some("carrier-pigeon:loft=3"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.starts_with("cannot connect to D-Bus at carrier-pigeon:loft=3"),
            "{err}"
        );
    }

    /// A bus without systemd on it (a plain dbus-daemon): the check cannot
    /// run, which is `Err` (unknown), not a failed unit.
    #[tokio::test]
    async fn bus_without_systemd_is_an_error() {
        let private = crate::health::PrivateBus::start().await;
        let bus = Bus::connect(Some(&private.address)).await.unwrap();
        let got = check(&bus, "owui-ok.service").await;
        assert!(
            matches!(&got, Err(e) if e.starts_with("systemd is not on D-Bus at unix:path=")),
            "{got:?}"
        );
    }

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            nspawn::deb822_mirror(deb822, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(nspawn::deb822_mirror(deb822, "trixie"), None);
        let list = "# deb http://old/ bookworm main\n\
                    deb-src http://src/ bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.local/debian bookworm main\n";
        assert_eq!(
            nspawn::one_line_mirror(list, "bookworm").as_deref(),
            Some("http://mirror.local/debian")
        );
        assert_eq!(
            nspawn::one_line_mirror("deb http://m/debian bookworm main", "bookworm").as_deref(),
            Some("http://m/debian")
        );
    }
}
