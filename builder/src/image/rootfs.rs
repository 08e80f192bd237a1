//! The root filesystem: Debian packages installed by mmdebstrap, then the
//! agent, our units, the role's overlays and the verity initrd hook copied
//! in, then the tree made image-shaped (no per-host identity, /var moved to
//! a factory copy that first boot puts on the data partition).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use sha2::{Digest, Sha256};

use super::disk::{DATA_LABEL, DATA_TYPE};
use super::spec::{GpuSpec, ImageSpec};

const VERITY_HOOK: &str = include_str!("../../assets/initramfs/owui-verity-hook");
const VERITY_LOCAL_TOP: &str = include_str!("../../assets/initramfs/owui-verity-local-top");
const FINALIZE: &str = include_str!("../../assets/finalize-rootfs.sh");
const NVIDIA_MODULES: &str = include_str!("../../assets/nvidia-modules.sh");
/// Where the agent reads the driver sets on a node (its `firmware_dir`).
const FIRMWARE_IN_IMAGE: &str = "usr/share/owui/firmware";

/// What the rootfs stage is given besides the spec.
pub struct RootfsInputs<'a> {
    pub spec: &'a ImageSpec,
    /// The sources.list entry apt installs from; the image's own
    /// sources.list names the spec's mirror whatever this is.
    pub apt_source: &'a str,
    /// Where apt's signed indices are copied after the install.
    pub apt_lists: &'a Path,
    pub agent_binary: &'a Path,
    /// Quadlet files by name, placeholders already replaced.
    pub quadlets: &'a [(String, String)],
    /// The builder's public key, minisign format: nodes trust bundles it signs.
    pub trust_key: (&'a str, &'a str),
    /// `/usr/lib/owui/image.json`: role and version, for the agent.
    pub image_info: &'a str,
    pub source_date_epoch: u64,
    /// Downloaded .deb files kept between builds.
    pub package_cache: &'a Path,
    /// NVIDIA module packages built for a kernel, kept between builds.
    pub module_cache: &'a Path,
    /// Pass mmdebstrap's steps and the NVIDIA step's on as plain lines
    /// (the stage runs for minutes).
    pub progress: bool,
}

/// The lines of mmdebstrap's stderr worth showing while the stage runs:
/// its own steps (not the hooks' long command lines) and the NVIDIA
/// script's.
fn is_progress(line: &str) -> bool {
    let hook = line.starts_with("I: running --") || line.starts_with("I: running special hook");
    (line.starts_with("I: ") && !hook) || line.starts_with("owui-nvidia")
}

