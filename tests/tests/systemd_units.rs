//! The systemd unit check (`owui_agent::health::systemd`) against a real
//! systemd booted in systemd-nspawn (see `owui_tests::nspawn`), and against
//! a bus without systemd on it. Needs root, systemd-nspawn, mmdebstrap and
//! dbus-daemon (`.ci/run` installs them).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use owui_agent::health::dbus::Bus;
use owui_agent::health::outcome::Observation;
use owui_agent::health::systemd::{check, failed_units};
use owui_tests::dbus::PrivateBus;
use owui_tests::nspawn::{mask_unit, write_unit, Container};
use owui_tests::site::Site;

/// Fails as soon as it starts: exit status 3.
const EXITS_3: &str = "[Service]\nExecStart=/bin/sh -c 'exit 3'\n";

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
    write_unit(units.path(), "owui-exit.service", EXITS_3);
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

/// A bus without systemd on it (a plain dbus-daemon): the check cannot
/// run, which is `Err` (unknown), not a failed unit.
#[tokio::test]
async fn bus_without_systemd_is_an_error() {
    let private = PrivateBus::start();
    let bus = Bus::connect(Some(&private.address)).await.unwrap();
    let got = check(&bus, "owui-ok.service").await;
    assert!(
        matches!(&got, Err(e) if e.starts_with("systemd is not on D-Bus at unix:path=")),
        "{got:?}"
    );
}

/// The image's GPU files (images/overlay/inference), as the image has them.
fn inference_overlay(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../images/overlay/inference")
        .join(relative)
}

/// A cause ("…: exit-code") in a unit check's detail.
fn has_cause(o: &Observation) -> bool {
    matches!(o, Observation::Fail(d) if d.contains(": "))
}

/// `failed_units` until `want` holds (20 s at most).
async fn failed_eventually(
    bus: &Bus,
    what: &str,
    want: impl Fn(&Observation) -> bool,
) -> Observation {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = tokio::time::timeout(Duration::from_secs(5), failed_units(bus)).await;
        if let Ok(Ok(o)) = &got {
            if want(o) {
                return o.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "expected {what}, last saw {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every failed unit of the node shows up, whatever it is, and goes once
/// systemd forgets the failure; the image's nvidia-persistenced drop-in
/// makes the daemon skip (not fail) on a node without an NVIDIA device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_units_are_reported_and_gpu_units_skip_without_a_gpu() {
    let units = tempfile::tempdir().unwrap();
    write_unit(units.path(), "owui-exit.service", EXITS_3);
    write_unit(
        units.path(),
        "owui-setup.service",
        "[Service]\nType=oneshot\nExecStart=/bin/false\n",
    );
    // Debian's nvidia-persistenced unit (the binary is not in the test's
    // tree: were the condition not there, the start would fail) with the
    // image's drop-in.
    write_unit(
        units.path(),
        "nvidia-persistenced.service",
        "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced --user nvpd\n",
    );
    let dropin = units.path().join("nvidia-persistenced.service.d");
    std::fs::create_dir(&dropin).unwrap();
    std::fs::copy(
        inference_overlay("usr/lib/systemd/system/nvidia-persistenced.service.d/50-owui.conf"),
        dropin.join("50-owui.conf"),
    )
    .unwrap();
    let (c, bus) = booted(units.path()).await;
    let systemd = c.control().await;

    assert_eq!(
        failed_units(&bus).await,
        Ok(Observation::Ok("none".into())),
        "a unit failed at boot"
    );

    systemd
        .start_unit("nvidia-persistenced.service", "replace")
        .await
        .unwrap();
    eventually(&c, &bus, "nvidia-persistenced.service", "skipped", |o| {
        fail_starting(o, "inactive (dead)") && !has_cause(o)
    })
    .await;
    assert!(
        c.journal("nvidia-persistenced.service")
            .contains("unmet condition check (ConditionPathExists=/dev/nvidiactl)"),
        "{}",
        c.journal("nvidia-persistenced.service")
    );

    for unit in ["owui-exit.service", "owui-setup.service"] {
        // The job fails; only the unit's state matters here.
        let _ = systemd.start_unit(unit, "replace").await;
    }
    failed_eventually(&bus, "both failed", |o| {
        *o == Observation::Fail("2 failed units: owui-exit.service, owui-setup.service".into())
    })
    .await;

    // The same in `owui-agent status`, for a role whose units these are not.
    let site = Site::new("db");
    let config = site.root.join("etc/owui/agent.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[health]\nsystemd_bus = \"{}\"\ndisks = []\ntime_sync = \"off\"\n",
        c.address()
    ));
    std::fs::write(&config, text).unwrap();
    let run = site.agent(&["status", "--json"]);
    let doc = run.json();
    let failed = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "failed-units")
        .unwrap_or_else(|| panic!("no failed-units check in {doc}"));
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(
        failed["detail"],
        "2 failed units: owui-exit.service, owui-setup.service"
    );
    assert_eq!(run.code, 9, "{doc}");

    systemd
        .reset_failed_unit("owui-setup.service")
        .await
        .unwrap();
    failed_eventually(&bus, "one failed", |o| {
        *o == Observation::Fail("1 failed unit: owui-exit.service".into())
    })
    .await;
    systemd
        .reset_failed_unit("owui-exit.service")
        .await
        .unwrap();
    failed_eventually(&bus, "none", |o| *o == Observation::Ok("none".into())).await;
}

/// systemd-modules-load loads nothing of NVIDIA's: the image's
/// /etc/modules-load.d/nvidia.conf (which replaces the driver alternative's
/// link to `nvidia-drm`) names no module, and nvidia-drm is loaded by udev
/// only for an NVIDIA display controller.
#[test]
fn nvidia_drm_is_loaded_only_for_an_nvidia_device() {
    let conf =
        std::fs::read_to_string(inference_overlay("etc/modules-load.d/nvidia.conf")).unwrap();
    // modules-load.d(5): "#" and ";" start comments; anything else is a module.
    let modules: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';']))
        .collect();
    assert!(modules.is_empty(), "{modules:?}");
    let rules = std::fs::read_to_string(inference_overlay(
        "usr/lib/udev/rules.d/71-owui-nvidia.rules",
    ))
    .unwrap();
    let loads: Vec<&str> = rules.lines().filter(|l| l.contains("kmod load")).collect();
    assert_eq!(loads.len(), 1, "{rules}");
    for needed in [
        "ACTION==\"add\"",
        "SUBSYSTEM==\"pci\"",
        "ATTR{vendor}==\"0x10de\"",
        "ATTR{class}==\"0x03*\"",
        "kmod load nvidia-drm",
    ] {
        assert!(
            loads[0].contains(needed),
            "{needed} missing from {}",
            loads[0]
        );
    }
}
