//! The node's trust store: the public keys it accepts signatures from, in
//! two layers.
//!
//! - The image's keys, minisign public key files `<KEYID>.pub` in the
//!   image's trust directory (`/etc/owui/trust`, on the read-only verity
//!   root): the floor, never written on a node.
//! - The node's trust state (`/var/lib/owui/trust`): each signed rotation
//!   statement the node applied, kept verbatim with its signature as
//!   `rotation-<sequence>.json`, and `revoked.json`, the record of the
//!   highest sequence and the revocations applied.
//!
//! On every load the kept statements are verified again and replayed in
//! sequence order, starting from the image's keys, so a statement counts only
//! if a key trusted at that point signed it: the state can never bring in a
//! key the trusted keys did not sign for, and a revocation (of an image key
//! too) wins over any `.pub` file. A replay that falls short of the record
//! (statements removed, the record emptied or rewound) is tampering. Who may
//! change these files is checked in [`access`].

mod access;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{read_regular_capped, write_atomic};
use crate::sign::{read_signature, KeyId, PublicKey, SecretKey, SignatureFile};

pub const ROTATION_FORMAT: &str = "owui-key-rotation/1";
const ROTATION_MAX: u64 = 1 << 20;
/// The node's record of applied rotations, in its trust state directory.
const RECORD: &str = "revoked.json";
const RECORD_MAX: u64 = 1 << 20;

#[derive(Clone)]
pub struct TrustStore {
    /// Where the keys come from, for messages.
    origin: String,
    image_dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    /// Every key the store has seen, revoked ones included.
    keys: Vec<KnownKey>,
    rotation_sequence: u64,
    /// Revoked key ids (as minisign prints them) and the rotation that
    /// revoked each.
    revoked: BTreeMap<String, u64>,
}

/// A key of the store, with the rotations that added and revoked it.
#[derive(Debug, Clone)]
pub struct KnownKey {
    pub key: PublicKey,
    /// `None` for a base key (the image's, or one given to check with).
    pub added_by: Option<u64>,
    pub revoked_by: Option<u64>,
}

/// What `revoked.json` holds: the rotation floor the kept statements must
/// replay to.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
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

fn signature_path(statement: &Path) -> PathBuf {
    PathBuf::from(format!("{}.minisig", statement.display()))
}

/// The name a kept statement has in the node's trust state.
fn kept_name(sequence: u64) -> String {
    format!("rotation-{sequence:020}.json")
}

/// The sequence in a kept statement's name; other names are not ours.
fn kept_sequence(name: &str) -> Option<u64> {
    let n: u64 = name
        .strip_prefix("rotation-")?
        .strip_suffix(".json")?
        .parse()
        .ok()?;
    (kept_name(n) == name).then_some(n)
}

/// A statement's bytes and its signature's text.
fn read_statement(path: &Path) -> Result<(Vec<u8>, String)> {
    let body = read_regular_capped(path, ROTATION_MAX, "a rotation statement")?;
    let sig_path = signature_path(path);
    match read_signature(&sig_path) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::untrusted(
                path.display().to_string(),
                format!("no signature: {} is missing", sig_path.display()),
            ))
        }
        sig => Ok((body, sig?)),
    }
}

/// A kept statement that does not replay means the state was changed:
/// whatever the reason, it is reported as untrusted.
fn tampered(e: Error) -> Error {
    match e {
        Error::Invalid { what, detail } | Error::Refused { what, detail } => Error::untrusted(
            what,
            format!("{detail} (a statement kept in the node's trust state: tampering?)"),
        ),
        other => other,
    }
}

fn record_json(record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(record)
        .map_err(|e| Error::internal("serialising the trust record", e.to_string()))
}

impl TrustStore {
    /// A store of just these keys (`verify-image --pub`, the build's own key).
    pub fn with_keys(keys: Vec<PublicKey>, origin: &str) -> Self {
        let mut store = TrustStore {
            origin: origin.to_string(),
            image_dir: None,
            state_dir: None,
            keys: Vec::new(),
            rotation_sequence: 0,
            revoked: BTreeMap::new(),
        };
        for key in keys {
            store.know(key, None);
        }
        store
    }

