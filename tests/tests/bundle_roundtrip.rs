//! A bundle's whole life through the real binaries: create, inspect, the
//! stock minisign tool, verify, apply (Ollama, Hugging Face and podman
//! stores), re-apply, delta bundles from `bundle have`, removal and gc.

use std::fs;
use std::path::Path;

use owui_bundle::oci::{stored_digest, PodmanStore};
use owui_bundle::Sha256Digest;
use owui_tests::build_test_oci_layout;
use owui_tests::site::{assert_unchanged, model_sources, sha256_hex, spec_head, Site};

const OCI_REF: &str = "localhost/owui/test-app:1.0";

fn podman_store(site: &Site) -> PodmanStore {
    PodmanStore {
        driver: "vfs".into(),
        graph_root: site.root.join("var/lib/containers/storage"),
        run_root: site.root.join("run/containers/storage"),
    }
}

fn ollama_manifest(site: &Site, model: &str) -> std::path::PathBuf {
    site.root
        .join("var/lib/ollama/models/manifests/registry.ollama.ai/library")
        .join(model)
        .join("1b")
}

/// Runs the stock `minisign -V`; returns success and what it printed.
fn minisign_verify(file: &Path, public_key: &Path) -> (bool, String) {
    let out = std::process::Command::new("minisign")
        .args(["-V", "-m"])
        .arg(file)
        .arg("-p")
        .arg(public_key)
        .output()
        .expect("minisign is installed (apt-get install minisign; .ci/run does)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn create_inspect_minisign_verify_apply_delta_remove_gc() {
    let site = Site::new("gpu");
    let oci_digest = build_test_oci_layout(&site.work.join("images/app"), OCI_REF).unwrap();
    let spec = format!(
        "{}{}\n[[oci]]\nref = \"{OCI_REF}\"\nsource = \"images/app\"\n",
        spec_head("models", 1, &["gpu", "allinone"]),
        model_sources(&site.work, "a", 3 << 20, 4)
    );
    let bundle = site.pack("one", &spec);

    // Inspect shows the manifest; the stock minisign tool accepts our signature.
    let extract = site.work.join("extract");
    let inspected = site
        .builder(&[
            "bundle",
            "inspect",
            bundle.to_str().unwrap(),
            "--extract",
            extract.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(inspected["manifest"]["channel"], "models");
    assert_eq!(inspected["signed"], true);
    let (ok, said) = minisign_verify(&extract.join("manifest.json"), &site.keys.join("owui.pub"));
    assert!(ok, "minisign -V failed: {said}");
    assert!(said.contains("channel=models sequence=1"), "{said}");
    // ...and rejects the manifest once a byte changes.
    let mut tampered = fs::read(extract.join("manifest.json")).unwrap();
    tampered[20] ^= 1;
    fs::write(extract.join("manifest.json"), tampered).unwrap();
    assert!(!minisign_verify(&extract.join("manifest.json"), &site.keys.join("owui.pub")).0);

    let verified = site
        .agent(&["bundle", "verify", bundle.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(verified["verdict"], "new");

    let applied = site
        .agent(&["bundle", "apply", bundle.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(applied["generation"], 1);
    assert_eq!(applied["verdict"], "new");

    // Ollama: the manifest names blobs that exist under Ollama's own names.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(ollama_manifest(&site, "tiny-a")).unwrap()).unwrap();
    let models = site.root.join("var/lib/ollama/models");
    let gguf = fs::read(site.work.join("src-a/model.gguf")).unwrap();
    let model_layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.ollama.image.model")
        .unwrap();
    assert_eq!(
        model_layer["digest"],
        format!("sha256:{}", sha256_hex(&gguf))
    );
    assert_eq!(
        fs::read(models.join(format!("blobs/sha256-{}", sha256_hex(&gguf)))).unwrap(),
        gguf
    );

    // Hugging Face: the snapshot resolves to the source bytes.
    let rev = &sha256_hex(b"a")[..40];
    let snap = site
        .root
        .join("var/lib/owui/huggingface/hub/models--acme--embed-a/snapshots")
        .join(rev);
    assert_eq!(
        fs::read(snap.join("onnx/model.onnx")).unwrap(),
        fs::read(site.work.join("src-a/hf/onnx/model.onnx")).unwrap()
    );

    // OCI: podman's store holds the image under the digest we built.
    let store = podman_store(&site);
    assert_eq!(
        stored_digest(OCI_REF, &store).unwrap(),
        Some(Sha256Digest::parse(&oci_digest).unwrap())
    );

    // Re-applying the same bundle is a no-op that says so.
    let again = site
        .agent(&["bundle", "apply", bundle.to_str().unwrap()])
        .ok();
    assert!(again.stdout.contains("already applied"), "{}", again.stdout);

    // A delta bundle built against what the node holds leaves those blobs out.
    let have = site.agent(&["bundle", "have"]).ok();
    let have_path = site.work.join("have.json");
    fs::write(&have_path, &have.stdout).unwrap();
    let spec2 = format!(
        "{}{}{}",
        spec_head("models", 2, &["gpu"]),
        model_sources(&site.work, "a", 3 << 20, 4),
        model_sources(&site.work, "b", 1 << 20, 2)
    );
    let spec2_path = site.work.join("two.toml");
    fs::write(&spec2_path, spec2).unwrap();
    let delta = site.work.join("two.owb");
    let created = site
        .builder(&[
            "bundle",
            "create",
            spec2_path.to_str().unwrap(),
            "--key",
            &site.key(),
            "--out",
            delta.to_str().unwrap(),
            "--have",
            have_path.to_str().unwrap(),
            "--json",
        ])
        .ok()
        .json();
    assert!(created["blobs_omitted"].as_u64().unwrap() >= 8, "{created}");
    assert!(
        fs::metadata(&delta).unwrap().len() < 2 << 20,
        "the delta carries only model b"
    );
    let applied = site
        .agent(&["bundle", "apply", delta.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(applied["generation"], 2);
    assert!(ollama_manifest(&site, "tiny-a").exists() && ollama_manifest(&site, "tiny-b").exists());
    assert_eq!(
        stored_digest(OCI_REF, &store).unwrap(),
        Some(Sha256Digest::parse(&oci_digest).unwrap())
    );

    // A bundle of removals takes model a and the image away.
    let spec3 = format!(
        "{}[[remove]]\nollama = \"tiny-a:1b\"\n[[remove]]\noci = \"{OCI_REF}\"\n[[remove]]\nhuggingface = \"acme/embed-a\"\n",
        spec_head("models", 3, &["gpu"])
    );
    let removal = site.pack("three", &spec3);
    // Inspect names what goes in words, not Rust's debug text.
    let said = site
        .builder(&["bundle", "inspect", removal.to_str().unwrap()])
        .ok()
        .stdout;
    for line in [
        "remove    ollama tiny-a:1b".to_string(),
        format!("remove    oci {OCI_REF}"),
        "remove    huggingface acme/embed-a".to_string(),
    ] {
        assert!(said.lines().any(|l| l == line), "{line:?} not in:\n{said}");
    }
    site.agent(&["bundle", "apply", removal.to_str().unwrap()])
        .ok();
    assert!(!ollama_manifest(&site, "tiny-a").exists());
    assert!(ollama_manifest(&site, "tiny-b").exists());
    assert!(!site
        .root
        .join("var/lib/owui/huggingface/hub/models--acme--embed-a")
        .exists());
    assert_eq!(stored_digest(OCI_REF, &store).unwrap(), None);

    let list = site.agent(&["bundle", "list", "--json"]).ok().json();
    assert_eq!(list["current"], 3);
    assert_eq!(list["generations"].as_array().unwrap().len(), 3);

    // gc keeps the current generation only and frees model a's blobs.
    let gc = site
        .agent(&["bundle", "gc", "--keep", "1", "--json"])
        .ok()
        .json();
    assert_eq!(gc["generations_removed"], serde_json::json!([1, 2]));
    assert!(gc["blobs_removed"].as_u64().unwrap() >= 8, "{gc}");
    let content = site.root.join("var/lib/owui/content/blobs/sha256");
    assert!(!content.join(sha256_hex(&gguf)).exists());
    site.agent(&["bundle", "check"]).ok();
    assert!(ollama_manifest(&site, "tiny-b").exists());
}

#[test]
fn json_errors_carry_the_exit_code_and_name_the_file() {
    let site = Site::new("gpu");
    let missing = site.agent(&["bundle", "verify", "/nonexistent.owb", "--json"]);
    assert_eq!(missing.code, 1);
    assert_eq!(missing.json()["error"]["exit_code"], 1);
    assert!(missing.stderr.contains("/nonexistent.owb"));
}

#[test]
fn bundles_are_reproducible() {
    let site = Site::new("gpu");
    let spec = format!(
        "{}{}",
        spec_head("models", 1, &["gpu"]),
        model_sources(&site.work, "r", 1 << 20, 3)
    );
    let first = fs::read(site.pack("r1", &spec)).unwrap();
    let second = fs::read(site.pack("r2", &spec)).unwrap();
    // Ed25519 signatures are deterministic, so the whole file is.
    assert_eq!(sha256_hex(&first), sha256_hex(&second));
}

/// Runs the read-only verbs against the node; each must succeed and leave
/// every file under the root as it was.
fn read_only_verbs_change_nothing(site: &Site, bundle: &Path, when: &str) {
    let before = site.snapshot();
    site.agent(&["bundle", "verify", bundle.to_str().unwrap(), "--quiet"])
        .ok();
    site.agent(&["bundle", "list"]).ok();
    site.agent(&["bundle", "have"]).ok();
    assert_unchanged(&before, &site.snapshot(), when);
}

#[test]
fn verify_list_and_have_change_nothing_even_on_a_read_only_root() {
    let site = Site::new("gpu");
    let spec = |tag: &str, seq: u64| {
        format!(
            "{}{}",
            spec_head("models", seq, &["gpu"]),
            model_sources(&site.work, tag, 100_000, 1)
        )
    };
    let a = site.pack("a", &spec("a", 1));
    let b = site.pack("b", &spec("b", 2));
    // A fresh node: no content store or bundles directory yet.
    assert!(!site.root.join("var").exists());
    read_only_verbs_change_nothing(&site, &a, "on a fresh node");
    assert!(!site.root.join("var").exists());

    // A node with a generation, its root mounted read-only.
    site.agent(&["bundle", "apply", a.to_str().unwrap()]).ok();
    let root = site.root.to_str().unwrap();
    let mount = |args: &[&str]| {
        let ok = std::process::Command::new("mount")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount {args:?} needs root (CI runs as root)");
    };
    mount(&["--bind", root, root]);
    let result = std::panic::catch_unwind(|| {
        mount(&["-o", "remount,bind,ro", root]);
        read_only_verbs_change_nothing(&site, &b, "on a read-only root");
        let refused = site.agent(&["bundle", "apply", b.to_str().unwrap()]);
        assert_ne!(refused.code, 0, "apply wrote to a read-only root");
    });
    let _ = std::process::Command::new("umount").arg(root).status();
    result.unwrap();
}
