//! Ed25519 keys and signatures in minisign's file formats, so an auditor can
//! check anything we sign with the stock `minisign -V` tool, offline.
//!
//! Signatures are minisign's pre-hashed kind (`ED`): Ed25519 over the
//! BLAKE2b-512 of the message, plus a global signature over the signature
//! and the trusted comment. Secret keys are written unencrypted (kdf "\0\0")
//! and protected by file mode 0600, so unattended builds can sign.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest as _};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::{Error, Result};
use crate::fsutil::read_regular_capped;

const SIG_ALG_PREHASHED: &[u8; 2] = b"ED";
const KEY_ALG: &[u8; 2] = b"Ed";
const CHECKSUM_ALG: &[u8; 2] = b"B2";
/// A signature file is four short lines; anything much longer is not one.
pub const SIGNATURE_MAX: u64 = 4096;
/// Key files are two or three short lines.
const KEY_FILE_MAX: u64 = 4096;

/// Reads a key or signature file as text: a regular file of at most `cap`
/// bytes, so a FIFO or a device given as a key is refused at once.
fn read_text(path: &Path, cap: u64, what: &str) -> Result<String> {
    String::from_utf8(read_regular_capped(path, cap, what)?)
        .map_err(|_| Error::invalid(path.display().to_string(), format!("{what} is not UTF-8")))
}

/// Reads a `.minisig` file's text (parse it with [`SignatureFile::parse`]).
pub fn read_signature(path: &Path) -> Result<String> {
    read_text(path, SIGNATURE_MAX, "a signature")
}

/// The 8-byte key number minisign puts in keys and signatures.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// Parses the form minisign prints (16 hex digits of the little-endian number).
    pub fn parse(s: &str) -> Result<Self> {
        let n = u64::from_str_radix(s, 16)
            .ok()
            .filter(|_| s.len() == 16)
            .ok_or_else(|| Error::invalid(format!("key id {s:?}"), "expected 16 hex digits"))?;
        Ok(KeyId(n.to_le_bytes()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    key: VerifyingKey,
}

pub struct SecretKey {
    pub id: KeyId,
    key: SigningKey,
}

/// A parsed `.minisig` file.
#[derive(Debug, Clone)]
pub struct SignatureFile {
    pub key_id: KeyId,
    signature: Signature,
    pub trusted_comment: String,
    global_signature: Signature,
}

fn b64_line(what: &str, line: Option<&str>) -> Result<Vec<u8>> {
    let line = line.ok_or_else(|| Error::invalid(what, "file ends early"))?;
    B64.decode(line.trim_end())
        .map_err(|e| Error::invalid(what, format!("bad base64: {e}")))
}

fn comment_line<'a>(what: &str, line: Option<&'a str>, prefix: &str) -> Result<&'a str> {
    line.and_then(|l| l.strip_prefix(prefix))
        .ok_or_else(|| Error::invalid(what, format!("expected a line starting {prefix:?}")))
}

fn blake2b512(data: &[u8]) -> [u8; 64] {
    Blake2b512::digest(data).into()
}

