//! The trust store as an attacker with a local account or a USB stick meets
//! it: who may change the keys a node trusts, whether a revocation works on a
//! read-only root and survives a deleted record, whether key and trust files
//! can hang a reader, and whether `verify-image` refuses an older image or a
//! revoked key. One case per test; every refusal leaves the node's disk as it
//! was.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use owui_bundle::sign::SecretKey;
use owui_tests::site::{bin, key_id, model_sources, sha256_hex, spec_head, Run, Site};
use serde_json::json;

/// The image's trust store and the node's trust state, under the node root.
const TRUST: &str = "etc/owui/trust";
const STATE: &str = "var/lib/owui/trust";
const NOBODY: u32 = 65534;

/// A gpu node and a small bundle signed by the site key.
fn node() -> (Site, PathBuf) {
    let site = Site::new("gpu");
    let bundle = small_bundle(&site, "a", &site.keys);
    (site, bundle)
}

fn small_bundle(site: &Site, name: &str, keys: &Path) -> PathBuf {
    let spec = format!(
        "{}{}",
        spec_head("models", 1, &["gpu"]),
        model_sources(&site.work, name, 4096, 1)
    );
    site.pack_signed_by(name, &spec, &keys.join("owui.key"))
}

/// A key pair the node does not trust (an attacker's, or the next site key).
fn other_keys(site: &Site, name: &str) -> PathBuf {
    let dir = site.work.join(name);
    site.builder(&["key", "generate", "--out", p(&dir)]).ok();
    dir
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn site_key_id(site: &Site) -> String {
    key_id(&site.keys.join("owui.pub"))
}

/// A statement by the site key, at `sequence`: adds the key pair in `add`
/// and revokes the site key.
fn revoke_site_key(site: &Site, sequence: u64, add: &Path) -> PathBuf {
    let stmt = site.work.join(format!("rotation-{sequence}.json"));
    site.builder(&[
        "key",
        "rotate",
        "--key",
        &site.key(),
        "--sequence",
        &sequence.to_string(),
        "--add",
        p(&add.join("owui.pub")),
        "--revoke",
        &site_key_id(site),
        "--out",
        p(&stmt),
    ])
    .ok();
    stmt
}

/// A node whose site key rotation 1 revoked (and replaced), and a bundle
/// signed by the revoked key.
fn revoked_node() -> (Site, PathBuf) {
    let (site, bundle) = node();
    let next = other_keys(&site, "next");
    let stmt = revoke_site_key(&site, 1, &next);
    site.agent(&["trust", "apply", p(&stmt)]).ok();
    site.refused(
        &["bundle", "verify", p(&bundle)],
        4,
        "which has been revoked",
    );
    (site, bundle)
}

/// Runs `script` with sh as the unprivileged user nobody.
fn as_nobody(script: &str) {
    let status = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .status()
        .unwrap();
    assert!(status.success(), "as nobody: {script}");
}

/// Lets other users walk from / into the node's trust directories, as on a
/// real node (the test's temporary directory is 0700).
fn reachable_by_others(site: &Site) {
    let mut dirs = vec![site.tmp.path().to_path_buf()];
    for d in [TRUST, STATE] {
        let mut at = site.root.clone();
        dirs.push(at.clone());
        for part in Path::new(d) {
            at.push(part);
            dirs.push(at.clone());
        }
    }
    for d in dirs.iter().filter(|d| d.exists()) {
        let mode = fs::metadata(d).unwrap().permissions().mode() & 0o7777;
        fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o755)).unwrap();
    }
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// Runs `program`, killing it if it has not finished within 20 s: a FIFO or
/// a device where a key or trust file belongs must fail, not hang.
fn within_deadline(program: &Path, args: &[&str]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} still running after 20 s; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        signal: None,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn agent_within_deadline(site: &Site, args: &[&str]) -> Run {
    let mut all = vec!["--root", p(&site.root)];
    all.extend_from_slice(args);
    within_deadline(&bin("owui-agent"), &all)
}

fn mkfifo(path: &Path, mode: u32) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(mode)).unwrap();
}

// ---------------------------------------------------------------------------
// Who may change the keys
// ---------------------------------------------------------------------------

#[test]
fn world_writable_trust_dir_is_refused() {
    let (site, _) = node();
    reachable_by_others(&site);
    let trust = site.root.join(TRUST);
    fs::set_permissions(&trust, fs::Permissions::from_mode(0o777)).unwrap();
    // Any local user can now drop in their own key and sign with it.
    let evil = other_keys(&site, "evil");
    as_nobody(&format!(
        "cp {} {}/evil.pub",
        evil.join("owui.pub").display(),
        trust.display()
    ));
    let forged = small_bundle(&site, "forged", &evil);
    site.refused(
        &["bundle", "verify", p(&forged)],
        4,
        "writable by group or others",
    );
    site.refused(&["trust", "list"], 4, p(&trust));
}

