//! Ollama's config and manifest blobs: written as Ollama writes them, and
//! read back to check a manifest against the signed item.
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

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Deserialize;

use super::gguf::GgufInfo;
use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::items::OllamaModel;

const MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(super) const MEDIA_TYPE_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(super) const MEDIA_TYPE_MODEL: &str = "application/vnd.ollama.image.model";
pub(super) const MEDIA_TYPE_TEMPLATE: &str = "application/vnd.ollama.image.template";
pub(super) const MEDIA_TYPE_SYSTEM: &str = "application/vnd.ollama.image.system";
pub(super) const MEDIA_TYPE_LICENSE: &str = "application/vnd.ollama.image.license";
pub(super) const MEDIA_TYPE_PARAMS: &str = "application/vnd.ollama.image.params";

/// Manifests we read back from the store; Ollama's own are a few KiB.
pub const MAX_MANIFEST: u64 = 16 << 20;

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
pub(super) struct Layer {
    pub(super) media_type: &'static str,
    pub(super) digest: Sha256Digest,
    pub(super) size: u64,
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
pub(super) fn config_json(info: &GgufInfo, layers: &[Layer]) -> Vec<u8> {
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
pub(super) fn manifest_json(config: &Layer, layers: &[Layer]) -> Vec<u8> {
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

/// The part of Ollama's manifest we check against the signed item.
#[derive(Deserialize)]
struct ManifestRefs {
    config: LayerRef,
    layers: Vec<LayerRef>,
}

#[derive(Deserialize)]
struct LayerRef {
    digest: String,
    #[serde(rename = "mediaType", default)]
    media_type: String,
}

/// The GGUF file of a model whose manifest passed [`check_manifest`]: its
/// layer of Ollama's model media type.
pub(super) fn model_layer(model: &OllamaModel, manifest: &[u8]) -> Result<Sha256Digest> {
    let what = || format!("Ollama model {:?}", model.name);
    let refs: ManifestRefs = serde_json::from_slice(manifest)
        .map_err(|e| Error::invalid(what(), format!("manifest is not valid: {e}")))?;
    let mut models = refs
        .layers
        .iter()
        .filter(|l| l.media_type == MEDIA_TYPE_MODEL);
    match (models.next(), models.next()) {
        (Some(layer), None) => Sha256Digest::parse(&layer.digest)
            .map_err(|e| Error::invalid(what(), format!("manifest: {e}"))),
        _ => Err(Error::invalid(
            what(),
            format!("the manifest must have exactly one {MEDIA_TYPE_MODEL} layer"),
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