/// Writes the files the builder adds to the Debian tree into `dir`, laid out
/// as they go under `/`.
pub fn write_injection(inputs: &RootfsInputs<'_>, dir: &Path) -> Result<()> {
    let spec = inputs.spec;
    // First, so an overlay may replace it. mmdebstrap would write the
    // mirror it was given, which for a rebuild from a local mirror is a
    // path that exists only during the build.
    let apt = dir.join("etc/apt");
    fs::create_dir_all(&apt).at("creating", &apt)?;
    let sources = apt.join("sources.list");
    let d = &spec.debian;
    let line = format!("deb {} {} {}\n", d.mirror, d.suite, d.components.join(" "));
    fs::write(&sources, line).at("writing", &sources)?;
    for overlay in &spec.overlay_dirs {
        copy_tree(overlay, dir)?;
    }
    for (relative, mode) in &spec.overlay_modes {
        let path = dir.join(relative);
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))
            .at("setting the mode of", &path)?;
    }
    let put = |relative: &str, data: &[u8], mode: u32| -> Result<()> {
        let path = dir.join(relative);
        // Directories made here are 0755 whatever the build host's umask:
        // a node refuses a trust store others could write, and the image
        // must not depend on who built it.
        let mut made = PathBuf::new();
        for part in Path::new(relative)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            made.push(part);
            let d = dir.join(&made);
            if !d.exists() {
                fs::create_dir(&d).at("creating", &d)?;
                fs::set_permissions(&d, fs::Permissions::from_mode(0o755))
                    .at("setting the mode of", &d)?;
            }
        }
        fs::write(&path, data).at("writing", &path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .at("setting the mode of", &path)
    };
    // Debug sections stay on the build host: a debug build of the agent is
    // ten times its stripped size.
    let agent = dir.join("usr/bin/owui-agent");
    fs::create_dir_all(dir.join("usr/bin")).at("creating", dir)?;
    Cmd::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&agent)
        .arg(inputs.agent_binary)
        .output()?;
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o755))
        .at("setting the mode of", &agent)?;
    for unit in spec.units.own_units() {
        let name = unit
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = fs::read(&unit).at("reading unit", &unit)?;
        put(&format!("usr/lib/systemd/system/{name}"), &text, 0o644)?;
    }
    for (name, text) in inputs.quadlets {
        put(
            &format!("etc/containers/systemd/{name}"),
            text.as_bytes(),
            0o644,
        )?;
    }
    let (key_name, key_text) = inputs.trust_key;
    put(
        &format!("etc/owui/trust/{key_name}"),
        key_text.as_bytes(),
        0o644,
    )?;
    put(
        "usr/lib/owui/image.json",
        inputs.image_info.as_bytes(),
        0o644,
    )?;
    put(
        "etc/initramfs-tools/hooks/owui-verity",
        VERITY_HOOK.as_bytes(),
        0o755,
    )?;
    put(
        "etc/initramfs-tools/scripts/local-top/owui-verity",
        VERITY_LOCAL_TOP.as_bytes(),
        0o755,
    )?;
    put(
        DATA_DEFINITION,
        data_definition(spec.partitions.data_mib).as_bytes(),
        0o644,
    )?;
    put(
        "usr/lib/owui/finalize-rootfs.sh",
        FINALIZE.as_bytes(),
        0o755,
    )?;
    if let Some(gpu) = &spec.gpu {
        put(
            "usr/lib/owui/nvidia/nvidia-modules.sh",
            NVIDIA_MODULES.as_bytes(),
            0o755,
        )?;
        put(
            "usr/lib/owui/nvidia/set.env",
            nvidia_settings(gpu)?.as_bytes(),
            0o644,
        )?;
        let sums: String = gpu
            .archive_packages()
            .map(|p| format!("{} {}\n", p.sha256.hex(), p.name))
            .collect();
        put("usr/lib/owui/nvidia/sha256sums", sums.as_bytes(), 0o644)?;
        copy_tree(&gpu.firmware_dir, &dir.join(FIRMWARE_IN_IMAGE))?;
    }
    Ok(())
}

/// Where the image keeps the data partition's systemd-repart definition.
pub const DATA_DEFINITION: &str = "usr/lib/repart.d/50-owui-data.conf";

/// The data partition's definition for systemd-repart on the node: it
/// matches the partition the image carries (its type is ours alone) and,
/// with no maximum, grows it on first boot into all the free space after
/// it, which is the rest of the disk since it is the last partition.
/// Below `min_mib` repart refuses, naming the space it lacks.
pub(super) fn data_definition(min_mib: u64) -> String {
    format!(
        "# Written by owui-builder from partitions.data: the data partition\n\
         # (/var, the content under lib/owui) grows to the end of the disk on\n\
         # first boot, to at least partitions.data; systemd-growfs@var.service\n\
         # (wanted by var.mount) then grows its filesystem.\n\
         [Partition]\nType={DATA_TYPE}\nLabel={DATA_LABEL}\nSizeMinBytes={min_mib}M\n"
    )
}

/// The shell settings nvidia-modules.sh reads. The values are package
/// names and versions from a checked set; anything else is refused rather
/// than quoted.
fn nvidia_settings(gpu: &GpuSpec) -> Result<String> {
    let pin = |p: &owui_bundle::firmware::Package| format!("{}={}", p.name, p.version);
    let module = gpu.module_package().map(pin).unwrap_or_default();
    let packages: Vec<String> = gpu.runtime_packages().map(pin).collect();
    let set_file = fs::read(&gpu.set.file).at("reading", &gpu.set.file)?;
    let key = Sha256::new()
        .chain_update(&set_file)
        .chain_update(gpu.flavour.to_string())
        .chain_update(NVIDIA_MODULES)
        .finalize();
    let vars = [
        ("SET_NAME", gpu.set.name().to_string()),
        ("DRIVER_VERSION", gpu.set.version().to_string()),
        ("FLAVOUR", gpu.flavour.to_string()),
        ("MODULE_PACKAGE", module),
        ("PROVIDES", gpu.provides()),
        ("PACKAGES", packages.join(" ")),
        ("CACHE_KEY", hex::encode(&key[..8])),
    ];
    let mut out = String::from("# Written by owui-builder from the image spec's [gpu].\n");
    for (name, value) in vars {
        let safe = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" .+-=:~_".contains(&b));
        if !safe {
            return Err(Error::invalid(
                gpu.set.file.display().to_string(),
                format!("{name}: {value:?} has characters a package name or version cannot have"),
            ));
        }
        out.push_str(&format!("{name}='{value}'\n"));
    }
    Ok(out)
}

