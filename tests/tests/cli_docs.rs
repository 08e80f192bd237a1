//! The CLI is data: the help of every command of both binaries reads at 80
//! columns, and the man pages in docs/man/ are generated from the same clap
//! definitions. After changing a command, rewrite them with
//! `OWUI_UPDATE_MAN=1 cargo test -p owui-tests --test cli_docs`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use clap::CommandFactory;

fn programs() -> [clap::Command; 2] {
    [
        owui_agent::cli::Cli::command(),
        owui_builder::cli::Cli::command(),
    ]
}

/// Every visible command and subcommand, by its full name
/// ("owui-agent bundle apply").
fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
    let name = match prefix {
        "" => cmd.get_name().to_string(),
        _ => format!("{prefix} {}", cmd.get_name()),
    };
    out.push((name.clone(), cmd.clone()));
    // clap's own `help` subcommand documents nothing of ours.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        walk(sub, &name, out);
    }
}

fn every_command() -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    for mut p in programs() {
        // Building propagates global arguments (--root) to subcommands.
        p.build();
        walk(&p, "", &mut out);
    }
    out
}

#[test]
fn every_command_says_what_it_does_in_80_columns() {
    let mut problems = Vec::new();
    for program in programs() {
        let top = program.clone().render_long_help().to_string();
        if !top.contains("Exit codes") {
            problems.push(format!(
                "{}: the exit codes are not in its help",
                program.get_name()
            ));
        }
    }
    for (name, cmd) in every_command() {
        // A dark site's operator works on mounted disks too: every agent
        // command says it takes --root.
        let help = cmd.clone().term_width(80).render_long_help().to_string();
        if name.starts_with("owui-agent") && !help.contains("--root") {
            problems.push(format!("{name}: --root is not in its help"));
        }
        if cmd.get_about().is_none() {
            problems.push(format!("{name}: no description"));
        }
        // clap never wraps the usage line; everything else it wraps.
        let long = |l: &&str| l.chars().count() > 80 && !l.starts_with("Usage: ");
        for line in help.lines().filter(long) {
            problems.push(format!("{name}: line over 80 columns: {line:?}"));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                problems.push(format!("{name}: {} has no help text", arg.get_id()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn man_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/man")
}

fn files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .map(|p| {
                    (
                        p.file_name().unwrap().to_string_lossy().into_owned(),
                        fs::read(&p).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn man_pages_are_generated_from_the_current_definitions() {
    let fresh = tempfile::tempdir().unwrap();
    for p in programs() {
        clap_mangen::generate_to(p, fresh.path()).unwrap();
    }
    let fresh = files(fresh.path());
    if std::env::var_os("OWUI_UPDATE_MAN").is_some() {
        let _ = fs::remove_dir_all(man_dir());
        fs::create_dir_all(man_dir()).unwrap();
        for (name, body) in &fresh {
            fs::write(man_dir().join(name), body).unwrap();
        }
    }
    let kept = files(&man_dir());
    let stale: Vec<&String> = fresh
        .keys()
        .chain(kept.keys())
        .filter(|n| fresh.get(*n) != kept.get(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/man is stale for {stale:?}: run OWUI_UPDATE_MAN=1 cargo test -p owui-tests --test cli_docs"
    );
}
