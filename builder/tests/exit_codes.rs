//! The `owui-builder` binary keeps the exit-code contract of
//! docs/exit-codes.md: 2 for a usage error, the error's own code otherwise,
//! and nothing written on refusal. (Being an integration test, it also makes
//! `cargo test --workspace` build the binary that `tests/` runs.)

use std::process::Command;

#[test]
fn usage_errors_exit_2_and_a_bad_seed_name_exits_3_writing_nothing() {
    let exe = env!("CARGO_BIN_EXE_owui-builder");
    let usage = Command::new(exe).arg("no-such-verb").output().unwrap();
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");

    let out = std::env::temp_dir().join(format!("owui-seed-{}.toml", std::process::id()));
    let bad = Command::new(exe)
        .args(["seed", "create", "--node", "Rack1\nWEBUI_AUTH=False"])
        .args(["--role", "gpu", "--key", "/nonexistent/owui.key", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("node"),
        "{bad:?}"
    );
    assert!(!out.exists());
}
