//! The node's OCI path against real skopeo and podman (`.ci/run` installs
//! them): pack, content store, layout, import into a private podman store.

use std::fs;
use std::path::Path;

use owui_bundle::command::Cmd;
use owui_bundle::items::OciImage;
use owui_bundle::oci::{import, pack, remove, stored_digest, write_layout, PodmanStore};
use owui_bundle::spec::OciSpec;
use owui_bundle::store::commit_packed;
use owui_bundle::store::ContentStore;
use owui_tests::build_test_oci_image;

fn spec(reference: &str, source: &Path) -> OciSpec {
    OciSpec {
        reference: reference.to_string(),
        source: Some(source.to_path_buf()),
    }
}

fn require_tool(tool: &str) {
    if let Err(e) = Cmd::new(tool).arg("--version").output() {
        panic!("{tool} is needed for this test and is not usable ({e}); .ci/run installs it");
    }
}

/// The node path against real skopeo and podman: pack, store, layout,
/// import, and podman reports the digest that was packed.
#[test]
fn imports_into_podman_storage_with_digests_preserved() {
    require_tool("skopeo");
    require_tool("podman");
    let src = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let node = tempfile::tempdir().unwrap();
    let ref_a = "registry.example/owui/hello:v1";
    let ref_b = "registry.example/owui/hello-alias:v1";
    build_test_oci_image(src.path(), ref_a, "hello from a test image").unwrap();
    let store = ContentStore::open(&node.path().join("store")).unwrap();
    let (a, blobs) = pack(&spec(ref_a, src.path()), scratch.path()).unwrap();
    commit_packed(&store, &blobs);
    // Same image under a second name, to check removal only untags.
    let b = OciImage {
        reference: ref_b.to_string(),
        ..a.clone()
    };
    let dest = node.path().join("layout");
    write_layout(&store, &[a.clone(), b.clone()], &dest).unwrap();

    let podman = PodmanStore {
        driver: "vfs".into(),
        graph_root: node.path().join("graph"),
        run_root: node.path().join("run"),
    };
    assert_eq!(stored_digest(ref_a, &podman).unwrap(), None);
    import(&dest, &[a.clone(), b.clone()], &podman).unwrap();
    assert_eq!(stored_digest(ref_a, &podman).unwrap(), Some(a.manifest));
    assert_eq!(stored_digest(ref_b, &podman).unwrap(), Some(a.manifest));
    // A second run finds both and copies nothing.
    import(&dest, &[a.clone(), b.clone()], &podman).unwrap();

    let listing = podman
        .podman()
        .args([
            "images",
            "--digests",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.Digest}}",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8(listing).unwrap();
    assert!(
        listing.contains(&format!("{ref_a} {}", a.manifest)),
        "{listing}"
    );
    // No staging directory is left in the graph root.
    assert!(fs::read_dir(&podman.graph_root).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".owui-")));

    // Removing one name of an image shared by two only untags it.
    remove(ref_b, &podman).unwrap();
    assert_eq!(stored_digest(ref_b, &podman).unwrap(), None);
    assert_eq!(stored_digest(ref_a, &podman).unwrap(), Some(a.manifest));

    // A newer image under a name replaces it there; the other name
    // (copied again) keeps the old image.
    let src2 = tempfile::tempdir().unwrap();
    build_test_oci_image(src2.path(), ref_a, "a newer test image").unwrap();
    let (a2, blobs) = pack(&spec(ref_a, src2.path()), scratch.path()).unwrap();
    commit_packed(&store, &blobs);
    write_layout(&store, &[a2.clone(), b.clone()], &dest).unwrap();
    import(&dest, &[a2.clone(), b.clone()], &podman).unwrap();
    assert_eq!(stored_digest(ref_a, &podman).unwrap(), Some(a2.manifest));
    assert_eq!(stored_digest(ref_b, &podman).unwrap(), Some(a.manifest));

    remove(ref_b, &podman).unwrap();
    assert_eq!(stored_digest(ref_b, &podman).unwrap(), None);
    remove(ref_a, &podman).unwrap();
    assert_eq!(stored_digest(ref_a, &podman).unwrap(), None);
    remove(ref_a, &podman).unwrap();
    let listing = podman
        .podman()
        .args(["images", "--quiet"])
        .output()
        .unwrap();
    assert!(listing.is_empty(), "{}", String::from_utf8_lossy(&listing));
}
