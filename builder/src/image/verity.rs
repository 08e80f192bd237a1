//! The read-only root: the tree packed as erofs, then a dm-verity hash tree
//! over it. Both tools are given every value that would otherwise be random
//! or the current time, so the same tree gives the same bytes.

use std::fs;
use std::path::Path;

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};

/// What the initrd needs to open the root, and what the manifest records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Verity {
    /// Hex; goes on the kernel command line inside the UKI.
    pub root_hash: String,
    pub salt: String,
    /// GPT partition UUIDs, the halves of the root hash.
    pub data_uuid: String,
    pub hash_uuid: String,
}

/// 16 bytes as the usual UUID string, in order and unchanged.
fn uuid_string(b: &[u8]) -> String {
    let digits = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &digits[0..8],
        &digits[8..12],
        &digits[12..16],
        &digits[16..20],
        &digits[20..32]
    )
}

/// A UUID string from 16 bytes of a hash (version 4 and variant bits set, as
/// systemd-repart does for UUIDs it derives): filesystem, verity superblock,
/// disk, and the partitions that are not the root's.
pub fn uuid_from(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    for (dst, src) in b.iter_mut().zip(bytes) {
        *dst = *src;
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid_string(&b)
}

/// The partition UUIDs a root hash implies, as the Discoverable Partitions
/// Specification has them: its first and last 128 bits, unmodified (no
/// version bits: systemd-dissect and systemd-gpt-auto-generator compare
/// the raw halves).
pub fn partition_uuids(root_hash: &str) -> Result<(String, String)> {
    let bytes = hex::decode(root_hash)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            Error::invalid(
                "verity root hash",
                format!("{root_hash:?} is not 64 hex digits"),
            )
        })?;
    Ok((uuid_string(&bytes[..16]), uuid_string(&bytes[16..])))
}

/// `tree` → `erofs` and `hash` files; `seed` (the stage's cache key) fixes the
/// filesystem UUID and the verity salt.
pub fn make_root(
    tree: &Path,
    seed: &[u8; 32],
    epoch: u64,
    erofs: &Path,
    hash: &Path,
) -> Result<Verity> {
    let fs_uuid = uuid_from(&seed[..16]);
    let verity_uuid = uuid_from(&seed[16..]);
    let salt = hex::encode(seed);
    Cmd::new("mkfs.erofs")
        .arg("-zlz4hc")
        .arg(format!("-T{epoch}"))
        .arg("--ignore-mtime")
        .arg(format!("-U{fs_uuid}"))
        .arg(erofs)
        .arg(tree)
        .output()?;
    let hash_file = hash.with_extension("roothash");
    Cmd::new("veritysetup")
        .arg("format")
        .arg(erofs)
        .arg(hash)
        .arg(format!("--salt={salt}"))
        .arg(format!("--uuid={verity_uuid}"))
        .arg(format!("--root-hash-file={}", hash_file.display()))
        .output()?;
    let root_hash = fs::read_to_string(&hash_file)
        .at("reading", &hash_file)?
        .trim()
        .to_string();
    fs::remove_file(&hash_file).at("removing", &hash_file)?;
    let (data_uuid, hash_uuid) = partition_uuids(&root_hash)?;
    Ok(Verity {
        root_hash,
        salt,
        data_uuid,
        hash_uuid,
    })
}

/// Checks a data/hash pair against a root hash with veritysetup's
/// user-space verifier (no device-mapper needed).
pub fn check(data: &Path, hash: &Path, root_hash: &str) -> Result<()> {
    Cmd::new("veritysetup")
        .arg("verify")
        .arg(data)
        .arg(hash)
        .arg(root_hash)
        .output()
        .map(|_| ())
        .map_err(|e| {
            Error::untrusted(
                data.display().to_string(),
                format!("the verity hash tree does not match: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_uuids_are_the_halves_of_the_root_hash() {
        let h = "e1ca6ba18c247b7a76774a01a4af1f8fc95ef95969f8ac73fa0fa916b8b5b805";
        let (d, v) = partition_uuids(h).unwrap();
        // The raw halves: this hash's third and fourth groups are not a
        // version-4 UUID's, and must stay as they are.
        assert_eq!(d, "e1ca6ba1-8c24-7b7a-7677-4a01a4af1f8f");
        assert_eq!(v, "c95ef959-69f8-ac73-fa0f-a916b8b5b805");
        assert_eq!(
            uuid_from(&hex::decode(&h[..32]).unwrap()),
            "e1ca6ba1-8c24-4b7a-b677-4a01a4af1f8f"
        );
        assert!(partition_uuids("abc").is_err());
        assert!(partition_uuids(&"zz".repeat(32)).is_err());
    }
}
