//! The NVIDIA device nodes and their `/dev/char` links, made for real
//! (`mknod`, so as root) under a temporary root.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::sys::stat::{major, minor};
use owui_agent::gpu::api::GpuDevice;
use owui_agent::gpu::devnodes::ensure;
use owui_agent::layout::Root;

fn gpu(minor: u32) -> GpuDevice {
    GpuDevice {
        index: minor,
        uuid: format!("GPU-{minor}"),
        name: "H100".into(),
        pci_bus_id: "0000:1b:00.0".into(),
        minor,
    }
}

#[test]
fn makes_nodes_and_links_idempotently() {
    let t = tempfile::tempdir().unwrap();
    let root = Root::new(t.path());
    fs::create_dir_all(t.path().join("proc")).unwrap();
    fs::write(
        t.path().join("proc/devices"),
        "Character devices:\n  1 mem\n195 nvidia-frontend\n508 nvidia-uvm\n\nBlock devices:\n  8 sd\n",
    )
    .unwrap();
    let first = ensure(&root, &[gpu(0), gpu(1)]).unwrap();
    assert!(first.nodes.iter().all(|n| n.created), "{first:?}");
    assert_eq!(first.nodes.len(), 5);
    let uvm = fs::metadata(t.path().join("dev/nvidia-uvm")).unwrap();
    assert_eq!((major(uvm.rdev()), minor(uvm.rdev())), (508, 0));
    assert_eq!(
        fs::read_link(t.path().join("dev/char/195:1")).unwrap(),
        Path::new("../nvidia1")
    );
    let again = ensure(&root, &[gpu(0), gpu(1)]).unwrap();
    assert!(again.nodes.iter().all(|n| !n.created));
    assert_eq!(again.links, first.links);
    assert_eq!(first.shared().count(), 3);
    // A plain file where a node belongs is refused, by name.
    fs::remove_file(t.path().join("dev/nvidia1")).unwrap();
    fs::write(t.path().join("dev/nvidia1"), "").unwrap();
    let err = ensure(&root, &[gpu(1)]).unwrap_err().to_string();
    assert!(
        err.contains("dev/nvidia1") && err.contains("not a character device"),
        "{err}"
    );
}
