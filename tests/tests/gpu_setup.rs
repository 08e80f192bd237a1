//! `owui-agent gpu setup`, `gpu status` and the GPU health check against
//! fake sysfs trees (no GPU; one H100; eight H100 SXM with NVSwitch; an
//! A100; an L40S; an RTX 4090; a Blackwell B200; a non-NVIDIA display
//! device) and the NVML fixture, run through the built binary.

use std::fs;
use std::path::{Path, PathBuf};

use owui_tests::site::{bin, run, Run};

struct Node {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

struct Gpu {
    addr: &'static str,
    device: &'static str,
    name: &'static str,
}

fn pci_dev(root: &Path, addr: &str, vendor: &str, device: &str, class: &str) {
    let d = root.join("sys/bus/pci/devices").join(addr);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
    fs::write(d.join("device"), format!("{device}\n")).unwrap();
    fs::write(d.join("class"), format!("{class}\n")).unwrap();
    fs::write(d.join("current_link_speed"), "32.0 GT/s PCIe\n").unwrap();
    fs::write(d.join("max_link_speed"), "32.0 GT/s PCIe\n").unwrap();
    fs::write(d.join("current_link_width"), "16\n").unwrap();
    fs::write(d.join("max_link_width"), "16\n").unwrap();
}

fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn uuid(i: usize) -> String {
    format!("GPU-4b1e0e0a-2d1f-4e4e-9e0e-0a0b0c0d0e{i:02x}")
}

/// A gpu-role node root with the firmware table, the driver set's files,
/// /proc/devices, the given GPUs on the PCI bus (and, with `fixture`, an
/// NVML fixture that sees them all).
fn node(gpus: &[Gpu], switches: usize, fixture: Option<&str>) -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    fs::create_dir_all(root.join("etc/owui")).unwrap();
    fs::write(
        root.join("etc/owui/seed.toml"),
        "node = \"gpu-1\"\nrole = \"gpu\"\n",
    )
    .unwrap();
    copy_dir(&firmware_dir(), &root.join("usr/share/owui/firmware"));
    let lib = root.join("usr/lib/x86_64-linux-gnu/nvidia/tesla-535");
    fs::create_dir_all(&lib).unwrap();
    for l in [
        "libcuda.so.1",
        "libnvidia-ml.so.1",
        "libnvidia-ptxjitcompiler.so.1",
        "libnvidia-nvvm.so.4",
    ] {
        fs::write(lib.join(l), "stand-in").unwrap();
    }
    fs::create_dir_all(root.join("usr/lib/nvidia/tesla-535")).unwrap();
    fs::write(root.join("usr/lib/nvidia/tesla-535/nvidia-smi"), "stand-in").unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(
        root.join("proc/devices"),
        "Character devices:\n  1 mem\n195 nvidia-frontend\n507 nvidia-uvm\n\nBlock devices:\n",
    )
    .unwrap();
    // The BMC's VGA chip every server has.
    pci_dev(&root, "0000:02:00.0", "0x1a03", "0x2000", "0x030000");
    for g in gpus {
        pci_dev(&root, g.addr, "0x10de", g.device, "0x030200");
    }
    for i in 0..switches {
        pci_dev(
            &root,
            &format!("0000:0{i}:01.0"),
            "0x10de",
            "0x22a3",
            "0x068000",
        );
    }
    if let Some(version) = fixture {
        let mut f = format!("driver_version = \"{version}\"\n");
        for (i, g) in gpus.iter().enumerate() {
            f.push_str(&format!(
                "[[gpu]]\nindex = {i}\nuuid = \"{}\"\nname = \"NVIDIA {}\"\npci_bus_id = \"{}\"\nminor = {i}\n\
                 temperature_c = {}\npower_w = 120.5\npower_limit_w = 700.0\necc_uncorrected_volatile = 0\n\
                 pcie_width_current = 16\npcie_width_max = 16\n",
                uuid(i),
                g.name,
                g.addr.to_uppercase().replacen("0000:", "00000000:", 1),
                40 + i
            ));
        }
        fs::write(root.join("etc/owui/gpu-fixture.toml"), f).unwrap();
    }
    Node { _tmp: tmp, root }
}

impl Node {
    fn agent(&self, args: &[&str]) -> Run {
        let mut all = vec!["--root", self.root.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&bin("owui-agent"), &all, &[])
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let r = self.agent(args);
        assert_eq!(r.code, 0, "{args:?}: {}\n{}", r.stdout, r.stderr);
        serde_json::from_str(&r.stdout).unwrap()
    }

