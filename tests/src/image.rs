//! Building images with the real `owui-builder`, for the image tests.

use std::fs;
use std::path::{Path, PathBuf};

use crate::site::{bin, run, Run};

pub const EPOCH: &str = "1700000000";

/// What a test image needs to boot a verified root and run the agent, as a
/// TOML list body for `[debian] packages`.
pub const BOOT_PACKAGES: &str = r#""systemd", "systemd-sysv", "udev", "dbus", "linux-image-amd64", "initramfs-tools",
            "zstd", "kmod", "cryptsetup-bin", "systemd-boot-efi", "systemd-repart", "e2fsprogs""#;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn builder(args: &[&str]) -> Run {
    run(&bin("owui-builder"), args, &[])
}

/// The arguments of `owui-builder build SPEC` with this tree's agent and
/// units, at [`EPOCH`], `--json`, and `more` arguments.
fn build_args(spec: &Path, key: &Path, out: &Path, cache: &Path, more: &[&str]) -> Vec<String> {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![
        "build".to_string(),
        path(spec),
        "--key".into(),
        path(key),
        "--out".into(),
        path(out),
        "--agent".into(),
        path(&bin("owui-agent")),
        "--units".into(),
        path(&repo().join("units")),
        "--cache".into(),
        path(cache),
        "--source-date-epoch".into(),
        EPOCH.into(),
        "--json".into(),
    ];
    args.extend(more.iter().map(|m| m.to_string()));
    args
}

/// `owui-builder build SPEC` (see [`build_args`]).
pub fn build(spec: &Path, key: &Path, out: &Path, cache: &Path, more: &[&str]) -> Run {
    let args = build_args(spec, key, out, cache, more);
    builder(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// [`build`] in a network namespace of its own: a loopback device and
/// nothing else, as in a room with no network.
pub fn build_with_no_network(
    spec: &Path,
    key: &Path,
    out: &Path,
    cache: &Path,
    more: &[&str],
) -> Run {
    let builder = bin("owui-builder");
    let mut args = vec!["-n", "--", builder.to_str().unwrap()];
    let rest = build_args(spec, key, out, cache, more);
    args.extend(rest.iter().map(String::as_str));
    run(Path::new("unshare"), &args, &[])
}

/// A new signing key pair under `dir/keys`: (secret, public).
pub fn keys(dir: &Path) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    builder(&["key", "generate", "--out", keys.to_str().unwrap()]).ok();
    (keys.join("owui.key"), keys.join("owui.pub"))
}

/// A failed build leaves nothing in its `--out` directory (which may not
/// even exist).
pub fn assert_nothing_in(out: &Path) {
    let left: Vec<_> = fs::read_dir(out)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