/// Copies a directory tree, keeping modes and symlinks; later copies win.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).at("creating", to)?;
    for (name, src) in sorted_entries(from)? {
        let dst = to.join(name);
        let meta = fs::symlink_metadata(&src).at("reading", &src)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).at("reading link", &src)?;
            if dst.symlink_metadata().is_ok() {
                fs::remove_file(&dst).at("replacing", &dst)?;
            }
            symlink(&target, &dst).at("creating link", &dst)?;
        } else if meta.is_dir() {
            copy_tree(&src, &dst)?;
            fs::set_permissions(&dst, meta.permissions()).at("setting the mode of", &dst)?;
        } else {
            fs::copy(&src, &dst).at("copying to", &dst)?;
        }
    }
    Ok(())
}

/// Runs mmdebstrap into `tree` (which must not exist). Unknown packages are
/// reported by name against the spec file.
pub fn debootstrap(inputs: &RootfsInputs<'_>, injection: &Path, tree: &Path) -> Result<()> {
    let spec = inputs.spec;
    let cache = inputs.package_cache;
    fs::create_dir_all(cache).at("creating the package cache", cache)?;
    let cache_arg = cache.display().to_string();
    let enable = spec.units.enable.join(" ");
    // Built NVIDIA module packages come in and go back out around the
    // script that builds or reuses them, then leave the tree.
    let mut gpu_hooks = Vec::new();
    if spec.gpu.is_some() {
        let modules = inputs.module_cache;
        fs::create_dir_all(modules).at("creating the module cache", modules)?;
        let in_tree = "/var/cache/owui-nvidia";
        gpu_hooks = vec![
            format!("--customize-hook=mkdir -p \"$1\"{in_tree}"),
            format!("--customize-hook=sync-in {} {in_tree}", modules.display()),
            "--customize-hook=sh \"$1\"/usr/lib/owui/nvidia/nvidia-modules.sh \"$1\"".to_string(),
            format!("--customize-hook=sync-out {in_tree} {}", modules.display()),
            format!("--customize-hook=rm -rf \"$1\"{in_tree}"),
        ];
    }
    let cmd = Cmd::new("mmdebstrap")
        .env("SOURCE_DATE_EPOCH", inputs.source_date_epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .arg("--mode=root")
        .arg("--format=directory")
        .arg("--variant=essential")
        .arg(format!("--components={}", spec.debian.components.join(",")))
        .arg(format!("--include={}", spec.debian.packages.join(",")))
        // Keep the downloaded packages, the essential ones too, so a
        // rebuild fetches nothing twice and one can run offline.
        .arg("--skip=download/empty,essential/unlink")
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives")
        .arg(format!(
            "--setup-hook=sync-in {cache_arg} /var/cache/apt/archives"
        ))
        .arg(format!(
            "--customize-hook=sync-in {} /",
            injection.display()
        ))
        .args(gpu_hooks)
        // After the GPU step, so the driver packages are kept too.
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {cache_arg}"
        ))
        .arg(format!(
            "--customize-hook=sync-out /var/lib/apt/lists {}",
            inputs.apt_lists.display()
        ))
        .arg(format!(
            "--customize-hook=chroot \"$1\" /usr/lib/owui/finalize-rootfs.sh {enable}"
        ))
        .arg(&spec.debian.suite)
        .arg(tree)
        .arg(inputs.apt_source);
    cmd.output_reporting(|line| {
        if inputs.progress && is_progress(line) {
            eprintln!("      {line}");
        }
    })
    .map(|_| ())
    .map_err(|e| nvidia_failure(spec, e).unwrap_or_else(|e| unknown_package(spec, e)))
}

/// The "owui-nvidia: " line nvidia-modules.sh prints when it fails, with
/// apt's own error lines, as an error naming the driver set; a digest that
/// differs from the set's pin is exit 4 like every other bad digest.
fn nvidia_failure(spec: &ImageSpec, err: Error) -> std::result::Result<Error, Error> {
    let Some(gpu) = &spec.gpu else {
        return Err(err);
    };
    let text = err.to_string();
    let ours = text.lines().find_map(|l| {
        l.find("owui-nvidia: ")
            .map(|at| l[at + "owui-nvidia: ".len()..].trim().to_string())
    });
    let apt: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("E: "))
        .collect();
    let what = format!("{}: gpu.driver_set", spec.file.display());
    let set = gpu.set.file.display();
    match ours {
        Some(line) if line.contains("sha256") => {
            Ok(Error::untrusted(what, format!("{set}: {line}")))
        }
        Some(line) => Ok(Error::invalid(
            what,
            format!("{set}: {line} {}", apt.join(" "))
                .trim_end()
                .to_string(),
        )),
        None => Err(err),
    }
}

