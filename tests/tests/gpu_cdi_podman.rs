//! The CDI spec `owui-agent gpu setup` writes, loaded by a real CDI
//! consumer: podman runs a container with `--device nvidia.com/gpu=all`.
//!
//! The node's device nodes are harmless stand-ins (character devices 1:3,
//! the numbers of /dev/null) made before setup, which keeps them and writes
//! their numbers into the spec. The spec's host paths are the node's own
//! (`/usr/lib/...`), so the test points them at the node tree under the
//! temporary root, and the hook at the built agent. Debian 12's podman 4.3.1
//! has no `cdi_spec_dirs` setting (its CDI directories are fixed to
//! /etc/cdi and /var/run/cdi), so podman runs in a private mount namespace
//! with the spec's directory bound over /run/cdi.
//!
//! Needs root, podman, runc, unshare and busybox-static (.ci/run installs
//! them).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use owui_tests::site::{bin, run};

fn standin(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
}

#[test]
fn podman_runs_a_container_with_every_gpu_from_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    let lib = "usr/lib/x86_64-linux-gnu/nvidia/tesla-535";
    fs::create_dir_all(root.join("etc/owui")).unwrap();
    fs::write(
        root.join("etc/owui/seed.toml"),
        "node = \"gpu-1\"\nrole = \"gpu\"\n",
    )
    .unwrap();
    let fw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware");
    fs::create_dir_all(root.join("usr/share/owui/firmware/sets")).unwrap();
    fs::copy(
        fw.join("gpus.toml"),
        root.join("usr/share/owui/firmware/gpus.toml"),
    )
    .unwrap();
    fs::copy(
        fw.join("sets/debian-tesla-535.toml"),
        root.join("usr/share/owui/firmware/sets/debian-tesla-535.toml"),
    )
    .unwrap();
    fs::create_dir_all(root.join(lib)).unwrap();
    for l in [
        "libcuda.so.1",
        "libnvidia-ml.so.1",
        "libnvidia-ptxjitcompiler.so.1",
        "libnvidia-nvvm.so.4",
    ] {
        fs::write(root.join(lib).join(l), format!("stand-in {l}\n")).unwrap();
    }
    fs::create_dir_all(root.join("usr/lib/nvidia/tesla-535")).unwrap();
    fs::write(
        root.join("usr/lib/nvidia/tesla-535/nvidia-smi"),
        "#!/bin/sh\necho stand-in smi\n",
    )
    .unwrap();
    fs::set_permissions(
        root.join("usr/lib/nvidia/tesla-535/nvidia-smi"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("proc/devices"),
        "Character devices:\n507 nvidia-uvm\n",
    )
    .unwrap();
    let mut fixture = String::from("driver_version = \"535.274.02\"\n");
    for (i, addr) in ["0000:18:00.0", "0000:2a:00.0"].iter().enumerate() {
        let d = root.join("sys/bus/pci/devices").join(addr);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), "0x10de\n").unwrap();
        fs::write(d.join("device"), "0x2330\n").unwrap();
        fs::write(d.join("class"), "0x030200\n").unwrap();
        fixture.push_str(&format!(
            "[[gpu]]\nindex = {i}\nuuid = \"GPU-0000000{i}-1111-2222-3333-444444444444\"\nname = \"NVIDIA H100 80GB HBM3\"\npci_bus_id = \"{addr}\"\nminor = {i}\n"
        ));
        standin(&root.join(format!("dev/nvidia{i}")));
    }
    for n in ["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] {
        standin(&root.join("dev").join(n));
    }
    fs::write(root.join("etc/owui/gpu-fixture.toml"), fixture).unwrap();

    let r = run(
        &bin("owui-agent"),
        &["--root", root.to_str().unwrap(), "gpu", "setup"],
        &[],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("c 1:3, the driver's is 195:0; left as it is"),
        "{}",
        r.stdout
    );

    // Relocate the node's host paths to the tree under the temporary root.
    let spec = fs::read_to_string(root.join("etc/cdi/nvidia.yaml")).unwrap();
    let agent = bin("owui-agent");
    let relocated: String = spec
        .lines()
        .map(|l| {
            let l = if l.contains("hostPath: \"/") {
                l.replace("hostPath: \"/", &format!("hostPath: \"{}/", root.display()))
            } else {
                l.to_string()
            };
            l.replace(
                "path: \"/usr/bin/owui-agent\"",
                &format!("path: \"{}\"", agent.display()),
            ) + "\n"
        })
        .collect();
    let cdi = tmp.path().join("cdi");
    fs::create_dir_all(&cdi).unwrap();
    fs::write(cdi.join("nvidia.yaml"), relocated).unwrap();

    // A tiny image: busybox-static, imported.
    let rootfs = tmp.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is installed");
    for c in ["sh", "ls", "cat", "echo"] {
        symlink("busybox", rootfs.join("bin").join(c)).unwrap();
    }
    let tarball = tmp.path().join("bb.tar");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let conf = tmp.path().join("containers.conf");
    fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    let podman = format!(
        "podman --root {0}/store --runroot {0}/run --storage-driver vfs",
        tmp.path().display()
    );
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{podman} import {} localhost/owui-gpu-test:1",
            tarball.display()
        ))
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    fs::create_dir_all("/run/cdi").unwrap();
    let inside = "ls -l /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl /dev/nvidia-uvm; \
                  cat /usr/lib/x86_64-linux-gnu/nvidia/tesla-535/libcuda.so.1; /usr/bin/nvidia-smi; \
                  echo driver=$NVIDIA_DRIVER_VERSION; echo x > /dev/nvidia1 && echo writable";
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /run/cdi && {podman} run --rm --device nvidia.com/gpu=all localhost/owui-gpu-test:1 /bin/sh -c '{inside}'",
            cdi.display()
        ))
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podman refused the spec:\n{stdout}\n{stderr}"
    );
    for want in [
        "/dev/nvidia0",
        "/dev/nvidia1",
        "/dev/nvidia-uvm",
        "stand-in libcuda.so.1",
        "stand-in smi",
        "driver=535.274.02",
        "writable",
    ] {
        assert!(stdout.contains(want), "{want} missing:\n{stdout}\n{stderr}");
    }
    // One GPU by index gets only its own node.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /run/cdi && {podman} run --rm --device nvidia.com/gpu=1 localhost/owui-gpu-test:1 /bin/sh -c 'ls /dev'",
            cdi.display()
        ))
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("nvidia1") && !stdout.contains("nvidia0"),
        "{stdout}"
    );
    // An unknown device is refused by podman: the spec really was read.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind {} /run/cdi && {podman} run --rm --device nvidia.com/gpu=7 localhost/owui-gpu-test:1 true",
            cdi.display()
        ))
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
