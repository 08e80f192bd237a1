//! The node's trust store: the public keys it accepts signatures from.
//!
//! Keys are minisign public key files, `<dir>/<KEYID>.pub`. Keys change only
//! through a key-rotation statement signed by a key already trusted; its
//! sequence number must grow, so an old statement cannot be replayed to bring
//! back a revoked key. Revoked key ids are remembered in `<dir>/revoked.json`
//! and win over any `.pub` file that reappears.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomic;
use crate::sign::{KeyId, PublicKey, SecretKey, SignatureFile, SIGNATURE_MAX};

pub const ROTATION_FORMAT: &str = "owui-key-rotation/1";
const ROTATION_MAX: u64 = 1 << 20;

pub struct TrustStore {
    dir: PathBuf,
    keys: Vec<PublicKey>,
    state: TrustState,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustState {
    rotation_sequence: u64,
    revoked: BTreeSet<String>,
}

/// A signed statement that adds and revokes keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationStatement {
    pub format: String,
    pub sequence: u64,
    /// Public keys in minisign's one-line base64 form.
    #[serde(default)]
    pub add: Vec<String>,
    /// Key ids as minisign prints them.
    #[serde(default)]
    pub revoke: Vec<String>,
}

/// The outcome of verifying a signature against the store.
#[derive(Debug, Clone)]
pub struct Signer {
    pub key_id: KeyId,
    pub trusted_comment: String,
}

fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    let len = fs::metadata(path).at("reading", path)?.len();
    if len > cap {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("{what} is {len} bytes, over its {cap}-byte cap"),
        ));
    }
    fs::read(path).at("reading", path)
}

