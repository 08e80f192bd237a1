//! The help text is the operator's manual at a dark site: every command has
//! it, it names the exit codes, and it stays readable on an 80-column console.

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_owui-agent"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run owui-agent");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

#[test]
fn every_command_has_readable_help() {
    let top = help(&[]);
    assert!(top.contains("Exit codes"), "{top}");
    for args in [
        vec!["bundle"],
        vec!["bundle", "verify"],
        vec!["bundle", "apply"],
        vec!["bundle", "list"],
        vec!["bundle", "have"],
        vec!["bundle", "gc"],
        vec!["bundle", "check"],
        vec!["trust"],
        vec!["trust", "list"],
        vec!["trust", "apply"],
    ] {
        let text = help(&args);
        assert!(text.contains("Usage: owui-agent"), "{args:?}: {text}");
        assert!(text.contains("--root"), "{args:?}: --root missing");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{args:?}: line too long: {line}"
            );
        }
    }
}