impl SecretKey {
    pub fn generate() -> Self {
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        SecretKey {
            id: KeyId(id),
            key: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    fn checksum(&self, keypair: &[u8; 64]) -> [u8; 32] {
        let mut h = Blake2b::<U32>::new();
        h.update(KEY_ALG);
        h.update(self.id.0);
        h.update(keypair);
        h.finalize().into()
    }

    /// The unencrypted minisign secret key file.
    pub fn to_file_string(&self) -> String {
        let keypair = self.key.to_keypair_bytes();
        let mut raw = Vec::with_capacity(158);
        raw.extend_from_slice(KEY_ALG);
        raw.extend_from_slice(&[0, 0]); // no key derivation: not encrypted
        raw.extend_from_slice(CHECKSUM_ALG);
        raw.extend_from_slice(&[0u8; 32 + 8 + 8]); // salt, opslimit, memlimit unused
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(&keypair);
        raw.extend_from_slice(&self.checksum(&keypair));
        format!(
            "untrusted comment: owui-appliance secret key {}\n{}\n",
            self.id,
            B64.encode(raw)
        )
    }

    /// Reads a secret key file (see [`read_text`]); the caller checks who
    /// may read it.
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = read_text(path, KEY_FILE_MAX, "a secret key")?;
        Self::from_file_str(&path.display().to_string(), &text)
    }

    pub fn from_file_str(what: &str, text: &str) -> Result<Self> {
        let mut lines = text.lines();
        comment_line(what, lines.next(), "untrusted comment:")?;
        let raw = b64_line(what, lines.next())?;
        if raw.len() != 158 || &raw[0..2] != KEY_ALG || &raw[4..6] != CHECKSUM_ALG {
            return Err(Error::invalid(what, "not a minisign Ed25519 secret key"));
        }
        if raw[2..4] != [0, 0] {
            return Err(Error::invalid(
                what,
                "the key is password-protected; owui-builder needs an unencrypted key (minisign -G -W)",
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[54..62]);
        let mut keypair = [0u8; 64];
        keypair.copy_from_slice(&raw[62..126]);
        let key = SigningKey::from_keypair_bytes(&keypair)
            .map_err(|e| Error::invalid(what, format!("inconsistent key pair: {e}")))?;
        let sk = SecretKey { id: KeyId(id), key };
        if sk.checksum(&keypair)[..] != raw[126..158] {
            return Err(Error::invalid(
                what,
                "checksum mismatch: the key file is damaged",
            ));
        }
        Ok(sk)
    }

    /// Signs `message`; returns the `.minisig` file text.
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> String {
        let signature = self.key.sign(&blake2b512(message));
        let mut global = signature.to_bytes().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_signature = self.key.sign(&global);
        let mut sig_raw = Vec::with_capacity(74);
        sig_raw.extend_from_slice(SIG_ALG_PREHASHED);
        sig_raw.extend_from_slice(&self.id.0);
        sig_raw.extend_from_slice(&signature.to_bytes());
        format!(
            "untrusted comment: signature from owui-appliance key {}\n{}\ntrusted comment: {}\n{}\n",
            self.id,
            B64.encode(sig_raw),
            trusted_comment,
            B64.encode(global_signature.to_bytes())
        )
    }
}

impl PublicKey {
    /// The minisign public key file.
    pub fn to_file_string(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    /// The one-line base64 form (`minisign -P`).
    pub fn to_base64(&self) -> String {
        let mut raw = Vec::with_capacity(42);
        raw.extend_from_slice(KEY_ALG);
        raw.extend_from_slice(&self.id.0);
        raw.extend_from_slice(self.key.as_bytes());
        B64.encode(raw)
    }

    pub fn from_base64(what: &str, line: &str) -> Result<Self> {
        let raw = b64_line(what, Some(line))?;
        if raw.len() != 42 || &raw[0..2] != KEY_ALG {
            return Err(Error::invalid(what, "not a minisign Ed25519 public key"));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&raw[2..10]);
        let mut pk = [0u8; 32];
        pk.copy_from_slice(&raw[10..42]);
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|e| Error::invalid(what, format!("not a valid Ed25519 point: {e}")))?;
        Ok(PublicKey { id: KeyId(id), key })
    }

    /// Reads a public key file (see [`read_text`]).
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = read_text(path, KEY_FILE_MAX, "a public key")?;
        Self::from_file_str(&path.display().to_string(), &text)
    }

    /// Parses a public key file (comment line, then the base64 line).
    pub fn from_file_str(what: &str, text: &str) -> Result<Self> {
        let mut lines = text.lines();
        comment_line(what, lines.next(), "untrusted comment:")?;
        let line = lines
            .next()
            .ok_or_else(|| Error::invalid(what, "file ends early"))?;
        Self::from_base64(what, line)
    }

    /// Checks both minisign signatures over `message`.
    pub fn verify(&self, message: &[u8], sig: &SignatureFile) -> Result<()> {
        if sig.key_id != self.id {
            return Err(Error::untrusted(
                "signature",
                format!("made by key {}, not {}", sig.key_id, self.id),
            ));
        }
        self.key
            .verify_strict(&blake2b512(message), &sig.signature)
            .map_err(|_| Error::untrusted("signature", "does not match the signed content"))?;
        let mut global = sig.signature.to_bytes().to_vec();
        global.extend_from_slice(sig.trusted_comment.as_bytes());
        self.key
            .verify_strict(&global, &sig.global_signature)
            .map_err(|_| Error::untrusted("signature", "the trusted comment was altered"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl SignatureFile {
    pub fn parse(what: &str, text: &str) -> Result<Self> {
        let mut lines = text.lines();
        comment_line(what, lines.next(), "untrusted comment:")?;
        let raw = b64_line(what, lines.next())?;
        if raw.len() != 74 {
            return Err(Error::invalid(what, "signature line has the wrong length"));
        }
        if &raw[0..2] != SIG_ALG_PREHASHED {
            return Err(Error::invalid(
                what,
                "not a pre-hashed (ED) minisign signature; legacy signatures are not accepted",
            ));
        }
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&raw[2..10]);
        let signature = Signature::from_slice(&raw[10..74])
            .map_err(|e| Error::invalid(what, format!("bad signature bytes: {e}")))?;
        let trusted_comment = comment_line(what, lines.next(), "trusted comment: ")?.to_string();
        let global = b64_line(what, lines.next())?;
        let global_signature = Signature::from_slice(&global)
            .map_err(|e| Error::invalid(what, format!("bad global signature: {e}")))?;
        Ok(SignatureFile {
            key_id: KeyId(key_id),
            signature,
            trusted_comment,
            global_signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_round_trip_files() {
        let sk = SecretKey::generate();
        let sk2 = SecretKey::from_file_str("k", &sk.to_file_string()).unwrap();
        let pk = PublicKey::from_file_str("p", &sk.public().to_file_string()).unwrap();
        assert_eq!(pk, sk2.public());
        let text = sk2.sign(b"hello", "owui test");
        let sig = SignatureFile::parse("s", &text).unwrap();
        pk.verify(b"hello", &sig).unwrap();
        assert_eq!(pk.verify(b"hellp", &sig).unwrap_err().exit_code(), 4);
        let mut forged = sig.clone();
        forged.trusted_comment.push('!');
        assert!(pk.verify(b"hello", &forged).is_err());
        let other = SecretKey::generate().public();
        assert!(other.verify(b"hello", &sig).is_err());
        assert_eq!(KeyId::parse(&pk.id.to_string()).unwrap(), pk.id);
    }

    #[test]
    fn damaged_key_files_are_rejected() {
        let sk = SecretKey::generate();
        let text = sk.to_file_string();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut raw = B64.decode(&lines[1]).unwrap();
        raw[100] ^= 1;
        lines[1] = B64.encode(raw);
        let err = SecretKey::from_file_str("k", &lines.join("\n"))
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 3);
        assert!(SignatureFile::parse("s", "garbage").is_err());
    }
}
