//! An operator's SSH public key as a node seed carries it
//! (`ssh_authorized_keys`), one OpenSSH `authorized_keys` line: `TYPE
//! BASE64 [COMMENT]`. The line ends up in sshd's authorized keys file for
//! `owui-admin`, so it is checked where the seed is parsed, and only an
//! [`SshPublicKey`] that passed the check exists:
//!
//! - a known type: `ssh-ed25519`, `ecdsa-sha2-nistp256/384/521`, their
//!   FIDO (`sk-`) variants, or `ssh-rsa` of at least [`RSA_MIN_BITS`];
//! - no options prefix (`from=`, `command=`, `no-pty`, …): the line must
//!   start with the type, so a seed cannot widen what a key may do;
//! - base64 that decodes to a key blob whose own type names the prefix's,
//!   with the fields that type has and nothing after them;
//! - no control character anywhere (a newline would add a line, a key, of
//!   its own to the file).

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::Serialize;

use crate::error::{Error, Result};

/// The weakest RSA modulus taken (NIST SP 800-57: 3072 bits past 2030).
pub const RSA_MIN_BITS: usize = 3072;
/// Longest line taken: an RSA key of 16384 bits is about 2.8 KB.
const LINE_MAX: usize = 4096;
/// Longest part of a key shown back in an error.
const SHOWN_MAX: usize = 40;

/// The key types taken, and the fields of each one's blob after its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Ed25519,
    Ecdsa(&'static str),
    SkEd25519,
    SkEcdsa,
    Rsa,
}

const TYPES: &[(&str, KeyType)] = &[
    ("ssh-ed25519", KeyType::Ed25519),
    ("ecdsa-sha2-nistp256", KeyType::Ecdsa("nistp256")),
    ("ecdsa-sha2-nistp384", KeyType::Ecdsa("nistp384")),
    ("ecdsa-sha2-nistp521", KeyType::Ecdsa("nistp521")),
    ("sk-ssh-ed25519@openssh.com", KeyType::SkEd25519),
    ("sk-ecdsa-sha2-nistp256@openssh.com", KeyType::SkEcdsa),
    ("ssh-rsa", KeyType::Rsa),
];

/// One checked `authorized_keys` line, as `TYPE BASE64` or `TYPE BASE64
/// COMMENT` with single spaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SshPublicKey(String);

impl SshPublicKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The start of `line` and its comment, for an error: enough to tell
/// which key it is without printing kilobytes; `{:?}` escapes control
/// characters.
fn shown(line: &str) -> String {
    let head: String = line.chars().take(SHOWN_MAX).collect();
    if head.len() == line.len() {
        return format!("{line:?}");
    }
    let comment = line
        .split_whitespace()
        .nth(2)
        .map(|c| format!(" (comment {c:?})"))
        .unwrap_or_default();
    format!("{head:?}…{comment}")
}

/// A reader of the SSH wire format's fields (RFC 4251 section 5).
struct Blob<'a>(&'a [u8]);

impl<'a> Blob<'a> {
    fn string(&mut self, field: &str) -> std::result::Result<&'a [u8], String> {
        let missing = || format!("the key data ends before its {field}");
        let len_bytes: [u8; 4] = self
            .0
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(missing)?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let value = self.0.get(4..4 + len).ok_or_else(missing)?;
        self.0 = &self.0[4 + len..];
        Ok(value)
    }

    fn fixed(&mut self, field: &str, len: usize) -> std::result::Result<(), String> {
        let got = self.string(field)?.len();
        if got != len {
            return Err(format!("its {field} is {got} bytes, not {len}"));
        }
        Ok(())
    }

    fn curve(&mut self, curve: &str) -> std::result::Result<(), String> {
        let got = self.string("curve name")?;
        if got != curve.as_bytes() {
            return Err(format!(
                "its curve is {:?}, not {curve}",
                String::from_utf8_lossy(got)
            ));
        }
        let point = match curve {
            "nistp256" => 65,
            "nistp384" => 97,
            _ => 133,
        };
        self.fixed("public point", point)
    }

    /// Bits of an unsigned mpint (leading zero bytes do not count).
    fn mpint_bits(&mut self, field: &str) -> std::result::Result<usize, String> {
        let value = self.string(field)?;
        let Some(first) = value.iter().position(|&b| b != 0) else {
            return Ok(0);
        };
        Ok((value.len() - first) * 8 - value[first].leading_zeros() as usize)
    }
}

