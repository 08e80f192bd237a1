//! The GGUF header reader: what Ollama's config needs from a model file.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// What Ollama's config needs from a GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GgufInfo {
    pub(super) architecture: String,
    /// `general.file_type` when stored as uint32, the only type Ollama reads.
    pub(super) file_type: Option<u32>,
    /// Sum of the tensors' element counts, as Ollama computes it.
    pub(super) parameter_count: u64,
}

pub(super) const GGUF_TYPE_UINT8: u32 = 0;
const GGUF_TYPE_INT8: u32 = 1;
const GGUF_TYPE_UINT16: u32 = 2;
const GGUF_TYPE_INT16: u32 = 3;
pub(super) const GGUF_TYPE_UINT32: u32 = 4;
const GGUF_TYPE_INT32: u32 = 5;
const GGUF_TYPE_FLOAT32: u32 = 6;
const GGUF_TYPE_BOOL: u32 = 7;
pub(super) const GGUF_TYPE_STRING: u32 = 8;
pub(super) const GGUF_TYPE_ARRAY: u32 = 9;
const GGUF_TYPE_UINT64: u32 = 10;
const GGUF_TYPE_INT64: u32 = 11;
const GGUF_TYPE_FLOAT64: u32 = 12;

/// GGUF keys are at most 65535 bytes by the format's own rule.
const GGUF_MAX_KEY: u64 = 65_535;
/// `general.architecture` is a short identifier ("llama", "qwen2").
const GGUF_MAX_ARCH: u64 = 256;
/// Nested arrays are legal but real files use none; bounds recursion.
const GGUF_MAX_ARRAY_DEPTH: u32 = 4;
/// Ollama refuses tensors with more dimensions (fs/gguf MaxTensorDims).
const GGUF_MAX_TENSOR_DIMS: u32 = 4;

/// Reads only the GGUF header (key-values and tensor infos). Every length
/// read from the file is checked against the bytes left before it is used,
/// so a corrupt file costs at most a pass over its header.
struct GgufReader<R> {
    inner: BufReader<R>,
    pos: u64,
    len: u64,
    path: PathBuf,
}

impl<R: Read + Seek> GgufReader<R> {
    fn bad(&self, detail: impl std::fmt::Display) -> Error {
        Error::invalid(
            self.path.display().to_string(),
            format!("not a usable GGUF model: {detail}"),
        )
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &str) -> Result<()> {
        if n > self.remaining() {
            return Err(self.bad(format!("truncated in {what}")));
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).at("reading", &self.path)?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.need(n, what)?;
        let step = i64::try_from(n).map_err(|_| self.bad(format!("{what} too long")))?;
        self.inner.seek_relative(step).at("reading", &self.path)?;
        self.pos += n;
        Ok(())
    }

    /// A length-prefixed string, read into memory only up to `max` bytes.
    fn string(&mut self, max: u64, what: &str) -> Result<Vec<u8>> {
        let n = self.u64(what)?;
        if n > max {
            return Err(self.bad(format!("{what} is {n} bytes, more than {max}")));
        }
        self.need(n, what)?;
        let mut buf = Vec::new();
        (&mut self.inner)
            .take(n)
            .read_to_end(&mut buf)
            .at("reading", &self.path)?;
        if buf.len() as u64 != n {
            return Err(self.bad(format!("truncated in {what}")));
        }
        self.pos += n;
        Ok(buf)
    }

    fn skip_string(&mut self, what: &str) -> Result<()> {
        let n = self.u64(what)?;
        self.skip(n, what)
    }

    fn fixed_size(kind: u32) -> Option<u64> {
        match kind {
            GGUF_TYPE_UINT8 | GGUF_TYPE_INT8 | GGUF_TYPE_BOOL => Some(1),
            GGUF_TYPE_UINT16 | GGUF_TYPE_INT16 => Some(2),
            GGUF_TYPE_UINT32 | GGUF_TYPE_INT32 | GGUF_TYPE_FLOAT32 => Some(4),
            GGUF_TYPE_UINT64 | GGUF_TYPE_INT64 | GGUF_TYPE_FLOAT64 => Some(8),
            _ => None,
        }
    }

