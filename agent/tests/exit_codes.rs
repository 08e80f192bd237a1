//! The `owui-agent` binary reports a missing seed as bad input (exit 3,
//! naming the file) and, with `--json`, as one error document on stdout.
//! (Being an integration test, it also makes `cargo test --workspace` build
//! the binary that `tests/` runs.)

use std::process::Command;

#[test]
fn a_node_without_a_seed_is_told_which_file_is_missing() {
    let root = std::env::temp_dir().join(format!("owui-empty-root-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_owui-agent"))
        .arg("--root")
        .arg(&root)
        .args(["bundle", "list", "--json"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("seed.toml"), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["exit_code"], 3, "{doc}");
}
