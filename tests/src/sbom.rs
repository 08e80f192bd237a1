//! The tools auditors check an SBOM with: SPDX's validator (`pyspdxtools`,
//! PyPI spdx-tools) and the NTIA minimum elements (`ntia-checker`, PyPI
//! ntia-conformance-checker). `.ci/run` installs both.

use std::path::Path;
use std::process::Command;

const SETUP: &str = "run .ci/run: it installs spdx-tools and ntia-conformance-checker from PyPI";

fn run(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}; {SETUP}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Panics, with the tools' reports, unless the SPDX JSON document at
/// `path` passes both `pyspdxtools` and `ntia-checker --comply ntia`.
pub fn assert_conformant(path: &Path) {
    let file = path.to_str().expect("a UTF-8 path");
    let (ok, text) = run("pyspdxtools", &["--infile", file]);
    assert!(ok, "pyspdxtools refuses {file}:\n{text}");
    assert!(!text.contains("ERROR"), "{text}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let report = dir.path().join("ntia.json");
    let report_arg = report.to_str().expect("a UTF-8 path");
    let (ok, text) = run(
        "ntia-checker",
        &[
            "--comply",
            "ntia",
            "--output",
            "json",
            "--output-file",
            report_arg,
            file,
        ],
    );
    let report = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        ok,
        "ntia-checker: {file} is not conformant:\n{text}\n{report}"
    );
    let report: serde_json::Value = serde_json::from_str(&report)
        .unwrap_or_else(|e| panic!("ntia-checker's report: {e}:\n{report}"));
    assert_eq!(report["isNtiaConformant"], true, "{report:#}");
}
