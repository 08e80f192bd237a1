//! The build side of a site: `owui-builder cluster init` makes the CA,
//! token key and site file (secrets 0600, refused into a directory that
//! holds anything); `cluster seed` makes a control node's seed with the CA
//! and any other node's with only the pin and a join token bound to it.
//! Bad arguments and damaged site directories are named and write nothing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use owui_bundle::cluster::site::SiteDir;
use owui_bundle::seed::Seed;
use owui_tests::site::{snapshot, Site};

const NET: &str = "198.51.100.0/24";

fn init(site: &Site, dir: &Path, control: &[&str]) -> owui_tests::site::Run {
    let mut args = vec![
        "cluster",
        "init",
        "--name",
        "rome",
        "--network",
        NET,
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ];
    for c in control {
        args.extend(["--control", c]);
    }
    site.builder(&args)
}

fn seed(site: &Site, dir: &Path, node: &str, role: &str, extra: &[&str]) -> owui_tests::site::Run {
    let out = site.work.join(format!("{node}.toml"));
    let key = site.key();
    let mut args = vec![
        "cluster",
        "seed",
        "--site",
        dir.to_str().unwrap(),
        "--node",
        node,
        "--role",
        role,
        "--key",
        &key,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    site.builder(&args)
}

fn read_seed(site: &Site, node: &str) -> (String, Seed) {
    let text = fs::read_to_string(site.work.join(format!("{node}.toml"))).unwrap();
    let seed = Seed::parse("seed", text.as_bytes()).unwrap();
    (text, seed)
}

const CONTROL: [&str; 3] = ["c1=198.51.100.1", "c2=198.51.100.2", "c3=198.51.100.3"];

#[test]
fn a_site_is_made_once_with_its_secrets_private() {
    let site = Site::new("app");
    let dir = site.work.join("site");
    let out = init(&site, &dir, &CONTROL).ok();
    let pin = out.json()["ca_pin"].as_str().unwrap().to_string();
    assert!(pin.starts_with("sha256:"), "{}", out.stdout);
    for (file, mode) in [
        ("ca.key", 0o600),
        ("token.key", 0o600),
        ("ca.crt", 0o644),
        ("site.toml", 0o644),
    ] {
        let m = fs::metadata(dir.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, mode, "{file}");
    }
    let opened = SiteDir::open(&dir).unwrap();
    assert_eq!(opened.ca.pin().unwrap().to_string(), pin);
    assert_eq!(opened.site.control.len(), 3);
    // Made once: a second init into the same directory changes nothing.
    let before = snapshot(&dir);
    let again = init(&site, &dir, &CONTROL);
    assert_eq!(again.code, 5, "{}", again.stderr);
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_bad_site_is_named_and_nothing_is_written() {
    let site = Site::new("app");
    for (control, says) in [
        (&CONTROL[..2], "1, 3 or 5"),
        (&["c1=10.9.9.9"][..], "not in the site network"),
        (
            &["c1=198.51.100.1", "c1=198.51.100.2", "c3=198.51.100.3"][..],
            "same name or address",
        ),
        (&["c1"][..], "NAME=ADDRESS"),
        (&["C1=198.51.100.1"][..], "lower case"),
    ] {
        let dir = site.work.join("bad-site");
        let out = init(&site, &dir, control);
        assert_eq!(out.code, 3, "{control:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{control:?}: {}", out.stderr);
        assert!(!dir.exists(), "{control:?} wrote {}", dir.display());
    }
}

#[test]
fn control_seeds_carry_the_ca_and_other_seeds_only_a_bound_token() {
    let site = Site::new("app");
    let dir = site.work.join("site");
    init(&site, &dir, &CONTROL).ok();
    let ca_key = fs::read_to_string(dir.join("ca.key")).unwrap();
    let key_body = ca_key.lines().nth(1).unwrap();

    seed(&site, &dir, "c2", "db", &[]).ok();
    let (_, c2) = read_seed(&site, "c2");
    let cluster = c2.cluster.as_ref().unwrap();
    assert!(cluster.control_secrets.is_some() && cluster.join_token.is_none());
    assert_eq!(
        c2.network
            .as_ref()
            .unwrap()
            .address
            .as_ref()
            .unwrap()
            .to_string(),
        "198.51.100.2/24",
        "a control node's address comes from the site file"
    );

    let out = seed(
        &site,
        &dir,
        "gpu-1",
        "gpu",
        &["--address", "198.51.100.21/24", "--token-ttl", "2h"],
    )
    .ok();
    let (text, gpu) = read_seed(&site, "gpu-1");
    assert!(
        !text.contains(key_body),
        "a gpu node's seed holds the CA key"
    );
    assert!(!text.contains("control_secrets"));
    let cluster = gpu.cluster.as_ref().unwrap();
    let token = cluster.join_token.as_ref().unwrap();
    assert_eq!(
        (token.node().as_str(), token.role().as_str()),
        ("gpu-1", "gpu")
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        token.expires().abs_diff(now + 7200) < 60,
        "expiry {}",
        token.expires()
    );
    assert_eq!(
        cluster.ca_pin,
        SiteDir::open(&dir).unwrap().ca.pin().unwrap()
    );
    assert!(out.json()["token_expires"].is_string());
    let mode = fs::metadata(site.work.join("gpu-1.toml"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn bad_seed_requests_and_damaged_sites_are_named() {
    let site = Site::new("app");
    let dir = site.work.join("site");
    init(&site, &dir, &CONTROL).ok();
    for (node, role, extra, says) in [
        (
            "app-1",
            "app",
            &["--address", "10.1.1.1/24"][..],
            "not in site rome's network",
        ),
        (
            "c1",
            "db",
            &["--address", "198.51.100.9/24"][..],
            "is at 198.51.100.1",
        ),
        ("c1", "allinone", &[][..], "all-in-one node runs alone"),
        (
            "app-1",
            "app",
            &["--token-ttl", "90d"][..],
            "between 1 s and",
        ),
    ] {
        let out = seed(&site, &dir, node, role, extra);
        assert_eq!(out.code, 3, "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{extra:?}: {}", out.stderr);
        assert!(!site.work.join(format!("{node}.toml")).exists());
    }
    // A CA key swapped for another site's: named, nothing written.
    let other = site.work.join("other");
    init(&site, &other, &CONTROL).ok();
    fs::copy(other.join("ca.key"), dir.join("ca.key")).unwrap();
    let out = seed(&site, &dir, "app-1", "app", &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("ca.key") && out.stderr.contains("not the key"),
        "{}",
        out.stderr
    );
    assert!(!site.work.join("app-1.toml").exists());
}
