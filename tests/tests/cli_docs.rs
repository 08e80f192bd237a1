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

/// What a technician may be told to type or read, found in `text`: each
/// `owui-agent …`/`owui-builder …` command in backticks or on a unit's
/// `Exec…=` line, each man page (`owui-agent-status(1)`, `man
/// owui-agent-status`) and each `docs/….md`; returned are those that do
/// not exist in this tree (a subcommand or long flag the CLI lacks, a page
/// docs/man/ lacks, a document docs/ lacks).
fn missing_references(text: &str, programs: &[clap::Command]) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let exec = line
            .trim_start()
            .strip_prefix("Exec")
            .and_then(|l| l.split_once('='))
            .map(|(_, v)| v.trim_start_matches(['-', '!', '+', '@', ':']));
        let mut spans: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        spans.extend(exec.and_then(|v| v.strip_prefix("/usr/bin/")));
        for span in spans {
            let mut words = span.split_whitespace();
            let Some(program) = words
                .next()
                .and_then(|p| programs.iter().find(|c| c.get_name() == p))
            else {
                continue;
            };
            let mut cmd = program.clone();
            let mut leaf = false;
            for word in words {
                if let Some(flag) = word.strip_prefix("--") {
                    let flag = flag.split('=').next().unwrap_or(flag);
                    let known = cmd
                        .get_arguments()
                        .chain(program.get_arguments())
                        .any(|a| a.get_long() == Some(flag))
                        || flag == "help";
                    if !known {
                        found.push(format!("`{span}`: no --{flag}"));
                    }
                    continue;
                }
                let a_word = word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if leaf || !a_word || cmd.get_subcommands().next().is_none() {
                    leaf = true; // an argument, a placeholder (NAME, …)
                    continue;
                }
                match cmd.find_subcommand(word) {
                    Some(sub) => cmd = sub.clone(),
                    None => {
                        found.push(format!("`{span}`: no command {word:?}"));
                        break;
                    }
                }
            }
        }
        for (i, _) in line.match_indices("owui-") {
            let rest = &line[i..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            let page =
                rest[name.len()..].starts_with("(1)") || line[..i].trim_end().ends_with("man");
            let program = ["owui-agent-", "owui-builder-"]
                .iter()
                .any(|p| name.starts_with(p));
            if page && program && !man_dir().join(format!("{name}.1")).exists() {
                found.push(format!("man page {name}"));
            }
        }
        for (i, _) in line.match_indices("docs/") {
            let doc: String = line[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
                .collect();
            let doc = doc.trim_end_matches('.');
            if doc.ends_with(".md") && !repo().join(doc).exists() {
                found.push(format!("document {doc}"));
            }
        }
    }
    found
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `dir` as text (binary files skipped).
fn texts(dir: &std::path::Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            texts(&path, out);
        } else if let Ok(text) = fs::read_to_string(&path) {
            out.push((path, text));
        }
    }
}

/// Issue 20: a console message that sends a technician to a command or a
/// page that does not exist (first boot once said "owui-builder seeds
/// writes one per node") is a dead end on a site with no other help.
#[test]
fn the_images_text_names_only_commands_pages_and_docs_that_exist() {
    let programs: Vec<clap::Command> = programs()
        .into_iter()
        .map(|mut p| {
            p.build();
            p
        })
        .collect();
    // The check itself catches what it is for.
    let bad = "none found; `owui-builder seeds` writes one per node (docs/seed.md)\n\
               ExecStart=/usr/bin/owui-agent seed import --from-medium\n\
               see owui-agent-seeds(1) or `owui-agent first-boot gate --json`";
    assert_eq!(
        missing_references(bad, &programs),
        [
            "`owui-builder seeds`: no command \"seeds\"",
            "document docs/seed.md",
            "`owui-agent seed import --from-medium`: no --from-medium",
            "man page owui-agent-seeds",
        ]
    );
    // What ships in the image (units, overlays: udev rules, drop-ins, the
    // agent's config) and what the agent and the shared library print.
    let mut files = Vec::new();
    for dir in ["units", "images/overlay", "agent/src", "bundle/src"] {
        texts(&repo().join(dir), &mut files);
    }
    let problems: Vec<String> = files
        .iter()
        .flat_map(|(path, text)| {
            missing_references(text, &programs)
                .into_iter()
                .map(move |p| format!("{}: {p}", path.display()))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
