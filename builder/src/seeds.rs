//! `owui-builder seed create`: one node's seed (name, role, and the
//! operator's SSH public keys if any), signed with the site's key, for the
//! OWUI-SEED medium or the image's ESP. The node checks the signature
//! against its image's trust store before it reads a field (docs/seeds.md).

use std::path::{Path, PathBuf};

use std::net::IpAddr;

use owui_bundle::first_admin::FirstAdmin;
use owui_bundle::fsutil::{read_regular_capped, write_atomic};
use owui_bundle::node_network::NodeNetwork;
use owui_bundle::seed::{self, NodeName, Seed, SEED_MAX};
use owui_bundle::ssh_key::SshPublicKey;
use owui_bundle::{Error, Result};
use serde::Serialize;

use crate::cli::SeedSettings;
use crate::keys::load_secret;

#[derive(Debug, Serialize)]
pub struct Created {
    pub node: NodeName,
    pub role: String,
    pub key_id: String,
    /// How many SSH public keys the seed carries.
    pub ssh_keys: usize,
    pub seed: PathBuf,
    pub signature: PathBuf,
}

/// The SSH public keys in `path` (an `ssh-keygen` `.pub` file, or several
/// keys one a line as in `authorized_keys`; blank lines and `#` comments
/// skipped), each checked as the node checks the seed's; an error names
/// the file and line.
fn read_ssh_keys(path: &Path) -> Result<Vec<SshPublicKey>> {
    let bytes = read_regular_capped(path, SEED_MAX, "an SSH public key file")?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| Error::invalid(path.display().to_string(), format!("not UTF-8: {e}")))?;
    let mut keys = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let key = line.parse::<SshPublicKey>().map_err(|e| {
            Error::invalid(format!("{} line {}", path.display(), n + 1), e.to_string())
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(Error::invalid(
            path.display().to_string(),
            "holds no SSH public key",
        ));
    }
    Ok(keys)
}

/// Checks every field, each SSH key file and the signing key before writing
/// anything, then writes `out` and `out.minisig` (the signature over
/// exactly those bytes).
pub fn create(
    node: &str,
    role: &str,
    ssh_keys: &[PathBuf],
    settings: &SeedSettings,
    key: &Path,
    out: &Path,
) -> Result<Created> {
    let seed = build(node, role, ssh_keys, settings)?;
    write_signed(&seed, key, out)
}

/// The seed the flags describe, every field checked as the node checks it.
pub fn build(
    node: &str,
    role: &str,
    ssh_keys: &[PathBuf],
    settings: &SeedSettings,
) -> Result<Seed> {
    let mut ssh_authorized_keys = Vec::new();
    for file in ssh_keys {
        ssh_authorized_keys.extend(read_ssh_keys(file)?);
    }
    if let Some(min) = settings
        .lab_data_min_mib
        .filter(|m| *m < seed::LAB_DATA_MIN_FLOOR_MIB)
    {
        return Err(Error::invalid(
            "--lab-data-min-mib",
            format!(
                "{min} MiB is below the {} MiB a data partition needs at least",
                seed::LAB_DATA_MIN_FLOOR_MIB
            ),
        ));
    }
    Ok(Seed {
        node: node.parse()?,
        role: seed::parse_role(role)?,
        ssh_authorized_keys,
        lab_data_min_mib: settings.lab_data_min_mib,
        admin: admin(settings)?,
        network: network(settings)?,
        cluster: None,
    })
}

/// Signs `seed` with `key` (checked first) and writes `out` and
/// `out.minisig`; the seed's bytes are parsed back first, so a seed the node
/// would refuse is never written.
pub fn write_signed(seed: &Seed, key: &Path, out: &Path) -> Result<Created> {
    let key = load_secret(key)?;
    let bytes = seed.to_bytes()?;
    Seed::parse(&out.display().to_string(), &bytes)?;
    let signature = seed.sign(&key, &bytes);
    let sig_path = PathBuf::from(format!("{}.minisig", out.display()));
    // 0600: seeds carry join tokens, control seeds the cluster CA; the
    // signature is public.
    write_atomic(out, &bytes, 0o600)?;
    write_atomic(&sig_path, signature.as_bytes(), 0o644)?;
    Ok(Created {
        node: seed.node.clone(),
        role: seed.role.as_str().to_string(),
        key_id: key.id.to_string(),
        ssh_keys: seed.ssh_authorized_keys.len(),
        seed: out.to_path_buf(),
        signature: sig_path,
    })
}

