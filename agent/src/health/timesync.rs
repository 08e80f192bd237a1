//! Time sync: whether the kernel clock is disciplined by a time source.
//!
//! Read with `adjtimex(2)` in read-only mode (no privileges, no D-Bus, no
//! daemon-specific tool), so it works the same under chrony,
//! systemd-timesyncd or ntpd. Where a seccomp filter refuses the call
//! (systemd's `ProtectClock=yes` denies the whole `@clock` set, reads
//! included), the check asks systemd-timedated instead: `NTPSynchronized` of
//! `org.freedesktop.timedate1` on the bus the unit checks use, which
//! timedated computes from the same `adjtimex` fields.
//!
//! What counts as unsynchronised (the decision):
//! - the kernel's `STA_UNSYNC` flag is set. NTP daemons clear it once they
//!   discipline the clock; the kernel sets it again by itself when nobody
//!   updates the clock and its maximum error passes 16 s;
//! - `STA_CLOCKERR` is set (the clock hardware reports a fault);
//! - the maximum error is 16 s or more (the kernel's `NTP_PHASE_LIMIT`;
//!   systemd's `NTPSynchronized` uses the same two tests).
//!
//! A synchronised clock whose maximum error exceeds `time_max_error_ms` is
//! degraded: TLS validity and the cluster's leases want an error bound well
//! under a second. An unsynchronised clock is degraded by default, since an
//! air-gapped site may have no time source at all; a site that has one sets
//! `time_sync = "failed"`, and one that has none sets `"off"`.

use std::time::Duration;

use serde::Deserialize;
use zbus::proxy::CacheProperties;

use super::dbus::Bus;
use super::outcome::{CheckResult, Observation};

/// `maxerror` at or above this (µs) is unsynchronised (`NTP_PHASE_LIMIT`).
const PHASE_LIMIT_US: i64 = 16_000_000;

/// What an unsynchronised clock makes the check (`[health] time_sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeSyncMode {
    /// No time-sync check.
    Off,
    Degraded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Degraded or failed when unsynchronised (never `Off` here).
    pub unsynced: TimeSyncMode,
    /// A synchronised clock with a larger maximum error is degraded.
    pub max_error: Duration,
}

/// The kernel clock's state, as `adjtimex(2)` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// `timex.status` flags (`STA_*`).
    pub status: i32,
    /// Maximum error, µs.
    pub max_error_us: i64,
    /// Estimated error, µs.
    pub est_error_us: i64,
    /// Current offset, µs (ns when `STA_NANO` is set).
    pub offset: i64,
}

/// Reads the kernel clock's state without changing it.
#[allow(unsafe_code)]
pub fn read() -> Result<KernelClock, String> {
    // SAFETY: `timex` is plain data, valid all-zero; with `modes == 0`
    // adjtimex only fills in the struct it is given and changes nothing.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: `tx` is a valid, exclusively borrowed `timex` for the call.
    let rc = unsafe { libc::adjtimex(&mut tx) };
    if rc < 0 {
        return Err(format!("adjtimex: {}", std::io::Error::last_os_error()));
    }
    Ok(KernelClock {
        status: tx.status,
        max_error_us: tx.maxerror,
        est_error_us: tx.esterror,
        offset: tx.offset,
    })
}

fn ms(us: i64) -> String {
    if us >= 10_000_000 {
        format!("{} s", us / 1_000_000)
    } else if us >= 1000 {
        format!("{} ms", us / 1000)
    } else {
        format!("{us} µs")
    }
}

/// The decision described at the top of this module.
pub fn judge(clock: &KernelClock, policy: Policy) -> Observation {
    let errors = format!(
        "maximum error {}, estimated error {}",
        ms(clock.max_error_us),
        ms(clock.est_error_us)
    );
    let why = if clock.status & libc::STA_UNSYNC != 0 {
        Some("the kernel marks the clock unsynchronised (no time source disciplines it)")
    } else if clock.status & libc::STA_CLOCKERR != 0 {
        Some("the kernel reports a clock hardware fault")
    } else if clock.max_error_us >= PHASE_LIMIT_US {
        Some("its maximum error has reached 16 s")
    } else {
        None
    };
    if let Some(why) = why {
        let detail = format!("not synchronised: {why}; {errors}");
        return match policy.unsynced {
            TimeSyncMode::Failed => Observation::Fail(detail),
            TimeSyncMode::Degraded | TimeSyncMode::Off => Observation::Warn(detail),
        };
    }
    let limit = i64::try_from(policy.max_error.as_micros()).unwrap_or(i64::MAX);
    if clock.max_error_us > limit {
        return Observation::Warn(format!("synchronised, but {errors} (above {})", ms(limit)));
    }
    Observation::Ok(format!("synchronised, {errors}"))
}