    fn spec(&self) -> String {
        fs::read_to_string(self.root.join("etc/cdi/nvidia.yaml")).unwrap()
    }
}

const H100_PCIE: Gpu = Gpu {
    addr: "0000:1b:00.0",
    device: "0x2331",
    name: "H100 PCIe",
};

fn h100_sxm(i: usize) -> Gpu {
    const ADDRS: [&str; 8] = [
        "0000:18:00.0",
        "0000:2a:00.0",
        "0000:3a:00.0",
        "0000:5d:00.0",
        "0000:9a:00.0",
        "0000:ab:00.0",
        "0000:ba:00.0",
        "0000:db:00.0",
    ];
    Gpu {
        addr: ADDRS[i],
        device: "0x2330",
        name: "H100 80GB HBM3",
    }
}

const V: &str = "535.274.02";

#[test]
fn no_nvidia_device_says_so_and_succeeds() {
    let n = node(&[], 0, None);
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("no NVIDIA GPU") && r.stdout.contains("1 other display"),
        "{}",
        r.stdout
    );
    assert!(!n.root.join("etc/cdi").exists());
    // GPUs handed to the containers on an earlier boot are taken back.
    let env = n.root.join("run/owui/gpu/containers.env");
    fs::create_dir_all(env.parent().unwrap()).unwrap();
    fs::write(&env, "OWUI_GPU_DEVICES=--device=nvidia.com/gpu=all\n").unwrap();
    let report = n.json(&["gpu", "setup", "--json"]);
    assert_eq!(report["containers"]["action"], "removed", "{report}");
    assert!(!env.exists());
}

#[test]
fn without_nvml_setup_names_the_missing_library() {
    let n = node(&[H100_PCIE], 0, None);
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 7, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("libnvidia-ml.so.1") && r.stderr.contains("libnvidia-tesla-535-ml1"),
        "{}",
        r.stderr
    );
}

