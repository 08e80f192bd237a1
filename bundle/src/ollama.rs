//! Ollama models: packed from a GGUF file (plus optional template, system
//! prompt, license and parameters) into the blobs and manifest Ollama itself
//! would write, and materialised into Ollama's native model store
//! (`OLLAMA_MODELS`): `blobs/sha256-<hex>` and
//! `manifests/<host>/<namespace>/<model>/<tag>`.
//!
//! The JSON shapes follow Ollama's Go structs as `encoding/json` encodes them
//! (`manifest/manifest.go` `Manifest`, `manifest/layer.go` `Layer`,
//! `types/model/config.go` `ConfigV2`, written by `json.NewEncoder(..).Encode`
//! in `manifest.WriteManifest` and `server/create.go` `createConfigLayer`):
//! compact, fields in struct order, `omitempty` fields left out, and a
//! trailing newline. The config is filled as `server/create.go`
//! `createModel` does for a GGUF model layer: `model_format` "gguf",
//! `model_family`/`model_families` from `general.architecture`, `model_type`
//! from `format.HumanNumber` of the tensor parameter count, `file_type` from
//! `general.file_type`, `architecture` "amd64", `os` "linux", and `rootfs`
//! with the layer digests as releases up to v0.32.9 wrote it (v0.32.10 dropped
//! `rootfs`; Go's decoder ignores it either way). Layers come in the order
//! `createModel` appends them: model, template, system, license, params.
//!
//! # Ollama's start-up prune
//!
//! Read in `server/routes.go` (`Serve`), `server/images.go` (`PruneLayers`,
//! `deleteUnusedLayers`) and `manifest/paths.go` (`PruneDirectory`) of
//! ollama/ollama: unless `OLLAMA_NOPRUNE` is set, `ollama serve` first parses
//! every file matching `manifests/*/*/*/*` and, if any fails to parse or has an
//! invalid name, skips pruning altogether. Otherwise it deletes every entry in
//! `blobs/` whose name is not `sha256-<64 hex>` and every blob that no manifest
//! names as config or layer, then removes empty directories under
//! `manifests/`. Since v0.21.0 (`layerPruneGracePeriod`) blobs modified less
//! than an hour ago are spared; older releases have no grace period. Manifest
//! mtimes play no part. So a blob survives exactly when a manifest names it:
//! we write blobs first and manifests last, so Ollama never sees a manifest
//! whose blobs are missing, and a crash in between at worst lets Ollama prune
//! the unreferenced links (the content store keeps the bytes) until a re-run
//! relinks them. Blob links share the store's inode, so their mtime is when
//! the store received the blob, never 0. Temporary files we leave behind after
//! a crash (`.owui-tmp-*`) would make Ollama skip pruning; a re-run removes
//! them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::{hash_reader, Sha256Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::items::{BlobSource, OllamaModel, Owner, PackedBlob};
use crate::spec::OllamaSpec;
use crate::store::ContentStore;
use crate::tree;

const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";

const MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MEDIA_TYPE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MEDIA_TYPE_MODEL: &str = "application/vnd.ollama.image.model";
const MEDIA_TYPE_TEMPLATE: &str = "application/vnd.ollama.image.template";
const MEDIA_TYPE_SYSTEM: &str = "application/vnd.ollama.image.system";
const MEDIA_TYPE_LICENSE: &str = "application/vnd.ollama.image.license";
const MEDIA_TYPE_PARAMS: &str = "application/vnd.ollama.image.params";

/// Template, system, license and params files are text; anything larger is
/// a mistake in the spec, not a prompt.
const MAX_SMALL_FILE: u64 = 16 << 20;
/// Manifests we read back from the store; Ollama's own are a few KiB.
pub const MAX_MANIFEST: u64 = 16 << 20;

/// Parsed model name: "llama3.1:8b" -> host registry.ollama.ai, namespace
/// library, model llama3.1, tag 8b. Also "ns/model:tag" and
/// "host/ns/model:tag"; a missing tag is "latest". Each part follows the
/// rules of Ollama's `types/model/name.go`, so the manifest path we write is
/// one Ollama lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Host => "host",
            Part::Namespace => "namespace",
            Part::Model => "model",
            Part::Tag => "tag",
        }
    }
}

