//! Signed node seeds: `owui-builder seed create` writes a seed and a
//! signature the stock `minisign -V` accepts; `owui-agent seed import`
//! takes it, and refuses an unsigned, wrongly signed or changed seed with
//! exit 4 and nothing written; `--insecure-seed` takes one loudly and
//! `status` says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use owui_bundle::sign::SecretKey;
use owui_tests::site::{seed_create_args, Site};

/// Where the tests put a seed in the node's namespace (as the ESP would).
const FROM: &str = "/media/seed.toml";

fn import_args(extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec![
        "seed",
        "import",
        "--no-medium",
        "--no-hostname",
        "--from",
        FROM,
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// `owui-builder seed create` into work/NAME/seed.toml; returns that path.
fn create(site: &Site, name: &str, node: &str, role: &str) -> PathBuf {
    let out = site.work.join(name).join("seed.toml");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    site.builder(&seed_create_args(
        node,
        role,
        &site.key(),
        out.to_str().unwrap(),
    ))
    .ok();
    out
}

fn minisig(seed: &Path) -> PathBuf {
    PathBuf::from(format!("{}.minisig", seed.display()))
}

/// Puts `seed` bytes and `signature` (none: no file) at FROM on the node.
fn place(site: &Site, seed: &[u8], signature: Option<&[u8]>) {
    let at = site.root.join(FROM.trim_start_matches('/'));
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    fs::write(&at, seed).unwrap();
    let sig = minisig(&at);
    let _ = fs::remove_file(&sig);
    if let Some(s) = signature {
        fs::write(&sig, s).unwrap();
    }
}

/// `seed import` must exit 4 with the plain message, and leave the node's
/// disk (run/owui included) exactly as it was.
fn refused(site: &Site, case: &str) {
    let before = site.snapshot();
    let out = site.agent(&import_args(&[]));
    assert_eq!(out.code, 4, "{case}: stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains("is not signed by a key this image trusts")
            && out.stderr.contains("owui-builder seed create"),
        "{case}: {}",
        out.stderr
    );
    assert_eq!(out.json()["error"]["exit_code"], 4, "{case}");
    assert_eq!(site.snapshot(), before, "{case} changed the node's disk");
    assert!(!site.root.join("run/owui").exists(), "{case}");
}

#[test]
fn a_created_seed_verifies_with_minisign_and_is_imported() {
    let site = Site::new("gpu");
    let seed = create(&site, "n07", "rack1-n07", "gpu");
    let minisign = Command::new("minisign")
        .arg("-Vm")
        .arg(&seed)
        .arg("-p")
        .arg(site.keys.join("owui.pub"))
        .output()
        .unwrap();
    assert!(minisign.status.success(), "minisign: {minisign:?}");
    let bytes = fs::read(&seed).unwrap();
    assert_eq!(bytes, b"node = \"rack1-n07\"\nrole = \"gpu\"\n");

    place(&site, &bytes, Some(&fs::read(minisig(&seed)).unwrap()));
    let doc = site.agent(&import_args(&[])).ok().json();
    assert_eq!(doc["node"], "rack1-n07");
    assert_eq!(doc["origin"]["signature"], "verified");
    assert_eq!(
        fs::read(site.root.join("run/owui/seed.toml")).unwrap(),
        bytes,
        "the node keeps exactly the signed bytes"
    );
}

#[test]
fn seed_create_refuses_bad_fields_and_writes_nothing() {
    let site = Site::new("gpu");
    let out = site.work.join("bad");
    fs::create_dir_all(&out).unwrap();
    let file = out.join("seed.toml");
    for (node, role, needle) in [
        ("ai-1\nWEBUI_AUTH=False", "app", "'\\n'"),
        ("Rack1-N07", "app", "lower case"),
        ("n1", "printer", "printer"),
    ] {
        let r = site.builder(&seed_create_args(
            node,
            role,
            &site.key(),
            file.to_str().unwrap(),
        ));
        assert_eq!(r.code, 3, "{node:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{node:?}: {}", r.stderr);
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "{node:?}");
    }
}

#[test]
fn unsigned_wrong_key_changed_or_borrowed_signatures_are_refused() {
    let site = Site::new("gpu");
    let seed = create(&site, "a", "rack1-n07", "gpu");
    let bytes = fs::read(&seed).unwrap();
    let signature = fs::read(minisig(&seed)).unwrap();

    place(&site, &bytes, None);
    refused(&site, "unsigned");

    let stranger = SecretKey::generate();
    let by_stranger = stranger.sign(&bytes, "owui seed node=rack1-n07 role=gpu");
    place(&site, &bytes, Some(by_stranger.as_bytes()));
    refused(&site, "signed by a key the node does not trust");

    let mut changed = bytes.clone();
    let at = changed.iter().position(|&b| b == b'7').unwrap();
    changed[at] = b'8';
    place(&site, &changed, Some(&signature));
    refused(&site, "one byte changed");

    let other = create(&site, "b", "rack1-n08", "gpu");
    place(&site, &fs::read(&other).unwrap(), Some(&signature));
    refused(&site, "another seed's signature");

    place(&site, &bytes, Some(b"not a signature\n"));
    refused(&site, "garbage signature");
}

#[test]
fn an_insecure_seed_is_taken_loudly_and_status_says_so() {
    let site = Site::new("gpu");
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        "[health]\ntimeout_s = 2\n",
    )
    .unwrap();
    place(&site, b"node = \"lab-1\"\nrole = \"gpu\"\n", None);
    let out = site.agent(&import_args(&["--insecure-seed"])).ok();
    assert!(out.stderr.contains("--insecure-seed"), "{}", out.stderr);
    assert_eq!(out.json()["origin"]["signature"], "unsigned");
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(site.root.join("run/owui/seed-origin.json")).unwrap())
            .unwrap();
    assert_eq!(record["signature"], "unsigned");
    assert_eq!(record["from"], FROM);

    let status = site.agent(&["status", "--json"]);
    assert_eq!(
        status.json()["seed"]["signature"],
        "unsigned",
        "{}",
        status.stdout
    );
    let table = site.agent(&["status"]);
    assert!(
        table.stdout.contains("seed      NOT SIGNED"),
        "{}",
        table.stdout
    );
}