#[test]
fn key_file_owned_by_another_user_is_refused() {
    let (site, _) = node();
    reachable_by_others(&site);
    let key = site
        .root
        .join(TRUST)
        .join(format!("{}.pub", site_key_id(&site)));
    chown_nobody(&key);
    // Its owner can put any key in it.
    let evil = other_keys(&site, "evil");
    as_nobody(&format!(
        "cat {} > {}",
        evil.join("owui.pub").display(),
        key.display()
    ));
    let forged = small_bundle(&site, "forged", &evil);
    site.refused(&["bundle", "verify", p(&forged)], 4, "owned by uid 65534");
}

#[test]
fn key_link_to_a_file_another_user_owns_is_refused() {
    let (site, _) = node();
    let evil = other_keys(&site, "evil");
    let theirs = site.work.join("theirs.pub");
    fs::copy(evil.join("owui.pub"), &theirs).unwrap();
    chown_nobody(&theirs);
    symlink(&theirs, site.root.join(TRUST).join("evil.pub")).unwrap();
    let forged = small_bundle(&site, "forged", &evil);
    site.refused(
        &["bundle", "verify", p(&forged)],
        4,
        "outside the trust directory",
    );
}

#[test]
fn fifo_as_key_file_is_refused() {
    let (site, bundle) = node();
    // (No snapshot of the node here: it would read the FIFO.)
    mkfifo(&site.root.join(TRUST).join("evil.pub"), 0o644);
    let out = agent_within_deadline(&site, &["bundle", "verify", p(&bundle)]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("regular file"), "{}", out.stderr);
}

#[test]
fn revocation_record_others_can_write_is_refused() {
    let (site, _) = revoked_node();
    reachable_by_others(&site);
    let record = site.root.join(STATE).join("revoked.json");
    fs::set_permissions(&record, fs::Permissions::from_mode(0o666)).unwrap();
    as_nobody(&format!(
        "printf '{{\"rotation_sequence\":0,\"revoked\":[]}}' > {}",
        record.display()
    ));
    site.refused(&["trust", "list"], 4, "writable by group or others");
}

// ---------------------------------------------------------------------------
// A revocation cannot be taken back by removing what records it
// ---------------------------------------------------------------------------

#[test]
fn emptied_revocation_record_is_tampering() {
    let (site, bundle) = revoked_node();
    fs::write(site.root.join(STATE).join("revoked.json"), b"").unwrap();
    site.refused(&["bundle", "verify", p(&bundle)], 4, "tampering");
    site.refused(&["trust", "list"], 4, "revoked.json");
}

#[test]
fn deleted_revocation_record_is_tampering() {
    let (site, bundle) = revoked_node();
    fs::remove_file(site.root.join(STATE).join("revoked.json")).unwrap();
    site.refused(&["bundle", "verify", p(&bundle)], 4, "tampering");
}

#[test]
fn removed_rotation_statement_is_tampering() {
    let (site, bundle) = revoked_node();
    let state = site.root.join(STATE);
    for entry in fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("rotation-")
        {
            fs::remove_file(path).unwrap();
        }
    }
    site.refused(
        &["bundle", "verify", p(&bundle)],
        4,
        "went back from 1 to 0",
    );
}

