//! Every builder command explains itself, including its exit codes.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_owui-builder"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run owui-builder");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

#[test]
fn every_command_has_readable_help() {
    assert!(help(&[]).contains("Exit codes"));
    for args in [
        vec!["key"],
        vec!["key", "generate"],
        vec!["key", "rotate"],
        vec!["bundle"],
        vec!["bundle", "create"],
        vec!["bundle", "inspect"],
    ] {
        let text = help(&args);
        assert!(text.contains("Usage: owui-builder"), "{args:?}: {text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: line too long: {line}"
            );
        }
    }
}
