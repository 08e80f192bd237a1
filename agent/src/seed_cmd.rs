//! `owui-agent seed`: first boot's side of the node seed. Role images carry
//! no per-host identity; the seed (node name, role) comes on the install
//! medium: a small FAT volume labelled OWUI-SEED, or `owui/seed.toml` on the
//! image's own ESP, each with its signature `seed.toml.minisig` next to it.
//! `import` checks the signature against the image's trust store before it
//! reads a field, then the seed and its role, and puts the exact bytes that
//! were signed where the read-only root links /etc/owui/seed.toml to
//! (/run/owui/seed.toml), records how they were checked
//! (/run/owui/seed-origin.json, shown by `status`), writes the seed's SSH
//! keys where sshd looks for owui-admin's (/run/owui/ssh/owui-admin.keys,
//! docs/operator-access.md), its `[network]` as a systemd-networkd file
//! (/run/systemd/network/10-owui-seed.network), and sets the hostname.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use owui_bundle::error::IoContext;
use owui_bundle::fsutil::{read_regular_capped, write_atomic};
use owui_bundle::node_network::NETWORKD_FILE;
use owui_bundle::seed::{self, NodeName, SEED_MAX};
use owui_bundle::sign::SIGNATURE_MAX;
use owui_bundle::ssh_key;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::config::{self, Seed};
use crate::layout::Root;
use crate::{node_secrets, trust_cmd};

/// The label a seed medium's FAT volume carries (`mkfs.vfat -n OWUI-SEED`).
pub const MEDIUM_LABEL: &str = "OWUI-SEED";
/// Where a seed may sit on the image's own ESP (the `--from` default).
pub const ESP_SEED: &str = "/efi/owui/seed.toml";
/// udev may still be naming disks when the seed unit starts.
const MEDIUM_WAIT: Duration = Duration::from_secs(10);
/// Where the imported seed goes, and the record of how it was checked.
const RUN_DIR: &str = "/run/owui";
const ORIGIN_FILE: &str = "seed-origin.json";
/// owui-admin's authorized keys: sshd's `AuthorizedKeysFile` (the image's
/// sshd_config.d/50-owui.conf). Root's, in root's directory under /run, so
/// each boot starts without keys until a seed's are written.
const SSH_KEYS_DIR: &str = "/run/owui/ssh";
const SSH_KEYS_FILE: &str = "owui-admin.keys";
/// The medium is mounted here while its files are read (outside RUN_DIR,
/// which a refused import leaves untouched).
const MEDIUM_MOUNT: &str = "/run/owui-seed-medium";

#[derive(Debug, Serialize)]
pub struct Imported {
    pub node: NodeName,
    pub role: String,
    pub from: PathBuf,
    pub hostname_set: bool,
    pub origin: SeedOrigin,
    /// How many SSH keys may now log in as owui-admin.
    pub ssh_keys: usize,
}

/// How the node's seed was checked when it was imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signature", rename_all = "lowercase")]
pub enum SeedOrigin {
    /// Its signature verified against the trust store.
    Verified { key_id: String, from: String },
    /// Taken without a signature check (`seed import --insecure-seed`).
    Unsigned { from: String },
}

/// What the image says of itself (`/usr/lib/owui/image.json`, written by
/// owui-builder).
#[derive(Debug, Deserialize)]
struct ImageInfo {
    role: String,
}

/// A seed and its signature as read from the medium or a file.
struct Found {
    /// "the OWUI-SEED medium", "/efi/owui/seed.toml".
    from: String,
    /// "the seed on the OWUI-SEED medium", "the seed /efi/owui/seed.toml".
    described: String,
    bytes: Vec<u8>,
    signature: Option<Vec<u8>>,
}

/// Where the image says what it is (role, version), written by owui-builder.
pub const IMAGE_INFO: &str = "/usr/lib/owui/image.json";

/// The image's role; None when this is not a role image.
pub fn image_role(root: &Root) -> Result<Option<String>> {
    let info_path = root.host(Path::new(IMAGE_INFO))?;
    let Ok(bytes) = fs::read(&info_path) else {
        return Ok(None);
    };
    let info: ImageInfo = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(info_path.display().to_string(), e.to_string()))?;
    Ok(Some(info.role))
}

