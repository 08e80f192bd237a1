//! `owui-builder build` of a gpu-role image for real: the driver set's
//! packages at their pinned versions, the NVIDIA kernel modules compiled
//! with DKMS for the image's own kernel and shipped as our own package, and
//! no compiler, DKMS or kernel headers left in the image. Needs root,
//! mmdebstrap, erofs-utils and Debian's package registry (the modules are
//! read with the image's own modinfo, in a chroot); downloaded
//! packages and the built module package are kept in
//! /var/tmp/owui-test-gpu-image-cache between runs.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use owui_bundle::firmware::Firmware;
use owui_tests::image::{
    assert_nothing_in, boot_to_report, build, check_state, keys, repo, report_overlay,
    BOOT_CMDLINE, BOOT_PACKAGES, BOOT_UNITS,
};
use owui_tests::site::model_sources;

const CACHE: &str = "/var/tmp/owui-test-gpu-image-cache";
/// The set the shipped gpu and allinone specs carry.
const SET: &str = "debian-tesla-535";
const DRIVER: &str = "535.274.02";

/// The report the VM prints once the banner is out: the agent's status,
/// whether the boot's GPU setup ran, whether it handed GPUs to the
/// containers, and what the kernel said when asked to load the driver.
const REPORT_SCRIPT: &str = r#"#!/bin/sh
one_line() { tr '\n' ' '; echo; }
echo REPORT_BEGIN
/usr/bin/owui-agent status --json | one_line
systemctl is-active owui-gpu-setup.service | one_line
test -e /run/owui/gpu/containers.env && echo containers-env-present || echo containers-env-absent
modprobe nvidia 2>&1 | one_line
dmesg | grep -E 'NVRM|nvidia' | one_line
echo REPORT_END
"#;

/// A gpu-role spec with the boot essentials, the repository's common and
/// gpu overlays, one small model, a report unit, and `gpu` as its [gpu]
/// body.
fn write_spec(dir: &Path, gpu: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let overlay = dir.join("overlay");
    report_overlay(&overlay, "owui-gpu-setup.service", REPORT_SCRIPT);
    let models = model_sources(dir, "gpu", 100_000, 2);
    let images = repo().join("images/overlay");
    let spec = format!(
        r#"role = "gpu"
version = "0.1.0"
[debian]
suite = "trixie"
mirror = "http://deb.debian.org/debian"
components = ["main", "contrib", "non-free", "non-free-firmware"]
packages = [{BOOT_PACKAGES}]
[units]
enable = [{BOOT_UNITS}, "owui-gpu-setup.service"]
[overlay]
dirs = ["{common}", "{gpu_overlay}", "{inference}", "overlay"]
[partitions]
esp = 128
root = 2048
content = "auto"
data = 256
[kernel]
cmdline = [{BOOT_CMDLINE}]
[gpu]
firmware = "{firmware}"
{gpu}
{models}"#,
        firmware = repo().join("firmware").display(),
        common = images.join("common").display(),
        gpu_overlay = images.join("gpu").display(),
        inference = images.join("inference").display(),
    );
    let path = dir.join("mini-gpu.toml");
    fs::write(&path, spec).unwrap();
    path
}

