//! `owui-builder` pulling images from a real registry (Debian's
//! docker-registry with TLS and htpasswd auth, filled with skopeo): pins by
//! digest, the content-addressed cache, and every way a registry can fail.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owui_tests::image::builder;
use owui_tests::registry::{CuttingProxy, SilentPeer, TestRegistry, PASSWORD};
use owui_tests::site::Run;
use owui_tests::{build_test_oci_image, build_test_oci_index};

/// A registry holding `owui/app:v1` (one image) and what a client needs.
struct Fixture {
    registry: TestRegistry,
    work: tempfile::TempDir,
    auth: PathBuf,
    certs: PathBuf,
    cache: PathBuf,
    /// The manifest digest of `owui/app:v1`.
    digest: String,
}

impl Fixture {
    /// `content`: the text of the image's one file (its size sets the blob's).
    fn new(content: &str) -> Fixture {
        let registry = TestRegistry::start();
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let digest = build_test_oci_image(&layout, "app", content).unwrap();
        registry.push(&layout, "app", "owui/app:v1", false);
        let files = registry.client_files(work.path(), &[&registry.host()], PASSWORD);
        Fixture {
            cache: work.path().join("cache"),
            auth: files.auth,
            certs: files.certs,
            registry,
            work,
            digest,
        }
    }

    fn reference(&self) -> String {
        format!("{}/owui/app:v1@{}", self.registry.host(), self.digest)
    }

    /// `owui-builder oci pull REFERENCE` with this fixture's cache,
    /// credentials and certificates, `--json`, and `more`.
    fn pull(&self, reference: &str, more: &[&str]) -> Run {
        let mut args = vec!["oci", "pull", reference, "--json"];
        args.extend(self.client_args());
        args.extend(more);
        builder(&args)
    }

    fn client_args(&self) -> Vec<&str> {
        vec![
            "--cache",
            self.cache.to_str().unwrap(),
            "--registry-config",
            self.auth.to_str().unwrap(),
            "--registry-certs",
            self.certs.to_str().unwrap(),
            "--registry-timeout",
            "3",
        ]
    }

    fn cached_blobs(&self) -> Vec<String> {
        files_in(&self.cache.join("oci/blobs/sha256"))
    }

    /// Anything left in the cache's temporary directory.
    fn cache_leftovers(&self) -> Vec<String> {
        files_in(&self.cache.join("oci/tmp"))
    }

    /// A bundle spec naming `reference` without a source, and a key.
    fn bundle_spec(&self, reference: &str) -> (PathBuf, PathBuf) {
        let keys = self.work.path().join("keys");
        if !keys.join("owui.key").exists() {
            let r = builder(&["key", "generate", "--out", keys.to_str().unwrap()]);
            assert_eq!(r.code, 0, "{}", r.stderr);
        }
        let spec = self.work.path().join("bundle.toml");
        fs::write(
            &spec,
            format!(
                "channel = \"apps\"\nsequence = 1\nroles = [\"app\"]\n\n\
                 # pulled from the test registry\n[[oci]]\nref = \"{reference}\"\n"
            ),
        )
        .unwrap();
        (spec, keys.join("owui.key"))
    }