    /// The image's keys: every `*.pub` in `dir` (a link only to a file in
    /// `dir`). A missing directory is an empty store.
    pub fn load_image(dir: &Path) -> Result<Self> {
        let mut store = Self::with_keys(Vec::new(), &dir.display().to_string());
        store.image_dir = Some(dir.to_path_buf());
        let Some(resolved) = access::check_dir(dir)? else {
            return Ok(store);
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(&resolved).at("listing trust store", dir)? {
            let name = entry.at("listing trust store", dir)?.file_name();
            if Path::new(&name).extension().is_some_and(|e| e == "pub") {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let path = dir.join(name);
            access::check_file(&resolved, &path, true)?;
            store.know(PublicKey::read_file(&path)?, None);
        }
        Ok(store)
    }

    /// A node's store: the image's keys with the rotations the node applied.
    pub fn load(image_dir: &Path, state_dir: &Path) -> Result<Self> {
        Self::load_image(image_dir)?.with_state(state_dir)
    }

    /// Replays the rotations kept in a node's trust state `dir` over these
    /// keys and checks them against its record; later
    /// [`apply_rotation`](Self::apply_rotation)s are kept there. A missing
    /// directory holds no rotation.
    pub fn with_state(mut self, dir: &Path) -> Result<Self> {
        self.origin = format!("{} + {}", self.origin, dir.display());
        self.state_dir = Some(dir.to_path_buf());
        let Some(resolved) = access::check_dir(dir)? else {
            return Ok(self);
        };
        let record_path = dir.join(RECORD);
        let record = match fs::symlink_metadata(&record_path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            _ => Some(read_record(&resolved, &record_path)?),
        };
        let mut kept = Vec::new();
        for entry in fs::read_dir(&resolved).at("listing trust state", dir)? {
            let name = entry.at("listing trust state", dir)?.file_name();
            if let Some(n) = name.to_str().and_then(kept_sequence) {
                kept.push(n);
            }
        }
        kept.sort_unstable();
        for n in kept {
            let path = dir.join(kept_name(n));
            // Read first, so a missing signature is named as such; nothing
            // read is used before the files' owners and modes are checked.
            let (body, sig) = read_statement(&path)?;
            access::check_file(&resolved, &path, false)?;
            access::check_file(&resolved, &signature_path(&path), false)?;
            let stmt = self.admit(&path, &body, &sig).map_err(tampered)?;
            if stmt.sequence != n {
                return Err(Error::untrusted(
                    path.display().to_string(),
                    format!(
                        "holds rotation sequence {}, not {n} as its name says (tampering?)",
                        stmt.sequence
                    ),
                ));
            }
        }
        self.check_record(dir, &record_path, record)?;
        Ok(self)
    }

    /// The replay must reach what the record says was applied: otherwise
    /// statements were removed to bring a revoked key back.
    fn check_record(&self, dir: &Path, path: &Path, record: Option<Record>) -> Result<()> {
        let what = path.display().to_string();
        let Some(record) = record else {
            if self.rotation_sequence == 0 {
                return Ok(());
            }
            return Err(Error::untrusted(
                what,
                format!(
                    "is missing while rotation statements are kept in {}: the record of applied rotations was removed (tampering?)",
                    dir.display()
                ),
            ));
        };
        if record.rotation_sequence > self.rotation_sequence {
            return Err(Error::untrusted(
                what,
                format!(
                    "records rotation sequence {}, but the statements kept in {} replay only to {}: the trust state went back from {} to {} (tampering?)",
                    record.rotation_sequence,
                    dir.display(),
                    self.rotation_sequence,
                    record.rotation_sequence,
                    self.rotation_sequence
                ),
            ));
        }
        if let Some(id) = record
            .revoked
            .iter()
            .find(|id| !self.revoked.contains_key(*id))
        {
            return Err(Error::untrusted(
                what,
                format!(
                    "records key {id} as revoked, but no statement kept in {} revokes it (tampering?)",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    fn know(&mut self, key: PublicKey, added_by: Option<u64>) {
        if !self.keys.iter().any(|k| k.key.id == key.id) {
            let revoked_by = self.revoked.get(&key.id.to_string()).copied();
            self.keys.push(KnownKey {
                key,
                added_by,
                revoked_by,
            });
        }
    }

    pub fn image_dir(&self) -> Option<&Path> {
        self.image_dir.as_deref()
    }

    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// Every key seen: the base keys, then those rotations added.
    pub fn keys(&self) -> &[KnownKey] {
        &self.keys
    }

    /// Keys that are trusted now (known and not revoked).
    pub fn trusted(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys
            .iter()
            .filter(|k| k.revoked_by.is_none())
            .map(|k| &k.key)
    }

    pub fn revoked(&self) -> impl Iterator<Item = &String> {
        self.revoked.keys()
    }

    pub fn rotation_sequence(&self) -> u64 {
        self.rotation_sequence
    }

    /// Verifies `message` against the signature text, by a trusted key.
    pub fn verify(&self, message: &[u8], signature_text: &str, what: &str) -> Result<Signer> {
        let sig = SignatureFile::parse(what, signature_text)?;
        let id = sig.key_id.to_string();
        if let Some(n) = self.revoked.get(&id) {
            return Err(Error::untrusted(
                what,
                format!("signed by key {id}, which has been revoked (rotation {n})"),
            ));
        }
        let key = self.trusted().find(|k| k.id == sig.key_id).ok_or_else(|| {
            Error::untrusted(
                what,
                format!(
                    "signed by key {id}, which is not in the trust store ({})",
                    self.origin
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

    /// Verifies a rotation statement (`path`, signature at `path.minisig`)
    /// against the keys trusted now and layers it on top, in memory only.
    pub fn add_rotation(&mut self, path: &Path) -> Result<RotationStatement> {
        let (body, sig) = read_statement(path)?;
        self.admit(path, &body, &sig)
    }

    /// Checks a statement and, only if every check passes, applies it.
    fn admit(&mut self, path: &Path, body: &[u8], sig_text: &str) -> Result<RotationStatement> {
        let what = path.display().to_string();
        self.verify(body, sig_text, &what)?;
        let stmt: RotationStatement =
            serde_json::from_slice(body).map_err(|e| Error::invalid(&what, e.to_string()))?;
        if stmt.format != ROTATION_FORMAT {
            return Err(Error::invalid(
                &what,
                format!("format {:?} is not {ROTATION_FORMAT}", stmt.format),
            ));
        }
        if stmt.sequence <= self.rotation_sequence {
            return Err(Error::refused(
                &what,
                format!(
                    "rotation sequence {} is not newer than {} already applied (replayed statement?)",
                    stmt.sequence, self.rotation_sequence
                ),
            ));
        }
        let added = stmt
            .add
            .iter()
            .map(|line| PublicKey::from_base64(&format!("{what}: add"), line))
            .collect::<Result<Vec<_>>>()?;
        let mut revoked = self.revoked.clone();
        for id in &stmt.revoke {
            revoked
                .entry(KeyId::parse(id)?.to_string())
                .or_insert(stmt.sequence);
        }
        if let Some(k) = added
            .iter()
            .find(|k| revoked.contains_key(&k.id.to_string()))
        {
            return Err(Error::refused(
                &what,
                format!("adds key {}, which is revoked", k.id),
            ));
        }
        let remaining = self
            .keys
            .iter()
            .map(|k| &k.key)
            .chain(added.iter())
            .filter(|k| !revoked.contains_key(&k.id.to_string()))
            .count();
        if remaining == 0 {
            return Err(Error::refused(&what, "would leave no trusted key"));
        }
        self.rotation_sequence = stmt.sequence;
        for k in &mut self.keys {
            k.revoked_by = revoked.get(&k.key.id.to_string()).copied();
        }
        self.revoked = revoked;
        for key in added {
            self.know(key, Some(stmt.sequence));
        }
        Ok(stmt)
    }

    /// Verifies and applies a rotation statement, then keeps it (with its
    /// signature) in the node's trust state. Nothing changes unless every
    /// check passes; the image's keys are never written.
    pub fn apply_rotation(&mut self, path: &Path) -> Result<RotationStatement> {
        let Some(dir) = self.state_dir.clone() else {
            return Err(Error::refused(
                path.display().to_string(),
                format!(
                    "the trust store {} has no node state to keep rotations in",
                    self.origin
                ),
            ));
        };
        let (body, sig) = read_statement(path)?;
        let mut next = self.clone();
        let stmt = next.admit(path, &body, &sig)?;
        access::check_dir(nearest_existing(&dir))?;
        // 0755 whatever the umask: a group-writable state would be refused.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .at("creating", &dir)?;
        access::check_dir(&dir)?;
        let record_path = dir.join(RECORD);
        // The record exists before any statement is kept, so statements
        // without a record can only mean it was removed.
        if !record_path.exists() {
            write_atomic(&record_path, &record_json(&self.record())?, 0o644)?;
        }
        let kept = dir.join(kept_name(stmt.sequence));
        write_atomic(&signature_path(&kept), sig.as_bytes(), 0o644)?;
        write_atomic(&kept, &body, 0o644)?;
        // Last: a crash before this leaves the record behind the statements,
        // which replays fine; never ahead of them.
        write_atomic(&record_path, &record_json(&next.record())?, 0o644)?;
        *self = next;
        Ok(stmt)
    }

    fn record(&self) -> Record {
        Record {
            rotation_sequence: self.rotation_sequence,
            revoked: self.revoked.keys().cloned().collect(),
        }
    }
}

/// `dir` or its closest ancestor that exists.
fn nearest_existing(dir: &Path) -> &Path {
    dir.ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"))
}

/// The record is written only by us, atomically: one that does not parse
/// was changed.
fn read_record(dir: &Path, path: &Path) -> Result<Record> {
    access::check_file(dir, path, false)?;
    let bytes = read_regular_capped(path, RECORD_MAX, "the trust record")?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::untrusted(
            path.display().to_string(),
            format!(
                "the record of applied rotations is empty or damaged ({e}); only owui-agent writes it, atomically (tampering?)"
            ),
        )
    })
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
    let body = serde_json::to_vec_pretty(&stmt)
        .map_err(|e| Error::internal("serialising the statement", e.to_string()))?;
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

    /// An image trust store holding `keys`, and where the node state goes.
    struct Node {
        _tmp: tempfile::TempDir,
        image: PathBuf,
        state: PathBuf,
        work: PathBuf,
    }

    fn node(keys: &[&SecretKey]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("etc/owui/trust");
        fs::create_dir_all(&image).unwrap();
        for k in keys {
            let public = k.public();
            fs::write(
                image.join(format!("{}.pub", public.id)),
                public.to_file_string(),
            )
            .unwrap();
        }
        Node {
            state: tmp.path().join("var/lib/owui/trust"),
            work: tmp.path().to_path_buf(),
            image,
            _tmp: tmp,
        }
    }

    impl Node {
        fn load(&self) -> Result<TrustStore> {
            TrustStore::load(&self.image, &self.state)
        }

        fn statement(
            &self,
            name: &str,
            by: &SecretKey,
            seq: u64,
            add: &[&SecretKey],
            revoke: &[&SecretKey],
        ) -> PathBuf {
            let out = self.work.join(name);
            let add: Vec<_> = add.iter().map(|k| k.public()).collect();
            let revoke: Vec<_> = revoke.iter().map(|k| k.id).collect();
            write_rotation(by, seq, &add, &revoke, &out).unwrap();
            out
        }

        /// Statement 1, signed by `a`, adds `b`; statement 2, signed by
        /// `b`, revokes `a`.
        fn hand_over(&self, a: &SecretKey, b: &SecretKey) -> [PathBuf; 2] {
            [
                self.statement("r1.json", a, 1, &[b], &[]),
                self.statement("r2.json", b, 2, &[], &[a]),
            ]
        }
    }

    #[test]
    fn rotation_adds_revokes_and_refuses_replay() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let n = node(&[&a]);
        let mut store = n.load().unwrap();
        let by_a = a.sign(b"m", "c");
        store.verify(b"m", &by_a, "m").unwrap();
        let by_b = b.sign(b"m", "c");
        let err = store.verify(b"m", &by_b, "m").unwrap_err().to_string();
        assert!(err.contains("not in the trust store"), "{err}");

        let image_before = fs::read_dir(&n.image).unwrap().count();
        let stmt = n.statement("rot1.json", &a, 1, &[&b], &[&a]);
        store.apply_rotation(&stmt).unwrap();
        let store = n.load().unwrap();
        store.verify(b"m", &by_b, "m").unwrap();
        let err = store.verify(b"m", &by_a, "m").unwrap_err().to_string();
        assert!(err.contains("revoked (rotation 1)"), "{err}");
        // The image's store is the floor: never written.
        assert_eq!(fs::read_dir(&n.image).unwrap().count(), image_before);
        let layers: Vec<_> = store
            .keys()
            .iter()
            .map(|k| (k.key.id, k.added_by, k.revoked_by))
            .collect();
        assert_eq!(layers, [(a.id, None, Some(1)), (b.id, Some(1), None)]);

        // Replaying the statement is refused (its signer is revoked now); so
        // is an old sequence and one adding a revoked key back.
        let mut store = n.load().unwrap();
        assert_eq!(store.apply_rotation(&stmt).unwrap_err().exit_code(), 4);
        let stale = n.statement("rot2.json", &b, 1, &[], &[]);
        assert_eq!(store.apply_rotation(&stale).unwrap_err().exit_code(), 5);
        let back = n.statement("rot3.json", &b, 2, &[&a], &[]);
        assert_eq!(store.apply_rotation(&back).unwrap_err().exit_code(), 5);
        // Nor may the last key be revoked.
        let last = n.statement("rot4.json", &b, 3, &[], &[&b]);
        let err = store.apply_rotation(&last).unwrap_err().to_string();
        assert!(err.contains("no trusted key"), "{err}");
        assert_eq!(n.load().unwrap().rotation_sequence(), 1);
    }

    #[test]
    fn a_statement_by_an_untrusted_key_adds_nothing() {
        let (a, evil) = (SecretKey::generate(), SecretKey::generate());
        let n = node(&[&a]);
        let mut store = n.load().unwrap();
        let stmt = n.statement("evil.json", &evil, 1, &[&evil], &[]);
        let err = store.add_rotation(&stmt).unwrap_err();
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(!n.state.exists());
    }

    #[test]
    fn record_behind_the_statements_replays() {
        // A crash after a statement was kept and before the record followed.
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let n = node(&[&a]);
        let mut store = n.load().unwrap();
        let [r1, r2] = n.hand_over(&a, &b);
        store.apply_rotation(&r1).unwrap();
        let record = n.state.join(RECORD);
        let one = fs::read(&record).unwrap();
        store.apply_rotation(&r2).unwrap();
        fs::write(&record, one).unwrap();
        let store = n.load().unwrap();
        assert_eq!(store.rotation_sequence(), 2);
        assert_eq!(store.revoked().collect::<Vec<_>>(), [&a.id.to_string()]);
    }

    #[test]
    fn record_ahead_of_the_statements_is_tampering() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let n = node(&[&a]);
        let mut store = n.load().unwrap();
        for r in n.hand_over(&a, &b) {
            store.apply_rotation(&r).unwrap();
        }
        // Statement 2 removed: the revocation of a would be forgotten.
        fs::remove_file(n.state.join(kept_name(2))).unwrap();
        let err = n.load().err().unwrap();
        assert_eq!(err.exit_code(), 4, "{err}");
        assert!(err.to_string().contains("went back from 2 to 1"), "{err}");
    }

    #[test]
    fn keys_may_link_only_within_the_trust_dir() {
        let a = SecretKey::generate();
        let n = node(&[&a]);
        let name = format!("{}.pub", a.id);
        std::os::unix::fs::symlink(&name, n.image.join("current.pub")).unwrap();
        assert_eq!(n.load().unwrap().trusted().count(), 1);
        let outside = n.work.join("outside.pub");
        fs::copy(n.image.join(&name), &outside).unwrap();
        std::os::unix::fs::symlink(&outside, n.image.join("other.pub")).unwrap();
        let err = n.load().err().unwrap();
        assert_eq!(err.exit_code(), 4);
        assert!(
            err.to_string().contains("outside the trust directory"),
            "{err}"
        );
    }

    #[test]
    fn a_key_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let a = SecretKey::generate();
        let n = node(&[&a]);
        let pub_file = n.image.join(format!("{}.pub", a.id));
        fs::set_permissions(&pub_file, fs::Permissions::from_mode(0o664)).unwrap();
        let err = n.load().err().unwrap().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
    }
}