/// Checks a decoded key blob against its type.
fn check_blob(name: &str, kind: KeyType, blob: &[u8]) -> std::result::Result<(), String> {
    let mut b = Blob(blob);
    let inner = b.string("type name")?;
    if inner != name.as_bytes() {
        return Err(format!(
            "the key data is a {:?} key, but the line says {name}",
            String::from_utf8_lossy(inner)
        ));
    }
    match kind {
        KeyType::Ed25519 => b.fixed("public key", 32)?,
        KeyType::Ecdsa(curve) => b.curve(curve)?,
        KeyType::SkEd25519 => {
            b.fixed("public key", 32)?;
            b.string("application")?;
        }
        KeyType::SkEcdsa => {
            b.curve("nistp256")?;
            b.string("application")?;
        }
        KeyType::Rsa => {
            b.mpint_bits("exponent")?;
            let bits = b.mpint_bits("modulus")?;
            if bits < RSA_MIN_BITS {
                return Err(format!(
                    "an RSA key of {bits} bits; at least {RSA_MIN_BITS} are required (ssh-keygen -t ed25519 makes a better key)"
                ));
            }
        }
    }
    if !b.0.is_empty() {
        return Err(format!(
            "{} bytes follow the key data's last field",
            b.0.len()
        ));
    }
    Ok(())
}

/// Why `line` is not a key we take, or the normalised line.
fn check(line: &str) -> std::result::Result<String, String> {
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return Err(format!(
            "holds the control character {c:?}: one key per entry, on one line"
        ));
    }
    if line.len() > LINE_MAX {
        return Err(format!(
            "is {} bytes long, over the {LINE_MAX} a key line may have",
            line.len()
        ));
    }
    let mut fields = line.split(' ').filter(|f| !f.is_empty());
    let first = fields.next().ok_or("is empty")?;
    let known = |name: &str| TYPES.iter().find(|(n, _)| *n == name).copied();
    let Some((name, kind)) = known(first) else {
        // A key type further on: what stands before it are options.
        let options = first.contains('=')
            || first.contains(',')
            || line.split(' ').skip(1).any(|f| known(f).is_some());
        let why = if options {
            "is an options prefix (from=, command=, no-pty, …), which a seed may not give"
        } else {
            "is not a key type taken here"
        };
        let types = TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        return Err(format!(
            "starts with {first:?}, which {why}; the line must start with one of {types}"
        ));
    };
    let data = fields.next().ok_or("has no key data after its type")?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("its key data is not base64: {e}"))?;
    check_blob(name, kind, &blob)?;
    let comment: Vec<&str> = fields.collect();
    Ok(if comment.is_empty() {
        format!("{name} {data}")
    } else {
        format!("{name} {data} {}", comment.join(" "))
    })
}

impl FromStr for SshPublicKey {
    type Err = Error;

    fn from_str(line: &str) -> Result<Self> {
        check(line.trim_matches(' '))
            .map(SshPublicKey)
            .map_err(|why| Error::invalid(format!("SSH public key {}", shown(line)), why))
    }
}