    fn bundle_create(&self, spec: &Path, key: &Path, out: &Path, more: &[&str]) -> Run {
        let mut args = vec![
            "bundle",
            "create",
            spec.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend(self.client_args());
        args.extend(more);
        builder(&args)
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

fn assert_fails(run: &Run, code: i32, needles: &[&str]) {
    assert_eq!(run.code, code, "{}\n{}", run.stdout, run.stderr);
    for n in needles {
        assert!(run.stderr.contains(n), "{n:?} not in: {}", run.stderr);
    }
}

/// Random text (so the layer neither compresses nor repeats) of `n` bytes.
fn noise(n: usize) -> String {
    let mut bytes = vec![0u8; n / 2];
    let f = fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut std::io::BufReader::new(f), &mut bytes).unwrap();
    hex::encode(bytes)
}

#[test]
fn a_pull_by_digest_gets_what_skopeo_gets() {
    let f = Fixture::new("hello from the registry\n");
    let run = f.pull(&f.reference(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pulled = json(&run);
    assert_eq!(pulled["manifest"], f.digest);
    assert_eq!(pulled["digest"], f.digest);
    assert_eq!(pulled["registry"], f.registry.host());
    assert_eq!(pulled["repository"], "owui/app");
    assert!(pulled["fetched_bytes"].as_u64().unwrap() > 0);

    let theirs = f.work.path().join("skopeo");
    // skopeo takes a tag or a digest, not both.
    let by_digest = format!("{}/owui/app@{}", f.registry.host(), f.digest);
    f.registry.pull_with_skopeo(&by_digest, &theirs);
    let their_blobs = files_in(&theirs.join("blobs/sha256"));
    assert_eq!(their_blobs.len(), 3, "{their_blobs:?}");
    for blob in &their_blobs {
        assert_eq!(
            fs::read(f.cache.join("oci/blobs/sha256").join(blob)).unwrap(),
            fs::read(theirs.join("blobs/sha256").join(blob)).unwrap(),
            "{blob}"
        );
    }
    assert_eq!(f.cached_blobs(), their_blobs);
    assert!(f.cache_leftovers().is_empty());

    // Again: everything is cached, nothing is fetched.
    let again = json(&f.pull(&f.reference(), &[]));
    assert_eq!(again["fetched_bytes"], 0);
}

#[test]
fn a_bundle_packs_a_pulled_image_and_rebuilds_with_the_registry_stopped() {
    let mut f = Fixture::new("bundle me\n");
    let (spec, key) = f.bundle_spec(&f.reference());
    let first = f.work.path().join("first.owb");
    let run = f.bundle_create(&spec, &key, &first, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let created = json(&run);
    assert_eq!(created["pulled"][0]["manifest"], f.digest);

    f.registry.stop();
    let second = f.work.path().join("second.owb");
    let run = f.bundle_create(&spec, &key, &second, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)["pulled"][0]["fetched_bytes"], 0);
    let inspect = builder(&["bundle", "inspect", second.to_str().unwrap(), "--json"]);
    let manifest = json(&inspect);
    assert_eq!(manifest["manifest"]["oci"][0]["manifest"], f.digest);
    assert_eq!(manifest["manifest"]["oci"][0]["ref"], f.reference());

    // With nothing cached, the stopped registry is an error naming it.
    fs::remove_dir_all(&f.cache).unwrap();
    let run = f.bundle_create(&spec, &key, &f.work.path().join("third.owb"), &[]);
    assert_fails(&run, 1, &[&f.registry.host(), "owui/app"]);
    assert!(!f.work.path().join("third.owb").exists());
}

#[test]
fn a_tag_only_reference_is_refused_naming_file_line_and_key() {
    let f = Fixture::new("tagged\n");
    let tag_only = format!("{}/owui/app:v1", f.registry.host());
    let (spec, key) = f.bundle_spec(&tag_only);
    let out = f.work.path().join("b.owb");
    let run = f.bundle_create(&spec, &key, &out, &[]);
    assert_fails(
        &run,
        3,
        &["bundle.toml line 7: oci.ref", "names no digest", "oci lock"],
    );
    assert!(!out.exists());
    assert!(!f.cache.join("oci/blobs").exists() || f.cached_blobs().is_empty());

    let run = f.pull(&tag_only, &[]);
    assert_fails(&run, 3, &["names no digest"]);
    // Asked for loudly, a tag is pulled.
    let run = f.pull(&tag_only, &["--allow-tag-references"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run)["manifest"], f.digest);
}

#[test]
fn oci_lock_writes_the_digests_back_keeping_comments() {
    let f = Fixture::new("lock me\n");
    let tag_only = format!("{}/owui/app:v1", f.registry.host());
    let (spec, key) = f.bundle_spec(&tag_only);
    let mut args = vec!["oci", "lock", spec.to_str().unwrap(), "--json"];
    args.extend(f.client_args());
    let run = builder(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let locked = json(&run);
    assert_eq!(locked[0]["line"], 7);
    let text = fs::read_to_string(&spec).unwrap();
    assert!(
        text.contains(&format!("ref = \"{}\"", f.reference())),
        "{text}"
    );
    assert!(text.contains("# pulled from the test registry"), "{text}");
    let run = f.bundle_create(&spec, &key, &f.work.path().join("b.owb"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Locked already: nothing to do, the file stays as it is.
    let before = fs::read(&spec).unwrap();
    let run = builder(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::read(&spec).unwrap(), before);
}

#[test]
fn a_blob_the_registry_serves_altered_is_refused_and_nothing_stays() {
    let f = Fixture::new(&noise(64 << 10));
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            f.work
                .path()
                .join("layout/blobs/sha256")
                .join(&f.digest[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = f.registry.blob_file(&layer);
    let mut data = fs::read(&file).unwrap();
    data[1000] ^= 1;
    fs::write(&file, &data).unwrap();

    let run = f.pull(&f.reference(), &[]);
    assert_fails(&run, 4, &[&layer, &f.registry.host()]);
    assert!(
        !f.cached_blobs().contains(&layer[7..].to_string()),
        "{:?}",
        f.cached_blobs()
    );
    assert!(f.cache_leftovers().is_empty(), "{:?}", f.cache_leftovers());
}

#[test]
fn wrong_credentials_name_the_registry() {
    let f = Fixture::new("secret\n");
    let wrong = f.work.path().join("wrong");
    let files = f
        .registry
        .client_files(&wrong, &[&f.registry.host()], "wrong password");
    let run = builder(&[
        "oci",
        "pull",
        &f.reference(),
        "--cache",
        f.cache.to_str().unwrap(),
        "--registry-config",
        files.auth.to_str().unwrap(),
        "--registry-certs",
        files.certs.to_str().unwrap(),
    ]);
    assert_fails(
        &run,
        4,
        &[
            &format!("registry {} refused the credentials", f.registry.host()),
            "puller",
        ],
    );
    assert!(f.cached_blobs().is_empty());
}

#[test]
fn a_connection_cut_mid_blob_fails_cleanly() {
    let f = Fixture::new(&noise(4 << 20));
    let proxy = CuttingProxy::start(f.registry.port, 1 << 20);
    let host = format!("127.0.0.1:{}", proxy.port);
    let files = f
        .registry
        .client_files(f.work.path(), &[&f.registry.host(), &host], PASSWORD);
    assert_eq!(files.auth, f.auth);
    let reference = format!("{host}/owui/app:v1@{}", f.digest);
    let run = f.pull(&reference, &[]);
    assert_fails(&run, 1, &[&reference]);
    assert!(f.cache_leftovers().is_empty(), "{:?}", f.cache_leftovers());
    // Only the small manifest and config made it; no part of the layer did.
    for blob in f.cached_blobs() {
        let len = fs::metadata(f.cache.join("oci/blobs/sha256").join(&blob))
            .unwrap()
            .len();
        assert!(len < 4096, "{blob}: {len} bytes");
    }
    // The same pull straight from the registry completes.
    let run = f.pull(&f.reference(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// A pull that must fail within a bounded time (the fixture's
/// `--registry-timeout 3`), exit 1, naming the reference and the registry.
fn assert_gives_up(f: &Fixture, host: &str, needles: &[&str]) {
    let reference = format!("{host}/owui/app:v1@{}", f.digest);
    let start = Instant::now();
    let run = f.pull(&reference, &[]);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let registry = format!("from registry {host}");
    assert_fails(&run, 1, &[&reference, &registry]);
    assert_fails(&run, 1, needles);
    assert!(f.cache_leftovers().is_empty(), "{:?}", f.cache_leftovers());
}

#[test]
fn a_registry_that_does_not_answer_times_out_naming_the_reference() {
    let f = Fixture::new(&noise(4 << 20));
    // Accepts the connection and never says a word (not even TLS).
    let peer = SilentPeer::start();
    assert_gives_up(
        &f,
        &format!("127.0.0.1:{}", peer.port),
        &["no answer within 3 s"],
    );
    // Nothing listens there at all.
    let [closed] = owui_tests::free_ports::<1>();
    assert_gives_up(&f, &format!("127.0.0.1:{closed}"), &["Connection refused"]);
    // Answers the manifest, then stops in the middle of the layer and
    // holds the connection open.
    let proxy = CuttingProxy::stalling(f.registry.port, 1 << 20);
    let host = format!("127.0.0.1:{}", proxy.port);
    f.registry
        .client_files(f.work.path(), &[&f.registry.host(), &host], PASSWORD);
    assert_gives_up(&f, &host, &["no answer within 3 s"]);
}

#[test]
fn a_digest_the_registry_does_not_have_is_named() {
    let f = Fixture::new("present\n");
    let absent = format!("sha256:{}", "0".repeat(64));
    let missing = format!("{}/owui/app:v1@{absent}", f.registry.host());
    let run = f.pull(&missing, &[]);
    assert_fails(
        &run,
        3,
        &[
            &missing,
            "the digest is not there",
            &format!("repository owui/app has no manifest or index {absent}"),
        ],
    );
    assert!(f.cached_blobs().is_empty(), "{:?}", f.cached_blobs());
    // A repository the registry does not have at all (docker-registry
    // says MANIFEST_UNKNOWN here too; others say NAME_UNKNOWN).
    let elsewhere = format!("{}/owui/nothing:v1@{}", f.registry.host(), f.digest);
    let run = f.pull(&elsewhere, &[]);
    assert_fails(&run, 3, &[&elsewhere, "repository owui/nothing has no"]);
}

#[test]
fn an_index_resolves_to_linux_amd64_and_one_without_it_is_refused() {
    let f = Fixture::new("index\n");
    let layout = f.work.path().join("multi");
    let index =
        build_test_oci_index(&layout, "multi", &[("arm64", "arm\n"), ("amd64", "amd\n")]).unwrap();
    let amd = build_test_oci_image(&layout, "multi-amd64", "amd\n").unwrap();
    f.registry.push(&layout, "multi", "owui/multi:v1", true);
    let run = f.pull(&format!("{}/owui/multi:v1@{index}", f.registry.host()), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pulled = json(&run);
    assert_eq!(
        (&pulled["digest"], &pulled["manifest"]),
        (&index.clone().into(), &amd.into())
    );

    let arm_only = build_test_oci_index(
        &layout,
        "arm",
        &[("arm64", "arm only\n"), ("ppc64le", "power\n")],
    )
    .unwrap();
    f.registry.push(&layout, "arm", "owui/arm:v1", true);
    let before = f.cached_blobs();
    let reference = format!("{}/owui/arm:v1@{arm_only}", f.registry.host());
    let run = f.pull(&reference, &[]);
    assert_fails(
        &run,
        3,
        &[
            &reference,
            "no linux/amd64 image; it holds: linux/arm64, linux/ppc64le",
        ],
    );
    // Refused on the index alone: no image of it came over.
    let mut expected = before;
    expected.push(arm_only[7..].to_string());
    expected.sort();
    assert_eq!(f.cached_blobs(), expected);
}

#[test]
fn a_mirror_serves_another_registrys_image_by_the_same_digest() {
    let f = Fixture::new("mirrored\n");
    let reference = format!("origin.example/owui/app:v1@{}", f.digest);
    let mirror = format!("origin.example={}", f.registry.host());
    let run = f.pull(&reference, &["--registry-mirror", &mirror]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pulled = json(&run);
    assert_eq!(pulled["registry"], "origin.example");
    assert_eq!(pulled["mirror"], f.registry.host());
    assert_eq!(pulled["manifest"], f.digest);

    // Without the mirror, the origin (which does not exist) is tried.
    fs::remove_dir_all(&f.cache).unwrap();
    let run = f.pull(&reference, &[]);
    assert_fails(&run, 1, &["origin.example"]);
}

/// `owui-builder build` of a minimal spec in `dir` whose one `[[oci]]`
/// entry is `reference` (pulled), its content partition `content`, and
/// `more` arguments; the spec is at line 14. Returns the run and the
/// `--out` directory.
fn build_pulling(dir: &Path, reference: &str, content: &str, more: &[&str]) -> (Run, PathBuf) {
    let keys = dir.join("keys");
    let r = builder(&["key", "generate", "--out", keys.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let spec = dir.join("mini.toml");
    fs::write(
        &spec,
        format!(
            "role = \"app\"\nversion = \"0.1.0\"\n[debian]\nsuite = \"trixie\"\n\
             mirror = \"http://deb.debian.org/debian\"\ncomponents = [\"main\"]\n\
             packages = [\"systemd\"]\n[partitions]\nesp = 128\nroot = 1024\n\
             content = {content}\ndata = 256\n\n[[oci]]\nref = \"{reference}\"\n"
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let key = keys.join("owui.key");
    let units = owui_tests::image::repo().join("units");
    let mut args = vec![
        "build",
        spec.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        "/bin/true",
        "--units",
        units.to_str().unwrap(),
    ];
    args.extend(more);
    (builder(&args), out)
}

#[test]
fn build_refuses_a_tag_only_pull_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (r, out) = build_pulling(
        tmp.path(),
        "127.0.0.1:9/owui/app:v1",
        "\"auto\"",
        &["--cache", cache.to_str().unwrap()],
    );
    assert_fails(&r, 3, &["mini.toml line 14: oci.ref", "names no digest"]);
    assert!(!out.exists() && !cache.exists());
}

#[test]
fn build_refuses_a_pulled_image_over_the_content_partition_before_writing() {
    // 2 MiB of layer; a 64 MiB partition holds it, but not with the room
    // the filesystem needs on top (3 % and 64 MiB).
    let f = Fixture::new(&noise(2 << 20));
    let (r, out) = build_pulling(f.work.path(), &f.reference(), "64", &f.client_args());
    assert_fails(
        &r,
        3,
        &[
            "mini.toml line 11: partitions.content",
            // The layer is a plain tar: podman's copy unpacked doubles it.
            "64 MiB is too small for 4199415 bytes of content: it needs at least 70 MiB",
        ],
    );
    assert!(!out.exists(), "{}", out.display());
    // Pulled into the cache all the same: the next try has it offline.
    assert_eq!(f.cached_blobs().len(), 3, "{:?}", f.cached_blobs());
}

#[test]
fn build_counts_what_a_compressed_layer_unpacks_to_before_writing() {
    // 48 MiB of one letter: a gzip layer of some 50 KiB that podman's store
    // will hold unpacked beside it.
    let f = Fixture::new("small\n");
    let layout = f.work.path().join("big");
    build_test_oci_image(&layout, "big", &"a".repeat(48 << 20)).unwrap();
    let digest = f.registry.push_compressed(&layout, "big", "owui/big:v1");
    let reference = format!("{}/owui/big:v1@{digest}", f.registry.host());
    let (r, out) = build_pulling(f.work.path(), &reference, "100", &f.client_args());
    assert_fails(
        &r,
        3,
        &[
            "mini.toml line 11: partitions.content",
            "100 MiB is too small for ",
            "bytes of content: it needs at least 115 MiB",
        ],
    );
    // The unpacked layer counted, beside the few KiB the blobs take.
    let counted: u64 = r
        .stderr
        .split("too small for ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {}", r.stderr));
    assert!((48 << 20..49 << 20).contains(&counted), "{counted}");
    assert!(!out.exists(), "{}", out.display());
    let layer: u64 = f
        .cached_blobs()
        .iter()
        .map(|b| {
            fs::metadata(f.cache.join("oci/blobs/sha256").join(b))
                .unwrap()
                .len()
        })
        .max()
        .unwrap();
    assert!(
        layer < 1 << 20,
        "the layer is {layer} bytes: not compressed?"
    );
}

#[test]
fn a_docker_manifest_is_refused_with_how_to_convert_it() {
    let f = Fixture::new("docker format\n");
    let digest = f
        .registry
        .push_as_docker(&f.work.path().join("layout"), "app", "owui/docker:v1");
    let run = f.pull(
        &format!("{}/owui/docker:v1@{digest}", f.registry.host()),
        &[],
    );
    assert_fails(
        &run,
        3,
        &[
            "application/vnd.docker.distribution.manifest.v2+json",
            "--format oci",
        ],
    );
    // Refused before any layer came over.
    assert_eq!(f.cached_blobs(), vec![digest[7..].to_string()]);
}
