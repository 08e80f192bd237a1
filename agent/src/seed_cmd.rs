//! `owui-agent seed`: first boot's side of the node seed. Role images carry
//! no per-host identity; the seed (node name, role) comes on the install
//! medium: a small FAT volume labelled OWUI-SEED, or `owui/seed.toml` on the
//! image's own ESP. `import` checks it and puts it where the read-only root
//! links /etc/owui/seed.toml to (/run/owui/seed.toml), and sets the hostname.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owui_bundle::error::IoContext;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::config::{self, Seed};
use crate::layout::Root;

/// The label a seed medium's FAT volume carries (`mkfs.vfat -n OWUI-SEED`).
pub const MEDIUM_LABEL: &str = "OWUI-SEED";
/// udev may still be naming disks when the seed unit starts.
const MEDIUM_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct Imported {
    pub node: String,
    pub role: String,
    pub from: PathBuf,
    pub hostname_set: bool,
}

/// What the image says of itself (`/usr/lib/owui/image.json`, written by
/// owui-builder).
#[derive(Debug, Deserialize)]
struct ImageInfo {
    role: String,
}

fn check_role(root: &Root, seed: &Seed, from: &Path) -> Result<()> {
    let info_path = root.host(Path::new("/usr/lib/owui/image.json"));
    let Ok(bytes) = fs::read(&info_path) else {
        return Ok(()); // not a role image: nothing to hold the seed to
    };
    let info: ImageInfo = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(info_path.display().to_string(), e.to_string()))?;
    if info.role != seed.role.as_str() {
        return Err(Error::refused(
            from.display().to_string(),
            format!(
                "is the seed of a {} node, but this is the {} image",
                seed.role.as_str(),
                info.role
            ),
        ));
    }
    Ok(())
}

/// Mounts the seed medium read-only, copies its seed.toml into `scratch`.
fn read_medium(root: &Root, scratch: &Path) -> Result<Option<PathBuf>> {
    use nix::mount::{mount, umount, MsFlags};
    let device = root.host(&Path::new("/dev/disk/by-label").join(MEDIUM_LABEL));
    let start = Instant::now();
    while !device.exists() {
        if start.elapsed() > MEDIUM_WAIT {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let target = root.host(Path::new("/run/owui/medium"));
    fs::create_dir_all(&target).at("creating", &target)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some(&device),
        &target,
        Some("vfat"),
        flags,
        Some("umask=0077"),
    )
    .map_err(|e| {
        Error::invalid(
            device.display().to_string(),
            format!("cannot mount the seed medium: {e}"),
        )
    })?;
    let copied = scratch.join("seed.toml.medium");
    let result =
        fs::copy(target.join("seed.toml"), &copied).at("reading", &target.join("seed.toml"));
    let _ = umount(&target);
    result.map(|_| Some(copied))
}

pub fn import(root: &Root, from: &[PathBuf], medium: bool, set_hostname: bool) -> Result<Imported> {
    let run = root.host(Path::new("/run/owui"));
    fs::create_dir_all(&run).at("creating", &run)?;
    let mut candidates = Vec::new();
    if medium {
        if let Some(p) = read_medium(root, &run)? {
            candidates.push((p, format!("the {MEDIUM_LABEL} medium")));
        }
    }
    for f in from {
        let p = root.host(f);
        if p.is_file() {
            candidates.push((p, f.display().to_string()));
        }
    }
    let Some((path, described)) = candidates.into_iter().next() else {
        let mut looked = from
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>();
        if medium {
            looked.insert(0, format!("a volume labelled {MEDIUM_LABEL}"));
        }
        return Err(Error::invalid(
            "node seed",
            format!(
                "none found (looked at {}); owui-builder seeds writes one per node",
                looked.join(", ")
            ),
        ));
    };
    let seed: Seed = config::load_toml(&path)?;
    check_role(root, &seed, &path)?;
    let text = fs::read(&path).at("reading", &path)?;
    write_atomic(&run.join("seed.toml"), &text, 0o600)?;
    if path == run.join("seed.toml.medium") {
        fs::remove_file(&path).at("removing", &path)?;
    }
    // Only the real root's hostname: a --root run works on a disk, not a host.
    let hostname_set = set_hostname && root.path() == Path::new("/");
    if hostname_set {
        nix::unistd::sethostname(&seed.node)
            .map_err(|e| Error::invalid(format!("hostname {:?}", seed.node), e.to_string()))?;
    }
    Ok(Imported {
        node: seed.node,
        role: seed.role.as_str().to_string(),
        from: PathBuf::from(described),
        hostname_set,
    })
}

/// The console line technicians (and the boot test) wait for.
pub fn banner(root: &Root) -> Result<String> {
    let seed = config::load_seed(root)?;
    Ok(format!(
        "OWUI-AGENT READY role={} node={}",
        seed.role.as_str(),
        seed.node
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with_image(role: &str) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let info = root.host(Path::new("/usr/lib/owui/image.json"));
        fs::create_dir_all(info.parent().unwrap()).unwrap();
        fs::write(
            &info,
            format!("{{\"role\": \"{role}\", \"version\": \"0.1.0\"}}"),
        )
        .unwrap();
        (dir, root)
    }

    #[test]
    fn a_seed_from_the_esp_lands_in_run_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, root) = root_with_image("db");
        let esp = root.host(Path::new("/efi/owui/seed.toml"));
        fs::create_dir_all(esp.parent().unwrap()).unwrap();
        fs::write(&esp, "node = \"db-3\"\nrole = \"db\"\n").unwrap();
        let got = import(&root, &[PathBuf::from("/efi/owui/seed.toml")], false, true).unwrap();
        assert_eq!((got.node.as_str(), got.role.as_str()), ("db-3", "db"));
        // A --root run never touches the host's name.
        assert!(!got.hostname_set);
        let placed = root.host(Path::new("/run/owui/seed.toml"));
        assert_eq!(
            fs::read_to_string(&placed).unwrap(),
            "node = \"db-3\"\nrole = \"db\"\n"
        );
        assert_eq!(
            fs::metadata(&placed).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_seed_for_another_role_or_a_bad_seed_is_refused_and_nothing_is_written() {
        let (_dir, root) = root_with_image("gpu");
        let esp = root.host(Path::new("/efi/owui/seed.toml"));
        fs::create_dir_all(esp.parent().unwrap()).unwrap();
        fs::write(&esp, "node = \"n1\"\nrole = \"app\"\n").unwrap();
        let from = [PathBuf::from("/efi/owui/seed.toml")];
        let err = import(&root, &from, false, false).unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
        assert!(
            err.to_string().contains("app node") && err.to_string().contains("gpu image"),
            "{err}"
        );
        fs::write(&esp, "node = \"n1\"\nrole = \"gpu\"\nrack = 4\n").unwrap();
        let err = import(&root, &from, false, false).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("rack"), "{err}");
        assert!(!root.host(Path::new("/run/owui/seed.toml")).exists());
        let err = import(&root, &[PathBuf::from("/nowhere/seed.toml")], false, false).unwrap_err();
        assert!(err.to_string().contains("/nowhere/seed.toml"), "{err}");
    }

    #[test]
    fn the_banner_names_role_and_node() {
        let (_dir, root) = root_with_image("app");
        fs::create_dir_all(root.etc()).unwrap();
        fs::write(root.seed(), "node = \"rack1-n07\"\nrole = \"app\"\n").unwrap();
        assert_eq!(
            banner(&root).unwrap(),
            "OWUI-AGENT READY role=app node=rack1-n07"
        );
    }
}