fn check_role(root: &Root, seed: &Seed, from: &str) -> Result<()> {
    let Some(image) = image_role(root)? else {
        return Ok(()); // not a role image: nothing to hold the seed to
    };
    if image != seed.role.as_str() {
        return Err(Error::refused(
            from,
            format!(
                "is the seed of a {} node ({}), but this is the {image} image; \
                 make this node's seed with `owui-builder seed create --role {image}`",
                seed.role.as_str(),
                seed.node,
            ),
        ));
    }
    Ok(())
}

/// The seed at the node's `path` and the signature next to it
/// (`<path>.minisig`), both regular files of bounded size, each resolved
/// inside the root on its own (a signature linked out of the root is read
/// as the node would see it, not from the host).
fn read_seed_files(root: &Root, path: &Path, from: String, described: String) -> Result<Found> {
    let bytes = read_regular_capped(&root.host(path)?, SEED_MAX, "a node seed")?;
    let sig_path = root.host(&PathBuf::from(format!("{}.minisig", path.display())))?;
    let signature = match read_regular_capped(&sig_path, SIGNATURE_MAX, "a seed signature") {
        Ok(sig) => Some(sig),
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(Found {
        from,
        described,
        bytes,
        signature,
    })
}

/// Mounts the seed medium read-only and reads its seed.toml and signature.
fn read_medium(root: &Root) -> Result<Option<Found>> {
    use nix::mount::{mount, umount, MsFlags};
    let device = root.host(&Path::new("/dev/disk/by-label").join(MEDIUM_LABEL))?;
    // Only a running node's udev names disks late; a disk under --root is
    // as it is.
    let wait = if root.path() == Path::new("/") {
        MEDIUM_WAIT
    } else {
        Duration::ZERO
    };
    let start = Instant::now();
    while !device.exists() {
        if start.elapsed() >= wait {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let target = root.host(Path::new(MEDIUM_MOUNT))?;
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
    let found = read_seed_files(
        root,
        &Path::new(MEDIUM_MOUNT).join("seed.toml"),
        format!("the {MEDIUM_LABEL} medium"),
        format!("the seed on the {MEDIUM_LABEL} medium"),
    );
    let _ = umount(&target);
    let _ = fs::remove_dir(&target);
    found.map(Some)
}

/// The first seed found: on the medium, then at each `from` path; None
/// when there is none.
fn find(root: &Root, from: &[PathBuf], medium: bool) -> Result<Option<Found>> {
    if medium {
        if let Some(found) = read_medium(root)? {
            return Ok(Some(found));
        }
    }
    for f in from {
        if root.host(f)?.exists() {
            let shown = f.display().to_string();
            return read_seed_files(root, f, shown.clone(), format!("the seed {shown}")).map(Some);
        }
    }
    Ok(None)
}

/// The error for "no seed anywhere", naming where it looked.
fn none_found(from: &[PathBuf], medium: bool) -> Error {
    let mut looked = from
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    if medium {
        looked.insert(0, format!("a volume labelled {MEDIUM_LABEL}"));
    }
    Error::invalid(
        "node seed",
        format!(
            "none found (looked at {}); `owui-builder seed create` makes one per node (docs/seeds.md)",
            looked.join(", ")
        ),
    )
}

/// The seed, its signature checked first against the node's trust store;
/// with `insecure`, unchecked, loudly.
fn check_signature(root: &Root, found: &Found, insecure: bool) -> Result<(Seed, SeedOrigin)> {
    let from = found.from.clone();
    let what = &found.described;
    if insecure {
        tracing::warn!(
            from = %from,
            "--insecure-seed: taking the node seed WITHOUT checking its signature; \
             this node's identity is not vouched for by the site's key (lab use only)"
        );
        let seed = Seed::parse(what, &found.bytes)?;
        return Ok((seed, SeedOrigin::Unsigned { from }));
    }
    let store = trust_cmd::node_store(root)?;
    let verified = seed::verify(&store, what, &found.bytes, found.signature.as_deref())?;
    let origin = SeedOrigin::Verified {
        key_id: verified.signer.key_id.to_string(),
        from,
    };
    Ok((verified.seed, origin))
}

pub fn import(
    root: &Root,
    from: &[PathBuf],
    medium: bool,
    set_hostname: bool,
    insecure: bool,
) -> Result<Imported> {
    import_found(root, from, medium, set_hostname, insecure)?
        .map(|(imported, _)| imported)
        .ok_or_else(|| none_found(from, medium))
}

/// [`import`], with None when no seed is there at all (the first-boot
/// gate says so in its own words).
pub fn import_found(
    root: &Root,
    from: &[PathBuf],
    medium: bool,
    set_hostname: bool,
    insecure: bool,
) -> Result<Option<(Imported, Seed)>> {
    let Some(found) = find(root, from, medium)? else {
        return Ok(None);
    };
    let (seed, origin) = check_signature(root, &found, insecure)?;
    check_role(root, &seed, &found.described)?;
    // Every check passed: only now is anything written.
    let run = root.host(Path::new(RUN_DIR))?;
    fs::create_dir_all(&run).at("creating", &run)?;
    let record = serde_json::to_vec_pretty(&origin)
        .map_err(|e| Error::internal("serialising the seed origin", e.to_string()))?;
    // The record first: a seed is never there without it.
    write_atomic(&run.join(ORIGIN_FILE), &record, 0o644)?;
    // The exact bytes whose signature was checked.
    write_atomic(&run.join("seed.toml"), &found.bytes, 0o600)?;
    let ssh_keys = write_ssh_keys(root, &seed, &origin)?;
    write_network(root, &seed)?;
    // Only the real root's hostname: a --root run works on a disk, not a host.
    let hostname_set = set_hostname && root.path() == Path::new("/");
    if hostname_set {
        nix::unistd::sethostname(seed.node.as_str()).map_err(|e| {
            Error::invalid(format!("hostname {:?}", seed.node.as_str()), e.to_string())
        })?;
    }
    let imported = Imported {
        node: seed.node.clone(),
        role: seed.role.as_str().to_string(),
        from: PathBuf::from(found.from),
        hostname_set,
        origin,
        ssh_keys,
    };
    Ok(Some((imported, seed)))
}

/// Writes owui-admin's authorized keys from the seed: all of them from a
/// verified seed, none from one taken with `--insecure-seed` (SSH access
/// only ever comes from a seed signed by a key the image trusts). The file
/// is always written, empty when no key may log in, so an import replaces
/// whatever keys were there. Root's, 0644: sshd reads it as the user.
fn write_ssh_keys(root: &Root, seed: &Seed, origin: &SeedOrigin) -> Result<usize> {
    let keys = match origin {
        SeedOrigin::Verified { .. } => &seed.ssh_authorized_keys[..],
        SeedOrigin::Unsigned { .. } => {
            if !seed.ssh_authorized_keys.is_empty() {
                tracing::warn!(
                    keys = seed.ssh_authorized_keys.len(),
                    "--insecure-seed: the seed's SSH keys are NOT installed; only a signed seed lets anyone log in"
                );
            }
            &[]
        }
    };
    let dir = root.host(Path::new(SSH_KEYS_DIR))?;
    fs::create_dir_all(&dir).at("creating", &dir)?;
    // 0755 even if something else made it: sshd refuses keys under a
    // directory others can write.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).at("setting the mode of", &dir)?;
    let text = ssh_key::authorized_keys(keys);
    write_atomic(&dir.join(SSH_KEYS_FILE), text.as_bytes(), 0o644)?;
    Ok(keys.len())
}

/// Writes the seed's `[network]` as a systemd-networkd file that sorts
/// before the image's DHCP default, or removes one an earlier import wrote
/// when the seed has none. Read by networkd when it starts (after this
/// unit); on a node that waited at the first-boot gate networkd runs
/// already, so the live root asks it to read its files again.
fn write_network(root: &Root, seed: &Seed) -> Result<()> {
    let path = root.host(Path::new(NETWORKD_FILE))?;
    write_or_remove_network(&path, seed)?;
    if root.path() == Path::new("/") {
        match std::process::Command::new("networkctl")
            .arg("reload")
            .output()
        {
            Ok(out) if out.status.success() => {}
            // Not running yet (the usual first boot): it reads the file when it starts.
            other => tracing::debug!(?other, "networkctl reload"),
        }
    }
    Ok(())
}

fn write_or_remove_network(path: &Path, seed: &Seed) -> Result<()> {
    match &seed.network {
        Some(network) => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).at("creating", dir)?;
            }
            write_atomic(path, network.networkd_file().as_bytes(), 0o644)
        }
        None => match fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e).at("removing", path),
            _ => Ok(()),
        },
    }
}