/// `ssh-keygen -t TYPE [-b BITS]` into `dir/NAME`; the public key's path.
fn ssh_keygen(dir: &Path, name: &str, kind: &str, bits: Option<&str>) -> PathBuf {
    let private = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-N", "", "-t", kind, "-C", name, "-f"])
        .arg(&private);
    if let Some(b) = bits {
        cmd.args(["-b", b]);
    }
    assert!(cmd.status().unwrap().success(), "{cmd:?}");
    dir.join(format!("{name}.pub"))
}

/// Keys as OpenSSH makes them go from `seed create --ssh-key` through the
/// signed seed to the file sshd reads for owui-admin; a key file with a
/// short RSA key or an options prefix is refused and nothing is written.
#[test]
fn ssh_keys_from_ssh_keygen_reach_owui_admins_file_and_bad_ones_write_nothing() {
    let site = Site::new("gpu");
    let keys = site.work.join("ssh");
    fs::create_dir_all(&keys).unwrap();
    let good = [
        ssh_keygen(&keys, "ed", "ed25519", None),
        ssh_keygen(&keys, "ec384", "ecdsa", Some("384")),
        ssh_keygen(&keys, "rsa3072", "rsa", Some("3072")),
    ];
    let out = site.work.join("a/seed.toml");
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let site_key = site.key();
    let mut args = seed_create_args("rack1-n07", "gpu", &site_key, out.to_str().unwrap()).to_vec();
    for k in &good {
        args.extend(["--ssh-key", k.to_str().unwrap()]);
    }
    site.builder(&args).ok();
    place(
        &site,
        &fs::read(&out).unwrap(),
        Some(&fs::read(minisig(&out)).unwrap()),
    );
    let imported = site.agent(&import_args(&[])).ok().json();
    assert_eq!(imported["ssh_keys"], 3);
    let expected: String = good
        .iter()
        .map(|k| fs::read_to_string(k).unwrap())
        .collect();
    assert_eq!(
        fs::read_to_string(site.root.join("run/owui/ssh/owui-admin.keys")).unwrap(),
        expected
    );

    let empty = site.work.join("bad");
    fs::create_dir_all(&empty).unwrap();
    let bad_out = empty.join("seed.toml");
    let short = ssh_keygen(&keys, "rsa2048", "rsa", Some("2048"));
    let with_options = keys.join("options.pub");
    let ed = fs::read_to_string(&good[0]).unwrap();
    fs::write(&with_options, format!("{ed}command=\"/bin/sh\" {ed}")).unwrap();
    for (file, needle) in [
        (&short, "2048 bits"),
        (&with_options, "line 2: SSH public key"),
    ] {
        let mut args =
            seed_create_args("rack1-n07", "gpu", &site_key, bad_out.to_str().unwrap()).to_vec();
        args.extend(["--ssh-key", good[0].to_str().unwrap()]);
        args.extend(["--ssh-key", file.to_str().unwrap()]);
        let r = site.builder(&args);
        assert_eq!(r.code, 3, "{}", r.stderr);
        assert!(r.stderr.contains(needle), "{}", r.stderr);
        assert!(r.stderr.contains(file.to_str().unwrap()), "{}", r.stderr);
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "{}", r.stderr);
    }
}
