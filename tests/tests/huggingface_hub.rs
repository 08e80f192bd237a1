//! A materialised Hugging Face cache read by its real consumer, the
//! `huggingface_hub` Python package (`.ci/run` installs it), offline.

use std::process::Command;

use owui_bundle::huggingface::fixture::{materialised, REV};

/// The real consumer: huggingface_hub itself must find the snapshot
/// offline, by ref and by commit, and file by file.
#[test]
fn huggingface_hub_reads_the_cache_offline() {
    let import = Command::new("python3")
        .args(["-c", "import huggingface_hub"])
        .output();
    match import {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "huggingface_hub is not importable by python3 ({}); run `pip install huggingface_hub`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("python3 not found ({e}); install it and `pip install huggingface_hub`"),
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, cache) = materialised(dir.path());
    let script = r#"
import json, os, sys
from huggingface_hub import snapshot_download, try_to_load_from_cache, scan_cache_dir
cache, rev = sys.argv[1], sys.argv[2]
by_ref = snapshot_download(repo_id="BAAI/bge-m3", cache_dir=cache)
by_rev = snapshot_download(repo_id="BAAI/bge-m3", revision=rev, cache_dir=cache)
deep = try_to_load_from_cache("BAAI/bge-m3", "deep/er/still/file.txt", cache_dir=cache)
pinned = try_to_load_from_cache("BAAI/bge-m3", "onnx/model.onnx", cache_dir=cache, revision=rev)
info = scan_cache_dir(cache)
repo = next(iter(info.repos))
print(json.dumps({
"by_ref": by_ref, "by_rev": by_rev, "deep": deep,
"deep_bytes": open(deep).read(), "pinned_bytes": open(pinned).read(),
"warnings": [str(w) for w in info.warnings],
"refs": sorted(repo.refs), "files": repo.nb_files,
}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&cache)
        .arg(REV)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HOME", dir.path().join("hf-home"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let snap = cache.join("models--BAAI--bge-m3/snapshots").join(REV);
    assert_eq!(got["by_ref"], snap.to_str().unwrap());
    assert_eq!(got["by_rev"], snap.to_str().unwrap());
    assert_eq!(
        got["deep"],
        snap.join("deep/er/still/file.txt").to_str().unwrap()
    );
    assert_eq!(got["deep_bytes"], "deep");
    assert_eq!(got["pinned_bytes"], "onnx bytes");
    assert_eq!(got["warnings"], serde_json::json!([]));
    assert_eq!(got["refs"], serde_json::json!(["main"]));
    assert_eq!(got["files"], 5);
}