/// Ollama's part rules: first character alphanumeric or `_`, then also `-`,
/// `.` (not in a namespace) and `:` (host only, for a port).
fn part_problem(kind: Part, s: &str) -> Option<&'static str> {
    let max = if kind == Part::Host { 350 } else { 80 };
    if s.is_empty() {
        return Some("is empty");
    }
    if s.len() > max {
        return Some("is too long");
    }
    for (i, b) in s.bytes().enumerate() {
        let ok = b.is_ascii_alphanumeric()
            || b == b'_'
            || (i > 0
                && match b {
                    b'-' => true,
                    b'.' => kind != Part::Namespace,
                    b':' => kind == Part::Host,
                    _ => false,
                });
        if !ok {
            return Some(match kind {
                Part::Host => "must be A-Z a-z 0-9 _ then also - . : (for a port)",
                Part::Namespace => "must be A-Z a-z 0-9 _ then also -",
                Part::Model | Part::Tag => "must be A-Z a-z 0-9 _ then also - .",
            });
        }
    }
    None
}

impl OllamaName {
    pub fn parse(name: &str) -> Result<Self> {
        let what = || format!("Ollama model name {name:?}");
        // A ':' after the last '/' starts the tag; one before it is a port.
        let tag_colon = match (name.rfind(':'), name.rfind('/')) {
            (Some(colon), Some(slash)) if colon > slash => Some(colon),
            (Some(colon), None) => Some(colon),
            _ => None,
        };
        let (rest, tag) = match tag_colon {
            Some(colon) => (&name[..colon], &name[colon + 1..]),
            None => (name, DEFAULT_TAG),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *model),
            [namespace, model] => (DEFAULT_HOST, *namespace, *model),
            [host, namespace, model] => (*host, *namespace, *model),
            _ => {
                return Err(Error::invalid(
                    what(),
                    "expected [[host/]namespace/]model[:tag]",
                ))
            }
        };
        for (kind, value) in [
            (Part::Host, host),
            (Part::Namespace, namespace),
            (Part::Model, model),
            (Part::Tag, tag),
        ] {
            if let Some(problem) = part_problem(kind, value) {
                return Err(Error::invalid(
                    what(),
                    format!("{} {value:?} {problem}", kind.label()),
                ));
            }
        }
        Ok(OllamaName {
            host: host.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            tag: tag.to_string(),
        })
    }

    /// `manifests/<host>/<namespace>/<model>/<tag>`, relative to `OLLAMA_MODELS`.
    pub fn manifest_rel_path(&self) -> PathBuf {
        [
            "manifests",
            &self.host,
            &self.namespace,
            &self.model,
            &self.tag,
        ]
        .iter()
        .collect()
    }
}

/// What Ollama's config needs from a GGUF header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GgufInfo {
    architecture: String,
    /// `general.file_type` when stored as uint32, the only type Ollama reads.
    file_type: Option<u32>,
    /// Sum of the tensors' element counts, as Ollama computes it.
    parameter_count: u64,
}

const GGUF_TYPE_UINT8: u32 = 0;
const GGUF_TYPE_INT8: u32 = 1;
const GGUF_TYPE_UINT16: u32 = 2;
const GGUF_TYPE_INT16: u32 = 3;
const GGUF_TYPE_UINT32: u32 = 4;
const GGUF_TYPE_INT32: u32 = 5;
const GGUF_TYPE_FLOAT32: u32 = 6;
const GGUF_TYPE_BOOL: u32 = 7;
const GGUF_TYPE_STRING: u32 = 8;
const GGUF_TYPE_ARRAY: u32 = 9;
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

fn read_gguf_info(path: &Path) -> Result<GgufInfo> {
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

/// Ollama's name for a `general.file_type` (fs/ggml/type.go `FileType.String`).
/// Ollama treats 0 (F32) like a missing value, so it reads "unknown" too.
fn file_type_name(file_type: Option<u32>) -> &'static str {
    const NAMES: [&str; 41] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "",
        "",
        "",
        "Q8_0",
        "Q5_0",
        "Q5_1",
        "Q2_K",
        "Q3_K_S",
        "Q3_K_M",
        "Q3_K_L",
        "Q4_K_S",
        "Q4_K_M",
        "Q5_K_S",
        "Q5_K_M",
        "Q6_K",
        "IQ2_XXS",
        "IQ2_XS",
        "Q2_K_S",
        "IQ3_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ3_M",
        "IQ2_S",
        "IQ2_M",
        "IQ4_XS",
        "IQ1_M",
        "BF16",
        "",
        "",
        "",
        "TQ1_0",
        "TQ2_0",
        "MXFP4_MOE",
        "NVFP4",
        "Q1_0",
    ];
    match file_type {
        Some(t) if t > 0 => NAMES
            .get(t as usize)
            .copied()
            .filter(|n| !n.is_empty())
            .unwrap_or("unknown"),
        _ => "unknown",
    }
}