    fn skip_value(&mut self, kind: u32, depth: u32, key: &str) -> Result<()> {
        if let Some(size) = Self::fixed_size(kind) {
            return self.skip(size, key);
        }
        match kind {
            GGUF_TYPE_STRING => self.skip_string(key),
            GGUF_TYPE_ARRAY => {
                if depth >= GGUF_MAX_ARRAY_DEPTH {
                    return Err(self.bad(format!("arrays nested too deep in {key:?}")));
                }
                let elem = self.u32(key)?;
                let count = self.u64(key)?;
                if let Some(size) = Self::fixed_size(elem) {
                    let total = count
                        .checked_mul(size)
                        .ok_or_else(|| self.bad(format!("array {key:?} too long")))?;
                    return self.skip(total, key);
                }
                // Each string or array element takes at least 8 bytes, which
                // bounds the loop by the file's size.
                if count > self.remaining() / 8 {
                    return Err(self.bad(format!("truncated in array {key:?}")));
                }
                for _ in 0..count {
                    self.skip_value(elem, depth + 1, key)?;
                }
                Ok(())
            }
            other => Err(self.bad(format!("unknown value type {other} for {key:?}"))),
        }
    }

    fn read_info(&mut self) -> Result<GgufInfo> {
        if self.len < 4 {
            return Err(self.bad("too short to be GGUF"));
        }
        let magic: [u8; 4] = self.bytes("magic")?;
        if &magic == b"FUGG" {
            return Err(self.bad("big-endian GGUF is not supported"));
        }
        if &magic != b"GGUF" {
            return Err(self.bad("no GGUF magic at the start"));
        }
        let version = self.u32("version")?;
        if version != 2 && version != 3 {
            return Err(self.bad(format!(
                "GGUF version {version} is not supported (2 and 3 are)"
            )));
        }
        let tensors = self.u64("tensor count")?;
        let kvs = self.u64("key-value count")?;
        // Smallest possible key-value: 8-byte length, 1-byte key, type, 1-byte
        // value; smallest tensor info: length, 1-byte name, dims, type, offset.
        if kvs > self.remaining() / 14 || tensors > self.remaining() / 25 {
            return Err(self.bad("counts larger than the file"));
        }

        let mut architecture = None;
        let mut file_type = None;
        for _ in 0..kvs {
            let key_bytes = self.string(GGUF_MAX_KEY, "key")?;
            let key = String::from_utf8_lossy(&key_bytes).into_owned();
            let kind = self.u32(&key)?;
            match (key.as_str(), kind) {
                ("general.architecture", GGUF_TYPE_STRING) => {
                    let v = self.string(GGUF_MAX_ARCH, &key)?;
                    let v = String::from_utf8(v)
                        .map_err(|_| self.bad("general.architecture is not UTF-8"))?;
                    architecture = Some(v);
                }
                ("general.file_type", GGUF_TYPE_UINT32) => {
                    file_type = Some(self.u32(&key)?);
                }
                _ => self.skip_value(kind, 0, &key)?,
            }
        }

        let mut parameter_count: u64 = 0;
        for _ in 0..tensors {
            self.skip_string("tensor name")?;
            let dims = self.u32("tensor dimensions")?;
            if dims > GGUF_MAX_TENSOR_DIMS {
                return Err(self.bad(format!(
                    "a tensor has {dims} dimensions, more than {GGUF_MAX_TENSOR_DIMS}"
                )));
            }
            let mut elements: u64 = 1;
            for _ in 0..dims {
                let d = self.u64("tensor shape")?;
                elements = elements
                    .checked_mul(d)
                    .ok_or_else(|| self.bad("tensor size overflows"))?;
            }
            self.u32("tensor type")?;
            self.u64("tensor offset")?;
            parameter_count = parameter_count
                .checked_add(elements)
                .ok_or_else(|| self.bad("parameter count overflows"))?;
        }

        let architecture = match architecture {
            Some(a) if !a.is_empty() => a,
            _ => return Err(self.bad("no general.architecture string")),
        };
        Ok(GgufInfo {
            architecture,
            file_type,
            parameter_count,
        })
    }
}

