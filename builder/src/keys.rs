//! `owui-builder key`: key pairs and rotation statements.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::sign::{KeyId, PublicKey, SecretKey};
use owui_bundle::trust::{self, RotationStatement};
use owui_bundle::{Error, Result};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Generated {
    pub key_id: String,
    pub secret_key: PathBuf,
    pub public_key: PathBuf,
}

pub fn generate(dir: &Path, force: bool) -> Result<Generated> {
    fs::create_dir_all(dir).at("creating", dir)?;
    let secret_path = dir.join("owui.key");
    let public_path = dir.join("owui.pub");
    if !force {
        for p in [&secret_path, &public_path] {
            if p.exists() {
                return Err(Error::refused(
                    p.display().to_string(),
                    "exists; pass --force to replace the key pair",
                ));
            }
        }
    }
    let sk = SecretKey::generate();
    // Created 0600 from the start: the secret is never readable by others, not even briefly.
    let _ = fs::remove_file(&secret_path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret_path)
        .at("creating", &secret_path)?;
    f.write_all(sk.to_file_string().as_bytes())
        .at("writing", &secret_path)?;
    f.sync_all().at("syncing", &secret_path)?;
    owui_bundle::fsutil::write_atomic(
        &public_path,
        sk.public().to_file_string().as_bytes(),
        0o644,
    )?;
    Ok(Generated {
        key_id: sk.id.to_string(),
        secret_key: secret_path,
        public_key: public_path,
    })
}

/// Loads a secret key, refusing one that others can read.
pub fn load_secret(path: &Path) -> Result<SecretKey> {
    let mode = fs::metadata(path)
        .at("reading secret key", path)?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("secret key has mode {mode:04o}; it must not be readable by group or others (chmod 600)"),
        ));
    }
    SecretKey::read_file(path)
}

pub fn print_generated(g: &Generated) {
    println!(
        "key {} written: {} (secret, 0600), {}",
        g.key_id,
        g.secret_key.display(),
        g.public_key.display()
    )
}

/// The human line for a rotation statement written to `out`.
pub fn print_rotation(out: &Path, s: &RotationStatement) {
    println!(
        "rotation statement {} (sequence {}) written: adds {}, revokes {}",
        out.display(),
        s.sequence,
        s.add.len(),
        s.revoke.len()
    )
}

pub fn rotate(
    key: &Path,
    sequence: u64,
    add: &[PathBuf],
    revoke: &[String],
    out: &Path,
) -> Result<RotationStatement> {
    let sk = load_secret(key)?;
    let add = add
        .iter()
        .map(|p| PublicKey::read_file(p))
        .collect::<Result<Vec<_>>>()?;
    let revoke = revoke
        .iter()
        .map(|s| KeyId::parse(s))
        .collect::<Result<Vec<_>>>()?;
    if add.is_empty() && revoke.is_empty() {
        return Err(Error::invalid(
            "key rotate",
            "nothing to do: give --add and/or --revoke",
        ));
    }
    trust::write_rotation(&sk, sequence, &add, &revoke, out)
}