/// Ollama's `format.HumanNumber`, shown as "Parameter Size". Rust's float
/// formatting rounds half to even on the exact value, as Go's does.
fn human_number(n: u64) -> String {
    const THOUSAND: u64 = 1000;
    const MILLION: u64 = THOUSAND * 1000;
    const BILLION: u64 = MILLION * 1000;
    let scaled = |unit: u64| n as f64 / unit as f64;
    if n >= BILLION {
        let x = scaled(BILLION);
        if x == x.floor() {
            format!("{x:.0}B")
        } else {
            format!("{x:.1}B")
        }
    } else if n >= MILLION {
        let x = scaled(MILLION);
        if x == x.floor() {
            format!("{x:.0}M")
        } else {
            format!("{x:.2}M")
        }
    } else if n >= THOUSAND {
        format!("{:.0}K", scaled(THOUSAND))
    } else {
        n.to_string()
    }
}

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it by
/// default (HTML-safe: `<`, `>`, `&`, U+2028 and U+2029 escaped).
fn go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One manifest entry, as Ollama's `Layer` (no `from`: it would carry a path
/// from the build machine, and pulled models have none).
#[derive(Debug, Clone)]
struct Layer {
    media_type: &'static str,
    digest: Sha256Digest,
    size: u64,
}

fn layer_json(out: &mut String, layer: &Layer) {
    out.push_str("{\"mediaType\":");
    go_json_string(out, layer.media_type);
    let _ = write!(
        out,
        ",\"digest\":\"{}\",\"size\":{}}}",
        layer.digest, layer.size
    );
}

/// `ConfigV2` as `json.Encoder.Encode` writes it.
fn config_json(info: &GgufInfo, layers: &[Layer]) -> Vec<u8> {
    let mut out = String::from("{\"model_format\":\"gguf\",\"model_family\":");
    go_json_string(&mut out, &info.architecture);
    out.push_str(",\"model_families\":[");
    go_json_string(&mut out, &info.architecture);
    out.push_str("],\"model_type\":");
    go_json_string(&mut out, &human_number(info.parameter_count));
    out.push_str(",\"file_type\":");
    go_json_string(&mut out, file_type_name(info.file_type));
    out.push_str(
        ",\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
    );
    for (i, layer) in layers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\"", layer.digest);
    }
    out.push_str("]}}\n");
    out.into_bytes()
}

/// `Manifest` as `manifest.WriteManifest` writes it.
fn manifest_json(config: &Layer, layers: &[Layer]) -> Vec<u8> {
    let mut out = String::from("{\"schemaVersion\":2,\"mediaType\":");
    go_json_string(&mut out, MEDIA_TYPE_MANIFEST);
    out.push_str(",\"config\":");
    layer_json(&mut out, config);
    out.push_str(",\"layers\":[");
    for (i, layer) in layers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        layer_json(&mut out, layer);
    }
    out.push_str("]}\n");
    out.into_bytes()
}

/// Reads a small file whole, refusing anything over `MAX_SMALL_FILE`.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).at("opening", path)?;
    let mut data = Vec::new();
    file.take(MAX_SMALL_FILE + 1)
        .read_to_end(&mut data)
        .at("reading", path)?;
    if data.len() as u64 > MAX_SMALL_FILE {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("larger than {MAX_SMALL_FILE} bytes"),
        ));
    }
    Ok(data)
}

/// A text layer (template, system, license): UTF-8, as Ollama keeps them in
/// Go strings; an empty file adds no layer, as in Ollama's `createModel`.
fn text_layer(path: &Path) -> Result<Option<Vec<u8>>> {
    let data = read_small(path)?;
    if std::str::from_utf8(&data).is_err() {
        return Err(Error::invalid(path.display().to_string(), "not UTF-8 text"));
    }
    Ok((!data.is_empty()).then_some(data))
}

