//! `--root DIR` cannot be escaped: with a link on the node's disk that points
//! out of DIR, bundle apply and secrets init stay inside DIR (an absolute
//! link target starts again at DIR, `..` stops there) or refuse, and nothing
//! outside DIR changes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use owui_tests::site::{model_sources, snapshot, spec_head, Site};

/// A private directory beside the node's root, holding something of the
/// host's, and private `secrets/` and `tls/` directories a careless
/// `secrets init` would fill.
fn outside(site: &Site) -> (PathBuf, BTreeMap<String, String>) {
    let dir = site.tmp.path().join("outside");
    for private in [dir.clone(), dir.join("secrets"), dir.join("tls")] {
        fs::create_dir_all(&private).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
    }
    fs::write(dir.join("host-file"), "the host's own data\n").unwrap();
    let before = snapshot(&dir);
    (dir, before)
}

/// Where an absolute link target lands when resolved inside the root.
fn rerooted(site: &Site, target: &Path) -> PathBuf {
    site.root.join(target.strip_prefix("/").unwrap())
}

fn models_bundle(site: &Site, name: &str, sequence: u64) -> PathBuf {
    site.pack(
        name,
        &format!(
            "{}{}",
            spec_head("models", sequence, &["gpu"]),
            model_sources(&site.work, name, 1 << 16, 2)
        ),
    )
}

fn plant_link(site: &Site, node_path: &str, target: &Path) {
    let link = site.root.join(node_path);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    symlink(target, link).unwrap();
}

#[test]
fn bundle_apply_through_a_var_lib_owui_linked_out_of_the_root_stays_inside_it() {
    let site = Site::new("gpu");
    let (out, before) = outside(&site);
    plant_link(&site, "var/lib/owui", &out);
    let bundle = models_bundle(&site, "a", 1);
    let run = site.agent(&["bundle", "apply", bundle.to_str().unwrap()]);
    assert_eq!(snapshot(&out), before, "apply wrote outside the root");
    run.ok();
    let inside = rerooted(&site, &out);
    assert!(inside.join("content/blobs/sha256").is_dir());
    assert!(inside.join("bundles/current").exists());
}

#[test]
fn secrets_init_through_var_lib_owui_linked_out_of_the_root_stays_inside_it() {
    let site = Site::new("allinone");
    let (out, before) = outside(&site);
    plant_link(&site, "var/lib/owui", &out);
    // As the image lays them out: relative links into the data partition.
    plant_link(
        &site,
        "etc/owui/secrets",
        Path::new("../../var/lib/owui/secrets"),
    );
    plant_link(&site, "etc/owui/tls", Path::new("../../var/lib/owui/tls"));
    let run = site.agent(&["secrets", "init"]);
    assert_eq!(
        snapshot(&out),
        before,
        "secrets init wrote outside the root"
    );
    run.ok();
    let inside = rerooted(&site, &out);
    assert!(inside.join("secrets/open-webui.env").is_file());
    assert!(inside.join("tls/fullchain.pem").is_file());
}

#[test]
fn secrets_init_with_etc_owui_tls_linked_out_of_the_root_stays_inside_it() {
    let site = Site::new("app");
    let (out, before) = outside(&site);
    plant_link(&site, "etc/owui/tls", &out.join("tls"));
    let run = site.agent(&["secrets", "init"]);
    assert_eq!(
        snapshot(&out),
        before,
        "secrets init wrote outside the root"
    );
    let run = run.ok();
    assert!(rerooted(&site, &out.join("tls/privkey.pem")).is_file());
    assert!(
        run.stdout.contains("/etc/owui/tls/privkey.pem"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_content_store_whose_blobs_dir_links_out_of_the_root_is_refused() {
    let site = Site::new("gpu");
    let a = models_bundle(&site, "a", 1);
    site.agent(&["bundle", "apply", a.to_str().unwrap()]).ok();
    let (out, _) = outside(&site);
    let blobs = site.root.join("var/lib/owui/content/blobs");
    fs::rename(&blobs, out.join("blobs")).unwrap();
    symlink(out.join("blobs"), &blobs).unwrap();
    let (out_before, node_before) = (snapshot(&out), site.snapshot());
    let b = models_bundle(&site, "b", 2);
    for verb in ["verify", "apply"] {
        let run = site.agent(&["bundle", verb, b.to_str().unwrap()]);
        assert_eq!(run.code, 5, "{verb}: {}", run.stderr);
        assert!(
            run.stderr.contains("content/blobs") && run.stderr.contains("symbolic link"),
            "{verb}: {}",
            run.stderr
        );
        assert_eq!(snapshot(&out), out_before, "{verb} wrote outside the root");
        assert_eq!(site.snapshot(), node_before, "{verb} changed the node");
    }
}
