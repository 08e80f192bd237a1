//! The first-boot gate under qemu (issue 20): a small app image booted as a
//! technician boots a server, with the usual mistakes, on two VMs.
//!
//! 1. No seed medium: one message on the console saying what to do, the
//!    same words from `owui-agent status` and above the login prompt, and
//!    no failed unit; then a seed medium plugged in through qemu's monitor
//!    and the boot goes on to READY without a reboot, `systemctl --failed`
//!    still empty.
//! 2. A disk too small for the data partition and a seed for another role:
//!    one message naming both sizes and both roles, no failed unit, and the
//!    disk's partition table as the image had it (nothing repartitioned).
//!
//! Needs what image_build needs (root, mmdebstrap, qemu, OVMF, Debian's
//! package registry); packages are kept in /var/tmp/owui-test-image-cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owui_builder::image::disk::{read_gpt, DATA_LABEL};
use owui_tests::image::{
    boot_disk, build, keys, repo, report_overlay, seed_medium, spec_head, BOOT_CMDLINE,
    BOOT_PACKAGES, BOOT_UNITS, REPORT_BEGIN, REPORT_END,
};
use owui_tests::qemu::Boot;

/// Printed once the boot has settled (after multi-user.target, and after
/// the READY banner when there is one): the failed units, then `status`
/// and its exit code, then the text above the login prompt.
const REPORT_SCRIPT: &str = r#"#!/bin/sh
echo REPORT_BEGIN
echo "failed: $(systemctl --failed --plain --no-legend | tr '\n' ' ')"
echo STATUS_BEGIN
/usr/bin/owui-agent status
echo "STATUS_END $?"
cat /run/issue.d/*.issue 2>/dev/null
echo REPORT_END
"#;

/// The least data partition the spec asks for.
const DATA_MIB: u64 = 256;

/// The boot essentials only, the repository's common and app overlays and
/// the report unit: the smallest image with the gate, the agent and its
/// READY banner.
fn write_spec(dir: &Path) -> PathBuf {
    let overlay = dir.join("overlay");
    report_overlay(&overlay, "multi-user.target", REPORT_SCRIPT);
    let images = repo().join("images/overlay");
    let spec = format!(
        r#"{head}components = ["main"]
packages = [{BOOT_PACKAGES}]
[units]
enable = [{BOOT_UNITS}]
[overlay]
dirs = ["{common}", "{app}", "overlay"]
[partitions]
esp = 128
root = 1024
content = "auto"
data = {DATA_MIB}
[kernel]
cmdline = [{BOOT_CMDLINE}]
"#,
        head = spec_head("app"),
        common = images.join("common").display(),
        app = images.join("app").display(),
    );
    fs::create_dir_all(dir).unwrap();
    let path = dir.join("gate.toml");
    fs::write(&path, spec).unwrap();
    path
}

/// Runs of whitespace as one space: the console wraps the message.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One printed report: the failed units, status's text and exit code, and
/// the text above the login prompt.
struct Report {
    failed: String,
    status: String,
    status_exit: String,
    issue: String,
}

/// The `n`th report (from 0) in the serial log, once it is complete.
fn report(vm: &mut Boot, n: usize, limit: Duration) -> Report {
    let start = Instant::now();
    loop {
        let log = vm.log().replace('\r', "");
        let complete = log
            .split(REPORT_BEGIN)
            .nth(n + 1)
            .and_then(|text| text.split_once(REPORT_END));
        if let Some((text, _)) = complete {
            return parse_report(text);
        }
        assert!(
            start.elapsed() < limit,
            "no report {n} after {limit:?}:\n{}",
            vm.excerpt()
        );
        // Polls the log, and starts a VM whose emulator faulted again.
        vm.wait_for(&[REPORT_END], Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn parse_report(text: &str) -> Report {
    let field = |from: &str, to: &str| {
        let rest = text
            .split_once(from)
            .unwrap_or_else(|| panic!("no {from} in {text}"))
            .1;
        rest.split_once(to).map_or(rest, |(v, _)| v).to_string()
    };
    let after_status = field("STATUS_END ", "\u{0}");
    let (status_exit, issue) = after_status.split_once('\n').unwrap_or((&after_status, ""));
    Report {
        failed: field("failed:", "\n").trim().to_string(),
        status: field("STATUS_BEGIN\n", "STATUS_END"),
        status_exit: status_exit.trim().to_string(),
        issue: issue.to_string(),
    }
}

/// A waiting node: the console, `status` and the login prompt say the same
/// thing, which holds every one of `expected`; no unit failed.
fn assert_waiting(vm: &Boot, r: &Report, expected: &[&str]) {
    let console = words(&vm.log().replace('\r', ""));
    let message = words(&r.status);
    assert!(
        message.starts_with("owui-appliance: this node is waiting"),
        "{}\n{}",
        r.status,
        vm.excerpt()
    );
    for e in expected {
        assert!(message.contains(e), "{e:?} not in status:\n{}", r.status);
    }
    assert!(
        console.contains(&message),
        "the console differs:\n{}",
        vm.excerpt()
    );
    assert_eq!(words(&r.issue), message, "the login prompt's text differs");
    assert_eq!(r.status_exit, "9", "{}", r.status);
    assert_eq!(r.failed, "", "failed units on a waiting node");
    assert!(!console.contains("OWUI-AGENT READY"), "{}", vm.excerpt());
}

#[test]
fn first_boot_waits_with_one_message_and_goes_on_when_the_seed_arrives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (key, _) = keys(dir);
    let spec = write_spec(&dir.join("spec"));
    let out = dir.join("out");
    let cache = Path::new("/var/tmp/owui-test-image-cache");
    let started = Instant::now();
    let built = build(&spec, &key, &out, cache, &[]).ok().json();
    eprintln!("build: {:?}", started.elapsed());
    let image = PathBuf::from(built["image"].as_str().unwrap());

    // 1. No seed medium: the node waits, says so, and nothing failed.
    let one = dir.join("one");
    fs::create_dir_all(&one).unwrap();
    let disk = boot_disk(&image, &one.join("boot.img"));
    let started = Instant::now();
    let mut vm = Boot::start_with_monitor(&one, &disk, &[]);
    let waiting = report(&mut vm, 0, Duration::from_secs(480));
    eprintln!(
        "boot to the waiting report (no seed): {:?}",
        started.elapsed()
    );
    assert_waiting(
        &vm,
        &waiting,
        &[
            "No seed found. Looked for a FAT volume labelled OWUI-SEED and /efi/owui/seed.toml.",
            "this node continues by itself when it appears.",
        ],
    );
    // The stick goes in: the boot goes on to READY, with no reboot.
    let medium = seed_medium(&one, &key, "lab-n1", "app");
    let answer = vm.hotplug_drive("seed", &medium);
    assert!(!answer.contains("rror"), "qemu's monitor: {answer}");
    let started = Instant::now();
    let banner = "OWUI-AGENT READY role=app node=lab-n1";
    let seen = vm.wait_for(&[banner], Duration::from_secs(300));
    assert_eq!(seen.as_deref(), Some(banner), "{}", vm.excerpt());
    let ready = report(&mut vm, 1, Duration::from_secs(180));
    eprintln!("seed plugged in to READY: {:?}", started.elapsed());
    let log = vm.log();
    assert!(
        log.find(banner) > log.find("No seed found"),
        "{}",
        vm.excerpt()
    );
    assert_eq!(ready.failed, "", "failed units after READY");
    assert!(
        !words(&ready.status).contains("this node is waiting"),
        "{}",
        ready.status
    );
    assert_eq!(
        ready.issue, "",
        "the waiting text stayed above the login prompt"
    );
    drop(vm);

    // 2. The image on a disk with no room to grow, and another role's seed.
    let two = dir.join("two");
    fs::create_dir_all(&two).unwrap();
    let small = two.join("small.img");
    fs::copy(&image, &small).unwrap();
    let medium = seed_medium(&two, &key, "gpu-n2", "gpu");
    let started = Instant::now();
    let mut vm = Boot::start(&two, &small, &[&medium]);
    let refused = report(&mut vm, 0, Duration::from_secs(480));
    eprintln!(
        "boot to the waiting report (small disk, gpu seed): {:?}",
        started.elapsed()
    );
    let gpt = read_gpt(&image).unwrap();
    let data = gpt.iter().find(|p| p.label == DATA_LABEL).unwrap();
    let leaves = format!("{:.1} MiB", data.size as f64 / f64::from(1 << 20));
    assert_waiting(
        &vm,
        &refused,
        &[
            "is the seed of a gpu node (gpu-n2), but this is the app image",
            "`owui-builder seed create --role app`",
            &format!("This disk is too small: it leaves {leaves} for the data partition"),
            &format!("this app image needs at least {DATA_MIB}.0 MiB there"),
        ],
    );
    drop(vm);
    // Nothing was repartitioned: the partition table is the image's, the
    // disk as long as it was.
    assert_eq!(read_gpt(&small).unwrap(), gpt);
    assert_eq!(
        fs::metadata(&small).unwrap().len(),
        fs::metadata(&image).unwrap().len()
    );
}
