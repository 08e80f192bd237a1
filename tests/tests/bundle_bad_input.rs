//! Every kind of bad bundle the issue lists: each is refused with a specific
//! error and exit code, and the node's disk is left exactly as it was.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::sign::SecretKey;
use owui_tests::site::{key_id, model_sources, noise, sha256_hex, spec_head, Site};
use serde_json::{json, Value};

/// A node at generation 1 (bundle A applied), bundle B (sequence 2) ready.
struct Fixture {
    site: Site,
    b: PathBuf,
}

fn fixture() -> Fixture {
    let site = Site::new("gpu");
    let a = site.pack(
        "a",
        &format!(
            "{}{}",
            spec_head("models", 1, &["gpu"]),
            model_sources(&site.work, "a", 1 << 20, 2)
        ),
    );
    site.agent(&["bundle", "apply", a.to_str().unwrap()]).ok();
    let b = site.pack(
        "b",
        &format!(
            "{}{}",
            spec_head("models", 2, &["gpu"]),
            model_sources(&site.work, "b", 2 << 20, 3)
        ),
    );
    Fixture { site, b }
}

impl Fixture {
    /// Runs verify and apply on `file`; both must fail with `code` and say
    /// `needle`, and the node's tree must not change.
    fn refused(&self, file: &Path, code: i32, needle: &str) {
        self.refused_by(&["verify", "apply"], file, code, needle);
    }

    fn refused_by(&self, verbs: &[&str], file: &Path, code: i32, needle: &str) {
        for &verb in verbs {
            self.site
                .refused(&["bundle", verb, file.to_str().unwrap()], code, needle);
        }
    }

    /// Writes a mutated copy of bundle B.
    fn mutate(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut bytes = fs::read(&self.b).unwrap();
        f(&mut bytes);
        let out = self.site.work.join(name);
        fs::write(&out, bytes).unwrap();
        out
    }

    fn manifest(&self) -> Value {
        let bytes = fs::read(&self.b).unwrap();
        let size = header_size(&bytes[..512]);
        serde_json::from_slice(&bytes[512..512 + size]).unwrap()
    }

    /// Byte offset where the blob section starts.
    fn base(&self) -> usize {
        let bytes = fs::read(&self.b).unwrap();
        let m = padded(header_size(&bytes[..512]));
        let s = header_size(&bytes[512 + m..1024 + m]);
        1024 + m + padded(s)
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(512) * 512
}

fn header_size(h: &[u8]) -> usize {
    tar::Header::from_byte_slice(h).entry_size().unwrap() as usize
}

/// Rewrites one tar header in place and fixes its checksum.
fn edit_header(bytes: &mut [u8], at: usize, f: impl FnOnce(&mut tar::Header)) {
    let mut h = tar::Header::from_byte_slice(&bytes[at..at + 512]).clone();
    f(&mut h);
    h.set_cksum();
    bytes[at..at + 512].copy_from_slice(h.as_bytes());
}

fn tar_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(512 + padded(data.len()), 0);
    out
}

/// Assembles a bundle by hand from a manifest, signed with `key`, and blob entries.
fn craft(key: &Path, manifest: &Value, blobs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let sk = SecretKey::from_file_str("key", &fs::read_to_string(key).unwrap()).unwrap();
    let body = serde_json::to_vec(manifest).unwrap();
    let mut out = tar_entry("manifest.json", &body);
    out.extend(tar_entry(
        "manifest.json.minisig",
        sk.sign(&body, "crafted").as_bytes(),
    ));
    for (name, data) in blobs {
        out.extend(tar_entry(name, data));
    }
    out.extend([0u8; 1024]);
    out
}