/// apt's "Unable to locate package X" turned into an error naming X and the
/// spec, instead of a page of mmdebstrap output.
fn unknown_package(spec: &ImageSpec, err: Error) -> Error {
    let text = err.to_string();
    let patterns = ["Unable to locate package ", "has no installation candidate"];
    for line in text.lines() {
        if let Some(at) = line.find(patterns[0]) {
            let name = line[at + patterns[0].len()..].split_whitespace().next();
            if let Some(name) = name {
                return Error::invalid(
                    format!("{}: debian.packages", spec.file.display()),
                    format!(
                        "package {name:?} is not in {} ({})",
                        spec.debian.suite,
                        spec.debian.components.join(" ")
                    ),
                );
            }
        }
        if line.contains(patterns[1]) {
            return Error::invalid(
                format!("{}: debian.packages", spec.file.display()),
                line.trim().to_string(),
            );
        }
    }
    err
}

/// Files that would make two builds differ or give every node the same
/// identity; first boot makes them per node.
const PER_HOST: &[&str] = &[
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    "var/cache/ldconfig/aux-cache",
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/subuid-",
    "etc/subgid-",
    "usr/lib/owui/finalize-rootfs.sh",
    // ssl-cert's "snakeoil" pair, made at install: one private key on every
    // node, and new bytes in every build.
    "etc/ssl/private/ssl-cert-snakeoil.key",
    "etc/ssl/certs/ssl-cert-snakeoil.pem",
];

/// What `/etc/hostname` says until first boot sets the seed's node name
/// (`owui-agent seed import`); the root is read-only, so it stays the
/// static name.
pub const UNCONFIGURED_HOSTNAME: &str = "owui-unconfigured";

/// Where `/etc/resolv.conf` points: systemd-resolved's stub file, which the
/// node's network configuration fills at run time. Nothing of the build
/// host's DNS goes into the image.
pub const RESOLV_CONF_TARGET: &str = "../run/systemd/resolve/stub-resolv.conf";

/// Replaces the build host's `/etc/hostname` and `/etc/resolv.conf`, which
/// mmdebstrap copies in, with the node's neutral ones.
fn neutral_host_files(tree: &Path) -> Result<()> {
    let hostname = tree.join("etc/hostname");
    fs::write(&hostname, format!("{UNCONFIGURED_HOSTNAME}\n")).at("writing", &hostname)?;
    let resolv = tree.join("etc/resolv.conf");
    remove_if_present(&resolv)?;
    std::os::unix::fs::symlink(RESOLV_CONF_TARGET, &resolv).at("linking", &resolv)
}

/// Makes the installed tree image-shaped.
pub fn finish_tree(tree: &Path) -> Result<()> {
    neutral_host_files(tree)?;
    // An empty machine-id on a read-only /etc: systemd makes a transient one.
    let machine_id = tree.join("etc/machine-id");
    fs::write(&machine_id, b"").at("writing", &machine_id)?;
    for relative in PER_HOST {
        remove_if_present(&tree.join(relative))?;
    }
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "etc/ssh"] {
        remove_matching(&tree.join(dir), |name| {
            name.ends_with(".deb")
                || name.ends_with("_Packages")
                || name.starts_with("ssh_host_")
                || name.ends_with("_Release")
                || name.ends_with("_InRelease")
        })?;
    }
    for dir in ["var/cache/debconf", "var/lib/dpkg"] {
        remove_matching(&tree.join(dir), |name| name.ends_with("-old"))?;
    }
    remove_links_to(&tree.join("etc/ssl/certs"), "ssl-cert-snakeoil.pem")?;
    truncate_logs(&tree.join("var/log"))?;
    // Mount points must exist in a read-only root.
    let efi = tree.join("efi");
    fs::create_dir_all(&efi).at("creating", &efi)?;
    move_var_to_factory(tree)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).at("removing", path),
        _ => Ok(()),
    }
}

fn remove_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.at("reading", dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches(&name) && entry.file_type().at("reading", dir)?.is_file() {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes the symlinks in `dir` that point at `target` (the hash links
/// OpenSSL looks certificates up by).
fn remove_links_to(dir: &Path, target: &str) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry.at("reading", dir)?.path();
        if fs::read_link(&path).is_ok_and(|to| to == Path::new(target)) {
            fs::remove_file(&path).at("removing", &path)?;
        }
    }
    Ok(())
}

fn truncate_logs(dir: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.at("reading", dir)?;
        let kind = entry.file_type().at("reading", dir)?;
        if kind.is_dir() {
            truncate_logs(&entry.path())?;
        } else if kind.is_file() {
            let path = entry.path();
            fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(0))
                .at("emptying", &path)?;
        }
    }
    Ok(())
}

