//! For the tests of every part of the spec module: a spec directory with
//! units/, an overlay directory and a content directory, a base spec and a
//! role spec to edit, and the repository's own tree.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::Result;

use super::ImageSpec;

pub(super) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A spec directory with a units/ dir, an overlay dir and a content file.
pub(super) struct Fixture {
    dir: tempfile::TempDir,
}

pub(super) const QUADLET: &str =
    "[Container]\nImage=@OCI:ghcr.io/example/app@\n\n[Install]\nWantedBy=multi-user.target\n";

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("units")).unwrap();
        fs::create_dir_all(p.join("spec/overlay/x/etc")).unwrap();
        fs::write(p.join("spec/overlay/x/etc/app.env"), "A=1\n").unwrap();
        fs::create_dir_all(p.join("spec/content/app")).unwrap();
        fs::write(p.join("units/owui-x.service"), "[Service]\n").unwrap();
        fs::write(p.join("units/app.container"), QUADLET).unwrap();
        Fixture { dir }
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub(super) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        fs::write(&p, text).unwrap();
        p
    }

    pub(super) fn read(&self, text: &str) -> Result<ImageSpec> {
        let p = self.write("spec/role.toml", text);
        ImageSpec::read(&p, &self.path("units"))
    }

    pub(super) fn load(&self, text: &str) -> Result<ImageSpec> {
        let p = self.write("spec/role.toml", text);
        ImageSpec::load(&p, &self.path("units"))
    }
}

pub(super) const BASE: &str = r#"version = "1.0"
[debian]
suite = "trixie"
mirror = "http://deb.debian.org/debian"
components = ["main"]
packages = ["systemd", "linux-image-amd64"]
[units]
enable = ["owui-x.service"]
[overlay]
dirs = ["overlay/x"]
[partitions]
esp = 128
root = 1024
data = 1024
[kernel]
cmdline = ["quiet"]
"#;

pub(super) const ROLE: &str = r#"role = "app"
base = "base.toml"
[debian]
packages = ["nginx", "systemd"]
[units]
enable = ["nginx.service"]
quadlets = ["app.container"]
[overlay.modes]
"etc/app.env" = "0600"
[[oci]]
ref = "ghcr.io/example/app:1.2"
source = "content/app"
"#;

pub(super) fn with_base(f: &Fixture) {
    f.write("spec/base.toml", BASE);
}

pub(super) fn err_of(r: Result<ImageSpec>) -> (u8, String) {
    let e = r.unwrap_err();
    (e.exit_code(), e.to_string())
}