#[test]
fn every_supported_tree_gets_a_cdi_spec() {
    let trees: Vec<(&str, Vec<Gpu>, usize, &str)> = vec![
        ("one H100", vec![H100_PCIE], 0, "H100 PCIe"),
        (
            "eight H100 SXM",
            (0..8).map(h100_sxm).collect(),
            4,
            "H100 SXM5",
        ),
        (
            "A100",
            vec![Gpu {
                addr: "0000:41:00.0",
                device: "0x20b2",
                name: "A100-SXM4-80GB",
            }],
            0,
            "A100 SXM4 40GB/80GB",
        ),
        (
            "L40S",
            vec![Gpu {
                addr: "0000:41:00.0",
                device: "0x26b9",
                name: "L40S",
            }],
            0,
            "L40S",
        ),
        (
            "RTX 4090",
            vec![Gpu {
                addr: "0000:01:00.0",
                device: "0x2684",
                name: "GeForce RTX 4090",
            }],
            0,
            "GeForce RTX 4090",
        ),
    ];
    for (what, gpus, switches, model) in trees {
        let n = node(&gpus, switches, Some(V));
        let report = n.json(&["gpu", "setup", "--json"]);
        assert_eq!(report["outcome"], "configured", "{what}: {report}");
        assert_eq!(report["choice"]["set"], "debian-tesla-535", "{what}");
        assert_eq!(report["choice"]["kernel_modules"], "proprietary", "{what}");
        assert_eq!(report["choice"]["gpus"][0]["model"], model, "{what}");
        assert_eq!(report["cdi_action"], "written", "{what}");
        let names: Vec<String> = report["cdi_devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), gpus.len() * 2 + 1, "{what}: {names:?}");
        assert!(names.contains(&"nvidia.com/gpu=all".to_string()));
        assert!(names.contains(&"nvidia.com/gpu=0".to_string()));
        assert!(names.contains(&format!("nvidia.com/gpu={}", uuid(0))));
        let warned = report["warnings"].to_string();
        assert_eq!(
            warned.contains("fabric manager"),
            switches > 0,
            "{what}: {warned}"
        );
        // Device nodes, /dev/char links, runtime config.
        for i in 0..gpus.len() {
            assert!(n.root.join(format!("dev/nvidia{i}")).exists(), "{what}");
            assert_eq!(
                fs::read_link(n.root.join(format!("dev/char/195:{i}"))).unwrap(),
                Path::new(&format!("../nvidia{i}"))
            );
        }
        let conf = fs::read_to_string(n.root.join("etc/containers/containers.conf")).unwrap();
        assert!(
            conf.contains("cdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\"]"),
            "{conf}"
        );
        assert_eq!(report["containers"]["action"], "written", "{what}");
        let env = fs::read_to_string(n.root.join("run/owui/gpu/containers.env")).unwrap();
        assert!(
            env.lines()
                .any(|l| l == "OWUI_GPU_DEVICES=--device=nvidia.com/gpu=all"),
            "{what}: {env}"
        );
        let spec = n.spec();
        assert!(
            spec.contains("cdiVersion: \"0.5.0\"\nkind: \"nvidia.com/gpu\"\n"),
            "{spec}"
        );
        assert!(
            spec.contains("hostPath: \"/usr/lib/x86_64-linux-gnu/nvidia/tesla-535/libcuda.so.1\"")
        );
        assert!(spec.contains("path: \"/dev/nvidia-uvm\""), "{spec}");
        assert!(spec.contains("hookName: \"createContainer\""), "{spec}");
        // Idempotent: a second run changes nothing.
        let again = n.json(&["gpu", "setup", "--json"]);
        assert_eq!(again["cdi_action"], "unchanged", "{what}");
        assert_eq!(again["containers"]["action"], "unchanged", "{what}");
        assert!(again["runtimes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] != "updated"));
        assert_eq!(n.spec(), spec);
        // And gpu status agrees.
        let status = n.json(&["gpu", "status", "--json"]);
        assert_eq!(status["state"], "healthy", "{what}: {status}");
        assert_eq!(status["cdi"]["present"], true);
        assert_eq!(
            status["cdi"]["devices"].as_array().unwrap().len(),
            gpus.len() * 2 + 1
        );
        assert_eq!(
            status["health"]["gpus"].as_array().unwrap().len(),
            gpus.len()
        );
    }
}

#[test]
fn a_gpu_without_a_set_is_named_with_the_nearest_sets() {
    let b200 = Gpu {
        addr: "0000:1b:00.0",
        device: "0x2901",
        name: "B200",
    };
    let n = node(&[b200], 0, Some("570.124.06"));
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("10de:2901 at 0000:1b:00.0")
            && r.stderr.contains("B200")
            && r.stderr.contains("blackwell")
            && r.stderr
                .contains("nearest sets: debian-tesla-535 (driver 535.274.02"),
        "{}",
        r.stderr
    );
    let unknown = Gpu {
        addr: "0000:1b:00.0",
        device: "0x1234",
        name: "mystery",
    };
    let n = node(&[unknown], 0, Some(V));
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 5);
    assert!(
        r.stderr.contains("10de:1234") && r.stderr.contains("gpus.toml"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_driver_that_is_not_the_set_is_refused() {
    let n = node(&[H100_PCIE], 0, Some("550.163.01"));
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr.contains("550.163.01") && r.stderr.contains(V),
        "{}",
        r.stderr
    );
    assert!(!n.root.join("etc/cdi/nvidia.yaml").exists());
}

#[test]
fn a_gpu_nvml_cannot_see_is_refused() {
    let n = node(&[H100_PCIE], 0, Some(V));
    pci_dev(&n.root, "0000:2a:00.0", "0x10de", "0x2331", "0x030200");
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("0000:2a:00.0"), "{}", r.stderr);
}

#[test]
fn malformed_inputs_name_file_line_and_field() {
    let n = node(&[H100_PCIE], 0, Some(V));
    fs::write(
        n.root.join("etc/owui/gpu-fixture.toml"),
        "driver_version = \"550.163.01\"\n[[gpu]]\nindex = 0\nuuid = \"GPU-1\"\nname = \"H100\"\npci_bus_id = \"0000:1b:00.0\"\nminor = \"zero\"\n",
    )
    .unwrap();
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("gpu-fixture.toml") && r.stderr.contains("line 7"),
        "{}",
        r.stderr
    );

    let n = node(&[H100_PCIE], 0, Some(V));
    let table = n.root.join("usr/share/owui/firmware/gpus.toml");
    let text = fs::read_to_string(&table)
        .unwrap()
        .replacen("\"0x2331\"", "\"2331\"", 1);
    fs::write(&table, text).unwrap();
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("gpus.toml")
            && r.stderr.contains("device_ids")
            && r.stderr.contains("line "),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unwritable_cdi_directory_is_reported() {
    let n = node(&[H100_PCIE], 0, Some(V));
    fs::create_dir_all(n.root.join("etc")).unwrap();
    fs::write(n.root.join("etc/cdi"), "a file where the directory belongs").unwrap();
    let r = n.agent(&["gpu", "setup"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("etc/cdi"), "{}", r.stderr);
}

#[test]
fn a_critical_xid_fails_the_gpu_and_drains_the_node() {
    let n = node(&[h100_sxm(0), h100_sxm(1)], 0, Some(V));
    let r = n.agent(&["gpu", "status"]);
    assert_eq!(r.code, 8, "no CDI spec yet, so degraded: {}", r.stdout);
    assert!(r.stdout.contains("MISSING"), "{}", r.stdout);
    n.json(&["gpu", "setup", "--json"]);
    let healthy = n.json(&["gpu", "status", "--json"]);
    assert_eq!(healthy["health"]["state"], "healthy", "{healthy}");
    // A hot GPU is degraded, not failed.
    let f = n.root.join("etc/owui/gpu-fixture.toml");
    let text = fs::read_to_string(&f).unwrap();
    fs::write(
        &f,
        text.replacen("temperature_c = 41", "temperature_c = 88", 1),
    )
    .unwrap();
    let r = n.agent(&["gpu", "status", "--json"]);
    assert_eq!(r.code, 8, "{}", r.stdout);
    fs::write(&f, format!("{text}[[xid]]\nindex = 1\nxid = 79\n")).unwrap();
    let r = n.agent(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["gpu"]["state"], "failed", "{}", doc["gpu"]);
    assert!(doc["gpu"]["drained"]["reason"]
        .as_str()
        .unwrap()
        .contains("XID 79 on GPU 1"));
    assert_eq!(doc["gpu"]["gpus"][1]["state"], "failed");
    assert_eq!(doc["gpu"]["gpus"][0]["state"], "healthy");
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gpu")
        .unwrap();
    assert_eq!(check["state"], "failed");
    assert_eq!(doc["overall"], "failed");
    // The drain outlives the event: without the XID the node stays drained.
    fs::write(&f, &text).unwrap();
    let r = n.agent(&["gpu", "status"]);
    assert_eq!(r.code, 9, "{}", r.stdout);
    assert!(r.stdout.contains("DRAINED"), "{}", r.stdout);
    let r = n.agent(&["gpu", "undrain"]);
    assert!(r.stdout.contains("undrained"), "{}", r.stdout);
    let r = n.agent(&["gpu", "status"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

/// Every file under `dir`, with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn with_the_images_own_configuration_nothing_is_written_under_etc() {
    // The gpu image's /etc (read-only on a node): its podman drop-in and
    // agent.toml, as the builder installs them.
    let n = node(&[H100_PCIE], 0, Some(V));
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/overlay");
    copy_dir(&images.join("containers/etc"), &n.root.join("etc"));
    fs::copy(
        images.join("gpu/etc/owui/agent.toml"),
        n.root.join("etc/owui/agent.toml"),
    )
    .unwrap();
    let before = snapshot(&n.root.join("etc"));
    let report = n.json(&["gpu", "setup", "--json"]);
    assert_eq!(report["outcome"], "configured", "{report}");
    assert_eq!(snapshot(&n.root.join("etc")), before, "{report}");
    assert_eq!(report["cdi_spec"], "/var/run/cdi/nvidia.yaml");
    assert!(n.root.join("var/run/cdi/nvidia.yaml").is_file());
    let podman = &report["runtimes"][0];
    assert_eq!(
        (&podman["file"], &podman["action"]),
        (
            &serde_json::json!("/etc/containers/containers.conf.d/50-owui.conf"),
            &serde_json::json!("unchanged")
        ),
        "{report}"
    );
    assert_eq!(report["containers"]["file"], "/run/owui/gpu/containers.env");
    let status = n.json(&["gpu", "status", "--json"]);
    assert_eq!(status["cdi"]["present"], true, "{status}");
}

/// The fixture is a test seam: only the tests crate turns on the feature
/// that honours it, so an agent built on its own (as images carry it) has
/// no way to read a fake NVML from the node's disk.
#[test]
fn an_agent_built_on_its_own_does_not_honour_the_fixture() {
    let features_of_bundle = |package: &str, edges: &str| {
        let out = std::process::Command::new(env!("CARGO"))
            .args(["tree", "--offline", "-p", package, "-e", edges])
            .args(["-i", "owui-bundle", "--prefix", "none"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let agent = features_of_bundle("owui-agent", "normal,features");
    assert!(agent.contains("owui-agent"), "{agent}");
    assert!(!agent.contains("gpu-fixture"), "{agent}");
    // The same query sees the feature where it is on.
    let tests = features_of_bundle("owui-tests", "all,features");
    assert!(tests.contains("gpu-fixture"), "{tests}");
}