pub fn print_imported(i: &Imported) {
    let how = match &i.origin {
        SeedOrigin::Verified { key_id, .. } => format!("signed by key {key_id}"),
        SeedOrigin::Unsigned { .. } => "NOT SIGNED (--insecure-seed)".to_string(),
    };
    println!(
        "seed: node {} role {} from {}, {how}; {} SSH keys may log in as owui-admin",
        i.node,
        i.role,
        i.from.display(),
        i.ssh_keys
    );
}

/// How the node's seed was imported, for `status`; None when no import
/// recorded it (a seed put in place by hand, or an unreadable record).
pub fn origin(root: &Root) -> Option<SeedOrigin> {
    let path = match root.host(&Path::new(RUN_DIR).join(ORIGIN_FILE)) {
        Ok(path) => path,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    let bytes = match read_regular_capped(&path, 4096, "the seed origin record") {
        Ok(bytes) => bytes,
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| tracing::warn!("{}: {e}", path.display()))
        .ok()
}

/// The console line technicians (and the boot test) wait for.
pub fn banner(root: &Root) -> Result<String> {
    let seed = config::load_seed(root)?;
    let mut text = format!(
        "OWUI-AGENT READY role={} node={}",
        seed.role.as_str(),
        seed.node
    );
    if let Some((email, password)) = node_secrets::first_admin_login(root, &seed)? {
        text.push_str(&format!(
            "\nOpen WebUI administrator {email}, first password {password} \
             (shown this once: change it after signing in)"
        ));
    }
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use owui_bundle::sign::SecretKey;

    const ESP_SEED: &str = "/efi/owui/seed.toml";

    /// A role image's root whose trust store holds the site's key.
    fn root_with_image(role: &str) -> (tempfile::TempDir, Root, SecretKey) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let info = root.host(Path::new("/usr/lib/owui/image.json")).unwrap();
        fs::create_dir_all(info.parent().unwrap()).unwrap();
        fs::write(
            &info,
            format!("{{\"role\": \"{role}\", \"version\": \"0.1.0\"}}"),
        )
        .unwrap();
        let key = SecretKey::generate();
        let trust = root.trust_dir().unwrap();
        fs::create_dir_all(&trust).unwrap();
        let public = key.public();
        fs::write(
            trust.join(format!("{}.pub", public.id)),
            public.to_file_string(),
        )
        .unwrap();
        (dir, root, key)
    }

    /// Puts `text` on the ESP, signed by `key` (no signature with None).
    fn esp_seed(root: &Root, text: &str, key: Option<&SecretKey>) {
        let esp = root.host(Path::new(ESP_SEED)).unwrap();
        fs::create_dir_all(esp.parent().unwrap()).unwrap();
        fs::write(&esp, text).unwrap();
        let sig = PathBuf::from(format!("{}.minisig", esp.display()));
        match key {
            Some(key) => fs::write(&sig, key.sign(text.as_bytes(), "owui seed")).unwrap(),
            None => {
                let _ = fs::remove_file(&sig);
            }
        }
    }

    fn import_esp(root: &Root, insecure: bool) -> Result<Imported> {
        import(root, &[PathBuf::from(ESP_SEED)], false, false, insecure)
    }

    #[test]
    fn a_signed_seed_from_the_esp_lands_in_run_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, root, key) = root_with_image("db");
        esp_seed(&root, "node = \"db-3\"\nrole = \"db\"\n", Some(&key));
        let got = import(&root, &[PathBuf::from(ESP_SEED)], false, true, false).unwrap();
        assert_eq!((got.node.as_str(), got.role.as_str()), ("db-3", "db"));
        // A --root run never touches the host's name.
        assert!(!got.hostname_set);
        let placed = root.host(Path::new("/run/owui/seed.toml")).unwrap();
        assert_eq!(
            fs::read_to_string(&placed).unwrap(),
            "node = \"db-3\"\nrole = \"db\"\n"
        );
        assert_eq!(
            fs::metadata(&placed).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let signed = SeedOrigin::Verified {
            key_id: key.id.to_string(),
            from: ESP_SEED.into(),
        };
        assert_eq!(got.origin, signed);
        assert_eq!(origin(&root), Some(signed));
    }

    #[test]
    fn a_seed_for_another_role_or_a_bad_seed_is_refused_and_nothing_is_written() {
        let (_dir, root, key) = root_with_image("gpu");
        esp_seed(&root, "node = \"n1\"\nrole = \"app\"\n", Some(&key));
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
        assert!(
            err.to_string().contains("app node") && err.to_string().contains("gpu image"),
            "{err}"
        );
        esp_seed(
            &root,
            "node = \"n1\"\nrole = \"gpu\"\nrack = 4\n",
            Some(&key),
        );
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("rack"), "{err}");
        esp_seed(
            &root,
            "node = \"n1\\nWEBUI_AUTH=False\"\nrole = \"gpu\"\n",
            Some(&key),
        );
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("node name"), "{err}");
        let err = import(
            &root,
            &[PathBuf::from("/nowhere/seed.toml")],
            false,
            false,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nowhere/seed.toml"), "{err}");
        assert!(
            err.to_string().contains("owui-builder seed create"),
            "{err}"
        );
        assert!(!root.host(Path::new(RUN_DIR)).unwrap().exists());
    }

    #[test]
    fn an_unsigned_seed_is_refused_unless_insecure_and_then_recorded() {
        let (_dir, root, _key) = root_with_image("app");
        esp_seed(&root, "node = \"lab-1\"\nrole = \"app\"\n", None);
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(
            err.to_string()
                .contains("is not signed by a key this image trusts"),
            "{err}"
        );
        assert!(!root.host(Path::new(RUN_DIR)).unwrap().exists());
        assert_eq!(origin(&root), None);

        let got = import_esp(&root, true).unwrap();
        let unsigned = SeedOrigin::Unsigned {
            from: ESP_SEED.into(),
        };
        assert_eq!(got.origin, unsigned);
        assert_eq!(origin(&root), Some(unsigned));
        let record =
            fs::read_to_string(root.host(Path::new("/run/owui/seed-origin.json")).unwrap());
        assert!(record.unwrap().contains("\"signature\": \"unsigned\""));
    }

    /// An ed25519 key line (any 32 bytes make one, for parsing).
    fn ssh_key(comment: &str) -> String {
        use base64::Engine;
        let mut blob = Vec::new();
        for f in [&b"ssh-ed25519"[..], &[3u8; 32]] {
            blob.extend_from_slice(&(f.len() as u32).to_be_bytes());
            blob.extend_from_slice(f);
        }
        let data = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("ssh-ed25519 {data} {comment}")
    }

    /// A seed of node n1, role app, with `keys` (one per line of the list).
    fn seed_with_keys(keys: &[&str]) -> String {
        let entries: String = keys.iter().map(|k| format!("  \"{k}\",\n")).collect();
        format!("node = \"n1\"\nrole = \"app\"\nssh_authorized_keys = [\n{entries}]\n")
    }

    fn admin_keys(root: &Root) -> String {
        let path = root
            .host(Path::new("/run/owui/ssh/owui-admin.keys"))
            .unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn a_signed_seeds_ssh_keys_replace_owui_admins_and_a_seed_without_lets_nobody_in() {
        let (_dir, root, key) = root_with_image("app");
        let (a, b) = (ssh_key("alice@ops"), ssh_key("bob@ops"));
        esp_seed(&root, &seed_with_keys(&[&a, &b]), Some(&key));
        assert_eq!(import_esp(&root, false).unwrap().ssh_keys, 2);
        assert_eq!(admin_keys(&root), format!("{a}\n{b}\n"));
        // The next boot's seed has only one key: the other is gone.
        esp_seed(&root, &seed_with_keys(&[&b]), Some(&key));
        assert_eq!(import_esp(&root, false).unwrap().ssh_keys, 1);
        assert_eq!(admin_keys(&root), format!("{b}\n"));
        // None: nobody.
        esp_seed(&root, "node = \"n1\"\nrole = \"app\"\n", Some(&key));
        assert_eq!(import_esp(&root, false).unwrap().ssh_keys, 0);
        assert_eq!(admin_keys(&root), "");
    }

    #[test]
    fn an_unsigned_seeds_ssh_keys_are_not_installed() {
        let (_dir, root, _key) = root_with_image("app");
        let a = ssh_key("alice@ops");
        esp_seed(&root, &seed_with_keys(&[&a]), None);
        assert_eq!(import_esp(&root, false).unwrap_err().exit_code(), 4);
        assert!(!root.host(Path::new(SSH_KEYS_DIR)).unwrap().exists());
        assert_eq!(import_esp(&root, true).unwrap().ssh_keys, 0);
        assert_eq!(admin_keys(&root), "");
    }

    #[test]
    fn a_seed_with_a_bad_ssh_key_is_refused_and_the_old_keys_stay() {
        let (_dir, root, key) = root_with_image("app");
        let a = ssh_key("alice@ops");
        esp_seed(&root, &seed_with_keys(&[&a]), Some(&key));
        import_esp(&root, false).unwrap();
        let seed_before = fs::read(root.host(Path::new("/run/owui/seed.toml")).unwrap()).unwrap();
        let with_options = format!("command=\\\"sh\\\" {a}");
        esp_seed(&root, &seed_with_keys(&[&a, &with_options]), Some(&key));
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("line 5"), "{err}");
        assert!(err.to_string().contains("options prefix"), "{err}");
        assert_eq!(admin_keys(&root), format!("{a}\n"));
        assert_eq!(
            fs::read(root.host(Path::new("/run/owui/seed.toml")).unwrap()).unwrap(),
            seed_before
        );
    }

    #[test]
    fn a_signature_linked_out_of_the_root_is_not_read_from_the_host() {
        let (_dir, root, key) = root_with_image("db");
        let text = "node = \"db-3\"\nrole = \"db\"\n";
        esp_seed(&root, text, None);
        // A good signature outside the root, linked by an absolute path:
        // the node would look for it under its own /, where there is none.
        let outside = tempfile::tempdir().unwrap();
        let good = outside.path().join("seed.toml.minisig");
        fs::write(&good, key.sign(text.as_bytes(), "owui seed")).unwrap();
        let esp = root.host(Path::new(ESP_SEED)).unwrap();
        std::os::unix::fs::symlink(&good, format!("{}.minisig", esp.display())).unwrap();
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(!root
            .host(Path::new("/run/owui/seed.toml"))
            .unwrap()
            .exists());
    }

    #[test]
    fn a_seeds_network_becomes_a_networkd_file_and_a_seed_without_removes_it() {
        let (_dir, root, key) = root_with_image("app");
        let file = root.host(Path::new(NETWORKD_FILE)).unwrap();
        esp_seed(
            &root,
            "node = \"n1\"\nrole = \"app\"\n[network]\naddress = \"10.20.0.7/24\"\ngateway = \"10.20.0.1\"\n",
            Some(&key),
        );
        import_esp(&root, false).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("Address=10.20.0.7/24\nLinkLocalAddressing=no\n"),
            "{text}"
        );
        assert!(text.contains("Gateway=10.20.0.1\n"), "{text}");
        // A gateway off the address's network: refused, the file stays.
        esp_seed(
            &root,
            "node = \"n1\"\nrole = \"app\"\n[network]\naddress = \"10.20.0.7/24\"\ngateway = \"10.9.0.1\"\n",
            Some(&key),
        );
        let err = import_esp(&root, false).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("[network] gateway"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), text);
        esp_seed(&root, "node = \"n1\"\nrole = \"app\"\n", Some(&key));
        import_esp(&root, false).unwrap();
        assert!(!file.exists());
    }

    #[test]
    fn the_banner_names_the_seeds_administrator() {
        let (_dir, root, _key) = root_with_image("app");
        fs::create_dir_all(root.etc().unwrap()).unwrap();
        fs::write(
            root.seed().unwrap(),
            "node = \"n1\"\nrole = \"app\"\n[admin]\nemail = \"ops@site.example\"\n",
        )
        .unwrap();
        let secrets = root.host(Path::new("/etc/owui/secrets")).unwrap();
        fs::create_dir_all(&secrets).unwrap();
        fs::write(secrets.join("admin-password"), "0123abcd\n").unwrap();
        fs::set_permissions(
            secrets.join("admin-password"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let text = banner(&root).unwrap();
        assert!(
            text.contains("\nOpen WebUI administrator ops@site.example, first password 0123abcd"),
            "{text}"
        );
    }

    #[test]
    fn the_banner_names_role_and_node() {
        let (_dir, root, _key) = root_with_image("app");
        fs::create_dir_all(root.etc().unwrap()).unwrap();
        fs::write(
            root.seed().unwrap(),
            "node = \"rack1-n07\"\nrole = \"app\"\n",
        )
        .unwrap();
        assert_eq!(
            banner(&root).unwrap(),
            "OWUI-AGENT READY role=app node=rack1-n07"
        );
        // The administrator's first password: on the first banner only.
        let secrets = root.host(Path::new("/etc/owui/secrets")).unwrap();
        fs::create_dir_all(&secrets).unwrap();
        fs::write(secrets.join("admin-password"), "0123abcd\n").unwrap();
        fs::set_permissions(
            secrets.join("admin-password"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let first = banner(&root).unwrap();
        assert!(
            first.ends_with(
                "\nOpen WebUI administrator admin@rack1-n07, first password 0123abcd \
                 (shown this once: change it after signing in)"
            ),
            "{first}"
        );
        assert_eq!(
            banner(&root).unwrap(),
            "OWUI-AGENT READY role=app node=rack1-n07"
        );
    }
}