/// A key file anyone but root could change is no root of trust.
fn check_not_writable_by_others(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path).at("reading", path)?.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(Error::untrusted(
            path.display().to_string(),
            format!(
                "mode {:04o} lets group or others change a trusted key (chmod 644)",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

impl TrustStore {
    /// Loads every `*.pub` in `dir`. A missing directory is an empty store.
    pub fn load(dir: &Path) -> Result<Self> {
        let state_path = dir.join("revoked.json");
        let state: TrustState = match fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid(state_path.display().to_string(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TrustState::default(),
            Err(e) => return Err(e).at("reading", &state_path),
        };
        let mut keys = Vec::new();
        match fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).at("listing trust store", dir),
            Ok(entries) => {
                for entry in entries {
                    let path = entry.at("listing trust store", dir)?.path();
                    if path.extension().is_some_and(|e| e == "pub") {
                        check_not_writable_by_others(&path)?;
                        let text = String::from_utf8(read_capped(&path, 4096, "a public key")?)
                            .map_err(|_| Error::invalid(path.display().to_string(), "not UTF-8"))?;
                        keys.push(PublicKey::from_file_str(
                            &path.display().to_string(),
                            &text,
                        )?);
                    }
                }
            }
        }
        keys.sort_by_key(|k| k.id);
        Ok(TrustStore {
            dir: dir.to_path_buf(),
            keys,
            state,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keys that are trusted now (present and not revoked).
    pub fn trusted(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys
            .iter()
            .filter(|k| !self.state.revoked.contains(&k.id.to_string()))
    }

    pub fn revoked(&self) -> impl Iterator<Item = &String> {
        self.state.revoked.iter()
    }

    pub fn rotation_sequence(&self) -> u64 {
        self.state.rotation_sequence
    }

    /// Verifies `message` against the signature text, by a trusted key.
    pub fn verify(&self, message: &[u8], signature_text: &str, what: &str) -> Result<Signer> {
        let sig = SignatureFile::parse(what, signature_text)?;
        let id = sig.key_id.to_string();
        if self.state.revoked.contains(&id) {
            return Err(Error::untrusted(
                what,
                format!("signed by key {id}, which has been revoked"),
            ));
        }
        let key = self.trusted().find(|k| k.id == sig.key_id).ok_or_else(|| {
            Error::untrusted(
                what,
                format!(
                    "signed by key {id}, which is not in the trust store {}",
                    self.dir.display()
                ),
            )
        })?;
        key.verify(message, &sig)
            .map_err(|e| Error::untrusted(what, e.to_string()))?;
        Ok(Signer {
            key_id: sig.key_id,
            trusted_comment: sig.trusted_comment,
        })
    }

    /// Adds a key directly (first provisioning, from the image or seed).
    pub fn install(&mut self, key: &PublicKey) -> Result<()> {
        if self.state.revoked.contains(&key.id.to_string()) {
            return Err(Error::refused(
                format!("key {}", key.id),
                "has been revoked and cannot be trusted again",
            ));
        }
        fs::create_dir_all(&self.dir).at("creating", &self.dir)?;
        write_atomic(
            &self.dir.join(format!("{}.pub", key.id)),
            key.to_file_string().as_bytes(),
            0o644,
        )?;
        if !self.keys.contains(key) {
            self.keys.push(key.clone());
        }
        Ok(())
    }

    /// Verifies and applies a rotation statement (`path`, signature at
    /// `path.minisig`). Nothing changes unless every check passes.
    pub fn apply_rotation(&mut self, path: &Path) -> Result<RotationStatement> {
        let what = path.display().to_string();
        let body = read_capped(path, ROTATION_MAX, "a rotation statement")?;
        let sig_path = PathBuf::from(format!("{}.minisig", path.display()));
        let sig_text = match read_capped(&sig_path, SIGNATURE_MAX, "a signature") {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::untrusted(
                    &what,
                    format!("no signature: {} is missing", sig_path.display()),
                ))
            }
            other => other?,
        };
        let sig_text = String::from_utf8(sig_text)
            .map_err(|_| Error::invalid(sig_path.display().to_string(), "not UTF-8"))?;
        self.verify(&body, &sig_text, &what)?;
        let stmt: RotationStatement =
            serde_json::from_slice(&body).map_err(|e| Error::invalid(&what, e.to_string()))?;
        if stmt.format != ROTATION_FORMAT {
            return Err(Error::invalid(
                &what,
                format!("format {:?} is not {ROTATION_FORMAT}", stmt.format),
            ));
        }
        if stmt.sequence <= self.state.rotation_sequence {
            return Err(Error::refused(
                &what,
                format!(
                    "rotation sequence {} is not newer than {} already applied (replayed statement?)",
                    stmt.sequence, self.state.rotation_sequence
                ),
            ));
        }
        let added = stmt
            .add
            .iter()
            .map(|line| PublicKey::from_base64(&format!("{what}: add"), line))
            .collect::<Result<Vec<_>>>()?;
        let revoked = stmt
            .revoke
            .iter()
            .map(|id| KeyId::parse(id).map(|k| k.to_string()))
            .collect::<Result<Vec<_>>>()?;
        let mut next = self.state.clone();
        next.rotation_sequence = stmt.sequence;
        next.revoked.extend(revoked.iter().cloned());
        if let Some(k) = added
            .iter()
            .find(|k| next.revoked.contains(&k.id.to_string()))
        {
            return Err(Error::refused(
                &what,
                format!("adds key {}, which is revoked", k.id),
            ));
        }
        let remaining = self
            .keys
            .iter()
            .chain(added.iter())
            .filter(|k| !next.revoked.contains(&k.id.to_string()))
            .count();
        if remaining == 0 {
            return Err(Error::refused(&what, "would leave no trusted key"));
        }
        fs::create_dir_all(&self.dir).at("creating", &self.dir)?;
        // Revocations first: a crash half-way leaves fewer keys trusted, never more.
        let state_json = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::invalid("trust state", e.to_string()))?;
        write_atomic(&self.dir.join("revoked.json"), &state_json, 0o644)?;
        self.state = next;
        for id in &revoked {
            let p = self.dir.join(format!("{id}.pub"));
            if p.exists() {
                fs::remove_file(&p).at("removing", &p)?;
            }
        }
        self.keys
            .retain(|k| !self.state.revoked.contains(&k.id.to_string()));
        for key in &added {
            self.install(key)?;
        }
        Ok(stmt)
    }
}

/// Writes a signed rotation statement to `out` and `out.minisig`.
pub fn write_rotation(
    signer: &SecretKey,
    sequence: u64,
    add: &[PublicKey],
    revoke: &[KeyId],
    out: &Path,
) -> Result<RotationStatement> {
    let stmt = RotationStatement {
        format: ROTATION_FORMAT.to_string(),
        sequence,
        add: add.iter().map(PublicKey::to_base64).collect(),
        revoke: revoke.iter().map(KeyId::to_string).collect(),
    };
    let body =
        serde_json::to_vec_pretty(&stmt).map_err(|e| Error::invalid("statement", e.to_string()))?;
    let comment = format!("owui key rotation sequence={sequence}");
    write_atomic(out, &body, 0o644)?;
    write_atomic(
        &PathBuf::from(format!("{}.minisig", out.display())),
        signer.sign(&body, &comment).as_bytes(),
        0o644,
    )?;
    Ok(stmt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_adds_revokes_and_refuses_replay() {
        let dir = tempfile::tempdir().unwrap();
        let trust_dir = dir.path().join("trust");
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let mut store = TrustStore::load(&trust_dir).unwrap();
        store.install(&a.public()).unwrap();

        let sig = a.sign(b"m", "c");
        store.verify(b"m", &sig, "m").unwrap();
        let by_b = b.sign(b"m", "c");
        assert!(store
            .verify(b"m", &by_b, "m")
            .unwrap_err()
            .to_string()
            .contains("not in the trust store"));

        let stmt = dir.path().join("rot1.json");
        write_rotation(&a, 1, &[b.public()], &[a.public().id], &stmt).unwrap();
        store.apply_rotation(&stmt).unwrap();
        let store = TrustStore::load(&trust_dir).unwrap();
        store.verify(b"m", &by_b, "m").unwrap();
        let err = store.verify(b"m", &sig, "m").unwrap_err().to_string();
        assert!(err.contains("revoked"), "{err}");

        // Replaying the same statement is refused; so is one by the revoked key.
        let mut store = TrustStore::load(&trust_dir).unwrap();
        assert_eq!(store.apply_rotation(&stmt).unwrap_err().exit_code(), 4);
        let stmt2 = dir.path().join("rot2.json");
        write_rotation(&b, 1, &[], &[], &stmt2).unwrap();
        assert_eq!(store.apply_rotation(&stmt2).unwrap_err().exit_code(), 5);
        // A revoked key cannot come back.
        let stmt3 = dir.path().join("rot3.json");
        write_rotation(&b, 2, &[a.public()], &[], &stmt3).unwrap();
        assert_eq!(store.apply_rotation(&stmt3).unwrap_err().exit_code(), 5);
        // A key file others may write is refused.
        use std::os::unix::fs::PermissionsExt;
        let pub_file = trust_dir.join(format!("{}.pub", b.public().id));
        fs::set_permissions(&pub_file, fs::Permissions::from_mode(0o666)).unwrap();
        let err = TrustStore::load(&trust_dir).err().unwrap().to_string();
        assert!(err.contains("group or others"), "{err}");
        fs::set_permissions(&pub_file, fs::Permissions::from_mode(0o644)).unwrap();
        // Nor may the last key be revoked.
        write_rotation(&b, 3, &[], &[b.public().id], &stmt3).unwrap();
        assert!(store
            .apply_rotation(&stmt3)
            .unwrap_err()
            .to_string()
            .contains("no trusted key"));
    }
}