pub(super) fn read_gguf_info(path: &Path) -> Result<GgufInfo> {
    let file = File::open(path).at("opening", path)?;
    let meta = file.metadata().at("reading", path)?;
    if !meta.is_file() {
        return Err(Error::invalid(
            path.display().to_string(),
            "not a regular file",
        ));
    }
    GgufReader {
        inner: BufReader::with_capacity(64 << 10, file),
        pos: 0,
        len: meta.len(),
        path: path.to_path_buf(),
    }
    .read_info()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::fixtures::*;
    use crate::ollama::pack;
    use crate::spec::OllamaSpec;
    use std::fs;

    fn gguf_error(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.gguf");
        fs::write(&p, bytes).unwrap();
        let err = read_gguf_info(&p).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("bad.gguf"), "{msg}");
        msg
    }

    #[test]
    fn reads_the_gguf_header_and_rejects_what_is_not_gguf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.gguf");
        fs::write(&p, tiny_gguf()).unwrap();
        assert_eq!(
            read_gguf_info(&p).unwrap(),
            GgufInfo {
                architecture: "llama".into(),
                file_type: Some(15),
                parameter_count: 1_500_000_008,
            }
        );

        assert!(gguf_error(b"").contains("too short"));
        assert!(gguf_error(b"{\"not\": \"gguf\"}").contains("no GGUF magic"));
        assert!(gguf_error(b"FUGG\0\0\0\x03").contains("big-endian"));
        assert!(gguf_error(&gguf_header(1, 0, 0)).contains("version 1"));
        assert!(gguf_error(&tiny_gguf()[..100]).contains("truncated"));
        // Counts and lengths far beyond the file are refused up front.
        assert!(gguf_error(&gguf_header(3, u64::MAX, u64::MAX)).contains("larger than the file"));
        let mut huge_key = gguf_header(3, 0, 1);
        huge_key.extend_from_slice(&u64::MAX.to_le_bytes());
        huge_key.extend_from_slice(&[0; 16]);
        assert!(gguf_error(&huge_key).contains("key"));
        let mut huge_array = gguf_header(3, 0, 1);
        gguf_string(&mut huge_array, "a");
        huge_array.extend_from_slice(&GGUF_TYPE_ARRAY.to_le_bytes());
        huge_array.extend_from_slice(&GGUF_TYPE_UINT64.to_le_bytes());
        huge_array.extend_from_slice(&(u64::MAX / 4).to_le_bytes());
        assert!(gguf_error(&huge_array).contains("array"));
        let mut strings = gguf_header(3, 0, 1);
        gguf_string(&mut strings, "a");
        strings.extend_from_slice(&GGUF_TYPE_ARRAY.to_le_bytes());
        strings.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
        strings.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(gguf_error(&strings).contains("truncated"));
        let mut no_arch = gguf_header(2, 0, 1);
        gguf_string(&mut no_arch, "general.name");
        no_arch.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
        gguf_string(&mut no_arch, "x");
        assert!(gguf_error(&no_arch).contains("general.architecture"));
        let mut bad_type = gguf_header(3, 0, 1);
        gguf_string(&mut bad_type, "a");
        bad_type.extend_from_slice(&99u32.to_le_bytes());
        bad_type.extend_from_slice(&[0; 16]);
        assert!(gguf_error(&bad_type).contains("unknown value type 99"));

        // And pack names the file.
        let spec = OllamaSpec {
            name: "x:y".into(),
            gguf: dir.path().join("t.txt"),
            template: None,
            params: None,
            system: None,
            license: None,
        };
        fs::write(&spec.gguf, "hello").unwrap();
        let err = pack(&spec).unwrap_err().to_string();
        assert!(err.contains("t.txt") && err.contains("GGUF"), "{err}");
    }
}