#[test]
fn device_as_revocation_record_fails_fast() {
    let (site, _) = revoked_node();
    let record = site.root.join(STATE).join("revoked.json");
    fs::remove_file(&record).unwrap();
    // /dev/zero's numbers: a reader that does not check the type never ends.
    nix::sys::stat::mknod(
        &record,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(1, 5),
    )
    .unwrap();
    let out = agent_within_deadline(&site, &["trust", "list"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("regular file"), "{}", out.stderr);
}

#[test]
fn kept_statement_signed_by_an_untrusted_key_is_refused() {
    let (site, _) = node();
    // Someone writes a statement adding their key into the node's state.
    let evil = other_keys(&site, "evil");
    let state = site.root.join(STATE);
    fs::create_dir_all(&state).unwrap();
    let stmt = state.join("rotation-00000000000000000001.json");
    site.builder(&[
        "key",
        "rotate",
        "--key",
        p(&evil.join("owui.key")),
        "--sequence",
        "1",
        "--add",
        p(&evil.join("owui.pub")),
        "--out",
        p(&stmt),
    ])
    .ok();
    fs::write(
        state.join("revoked.json"),
        json!({"rotation_sequence": 1, "revoked": []}).to_string(),
    )
    .unwrap();
    site.refused(&["trust", "list"], 4, "not in the trust store");
}

// ---------------------------------------------------------------------------
// Revocation on a deployed node: the image's trust store is read-only
// ---------------------------------------------------------------------------

/// A read-only tmpfs over a directory, holding what the directory held (as
/// the verity root holds /etc/owui/trust); unmounted on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn over(dir: &Path) -> ReadOnly {
        let saved = dir.with_extension("saved");
        fs::rename(dir, &saved).unwrap();
        fs::create_dir(dir).unwrap();
        let mount = |args: &[&str]| {
            let status = Command::new("mount").args(args).arg(dir).status().unwrap();
            assert!(status.success(), "mount {args:?}");
        };
        mount(&["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"]);
        let guard = ReadOnly(dir.to_path_buf());
        for entry in fs::read_dir(&saved).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        mount(&["-o", "remount,ro"]);
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn revocation_applies_on_a_read_only_trust_dir() {
    let (site, bundle) = node();
    let _ro = ReadOnly::over(&site.root.join(TRUST));
    let old_id = site_key_id(&site);
    let next = other_keys(&site, "next");
    let new_id = key_id(&next.join("owui.pub"));
    let stmt = revoke_site_key(&site, 1, &next);
    let applied = site
        .agent(&["trust", "apply", p(&stmt), "--json"])
        .ok()
        .json();
    assert_eq!(applied["revoked"], json!([old_id]));
    assert_eq!(applied["trusted"], json!([new_id]));
    site.refused(
        &["bundle", "verify", p(&bundle)],
        4,
        "which has been revoked",
    );
    let by_new_key = small_bundle(&site, "b", &next);
    site.agent(&["bundle", "verify", p(&by_new_key)]).ok();
    // `trust list` shows both layers: the image's key, revoked by rotation
    // 1, and the key rotation 1 added.
    let list = site.agent(&["trust", "list", "--json"]).ok().json();
    assert_eq!(list["image_dir"], p(&site.root.join(TRUST)));
    assert_eq!(list["state_dir"], p(&site.root.join(STATE)));
    assert_eq!(list["rotation_sequence"], 1);
    assert_eq!(
        list["keys"],
        json!([
            {"id": old_id, "added_by_rotation": null, "revoked_by_rotation": 1},
            {"id": new_id, "added_by_rotation": 1, "revoked_by_rotation": null},
        ])
    );
    let human = site.agent(&["trust", "list"]).ok().stdout;
    assert!(human.contains("revoked by rotation 1"), "{human}");
}

// ---------------------------------------------------------------------------
// Images: a version floor, revocations, a GPT that does not wrap
// ---------------------------------------------------------------------------

/// Writes `bytes` as DIR/NAME.img with a manifest of `version` signed by the
/// secret key file `key`; returns the image's path. The manifest's digests
/// are not the image's: the checks under test come before they are looked at.
fn signed_image(dir: &Path, name: &str, version: &str, key: &Path, bytes: &[u8]) -> PathBuf {
    let image = dir.join(format!("{name}.img"));
    fs::write(&image, bytes).unwrap();
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let manifest = json!({
        "format": "owui-image/1",
        "role": "allinone",
        "version": version,
        "source_date_epoch": 1_700_000_000u64,
        "image": {"file": format!("{name}.img"), "size": bytes.len(), "sha256": digest},
        "partitions": [],
        "verity": {"root_hash": "00", "salt": "00", "data_uuid": "x", "hash_uuid": "y"},
        "uki": {"path": "EFI/Linux/owui.efi", "sha256": digest, "cmdline": ""},
        "content": null,
        "packages": [],
        "sbom": {"file": format!("{name}.spdx.json"), "size": 0, "sha256": digest},
    });
    let body = serde_json::to_vec_pretty(&manifest).unwrap();
    let manifest_path = dir.join(format!("{name}.manifest.json"));
    fs::write(&manifest_path, &body).unwrap();
    let sk = SecretKey::from_file_str("key", &fs::read_to_string(key).unwrap()).unwrap();
    fs::write(
        dir.join(format!("{name}.manifest.json.minisig")),
        sk.sign(&body, "owui image"),
    )
    .unwrap();
    image
}

/// No GPT: an image past the signature and floor checks stops at the table.
fn blank_image(site: &Site, version: &str) -> PathBuf {
    signed_image(
        &site.work,
        &format!("img-{version}"),
        version,
        &site.keys.join("owui.key"),
        &[0u8; 64 * 512],
    )
}

fn verify_image(site: &Site, image: &Path, args: &[&str]) -> Run {
    let mut all = vec!["verify-image", p(image)];
    all.extend_from_slice(args);
    site.builder(&all)
}

#[test]
fn image_older_than_the_floor_is_refused() {
    let site = Site::new("gpu");
    let image = blank_image(&site, "1.9.0");
    let key = p(&site.keys.join("owui.pub")).to_string();
    let refused = verify_image(&site, &image, &["--pub", &key, "--min-version", "1.10"]);
    assert_eq!(refused.code, 5, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("1.9.0 is older than 1.10"),
        "{}",
        refused.stderr
    );
    // The floor itself is allowed: the check passes and the next (the GPT) fails.
    let same = verify_image(&site, &image, &["--pub", &key, "--min-version", "1.9"]);
    assert_eq!(same.code, 3, "{}", same.stderr);
    assert!(same.stderr.contains("no GPT header"), "{}", same.stderr);
    let forced = verify_image(
        &site,
        &image,
        &["--pub", &key, "--min-version", "1.10", "--allow-downgrade"],
    );
    assert_eq!(forced.code, 3, "{}", forced.stderr);
    assert!(
        forced.stderr.contains("downgrade allowed"),
        "{}",
        forced.stderr
    );
}

#[test]
fn image_version_without_an_order_is_refused_against_a_floor() {
    let site = Site::new("gpu");
    let image = blank_image(&site, "2.0-rc1");
    let key = p(&site.keys.join("owui.pub")).to_string();
    let out = verify_image(&site, &image, &["--pub", &key, "--min-version", "1.0"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("2.0-rc1"), "{}", out.stderr);
}

#[test]
fn image_signed_by_a_key_revoked_by_a_given_statement_is_refused() {
    let site = Site::new("gpu");
    let image = blank_image(&site, "1.0");
    let next = other_keys(&site, "next");
    let stmt = revoke_site_key(&site, 1, &next);
    let out = verify_image(
        &site,
        &image,
        &[
            "--pub",
            p(&site.keys.join("owui.pub")),
            "--rotation",
            p(&stmt),
        ],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("which has been revoked"),
        "{}",
        out.stderr
    );
}

#[test]
fn image_signed_by_a_key_the_node_revoked_is_refused() {
    let (site, _) = revoked_node();
    let image = blank_image(&site, "1.0");
    let out = verify_image(
        &site,
        &image,
        &[
            "--trust",
            p(&site.root.join(TRUST)),
            "--trust-state",
            p(&site.root.join(STATE)),
        ],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("which has been revoked"),
        "{}",
        out.stderr
    );
}

#[test]
fn gpt_entry_ending_at_u64_max_is_refused() {
    let site = Site::new("gpu");
    let mut disk = vec![0u8; 64 * 512];
    disk[512..520].copy_from_slice(b"EFI PART");
    disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes()); // entries at LBA 2
    disk[512 + 80..512 + 84].copy_from_slice(&1u32.to_le_bytes()); // one entry
    disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes()); // of 128 bytes
    let entry = 1024;
    disk[entry..entry + 16].fill(0xAB); // a type GUID: the entry is used
    disk[entry + 32..entry + 40].copy_from_slice(&34u64.to_le_bytes());
    disk[entry + 40..entry + 48].copy_from_slice(&u64::MAX.to_le_bytes());
    let image = signed_image(
        &site.work,
        "wrap",
        "1.0",
        &site.keys.join("owui.key"),
        &disk,
    );
    let out = verify_image(&site, &image, &["--pub", p(&site.keys.join("owui.pub"))]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("at byte 1056") && out.stderr.contains("past the end"),
        "{}",
        out.stderr
    );
}

#[test]
fn fifo_as_public_key_is_refused() {
    let site = Site::new("gpu");
    let image = blank_image(&site, "1.0");
    let fifo = site.work.join("key.pub");
    mkfifo(&fifo, 0o644);
    let out = within_deadline(
        &bin("owui-builder"),
        &["verify-image", p(&image), "--pub", p(&fifo)],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("regular file"), "{}", out.stderr);
}

#[test]
fn fifo_as_secret_key_is_refused() {
    let site = Site::new("gpu");
    let fifo = site.work.join("owui.key");
    mkfifo(&fifo, 0o600);
    let out = within_deadline(
        &bin("owui-builder"),
        &[
            "key",
            "rotate",
            "--key",
            p(&fifo),
            "--sequence",
            "1",
            "--revoke",
            &site_key_id(&site),
            "--out",
            p(&site.work.join("r.json")),
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("regular file"), "{}", out.stderr);
}