/// /var lives on the data partition that first boot creates; what packages
/// put there moves to /usr/share/factory/var, and a tmpfiles.d file copies
/// each entry back when it is missing (systemd's "factory" convention). The
/// entries are listed one level down because /var/lib/owui is a mount point:
/// `C /var/lib` would see a non-empty directory and copy nothing.
fn move_var_to_factory(tree: &Path) -> Result<()> {
    let var = tree.join("var");
    let factory = tree.join("usr/share/factory");
    fs::create_dir_all(&factory).at("creating", &factory)?;
    let factory_var = factory.join("var");
    fs::rename(&var, &factory_var).at("moving /var to", &factory_var)?;
    fs::create_dir(&var).at("creating", &var)?;
    fs::set_permissions(&var, fs::Permissions::from_mode(0o755)).at("setting the mode of", &var)?;

    let mut lines = vec![
        "# Written by owui-builder: first boot fills the data partition (/var)".to_string(),
        "# from the image's factory copy; see docs/images.md.".to_string(),
    ];
    let mut top: Vec<_> = sorted_entries(&factory_var)?;
    top.retain(|(name, _)| name != "owui");
    for (name, path) in &top {
        let name = name.to_string_lossy();
        let meta = fs::symlink_metadata(path).at("reading", path)?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(path).at("reading link", path)?;
            lines.push(format!("L /var/{name} - - - - {}", target.display()));
            continue;
        }
        if !meta.is_dir() {
            lines.push(format!("C /var/{name} - - - -"));
            continue;
        }
        // Owners by number: tmpfiles accepts them, and names would need the
        // image's passwd.
        lines.push(format!(
            "d /var/{name} {:04o} {} {} -",
            meta.permissions().mode() & 0o7777,
            meta.uid(),
            meta.gid()
        ));
        for (child, _) in sorted_entries(path)? {
            if name == "lib" && child == "owui" {
                continue;
            }
            lines.push(format!("C /var/{name}/{} - - - -", child.to_string_lossy()));
        }
    }
    lines.push(String::new());
    let conf = tree.join("usr/lib/tmpfiles.d/owui-factory-var.conf");
    fs::write(&conf, lines.join("\n")).at("writing", &conf)
}

/// A directory's entries by name, in byte order: what every tree walk
/// that must give the same result twice goes by.
pub(super) fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at("reading", dir)? {
        let entry = entry.at("reading", dir)?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Debian packages installed, from the list finalize-rootfs.sh wrote.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
}

pub fn read_packages(tree: &Path) -> Result<Vec<Package>> {
    let path = tree.join("usr/lib/owui/packages.tsv");
    let text = fs::read_to_string(&path).at("reading", &path)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, line)| {
            let mut f = line.split('\t');
            match (f.next(), f.next(), f.next()) {
                (Some(name), Some(version), Some(arch)) => Ok(Package {
                    name: name.into(),
                    version: version.into(),
                    arch: arch.into(),
                }),
                _ => Err(Error::invalid(
                    format!("{} line {}", path.display(), i + 1),
                    "expected package, version and architecture separated by tabs",
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mmdebstrap copies the build host's hostname and resolver in; the
    /// image gets neither.
    #[test]
    fn the_build_hosts_hostname_and_resolver_are_replaced() {
        let tree = tempfile::tempdir().unwrap();
        let etc = tree.path().join("etc");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("hostname"), "build-host-7\n").unwrap();
        fs::write(etc.join("resolv.conf"), "nameserver 10.255.255.53\n").unwrap();
        neutral_host_files(tree.path()).unwrap();
        let resolv = fs::read_link(etc.join("resolv.conf")).unwrap();
        assert_eq!(resolv, Path::new(RESOLV_CONF_TARGET));
        let hostname = fs::read_to_string(etc.join("hostname")).unwrap();
        assert_eq!(hostname, format!("{UNCONFIGURED_HOSTNAME}\n"));
        // A tree without them (mmdebstrap run with no host files) as well.
        fs::remove_file(etc.join("resolv.conf")).unwrap();
        neutral_host_files(tree.path()).unwrap();
        assert!(fs::symlink_metadata(etc.join("resolv.conf")).is_ok());
    }
}