/// The seed's `[admin]`, when --admin-email names one.
fn admin(settings: &SeedSettings) -> Result<Option<FirstAdmin>> {
    let Some(email) = &settings.admin_email else {
        return Ok(None);
    };
    Ok(Some(FirstAdmin {
        email: email.parse()?,
        name: settings.admin_name.as_deref().map(str::parse).transpose()?,
    }))
}

/// The seed's `[network]`, when any network flag is given; checked as the
/// node checks it.
fn network(settings: &SeedSettings) -> Result<Option<NodeNetwork>> {
    let ip = |flag: &str, text: &str| {
        text.parse::<IpAddr>()
            .map_err(|_| Error::invalid(format!("{flag} {text:?}"), "is not an IP address"))
    };
    let network = NodeNetwork {
        mac: settings.mac.as_deref().map(str::parse).transpose()?,
        address: settings.address.as_deref().map(str::parse).transpose()?,
        gateway: settings
            .gateway
            .as_deref()
            .map(|g| ip("--gateway", g))
            .transpose()?,
        dns: settings
            .dns
            .iter()
            .map(|d| ip("--dns", d))
            .collect::<Result<_>>()?,
    };
    if network == NodeNetwork::default() {
        return Ok(None);
    }
    network.check("the seed")?;
    Ok(Some(network))
}

