//! SHA-256 digests: the one address every piece of content has (OCI, Ollama
//! and Hugging Face use the same), and readers/writers that hash as bytes pass.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }

    pub fn of(data: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(data).into())
    }

    /// Parses a bare 64-character lowercase hex string.
    pub fn from_hex(hex_str: &str) -> Result<Self> {
        if hex_str.len() != 64
            || !hex_str
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(Error::invalid(
                format!("digest {hex_str:?}"),
                "expected 64 lowercase hex characters",
            ));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_str, &mut out)
            .map_err(|e| Error::invalid(format!("digest {hex_str:?}"), e.to_string()))?;
        Ok(Sha256Digest(out))
    }

    /// Parses the `sha256:<hex>` form used in manifests.
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix("sha256:") {
            Some(hex_str) => Self::from_hex(hex_str),
            None => Err(Error::invalid(
                format!("digest {s:?}"),
                "expected \"sha256:\" followed by 64 hex characters",
            )),
        }
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl std::str::FromStr for Sha256Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde for a digest written as bare hex, without `sha256:` (as Debian's
/// package indices and our driver-set files write it).
pub mod bare_hex {
    use super::Sha256Digest;

    pub fn serialize<S: serde::Serializer>(d: &Sha256Digest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&d.hex())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Sha256Digest, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Sha256Digest::from_hex(&s).map_err(|e| serde::de::Error::custom(format!("sha256: {e}")))
    }
}

/// Passes bytes through to `inner` while hashing and counting them.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn finish(self) -> (W, Sha256Digest, u64) {
        (
            self.inner,
            Sha256Digest(self.hasher.finalize().into()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes everything read from `reader`, returning the digest and byte count.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(Sha256Digest, u64)> {
    let mut sink = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut sink)?;
    let (_, digest, n) = sink.finish();
    Ok((digest, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse(&d.to_string()).unwrap(), d);
        let (h, n) = hash_reader(&b"abc"[..]).unwrap();
        assert_eq!((h, n), (d, 3));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "sha256:",
            "sha256:ABC",
            "md5:00",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(Sha256Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
