//! The image's SPDX document against the tools auditors run: SPDX's own
//! validator (`pyspdxtools`, PyPI spdx-tools) and the NTIA minimum elements
//! (`ntia-checker`, PyPI ntia-conformance-checker), through
//! `owui_tests::sbom`. The document is the builder's, for a fixture manifest with Debian
//! packages, the agent's real crate list, a container image and two models;
//! the agent's crates are checked against what `cargo tree` says the agent
//! links on Linux.

use std::path::Path;
use std::process::Command;

use owui_builder::image::sbom::{spdx, Package, PulledImage, SbomInputs, AGENT_CRATES};
use owui_bundle::manifest::Manifest;
use owui_bundle::Sha256Digest;

fn document() -> serde_json::Value {
    let deb = |name: &str, version: &str| Package {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
    };
    let packages = [
        deb("bash", "5.2.37-2+b5"),
        deb("libstdc++6", "14.2.0-19"),
        deb("owui-nvidia-modules-6.12.57+deb13-amd64", "535.274.02"),
    ];
    let index = Sha256Digest::of(b"index");
    let manifest = Sha256Digest::of(b"manifest");
    let reference = "ghcr.io/open-webui/open-webui:v0.6.5";
    // The content partition's bundle manifest, as the builder writes it.
    let content: Manifest = serde_json::from_value(serde_json::json!({
        "format": "owui-bundle/1",
        "channel": "image",
        "sequence": 1,
        "roles": ["allinone"],
        "created": 0,
        "blobs": [],
        "ollama": [{
            "name": "llama3:8b",
            "manifest": Sha256Digest::of(b"ollama"),
            "blobs": [],
        }],
        "huggingface": [{
            "repo": "acme/tiny-llama",
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "ref": "main",
            "files": [{
                "path": "model.safetensors",
                "digest": Sha256Digest::of(b"weights"),
                "size": 7,
            }],
        }],
        "oci": [{
            "ref": reference,
            "manifest": manifest,
            "media_type": owui_bundle::oci::OCI_MANIFEST,
            "manifest_size": 8,
            "blobs": [],
        }],
    }))
    .unwrap();
    let pulled = [PulledImage {
        reference: reference.into(),
        registry: "ghcr.io".into(),
        repository: "open-webui/open-webui".into(),
        mirror: None,
        digest: index,
        manifest,
    }];
    spdx(&SbomInputs {
        name: "owui-allinone-1.4.2",
        version: "1.4.2",
        suite: "trixie",
        root_hash: &"ab".repeat(32),
        source_date_epoch: 1_700_000_000,
        packages: &packages,
        crates: AGENT_CRATES,
        content: Some(&content),
        pulled: &pulled,
    })
}

#[test]
fn the_sbom_passes_spdx_validation_and_the_ntia_minimum_elements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owui-allinone-1.4.2.spdx.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document()).unwrap()).unwrap();
    owui_tests::sbom::assert_conformant(&path);
}

/// Every crate `cargo tree` says the agent links on Linux (build scripts
/// and proc macros included) is in the document, at its locked version.
#[test]
fn the_sbom_lists_every_crate_the_agent_links() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO"))
        .current_dir(&repo)
        .args(["tree", "--offline", "--locked", "-p", "owui-agent"])
        .args(["-e", "normal,build", "--target", "x86_64-unknown-linux-gnu"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = document();
    let listed: Vec<(String, String)> = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"].as_str().unwrap().starts_with("SPDXRef-crate-"))
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut linked = 0;
    for line in text.lines() {
        // "name v1.2.3", "name v1.2.3 (/path)", "… (*)"
        let mut words = line.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        let version = version.trim_start_matches('v');
        assert!(
            listed.iter().any(|(n, v)| n == name && v == version),
            "{name} {version} is linked but not in the SBOM"
        );
        linked += 1;
    }
    assert!(
        linked > 100,
        "cargo tree listed only {linked} crates:\n{text}"
    );
}
