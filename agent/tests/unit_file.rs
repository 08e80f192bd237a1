//! The shipped unit file is what the daemon expects of systemd: notify,
//! watchdog, a runtime directory for the socket, and the hardening settings.

#[test]
fn unit_file_declares_notify_watchdog_and_hardening() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../units/owui-agent.service"
    ))
    .expect("units/owui-agent.service");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/owui-agent run",
        "WatchdogSec=30s",
        "RuntimeDirectory=owui-agent",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictSUIDSGID=yes",
        "SystemCallFilter=@system-service",
    ] {
        assert!(has(line), "missing {line}");
    }
    // The hardening audit reads the host's listening sockets from /proc/net.
    assert!(!unit.contains("PrivateNetwork=yes"));
}