/// The root partition (erofs) of `image`, unpacked into `dest`.
fn extract_root(image: &Path, manifest: &serde_json::Value, dest: &Path) {
    let root = manifest["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["label"] == "owui-root")
        .expect("a root partition in the manifest");
    let (offset, size) = (
        root["offset"].as_u64().unwrap(),
        root["size"].as_u64().unwrap(),
    );
    let mut f = fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut bytes = vec![0; usize::try_from(size).unwrap()];
    f.read_exact(&mut bytes).unwrap();
    let erofs = dest.with_extension("erofs");
    fs::write(&erofs, bytes).unwrap();
    let out = Command::new("fsck.erofs")
        .arg(format!("--extract={}", dest.display()))
        .arg(&erofs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsck.erofs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `args` with the image's own programs (chroot into its extracted
/// `root`, as the node would run them) and returns stdout; a failure names
/// `what` with the program's stderr.
fn in_image<S: AsRef<OsStr>>(root: &Path, what: &str, args: &[S]) -> String {
    let out = Command::new("chroot")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_gpu_image_carries_the_pinned_driver_and_modules_for_its_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (key, _) = keys(dir);
    let spec = write_spec(
        &dir.join("spec"),
        &format!("driver_set = \"{SET}\"\nkernel_modules = \"proprietary\""),
    );
    let out = dir.join("out");
    let report = build(&spec, &key, &out, Path::new(CACHE), &[]).ok().json();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(report["manifest"].as_str().unwrap()).unwrap()).unwrap();

    let fw = Firmware::load(&repo().join("firmware")).unwrap();
    let set = &fw.sets[SET];
    let packages: Vec<(&str, &str)> = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect();
    for p in &set.packages {
        let dkms = p.name.ends_with("-kernel-dkms");
        let found = packages.iter().find(|(n, _)| *n == p.name);
        if dkms {
            assert!(found.is_none(), "{} is in the image", p.name);
        } else {
            assert_eq!(found, Some(&(p.name.as_str(), p.version.as_str())));
        }
    }
    // One driver branch: no other branch's alternative came in as a
    // dependency (nvidia-persistenced would take 550's libnvidia-cfg1).
    let alternatives: Vec<&str> = packages
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.starts_with("nvidia") && n.ends_with("-alternative"))
        .collect();
    assert_eq!(alternatives, ["nvidia-tesla-535-alternative"]);
    let gpu = &manifest["gpu"];
    assert_eq!(gpu["driver_set"], SET);
    assert_eq!(gpu["driver_version"], DRIVER);
    assert_eq!(gpu["kernel_modules"], "proprietary");
    let kernel = gpu["kernel"].as_str().unwrap();
    let modules_package = format!("owui-nvidia-modules-{kernel}");
    assert_eq!(gpu["modules_package"], modules_package.as_str());
    assert!(packages.contains(&(modules_package.as_str(), DRIVER)));
    let sbom = fs::read_to_string(report["sbom"].as_str().unwrap()).unwrap();
    assert!(
        // A purl percent-encodes the kernel version's "+".
        sbom.contains(&format!(
            "pkg:deb/owui/{}@{DRIVER}",
            modules_package.replace('+', "%2B")
        )),
        "the SBOM lists the module package as ours"
    );
    let kernel_package = format!("linux-image-{kernel}");
    assert!(packages.iter().any(|(n, _)| *n == kernel_package));
    // Nothing to compile with is left.
    let tools: Vec<&str> = packages
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| {
            // gcc, gcc-14, cpp-14, not gcc-14-base (libgcc-s1's, in every
            // Debian system).
            let compiler = |tool: &str| {
                n.strip_prefix(tool).is_some_and(|rest| {
                    rest.is_empty()
                        || rest
                            .strip_prefix('-')
                            .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()))
                })
            };
            compiler("gcc")
                || compiler("cpp")
                || n.starts_with("linux-headers-")
                || n.starts_with("linux-compiler-")
                || n.starts_with("linux-kbuild-")
                || n.contains("dkms")
                || *n == "make"
        })
        .collect();
    assert!(tools.is_empty(), "build tools in the image: {tools:?}");

    // The modules themselves, in the root, built for that kernel.
    let root = dir.join("root");
    extract_root(
        Path::new(report["image"].as_str().unwrap()),
        &manifest,
        &root,
    );
    // The driver alternative's /etc/modules-load.d/nvidia.conf link
    // (nvidia-drm at every boot) is the overlay's file that loads nothing,
    // whichever of the two was installed first.
    let load = root.join("etc/modules-load.d/nvidia.conf");
    assert!(
        load.symlink_metadata().is_ok_and(|m| m.is_file()),
        "{} is not a plain file",
        load.display()
    );
    assert_eq!(
        fs::read(&load).unwrap(),
        fs::read(repo().join("images/overlay/inference/etc/modules-load.d/nvidia.conf")).unwrap()
    );
    let modules = root.join(format!("usr/lib/modules/{kernel}/updates/owui-nvidia"));
    let mut kos: Vec<PathBuf> = fs::read_dir(&modules)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    kos.sort();
    let names: Vec<String> = kos
        .iter()
        .map(|k| k.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // DKMS names them after the set's source, nvidia-tesla-535*.ko; the
    // kernel-support package's modprobe.d maps "nvidia" onto them.
    for module in ["nvidia-tesla-535.ko", "nvidia-tesla-535-uvm.ko"] {
        assert!(names.iter().any(|n| n.starts_with(module)), "{names:?}");
    }
    for ko in &kos {
        // The image's own modinfo, as the node reads them.
        let in_root = Path::new("/").join(ko.strip_prefix(&root).unwrap());
        let what = format!("modinfo {}", ko.display());
        let vermagic = in_image(
            &root,
            &what,
            &[
                "modinfo".as_ref(),
                "-F".as_ref(),
                "vermagic".as_ref(),
                in_root.as_os_str(),
            ],
        );
        assert!(
            vermagic.starts_with(&format!("{kernel} ")),
            "{}: vermagic {vermagic:?}",
            ko.display()
        );
    }
    // depmod ran: the modules are in the index the image boots with.
    let dep =
        fs::read_to_string(root.join(format!("usr/lib/modules/{kernel}/modules.dep"))).unwrap();
    assert!(
        dep.contains("updates/owui-nvidia/nvidia-tesla-535.ko"),
        "modules.dep"
    );
    for gone in [
        "usr/sbin/dkms",
        "usr/bin/gcc",
        "usr/bin/make",
        "var/lib/dkms",
        "usr/share/factory/var/lib/dkms",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is in the image");
    }
    // Every module `gpu setup` loads resolves, by the image's own modprobe
    // and modprobe.d, to the modules built here: directly, or through the
    // kernel-support package's `install … modprobe -i <module>` line.
    let show_depends = |m: &str| {
        let what = format!("modprobe {m}");
        in_image(
            &root,
            &what,
            &["modprobe", "-S", kernel, "--show-depends", m],
        )
    };
    for m in &set.kernel_modules.load {
        let mut shown = show_depends(m);
        if let Some(target) = shown
            .strip_prefix("install ")
            .and_then(|cmd| cmd.split_whitespace().skip_while(|w| *w != "-i").nth(1))
        {
            shown = show_depends(target);
        }
        assert!(
            shown.contains("/updates/owui-nvidia/"),
            "modprobe {m}: {shown}"
        );
    }
    // What the CDI spec mounts into containers is where the set says, and
    // the agent's NVML library (opened by soname) is in the loader's cache.
    let files = &set.container;
    let mounted = files
        .libraries
        .iter()
        .map(|l| files.library_dir.join(l))
        .chain(files.binaries.iter().cloned());
    for path in mounted {
        let what = format!("{} is not in the image", path.display());
        in_image(
            &root,
            &what,
            &["test".as_ref(), "-e".as_ref(), path.as_os_str()],
        );
    }
    let cache = in_image(&root, "ldconfig -p", &["ldconfig", "-p"]);
    assert!(
        cache
            .lines()
            .any(|l| l.trim_start().starts_with("libnvidia-ml.so.1 ")),
        "libnvidia-ml.so.1 is not in the image's loader cache"
    );
    // The agent finds the driver sets where it looks for them, and sets
    // the GPUs up on every boot.
    assert!(root
        .join(format!("usr/share/owui/firmware/sets/{SET}.toml"))
        .is_file());
    // (An absolute link into the image: look at the link, not its target.)
    assert!(root
        .join("etc/systemd/system/multi-user.target.wants/owui-gpu-setup.service")
        .symlink_metadata()
        .is_ok());

    // Booted with no NVIDIA GPU (qemu): the boot's GPU setup says so and
    // succeeds, the containers get no GPUs, the agent's gpu check fails
    // for want of a GPU, and the kernel takes the driver's module (its
    // own code runs and finds no device).
    let (booted, console) = boot_to_report(
        dir,
        Path::new(report["image"].as_str().unwrap()),
        &key,
        "gpu-n01",
        "gpu",
    );
    assert!(
        console.contains("no NVIDIA GPU on the PCI bus"),
        "owui-gpu-setup said nothing on the console:\n{console}"
    );
    // The kernel and getty write to the same console, so the report's
    // lines are looked for, not counted, and may follow a login prompt.
    let lines: Vec<&str> = booted.lines().map(str::trim).collect();
    let status_line = lines
        .iter()
        .find_map(|l| l.find("{ ").or(l.find("{\"")).map(|i| &l[i..]))
        .unwrap_or("");
    let status: serde_json::Value = serde_json::from_str(status_line)
        .unwrap_or_else(|e| panic!("status in the VM is not JSON ({e}):\n{booted}"));
    assert_eq!(
        check_state(&status, "gpu"),
        Some("failed".into()),
        "{booted}"
    );
    assert!(lines.contains(&"active"), "owui-gpu-setup: {booted}");
    assert!(lines.contains(&"containers-env-absent"), "{booted}");
    assert!(
        booted.contains("NVRM: No NVIDIA GPU found"),
        "the kernel did not run the driver's module: {booted}"
    );
}

#[test]
fn an_unknown_driver_set_is_refused_naming_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (key, _) = keys(dir);
    let spec = write_spec(
        &dir.join("spec"),
        "driver_set = \"debian-999\"\nkernel_modules = \"proprietary\"",
    );
    let out = dir.join("out");
    let r = build(&spec, &key, &out, &dir.join("cache"), &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("mini-gpu.toml line")
            && r.stderr.contains("gpu.driver_set")
            && r.stderr.contains("debian-999")
            && r.stderr.contains(SET),
        "{}",
        r.stderr
    );
    assert_nothing_in(&out);
}