/// The params layer is a JSON object Ollama decodes into its options; an
/// empty object adds no layer, as in Ollama's `setParameters`.
fn params_layer(path: &Path) -> Result<Option<Vec<u8>>> {
    let data = read_small(path)?;
    let value: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| Error::invalid(path.display().to_string(), format!("not valid JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) if map.is_empty() => Ok(None),
        serde_json::Value::Object(_) => Ok(Some(data)),
        _ => Err(Error::invalid(
            path.display().to_string(),
            "parameters must be a JSON object",
        )),
    }
}

/// Adds `blob` unless a blob with its digest is already listed.
fn push_unique(blobs: &mut Vec<PackedBlob>, blob: PackedBlob) {
    if !blobs.iter().any(|b| b.digest == blob.digest) {
        blobs.push(blob);
    }
}

/// Build side: hashes the GGUF and the small files, and builds the config
/// and manifest JSON Ollama would write. Returns the item and every blob it
/// needs: manifest, config, GGUF (from its file) and the small files.
pub fn pack(spec: &OllamaSpec) -> Result<(OllamaModel, Vec<PackedBlob>)> {
    OllamaName::parse(&spec.name)?;
    let info = read_gguf_info(&spec.gguf)?;
    let file = File::open(&spec.gguf).at("opening", &spec.gguf)?;
    let (gguf_digest, gguf_size) = hash_reader(file).at("reading", &spec.gguf)?;

    let mut layers = vec![Layer {
        media_type: MEDIA_TYPE_MODEL,
        digest: gguf_digest,
        size: gguf_size,
    }];
    let mut small = Vec::new();
    let text_files = [
        (&spec.template, MEDIA_TYPE_TEMPLATE),
        (&spec.system, MEDIA_TYPE_SYSTEM),
        (&spec.license, MEDIA_TYPE_LICENSE),
    ];
    let mut add = |media_type: &'static str, data: Vec<u8>| {
        let blob = PackedBlob::from_bytes(data);
        layers.push(Layer {
            media_type,
            digest: blob.digest,
            size: blob.size,
        });
        small.push(blob);
    };
    for (path, media_type) in text_files {
        if let Some(path) = path {
            if let Some(data) = text_layer(path)? {
                add(media_type, data);
            }
        }
    }
    if let Some(path) = &spec.params {
        if let Some(data) = params_layer(path)? {
            add(MEDIA_TYPE_PARAMS, data);
        }
    }

    let config_blob = PackedBlob::from_bytes(config_json(&info, &layers));
    let config = Layer {
        media_type: MEDIA_TYPE_CONFIG,
        digest: config_blob.digest,
        size: config_blob.size,
    };
    let manifest_blob = PackedBlob::from_bytes(manifest_json(&config, &layers));

    let mut referenced = vec![config.digest];
    for layer in &layers {
        if !referenced.contains(&layer.digest) {
            referenced.push(layer.digest);
        }
    }
    let item = OllamaModel {
        name: spec.name.clone(),
        manifest: manifest_blob.digest,
        blobs: referenced,
    };

    let mut blobs = Vec::new();
    push_unique(&mut blobs, manifest_blob);
    push_unique(&mut blobs, config_blob);
    push_unique(
        &mut blobs,
        PackedBlob {
            digest: gguf_digest,
            size: gguf_size,
            source: BlobSource::File(spec.gguf.clone()),
        },
    );
    for blob in small {
        push_unique(&mut blobs, blob);
    }
    Ok((item, blobs))
}

/// The part of Ollama's manifest we check against the signed item.
#[derive(Deserialize)]
struct ManifestRefs {
    config: LayerRef,
    layers: Vec<LayerRef>,
}

#[derive(Deserialize)]
struct LayerRef {
    digest: String,
}

/// Reads a blob from the store whole, up to `max` bytes.
fn read_store_blob(store: &ContentStore, digest: &Sha256Digest, max: u64) -> Result<Vec<u8>> {
    let path = store.blob_path(digest);
    let file = File::open(&path).at("opening", &path)?;
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .at("reading", &path)?;
    if data.len() as u64 > max {
        return Err(Error::invalid(
            format!("blob {digest}"),
            format!("larger than {max} bytes"),
        ));
    }
    Ok(data)
}

/// Checks an Ollama manifest (the blob `model.manifest`) against the signed
/// item: it must parse and name exactly the blobs the item lists. Run on the
/// bundle's copy before anything is written, and again on the store's.
pub fn check_manifest(model: &OllamaModel, manifest: &[u8]) -> Result<()> {
    let what = || format!("Ollama model {:?}", model.name);
    if manifest.len() as u64 > MAX_MANIFEST {
        return Err(Error::invalid(
            what(),
            format!("manifest is larger than {MAX_MANIFEST} bytes"),
        ));
    }
    let refs: ManifestRefs = serde_json::from_slice(manifest)
        .map_err(|e| Error::invalid(what(), format!("manifest is not valid: {e}")))?;
    let mut named = BTreeSet::new();
    for layer in std::iter::once(&refs.config).chain(&refs.layers) {
        let digest = Sha256Digest::parse(&layer.digest)
            .map_err(|e| Error::invalid(what(), format!("manifest: {e}")))?;
        named.insert(digest);
    }
    let listed: BTreeSet<Sha256Digest> = model.blobs.iter().copied().collect();
    if named != listed {
        return Err(Error::invalid(
            what(),
            "the manifest names other blobs than the item lists",
        ));
    }
    Ok(())
}

