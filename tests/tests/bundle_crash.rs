//! Power-cut safety of `bundle apply`: the agent is killed with SIGKILL at
//! every crash point (built in with the `crash-points` feature in test
//! builds). After each kill the node is at the old generation or the new
//! one, its store checks clean, and a plain re-run completes the apply
//! without copying again the blobs already committed.

use std::fs;
use std::path::Path;
use std::process::Command;

use owui_tests::site::{model_sources, spec_head, Site};

fn copy_tree(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn exposed_models(site: &Site) -> Vec<String> {
    let dir = site
        .root
        .join("var/lib/ollama/models/manifests/registry.ollama.ai/library");
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn sigkill_at_every_crash_point_leaves_old_or_new_and_rerun_completes() {
    let site = Site::new("gpu");
    let old = site.pack(
        "old",
        &format!(
            "{}{}",
            spec_head("models", 1, &["gpu"]),
            model_sources(&site.work, "old", 1 << 20, 3)
        ),
    );
    site.agent(&["bundle", "apply", old.to_str().unwrap()]).ok();
    // The new bundle replaces model "old" with "new": 7 Ollama blobs and 8
    // Hugging Face files, so many blob commits to be killed between.
    let new = site.pack(
        "new",
        &format!(
            "{}{}[[remove]]\nollama = \"tiny-old:1b\"\n",
            spec_head("models", 2, &["gpu"]),
            model_sources(&site.work, "new", 2 << 20, 8)
        ),
    );
    let pristine = site.work.join("pristine-root");
    copy_tree(&site.root, &pristine);
    // An uninterrupted run tells how many blobs the node lacks.
    let clean = site
        .agent(&["bundle", "apply", new.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let needed = clean["blobs_written"].as_u64().unwrap() as usize;
    let carried = needed + clean["blobs_reused"].as_u64().unwrap() as usize;
    assert!(needed >= 10, "{clean}");

    let mut killed = 0;
    for point in 1usize.. {
        copy_tree(&pristine, &site.root);
        let at = point.to_string();
        let run = site.agent_env(
            &["bundle", "apply", new.to_str().unwrap(), "--quiet"],
            &[("OWUI_CRASH_AT", &at)],
        );
        if run.signal.is_none() {
            // Past the last crash point: the apply ran to the end.
            assert_eq!(run.code, 0, "{}", run.stderr);
            break;
        }
        assert_eq!(run.signal, Some(9), "crash point {point}: {}", run.stderr);
        killed += 1;

        let list = site.agent(&["bundle", "list", "--json"]).ok().json();
        let current = list["current"].as_u64().unwrap();
        match current {
            1 => assert_eq!(
                exposed_models(&site),
                vec!["tiny-old"],
                "point {point}: old generation"
            ),
            2 => assert_eq!(
                exposed_models(&site),
                vec!["tiny-new"],
                "point {point}: new generation"
            ),
            other => panic!("point {point}: generation {other}"),
        }
        site.agent(&["bundle", "check", "--quiet"]).ok();

        let rerun = site
            .agent(&["bundle", "apply", new.to_str().unwrap(), "--json"])
            .ok()
            .json();
        assert_eq!(rerun["generation"], 2, "point {point}");
        assert_eq!(exposed_models(&site), vec!["tiny-new"]);
        if current == 1 {
            // Blobs committed before the kill are not copied again.
            let written = rerun["blobs_written"].as_u64().unwrap() as usize;
            assert_eq!(
                written + rerun["blobs_reused"].as_u64().unwrap() as usize,
                carried
            );
            // Each blob passes two points (synced, committed); at most one
            // blob per worker (2 here) can be between them when the kill lands.
            let committed_before_kill = (point.saturating_sub(2) / 2).min(needed);
            assert!(
                written <= needed - committed_before_kill,
                "point {point}: rewrote {written} of {needed}"
            );
        } else {
            assert_eq!(rerun["verdict"], "already-applied");
        }
        site.agent(&["bundle", "check", "--quiet"]).ok();
    }
    assert!(killed >= 20, "only {killed} crash points were reached");
}