/// [`read`] and [`judge`]; when the kernel cannot be asked, timedated on
/// the bus `bus` connects to. `Err` (unknown) gives both reasons.
pub async fn check<F, Fut>(policy: Policy, bus: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Bus, String>>,
{
    let kernel = match read() {
        Ok(clock) => return Ok(judge(&clock, policy)),
        Err(e) => e,
    };
    let bus = bus().await.map_err(|e| format!("{kernel}; {e}"))?;
    timedated(&bus, policy)
        .await
        .map_err(|e| format!("{kernel}; {e}"))
}

const TIMEDATE: &str = "org.freedesktop.timedate1";

/// `NTPSynchronized` from systemd-timedated (bus-activated on demand).
pub async fn timedated(bus: &Bus, policy: Policy) -> CheckResult {
    let ask = |e: zbus::Error| format!("asking {TIMEDATE} for NTPSynchronized: {e}");
    let proxy = zbus::proxy::Builder::<zbus::Proxy>::new(&bus.connection())
        .destination(TIMEDATE)
        .and_then(|b| b.path("/org/freedesktop/timedate1"))
        .and_then(|b| b.interface(TIMEDATE))
        .map_err(ask)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(ask)?;
    let synced: bool = proxy.get_property("NTPSynchronized").await.map_err(ask)?;
    Ok(if synced {
        Observation::Ok("synchronised (systemd-timedated)".into())
    } else {
        let detail = "not synchronised (systemd-timedated)".to_string();
        match policy.unsynced {
            TimeSyncMode::Failed => Observation::Fail(detail),
            TimeSyncMode::Degraded | TimeSyncMode::Off => Observation::Warn(detail),
        }
    })
}

#[cfg(test)]
mod tests {
    //! Asking systemd-timedated over a real (private) bus:
    //! `tests/tests/health_services.rs`.

    use super::*;

    const POLICY: Policy = Policy {
        unsynced: TimeSyncMode::Degraded,
        max_error: Duration::from_millis(1000),
    };

    fn clock(status: i32, max_error_us: i64) -> KernelClock {
        KernelClock {
            status,
            max_error_us,
            est_error_us: 120,
            offset: 0,
        }
    }

    #[test]
    fn the_decision() {
        // chrony holding the clock: STA_PLL set, STA_UNSYNC clear.
        let synced = judge(&clock(libc::STA_PLL, 4_500), POLICY);
        assert_eq!(
            synced,
            Observation::Ok("synchronised, maximum error 4 ms, estimated error 120 µs".into())
        );
        // Never synchronised since boot: the kernel's initial state.
        let unsynced = clock(libc::STA_UNSYNC, PHASE_LIMIT_US);
        assert!(
            matches!(judge(&unsynced, POLICY), Observation::Warn(ref d) if d.contains("unsynchronised"))
        );
        let strict = Policy {
            unsynced: TimeSyncMode::Failed,
            ..POLICY
        };
        assert!(matches!(judge(&unsynced, strict), Observation::Fail(_)));
        // Flag clear but the error bound is past the kernel's limit.
        assert!(
            matches!(judge(&clock(0, PHASE_LIMIT_US), strict), Observation::Fail(ref d) if d.contains("16 s"))
        );
        assert!(matches!(
            judge(&clock(libc::STA_CLOCKERR, 10), strict),
            Observation::Fail(ref d) if d.contains("hardware")
        ));
        // Synchronised, but with a loose bound.
        assert!(
            matches!(judge(&clock(0, 2_500_000), strict), Observation::Warn(ref d) if d.contains("above 1000 ms"))
        );
        assert!(matches!(
            judge(&clock(0, 1_000_000), strict),
            Observation::Ok(_)
        ));
    }

    #[test]
    fn reads_the_real_kernel_clock() {
        let c = read().expect("adjtimex works unprivileged in read-only mode");
        // The kernel never reports negative error bounds.
        assert!(c.max_error_us >= 0, "{c:?}");
        assert!(c.est_error_us >= 0, "{c:?}");
        // Whatever the machine's state, the check runs and says which.
        let no_bus = || async { Err::<Bus, String>("not asked".into()) };
        match tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(check(POLICY, no_bus))
        {
            Ok(Observation::Ok(d)) => assert!(d.starts_with("synchronised"), "{d}"),
            Ok(Observation::Warn(d)) => assert!(d.contains("synchronised"), "{d}"),
            other => panic!("{other:?}"),
        }
    }
}