/// A model checked against its manifest and the store, ready to write.
struct Prepared {
    rel_path: PathBuf,
    manifest: Vec<u8>,
}

fn prepare(store: &ContentStore, model: &OllamaModel) -> Result<Prepared> {
    let name = OllamaName::parse(&model.name)?;
    let what = || format!("Ollama model {:?}", model.name);
    for digest in std::iter::once(&model.manifest).chain(&model.blobs) {
        if !store.contains(digest) {
            return Err(Error::invalid(
                what(),
                format!("blob {digest} is not in the content store"),
            ));
        }
    }
    let manifest = read_store_blob(store, &model.manifest, MAX_MANIFEST)?;
    check_manifest(model, &manifest)?;
    Ok(Prepared {
        rel_path: name.manifest_rel_path(),
        manifest,
    })
}

/// Node side: makes `dest` (Ollama's `OLLAMA_MODELS`) hold `models`. Blobs
/// become hard links into the store (left alone when already there), then
/// each manifest is written atomically, so Ollama sees a model complete or
/// not at all. Everything is checked before anything is written. Safe to run
/// again on a partly written `dest`.
pub fn materialise(
    store: &ContentStore,
    models: &[OllamaModel],
    dest: &Path,
    owner: Option<Owner>,
) -> Result<()> {
    let prepared = models
        .iter()
        .map(|m| prepare(store, m))
        .collect::<Result<Vec<_>>>()?;

    tree::ensure_root(dest, owner)?;
    let blobs_dir = tree::ensure_dirs(dest, Path::new("blobs"), owner)?;
    tree::remove_stale_temps(&blobs_dir)?;
    let digests: BTreeSet<Sha256Digest> = models
        .iter()
        .flat_map(|m| m.blobs.iter().copied())
        .collect();
    for digest in &digests {
        let target = blobs_dir.join(format!("sha256-{}", digest.hex()));
        tree::place_blob(store, digest, &target)?;
    }
    fsync_dir(&blobs_dir)?;

    for p in &prepared {
        let parent = p.rel_path.parent().unwrap_or(Path::new("manifests"));
        let dir = tree::ensure_dirs(dest, parent, owner)?;
        tree::remove_stale_temps(&dir)?;
        let path = dest.join(&p.rel_path);
        tree::refuse_dir(&path)?;
        write_atomic(&path, &p.manifest, 0o644)?;
        tree::chown(&path, owner)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn gguf_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    fn gguf_header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&tensors.to_le_bytes());
        b.extend_from_slice(&kvs.to_le_bytes());
        b
    }

    /// A GGUF v3 header: architecture, file type, a string array and a u8
    /// array (to exercise skipping), two tensors of 1.5e9 + 8 elements, then
    /// 32 bytes standing in for tensor data. 430 bytes in all.
    fn tiny_gguf() -> Vec<u8> {
        let mut b = gguf_header(3, 2, 5);
        gguf_string(&mut b, "general.name");
        b.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
        gguf_string(&mut b, "tiny <test> & co");
        gguf_string(&mut b, "general.architecture");
        b.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
        gguf_string(&mut b, "llama");
        gguf_string(&mut b, "tokenizer.ggml.tokens");
        b.extend_from_slice(&GGUF_TYPE_ARRAY.to_le_bytes());
        b.extend_from_slice(&GGUF_TYPE_STRING.to_le_bytes());
        b.extend_from_slice(&3u64.to_le_bytes());
        for t in ["<s>", "</s>", "hello"] {
            gguf_string(&mut b, t);
        }
        gguf_string(&mut b, "tokenizer.ggml.token_type");
        b.extend_from_slice(&GGUF_TYPE_ARRAY.to_le_bytes());
        b.extend_from_slice(&GGUF_TYPE_UINT8.to_le_bytes());
        b.extend_from_slice(&3u64.to_le_bytes());
        b.extend_from_slice(&[1, 1, 2]);
        gguf_string(&mut b, "general.file_type");
        b.extend_from_slice(&GGUF_TYPE_UINT32.to_le_bytes());
        b.extend_from_slice(&15u32.to_le_bytes()); // Q4_K_M
        let tensors: [(&str, &[u64]); 2] = [
            ("token_embd.weight", &[1000, 1000, 1500]),
            ("output_norm.weight", &[8]),
        ];
        for (name, shape) in tensors {
            gguf_string(&mut b, name);
            b.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for d in shape {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&0u32.to_le_bytes()); // tensor type F32
            b.extend_from_slice(&0u64.to_le_bytes()); // offset
        }
        b.extend_from_slice(&[0u8; 32]);
        b
    }

    fn spec_in(dir: &Path, name: &str) -> OllamaSpec {
        fs::write(dir.join("m.gguf"), tiny_gguf()).unwrap();
        fs::write(dir.join("t.tmpl"), "{{ .Prompt }}").unwrap();
        fs::write(dir.join("p.json"), "{\"temperature\":0.2}\n").unwrap();
        OllamaSpec {
            name: name.to_string(),
            gguf: dir.join("m.gguf"),
            template: Some(dir.join("t.tmpl")),
            params: Some(dir.join("p.json")),
            system: None,
            license: None,
        }
    }

    // Written out by hand; the digests are `sha256sum` of the literal bytes,
    // and Go's encoding/json produced the same bytes from structs with
    // Ollama's field tags.
    const GGUF_SHA: &str =
        "sha256:0dc2e514ef6c0cd5ef568a9103e8adc5d785074e462ebba0ec1b635ee5f5f418";
    const TMPL_SHA: &str =
        "sha256:b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315";
    const PARAMS_SHA: &str =
        "sha256:81c1dabb49a2d396200b91ae4ab60b882ac576dba062629e360980062253fd22";
    const CONFIG_SHA: &str =
        "sha256:b51287b2fd9a2402589fcdf068a382583893a1726b12b65643d8572e679ded5a";
    const MANIFEST_SHA: &str =
        "sha256:71fbc1e8e471fb62cbdafea774819849a83b341f3e3b6746b8f8a1fc4cd7c37c";
    const CONFIG_JSON: &str = r#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"1.5B","file_type":"Q4_K_M","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0dc2e514ef6c0cd5ef568a9103e8adc5d785074e462ebba0ec1b635ee5f5f418","sha256:b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315","sha256:81c1dabb49a2d396200b91ae4ab60b882ac576dba062629e360980062253fd22"]}}
