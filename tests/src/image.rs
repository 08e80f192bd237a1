//! Building images with the real `owui-builder`, for the image tests.

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

/// `owui-builder build SPEC` with this tree's agent and units, at [`EPOCH`],
/// `--json`, and `more` arguments.
pub fn build(spec: &Path, key: &Path, out: &Path, cache: &Path, more: &[&str]) -> Run {
    let agent = bin("owui-agent");
    let units = repo().join("units");
    let mut args = vec![
        "build",
        spec.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--agent",
        agent.to_str().unwrap(),
        "--units",
        units.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--source-date-epoch",
        EPOCH,
        "--json",
    ];
    args.extend(more);
    builder(&args)
}

/// A new signing key pair under `dir/keys`: (secret, public).
pub fn keys(dir: &Path) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    builder(&["key", "generate", "--out", keys.to_str().unwrap()]).ok();
    (keys.join("owui.key"), keys.join("owui.pub"))
}