/// The `authorized_keys` file for `keys`: one line each, nothing else.
pub fn authorized_keys(keys: &[SshPublicKey]) -> String {
    keys.iter().map(|k| format!("{k}\n")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    fn b64(blob: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(blob)
    }

    /// The SSH wire format of `fields`, each as a length-prefixed string.
    pub(crate) fn wire(fields: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }

    /// An ed25519 public key line (any 32 bytes make one, for parsing).
    pub(crate) fn ed25519(comment: &str) -> String {
        format!(
            "ssh-ed25519 {} {comment}",
            b64(&wire(&[b"ssh-ed25519", &[7u8; 32]]))
        )
    }

    fn rsa(bits: usize) -> String {
        let mut n = vec![0u8; 1 + bits / 8];
        n[1] = 0x80; // top bit set: exactly `bits` bits
        format!(
            "ssh-rsa {} op@site",
            b64(&wire(&[b"ssh-rsa", &[1, 0, 1], &n]))
        )
    }

    fn ecdsa(curve: &str, point: usize) -> String {
        let name = format!("ecdsa-sha2-{curve}");
        format!(
            "{name} {}",
            b64(&wire(&[
                name.as_bytes(),
                curve.as_bytes(),
                &vec![4u8; point]
            ]))
        )
    }

    #[test]
    fn keys_of_each_type_taken_are_accepted() {
        let sk_ed = format!(
            "sk-ssh-ed25519@openssh.com {} yubikey",
            b64(&wire(&[b"sk-ssh-ed25519@openssh.com", &[1u8; 32], b"ssh:"]))
        );
        let sk_ec = format!(
            "sk-ecdsa-sha2-nistp256@openssh.com {}",
            b64(&wire(&[
                b"sk-ecdsa-sha2-nistp256@openssh.com",
                b"nistp256",
                &[4u8; 65],
                b"ssh:"
            ]))
        );
        for line in [
            ed25519("alice@laptop"),
            ecdsa("nistp256", 65),
            ecdsa("nistp384", 97),
            ecdsa("nistp521", 133),
            rsa(3072),
            rsa(4096),
            sk_ed,
            sk_ec,
        ] {
            let key: SshPublicKey = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(key.as_str(), line);
        }
        // Extra spaces are normalised; a comment may have spaces.
        let spaced = ed25519("ops team key").replacen(' ', "   ", 1);
        assert_eq!(
            spaced.parse::<SshPublicKey>().unwrap().as_str(),
            ed25519("ops team key")
        );
        assert_eq!(
            authorized_keys(&[ed25519("a").parse().unwrap(), rsa(3072).parse().unwrap()]),
            format!("{}\n{}\n", ed25519("a"), rsa(3072))
        );
    }

    mod refused {
        use super::*;

        refused_inputs! {
            SshPublicKey::from_str;
            bad_base64: "ssh-ed25519 AAAA!!!! op" => "not base64";
            mismatched_type: ed25519("op").replacen("ssh-ed25519", "ecdsa-sha2-nistp256", 1) => "is a \"ssh-ed25519\" key, but the line says ecdsa-sha2-nistp256";
            options_prefix: format!("command=\"/bin/sh\" {}", ed25519("op")) => "options prefix";
            from_option: format!("from=\"10.0.0.0/8\",no-pty {}", ed25519("op")) => "options prefix";
            short_rsa: rsa(2048) => "2048 bits";
            newline_adds_a_key: format!("{}\n{}", ed25519("a"), ed25519("b")) => "'\\n'";
            carriage_return: format!("{}\r", ed25519("a")) => "'\\r'";
            escape_in_comment: ed25519("a\u{1b}[2J") => "'\\u{1b}'";
            unknown_type: ed25519("op").replacen("ssh-ed25519", "ssh-dss", 1) => "not a key type";
            empty: "" => "is empty";
            no_key_data: "ssh-ed25519" => "no key data";
            short_ed25519: format!("ssh-ed25519 {}", b64(&wire(&[b"ssh-ed25519", &[1u8; 31]]))) => "31 bytes, not 32";
            truncated_blob: format!("ssh-ed25519 {}", b64(&wire(&[b"ssh-ed25519"]))) => "ends before its public key";
            trailing_bytes: format!("ssh-ed25519 {}", b64(&[wire(&[b"ssh-ed25519", &[1u8; 32]]), vec![0]].concat())) => "1 bytes follow";
            wrong_curve: ecdsa("nistp384", 97).replacen("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256", 1) => "ecdsa-sha2-nistp384";
            too_long: format!("{} {}", ed25519("op"), "x".repeat(LINE_MAX)) => "over the 4096";
        }
    }
}