"#;
    const MANIFEST_JSON: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:b51287b2fd9a2402589fcdf068a382583893a1726b12b65643d8572e679ded5a","size":413},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:0dc2e514ef6c0cd5ef568a9103e8adc5d785074e462ebba0ec1b635ee5f5f418","size":430},{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315","size":13},{"mediaType":"application/vnd.ollama.image.params","digest":"sha256:81c1dabb49a2d396200b91ae4ab60b882ac576dba062629e360980062253fd22","size":20}]}
"#;

    fn d(s: &str) -> Sha256Digest {
        Sha256Digest::parse(s).unwrap()
    }

    /// Every entry under `root`, relative, with its mode and a flag for
    /// directories.
    fn tree_of(root: &Path) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.push((rel, m.permissions().mode() & 0o7777));
                if m.is_dir() {
                    pending.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn pack_builds_the_json_ollama_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (item, blobs) = pack(&spec_in(dir.path(), "tiny:1b")).unwrap();
        assert_eq!(item.name, "tiny:1b");
        assert_eq!(item.manifest, d(MANIFEST_SHA));
        assert_eq!(
            item.blobs,
            [d(CONFIG_SHA), d(GGUF_SHA), d(TMPL_SHA), d(PARAMS_SHA)]
        );
        let digests: Vec<Sha256Digest> = blobs.iter().map(|b| b.digest).collect();
        assert_eq!(
            digests,
            [
                d(MANIFEST_SHA),
                d(CONFIG_SHA),
                d(GGUF_SHA),
                d(TMPL_SHA),
                d(PARAMS_SHA)
            ]
        );
        let bytes = |i: usize| match &blobs[i].source {
            BlobSource::Bytes(b) => b.clone(),
            BlobSource::File(p) => panic!("blob {i} is the file {}", p.display()),
        };
        assert_eq!(String::from_utf8(bytes(0)).unwrap(), MANIFEST_JSON);
        assert_eq!(String::from_utf8(bytes(1)).unwrap(), CONFIG_JSON);
        assert!(matches!(&blobs[2].source, BlobSource::File(p) if p.ends_with("m.gguf")));
        assert_eq!(blobs[2].size, 430);
        assert_eq!(bytes(3), b"{{ .Prompt }}");
        assert_eq!(bytes(4), b"{\"temperature\":0.2}\n");
        for b in &blobs {
            assert_eq!(
                b.size,
                match &b.source {
                    BlobSource::Bytes(v) => v.len() as u64,
                    BlobSource::File(p) => fs::metadata(p).unwrap().len(),
                }
            );
        }
    }

    #[test]
    fn materialise_writes_ollamas_tree_and_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let (item, blobs) = pack(&spec_in(dir.path(), "tiny:1b")).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        crate::store::commit_packed(&store, &blobs);
        let dest = dir.path().join("models");
        materialise(&store, std::slice::from_ref(&item), &dest, None).unwrap();

        let blob = |sha: &str| format!("blobs/sha256-{}", &sha[7..]);
        let mut expected = vec![
            ("blobs".to_string(), 0o755),
            (blob(CONFIG_SHA), 0o444),
            (blob(GGUF_SHA), 0o444),
            (blob(TMPL_SHA), 0o444),
            (blob(PARAMS_SHA), 0o444),
            ("manifests".to_string(), 0o755),
            ("manifests/registry.ollama.ai".to_string(), 0o755),
            ("manifests/registry.ollama.ai/library".to_string(), 0o755),
            (
                "manifests/registry.ollama.ai/library/tiny".to_string(),
                0o755,
            ),
            (
                "manifests/registry.ollama.ai/library/tiny/1b".to_string(),
                0o644,
            ),
        ];
        expected.sort();
        assert_eq!(tree_of(&dest), expected);
        let manifest_path = dest.join("manifests/registry.ollama.ai/library/tiny/1b");
        assert_eq!(fs::read_to_string(&manifest_path).unwrap(), MANIFEST_JSON);
        assert_eq!(
            fs::read_to_string(dest.join(blob(CONFIG_SHA))).unwrap(),
            CONFIG_JSON
        );
        assert_eq!(fs::read(dest.join(blob(GGUF_SHA))).unwrap(), tiny_gguf());
        // Blobs are the store's own inodes, not copies.
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&dest.join(blob(GGUF_SHA))),
            ino(&store.blob_path(&d(GGUF_SHA)))
        );

        // A crash left a blob and the manifest missing, and temporaries.
        fs::remove_file(dest.join(blob(TMPL_SHA))).unwrap();
        fs::remove_file(&manifest_path).unwrap();
        fs::write(dest.join("blobs/.owui-tmp-sha256-x"), "part").unwrap();
        fs::write(manifest_path.with_file_name(".owui-tmp-abc"), "{").unwrap();
        materialise(&store, std::slice::from_ref(&item), &dest, None).unwrap();
        assert_eq!(tree_of(&dest), expected);
        assert_eq!(fs::read_to_string(&manifest_path).unwrap(), MANIFEST_JSON);

        if nix::unistd::geteuid().is_root() {
            let owner = Owner {
                uid: 4242,
                gid: 4343,
            };
            materialise(&store, &[item], &dest, Some(owner)).unwrap();
            for (rel, _) in tree_of(&dest) {
                let m = fs::symlink_metadata(dest.join(&rel)).unwrap();
                let want = if rel.starts_with("blobs/") {
                    (0, 0)
                } else {
                    (4242, 4343)
                };
                assert_eq!((m.uid(), m.gid()), want, "{rel}");
            }
            let m = fs::metadata(&dest).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343));
        } else {
            eprintln!("not root: ownership not checked");
        }
    }

    #[test]
    fn materialise_checks_items_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (item, blobs) = pack(&spec_in(dir.path(), "tiny:1b")).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        crate::store::commit_packed(&store, &blobs[..4]);
        let dest = dir.path().join("models");

        let err = materialise(&store, std::slice::from_ref(&item), &dest, None).unwrap_err();
        assert!(
            err.to_string().contains("not in the content store"),
            "{err}"
        );
        crate::store::commit_packed(&store, &blobs[4..]);

        let mut short = item.clone();
        short.blobs.pop();
        let err = materialise(&store, &[short], &dest, None).unwrap_err();
        assert!(err.to_string().contains("other blobs"), "{err}");

        let mut bad_name = item.clone();
        bad_name.name = "../../etc:passwd".into();
        let err = materialise(&store, &[bad_name], &dest, None).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(!dest.exists());

        // A symlink planted in the tree is refused, not followed.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(dest.join("manifests")).unwrap();
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dest.join("manifests/registry.ollama.ai")).unwrap();
        let err = materialise(&store, &[item], &dest, None).unwrap_err();
        assert!(err.to_string().contains("symlinks are refused"), "{err}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn parses_names_as_ollama_does() {
        let ok = [
            (
                "llama3.1:8b",
                "registry.ollama.ai",
                "library",
                "llama3.1",
                "8b",
            ),
            (
                "llama3.1",
                "registry.ollama.ai",
                "library",
                "llama3.1",
                "latest",
            ),
            (
                "acme/tiny:q4_K_M",
                "registry.ollama.ai",
                "acme",
                "tiny",
                "q4_K_M",
            ),
            (
                "reg.example:5000/acme/tiny:v1.2",
                "reg.example:5000",
                "acme",
                "tiny",
                "v1.2",
            ),
            (
                "reg.example:5000/acme/tiny",
                "reg.example:5000",
                "acme",
                "tiny",
                "latest",
            ),
            ("_x/_y:_z", "registry.ollama.ai", "_x", "_y", "_z"),
        ];
        for (input, host, ns, model, tag) in ok {
            let n = OllamaName::parse(input).unwrap();
            assert_eq!(
                (
                    n.host.as_str(),
                    n.namespace.as_str(),
                    n.model.as_str(),
                    n.tag.as_str()
                ),
                (host, ns, model, tag),
                "{input}"
            );
        }
        assert_eq!(
            OllamaName::parse("llama3.1:8b")
                .unwrap()
                .manifest_rel_path(),
            Path::new("manifests/registry.ollama.ai/library/llama3.1/8b")
        );
        let bad = [
            ("", "model"),
            ("tiny:", "tag"),
            (":8b", "model"),
            ("/tiny", "namespace"),
            ("acme//tiny", "namespace"),
            ("a/b/c/d", "expected"),
            ("..:x", "model"),
            ("../tiny", "namespace"),
            ("tiny:..", "tag"),
            ("tiny:.hidden", "tag"),
            ("ac.me/tiny", "namespace"),
            ("tiny:a:b", "model"),
            ("ti ny", "model"),
            ("tiny@sha256:00", "model"),
            ("http://host/ns/m", "expected"),
            ("tï:x", "model"),
        ];
        for (input, part) in bad {
            let err = OllamaName::parse(input).unwrap_err();
            assert_eq!(err.exit_code(), 3);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{input:?}")), "{msg}");
            assert!(msg.contains(part), "{input}: {msg}");
        }
        assert!(OllamaName::parse(&format!("m:{}", "t".repeat(81))).is_err());
        assert!(OllamaName::parse(&format!("{}/n/m", "h".repeat(350))).is_ok());
    }

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

    #[test]
    fn params_must_be_a_json_object_and_text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec_in(dir.path(), "tiny");
        for bad in ["[1, 2]", "{\"a\":", "0.5"] {
            fs::write(dir.path().join("p.json"), bad).unwrap();
            let err = pack(&spec).unwrap_err();
            assert_eq!(err.exit_code(), 3);
            assert!(err.to_string().contains("p.json"), "{err}");
        }
        // An empty object adds no layer, as in Ollama.
        fs::write(dir.path().join("p.json"), "{}").unwrap();
        let (item, _) = pack(&spec).unwrap();
        assert_eq!(item.blobs.len(), 3);

        spec.system = Some(dir.path().join("sys.txt"));
        fs::write(dir.path().join("sys.txt"), b"\xff\xfe").unwrap();
        let err = pack(&spec).unwrap_err().to_string();
        assert!(err.contains("sys.txt") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn human_number_matches_gos_output() {
        // Printed by Ollama's format.HumanNumber logic run under Go.
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1K"),
            (1500, "2K"),
            (2500, "2K"),
            (999_999, "1000K"),
            (1_000_000, "1M"),
            (1_250_000, "1.25M"),
            (137_500_000, "137.50M"),
            (567_000_000, "567M"),
            (999_999_999, "1000.00M"),
            (1_250_000_000, "1.2B"),
            (7_000_000_000, "7B"),
            (8_030_261_248, "8.0B"),
            (70_553_706_496, "70.6B"),
            (1_500_000_008, "1.5B"),
            (u64::MAX, "18446744073.7B"),
        ] {
            assert_eq!(human_number(n), want, "{n}");
        }
    }

    #[test]
    fn file_type_names_follow_ollama() {
        assert_eq!(file_type_name(None), "unknown");
        assert_eq!(file_type_name(Some(0)), "unknown");
        assert_eq!(file_type_name(Some(1)), "F16");
        assert_eq!(file_type_name(Some(4)), "unknown");
        assert_eq!(file_type_name(Some(15)), "Q4_K_M");
        assert_eq!(file_type_name(Some(32)), "BF16");
        assert_eq!(file_type_name(Some(40)), "Q1_0");
        assert_eq!(file_type_name(Some(1024)), "unknown");
    }

    #[test]
    fn json_strings_are_escaped_like_go() {
        // Go 1.19's encoding/json output for the same string.
        let mut out = String::new();
        go_json_string(&mut out, "x<y>&\"\\\n\t\u{1}\u{7f}\u{2028}é");
        assert_eq!(
            out,
            "\"x\\u003cy\\u003e\\u0026\\\"\\\\\\n\\t\\u0001\u{7f}\\u2028é\""
        );
    }
}