pub fn print_created(c: &Created) {
    println!(
        "seed of {} node {} with {} SSH keys for owui-admin written: {} and {} (signed by key {}); copy both to the OWUI-SEED medium as seed.toml and seed.toml.minisig",
        c.role,
        c.node,
        c.ssh_keys,
        c.seed.display(),
        c.signature.display(),
        c.key_id
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use owui_bundle::sign::SecretKey;
    use owui_bundle::trust::TrustStore;
    use std::fs;

    fn key_file(dir: &Path) -> (PathBuf, SecretKey) {
        use std::os::unix::fs::PermissionsExt;
        let sk = SecretKey::generate();
        let path = dir.join("owui.key");
        fs::write(&path, sk.to_file_string()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        (path, sk)
    }

    /// The seed `create` wrote, verified against the key that signed it.
    fn verified(out: &Path, c: &Created, sk: &SecretKey) -> seed::VerifiedSeed {
        let store = TrustStore::with_keys(vec![sk.public()], "test keys");
        let signature = fs::read(&c.signature).unwrap();
        seed::verify(
            &store,
            "seed.toml",
            &fs::read(out).unwrap(),
            Some(&signature),
        )
        .unwrap()
    }

    #[test]
    fn a_created_seed_verifies_against_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, sk) = key_file(dir.path());
        let out = dir.path().join("seed.toml");
        let c = create(
            "rack1-n07",
            "gpu",
            &[],
            &SeedSettings::default(),
            &key,
            &out,
        )
        .unwrap();
        assert_eq!(c.key_id, sk.id.to_string());
        let store = TrustStore::with_keys(vec![sk.public()], "test keys");
        let bytes = fs::read(&out).unwrap();
        let sig = fs::read(&c.signature).unwrap();
        let v = seed::verify(&store, "seed.toml", &bytes, Some(&sig)).unwrap();
        assert_eq!(v.seed.node.as_str(), "rack1-n07");
    }

    #[test]
    fn bad_fields_or_key_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = key_file(dir.path());
        let out = dir.path().join("out/seed.toml");
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        for (node, role, key) in [
            ("ai-1\nWEBUI_AUTH=False", "app", key.as_path()),
            ("Rack1", "app", key.as_path()),
            ("n1", "printer", key.as_path()),
            ("n1", "app", Path::new("/nonexistent/owui.key")),
        ] {
            let err = create(node, role, &[], &SeedSettings::default(), key, &out).unwrap_err();
            assert_ne!(err.exit_code(), 0);
            assert_eq!(
                fs::read_dir(out.parent().unwrap()).unwrap().count(),
                0,
                "{err}"
            );
        }
    }

    #[test]
    fn admin_and_network_flags_become_signed_sections_and_bad_ones_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (key, sk) = key_file(dir.path());
        let out = dir.path().join("out/seed.toml");
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        let good = SeedSettings {
            admin_email: Some("ops@site.example".into()),
            admin_name: Some("Site Ops".into()),
            address: Some("10.20.0.7/24".into()),
            gateway: Some("10.20.0.1".into()),
            dns: vec!["10.20.0.2".into()],
            mac: Some("52:54:00:12:34:56".into()),
            lab_data_min_mib: None,
        };
        for (bad, says) in [
            (
                SeedSettings {
                    admin_email: Some("ops".into()),
                    ..good.clone()
                },
                "no '@'",
            ),
            (
                SeedSettings {
                    address: Some("10.20.0.7".into()),
                    ..good.clone()
                },
                "prefix length",
            ),
            (
                SeedSettings {
                    gateway: Some("10.21.0.1".into()),
                    ..good.clone()
                },
                "not on the address's network",
            ),
            (
                SeedSettings {
                    dns: vec!["dns.site".into()],
                    ..good.clone()
                },
                "--dns \"dns.site\"",
            ),
            (
                SeedSettings {
                    mac: Some("52:54:00".into()),
                    ..good.clone()
                },
                "six hex pairs",
            ),
        ] {
            let err = create("n1", "app", &[], &bad, &key, &out).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{err}");
            assert!(err.to_string().contains(says), "{err}");
            assert_eq!(fs::read_dir(out.parent().unwrap()).unwrap().count(), 0);
        }
        let c = create("n1", "app", &[], &good, &key, &out).unwrap();
        let v = verified(&out, &c, &sk);
        let admin = v.seed.admin.unwrap();
        assert_eq!(
            (admin.email.to_string(), admin.name.unwrap().to_string()),
            ("ops@site.example".into(), "Site Ops".into())
        );
        let file = v.seed.network.unwrap().networkd_file();
        assert!(file.contains("MACAddress=52:54:00:12:34:56\n"), "{file}");
        assert!(file.contains("Address=10.20.0.7/24\n"), "{file}");
        assert!(
            file.contains("Gateway=10.20.0.1\nDNS=10.20.0.2\n"),
            "{file}"
        );
    }

    #[test]
    fn ssh_key_files_go_into_the_seed_and_a_bad_one_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (key, sk) = key_file(dir.path());
        let blob = |kind: &[u8], len: usize| {
            use base64::Engine;
            let mut b = Vec::new();
            for f in [kind, &vec![9u8; len][..]] {
                b.extend_from_slice(&(f.len() as u32).to_be_bytes());
                b.extend_from_slice(f);
            }
            base64::engine::general_purpose::STANDARD.encode(b)
        };
        let good = format!("ssh-ed25519 {} alice@ops", blob(b"ssh-ed25519", 32));
        let alice = dir.path().join("alice.pub");
        fs::write(&alice, format!("{good}\n")).unwrap();
        let team = dir.path().join("team.keys");
        fs::write(
            &team,
            format!("# on-call\n\n{good}\n{}\n", good.replace("alice", "bob")),
        )
        .unwrap();
        let out = dir.path().join("seed.toml");
        let c = create(
            "n1",
            "app",
            &[alice.clone(), team.clone()],
            &SeedSettings::default(),
            &key,
            &out,
        )
        .unwrap();
        assert_eq!(c.ssh_keys, 3);
        let v = verified(&out, &c, &sk);
        assert_eq!(v.seed.ssh_authorized_keys[0].as_str(), good);

        let empty = dir.path().join("out");
        fs::create_dir(&empty).unwrap();
        let out = empty.join("seed.toml");
        for (text, reason) in [
            (format!("{good}\nssh-ed25519 AAAA!!!! x\n"), "line 2"),
            (format!("no-pty {good}\n"), "options prefix"),
            (
                format!("ssh-rsa {} x\n", blob(b"ssh-ed25519", 32)),
                "but the line says ssh-rsa",
            ),
            ("# nothing\n".to_string(), "holds no SSH public key"),
        ] {
            let bad = dir.path().join("bad.pub");
            fs::write(&bad, text).unwrap();
            let err = create(
                "n1",
                "app",
                &[alice.clone(), bad.clone()],
                &SeedSettings::default(),
                &key,
                &out,
            )
            .unwrap_err();
            assert_eq!(err.exit_code(), 3, "{err}");
            assert!(err.to_string().contains("bad.pub"), "{err}");
            assert!(err.to_string().contains(reason), "{err}");
            assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "{err}");
        }
        let err = create(
            "n1",
            "app",
            &[dir.path().join("none.pub")],
            &SeedSettings::default(),
            &key,
            &out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("none.pub"), "{err}");
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "{err}");
    }
}