#[test]
fn damaged_files_are_refused_and_change_nothing() {
    let fx = fixture();
    let len = fs::metadata(&fx.b).unwrap().len() as usize;
    let base = fx.base();
    let m = fx.manifest();
    let raw_blob = m["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["encoding"] == "raw")
        .unwrap()
        .clone();
    let raw_at = base + raw_blob["offset"].as_u64().unwrap() as usize;
    let first_header = base + m["blobs"][0]["offset"].as_u64().unwrap() as usize - 512;

    let f = fx.mutate("truncated.owb", |b| b.truncate(len / 2));
    fx.refused(&f, 3, "truncated");
    let f = fx.mutate("truncated-end.owb", |b| b.truncate(len - 700));
    fx.refused(&f, 3, "truncated");

    let f = fx.mutate("flipped-blob.owb", |b| b[raw_at + 1000] ^= 0x40);
    fx.refused(&f, 4, "hashes to");

    let f = fx.mutate("flipped-manifest.owb", |b| b[512 + 40] ^= 0x01);
    fx.refused(&f, 4, "does not match the signed content");

    let f = fx.mutate("no-signature.owb", |b| {
        let m = padded(header_size(&b[..512]));
        let s = padded(header_size(&b[512 + m..1024 + m]));
        b.drain(512 + m..1024 + m + s);
    });
    fx.refused(&f, 4, "no signature");

    for (name, kind, needle) in [
        ("dotdot.owb", None, "unsafe entry name \"../evil\""),
        ("absolute.owb", None, "unsafe entry name \"/etc/passwd\""),
        (
            "symlink.owb",
            Some(tar::EntryType::Symlink),
            "is a symbolic link",
        ),
        ("hardlink.owb", Some(tar::EntryType::Link), "is a hard link"),
    ] {
        let f = fx.mutate(name, |b| {
            edit_header(b, first_header, |h| match kind {
                None => {
                    let path = if name == "dotdot.owb" {
                        "../evil"
                    } else {
                        "/etc/passwd"
                    };
                    // set_path refuses these names, as a careful writer should; write the field raw.
                    let field = &mut h.as_old_mut().name;
                    field.fill(0);
                    field[..path.len()].copy_from_slice(path.as_bytes());
                }
                Some(k) => {
                    h.set_entry_type(k);
                    h.set_link_name("/etc/shadow").unwrap();
                }
            })
        });
        fx.refused(&f, 3, needle);
    }

    let f = fx.mutate("unlisted.owb", |b| {
        b.truncate(b.len() - 1024);
        b.extend(tar_entry("extra/payload.sh", b"#!/bin/sh\nrm -rf /\n"));
        b.extend([0u8; 1024]);
    });
    fx.refused(&f, 3, "not listed in the signed manifest");

    let f = fx.mutate("duplicate.owb", |b| {
        let first = header_size(&b[first_header..first_header + 512]);
        let entry = b[first_header..first_header + 512 + padded(first)].to_vec();
        b.truncate(b.len() - 1024);
        b.extend(entry);
        b.extend([0u8; 1024]);
    });
    fx.refused(&f, 3, "duplicate entry");

    let f = fx.mutate("wrong-size.owb", |b| {
        edit_header(b, first_header, |h| h.set_size(h.entry_size().unwrap() - 1));
    });
    fx.refused(&f, 3, "the signed manifest declares");

    let f = fx.mutate("huge-manifest.owb", |b| {
        edit_header(b, 0, |h| h.set_size(17 << 20))
    });
    fx.refused(&f, 3, "over its 16777216-byte cap");
}

#[test]
fn signed_but_lying_manifests_are_caught() {
    let fx = fixture();
    let key = fx.site.keys.join("owui.key");
    let data = noise(5, 100_000);
    let digest = format!("sha256:{}", sha256_hex(&data));
    let head = |blobs: Value| json!({"format": "owui-bundle/1", "channel": "models", "sequence": 9, "roles": ["gpu"], "created": 0, "blobs": blobs});

    // The declared size is smaller than the entry holds.
    let m = head(
        json!([{"digest": digest, "size": 99_999, "encoding": "raw", "stored_size": 99_999, "offset": 512}]),
    );
    let f = fx.site.work.join("short.owb");
    fs::write(
        &f,
        craft(
            &key,
            &m,
            &[(format!("blobs/sha256/{}", &digest[7..]), data.clone())],
        ),
    )
    .unwrap();
    fx.refused(&f, 3, "the signed manifest declares 99999");

    // A zstd blob that expands past its declared size.
    let text = "all work and no play ".repeat(50_000).into_bytes();
    let small = &text[..1000];
    let zst = zstd::encode_all(&text[..], 3).unwrap();
    let d = format!("sha256:{}", sha256_hex(small));
    let m = head(
        json!([{"digest": d, "size": 1000, "encoding": "zstd", "stored_size": zst.len(), "offset": 512}]),
    );
    let f = fx.site.work.join("bomb.owb");
    fs::write(
        &f,
        craft(&key, &m, &[(format!("blobs/sha256/{}.zst", &d[7..]), zst)]),
    )
    .unwrap();
    fx.refused(&f, 4, "expands past its declared size");

    // Signed by a key the node does not trust.
    let other = fx.site.work.join("other-keys");
    fx.site
        .builder(&["key", "generate", "--out", other.to_str().unwrap()])
        .ok();
    let m = head(
        json!([{"digest": digest, "size": 100_000, "encoding": "raw", "stored_size": 100_000, "offset": 512}]),
    );
    let f = fx.site.work.join("stranger.owb");
    fs::write(
        &f,
        craft(
            &other.join("owui.key"),
            &m,
            &[(format!("blobs/sha256/{}", &digest[7..]), data)],
        ),
    )
    .unwrap();
    fx.refused(&f, 4, "not in the trust store");
}

#[test]
fn policy_refusals_role_sequence_revocation() {
    let fx = fixture();
    let site = &fx.site;

    // An older or equal sequence on the channel is refused...
    let replay = site.pack(
        "replay",
        &format!(
            "{}{}",
            spec_head("models", 1, &["gpu"]),
            model_sources(&site.work, "c", 1000, 1)
        ),
    );
    fx.refused(&replay, 5, "is not newer than 1");
    // ...unless forced, which is logged and recorded.
    let forced = site
        .agent(&[
            "bundle",
            "apply",
            replay.to_str().unwrap(),
            "--allow-downgrade",
            "--json",
        ])
        .ok();
    assert!(
        forced.stderr.contains("downgrade forced"),
        "{}",
        forced.stderr
    );
    assert_eq!(forced.json()["verdict"], "forced-downgrade");
    let list = site.agent(&["bundle", "list", "--json"]).ok().json();
    assert_eq!(list["generations"][1]["applied"]["downgrade_forced"], true);

    // A node of another role refuses the bundle.
    site.write_seed("app");
    fx.refused(&fx.b, 5, "this node's role is app");
    site.write_seed("gpu");

    // A rotation that revokes the site key: its bundles are refused after.
    let next = site.work.join("next-keys");
    site.builder(&["key", "generate", "--out", next.to_str().unwrap()])
        .ok();
    let stmt = site.work.join("rotation-1.json");
    let old_id = key_id(&site.keys.join("owui.pub"));
    site.builder(&[
        "key",
        "rotate",
        "--key",
        &site.key(),
        "--sequence",
        "1",
        "--add",
        next.join("owui.pub").to_str().unwrap(),
        "--revoke",
        &old_id,
        "--out",
        stmt.to_str().unwrap(),
    ])
    .ok();
    let trust = site
        .agent(&["trust", "apply", stmt.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(trust["revoked"], json!([old_id]));
    fx.refused(&fx.b, 4, "which has been revoked");
    // Replaying the statement is refused too.
    let again = site.agent(&["trust", "apply", stmt.to_str().unwrap()]);
    assert_ne!(again.code, 0);
}

#[test]
fn not_enough_space_is_found_before_writing() {
    let fx = fixture();
    let content = fx.site.root.join("var/lib/owui/content");
    // A small filesystem for the content store: the bundle cannot fit.
    let moved = fx.site.work.join("content-saved");
    fs::rename(&content, &moved).unwrap();
    fs::create_dir_all(&content).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&content)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    let result = std::panic::catch_unwind(|| {
        fs::create_dir_all(content.join("blobs/sha256")).unwrap();
        fs::create_dir_all(content.join("tmp")).unwrap();
        fx.refused_by(&["apply"], &fx.b, 6, "not enough free space");
    });
    let _ = std::process::Command::new("umount").arg(&content).status();
    result.unwrap();
}

/// A signed bundle carrying `blobs` (raw) whose manifest lists `items`
/// (the `ollama`, `huggingface`, `oci`, `remove` keys), crafted by hand so
/// that names the builder would refuse reach the node.
fn with_items(fx: &Fixture, name: &str, items: Value, blobs: &[Vec<u8>]) -> PathBuf {
    let mut entries = Vec::new();
    let mut listed = Vec::new();
    let mut offset = 512;
    for data in blobs {
        let hex = sha256_hex(data);
        listed.push(json!({"digest": format!("sha256:{hex}"), "size": data.len(), "encoding": "raw", "stored_size": data.len(), "offset": offset}));
        offset += padded(data.len()) + 512;
        entries.push((format!("blobs/sha256/{hex}"), data.clone()));
    }
    let mut m = json!({"format": "owui-bundle/1", "channel": "models", "sequence": 9, "roles": ["gpu"], "created": 0, "blobs": listed});
    for (k, v) in items.as_object().unwrap() {
        m[k] = v.clone();
    }
    let f = fx.site.work.join(name);
    fs::write(&f, craft(&fx.site.keys.join("owui.key"), &m, &entries)).unwrap();
    f
}

#[test]
fn bad_items_are_refused_by_verify_and_before_any_write() {
    let fx = fixture();
    let weights = noise(11, 300_000);
    let config = b"{\"model_format\":\"gguf\"}".to_vec();
    let d = |b: &[u8]| format!("sha256:{}", sha256_hex(b));
    let manifest_of = |layers: &[&[u8]]| {
        let layers: Vec<Value> = layers
            .iter()
            .map(|l| json!({"mediaType": "application/vnd.ollama.image.model", "digest": d(l), "size": l.len()}))
            .collect();
        serde_json::to_vec(&json!({"schemaVersion": 2, "config": {"digest": d(&config), "size": config.len()}, "layers": layers})).unwrap()
    };
    let good = manifest_of(&[&weights]);
    let model = |name: &str, manifest: &[u8]| json!({"ollama": [{"name": name, "manifest": d(manifest), "blobs": [d(&config), d(&weights)]}]});
    let blobs = [good.clone(), config.clone(), weights.clone()];
    let hf = |repo: &str, path: &str| {
        json!({"huggingface": [{"repo": repo, "revision": "5617a9f61b028005a4858fdac845db406aefb181", "ref": "main",
            "files": [{"path": path, "digest": d(&weights), "size": weights.len()}]}]})
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "ollama-dotdot",
            model("evil/../../x:1b", &good),
            "Ollama model name",
        ),
        (
            "ollama-space",
            model("tiny model:1b", &good),
            "Ollama model name",
        ),
        (
            "hf-repo",
            hf("acme/../etc", "config.json"),
            "repo \"acme/../etc\"",
        ),
        (
            "hf-path",
            hf("acme/embed", "../../../etc/cron.d/x"),
            "snapshot file",
        ),
        (
            "oci-ref",
            json!({"oci": [{"ref": "Evil Image:1", "manifest": d(&good), "media_type": "application/vnd.oci.image.manifest.v1+json", "manifest_size": good.len(), "blobs": [d(&config)]}]}),
            "OCI reference",
        ),
        (
            "remove-name",
            json!({"remove": [{"ollama": "../../x"}]}),
            "remove[0]",
        ),
        (
            "twice",
            json!({"ollama": [
                {"name": "tiny:1b", "manifest": d(&good), "blobs": [d(&config), d(&weights)]},
                {"name": "registry.ollama.ai/library/tiny:1b", "manifest": d(&good), "blobs": [d(&config), d(&weights)]}]}),
            "listed twice",
        ),
    ];
    for (name, items, needle) in cases {
        let f = with_items(&fx, &format!("{name}.owb"), items, &blobs);
        fx.refused(&f, 3, needle);
    }
    // A well-named model whose Ollama manifest names another layer than
    // the signed item lists: found in the bundle's copy, before writing.
    let lying = manifest_of(&[&config]);
    let f = with_items(
        &fx,
        "ollama-lying-manifest.owb",
        model("tiny:1b", &lying),
        &[lying.clone(), config, weights],
    );
    fx.refused(&f, 3, "names other blobs than the item lists");
}

#[test]
fn fifos_and_devices_as_the_bundle_are_refused_at_once() {
    let fx = fixture();
    let fifo = fx.site.work.join("bundle.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Should a reader block in open() (the old behaviour), a writer comes
    // after 20 s so the test fails on its timing instead of hanging.
    let unblock = fifo.clone();
    std::thread::spawn(move || {
        use std::os::unix::fs::OpenOptionsExt;
        std::thread::sleep(std::time::Duration::from_secs(20));
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(unblock);
    });
    for file in [fifo.as_path(), Path::new("/dev/zero")] {
        let started = std::time::Instant::now();
        fx.refused(file, 3, "must be a regular file");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{} took {:?}",
            file.display(),
            started.elapsed()
        );
    }
}

/// Mounts a tmpfs with `options` on `dir` (empty) for the length of `f`,
/// unmounting whatever happens.
fn with_tmpfs(dir: &Path, options: &str, f: impl FnOnce()) {
    fs::create_dir_all(dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a tmpfs needs root (CI runs as root)"
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let _ = std::process::Command::new("umount").arg(dir).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn generations_on_another_small_filesystem_are_checked_before_writing() {
    // A fresh node whose bundles directory is its own small filesystem:
    // the store has room, the generation (blobs copied, not linked) does not.
    let site = Site::new("gpu");
    let b = site.pack(
        "b",
        &format!(
            "{}{}",
            spec_head("models", 1, &["gpu"]),
            model_sources(&site.work, "b", 1 << 20, 2)
        ),
    );
    let bundles = site.root.join("var/lib/owui/bundles");
    let apply = ["bundle", "apply", b.to_str().unwrap()];
    with_tmpfs(&bundles, "size=400k", || {
        site.refused(&apply, 6, "not enough free space on");
        site.refused(&apply, 6, "bundles: need");
    });
    // Room for the bytes but too few inodes.
    with_tmpfs(&bundles, "size=64m,nr_inodes=24", || {
        site.refused(&apply, 6, "inodes");
    });
    // Enough of both: the apply goes through, copying across filesystems.
    with_tmpfs(&bundles, "size=64m", || {
        site.agent(&apply).ok();
        site.agent(&["bundle", "check", "--quiet"]).ok();
    });
}
