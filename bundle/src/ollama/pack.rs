//! Build side: a GGUF file and its optional template, system prompt,
//! license and parameters packed into the blobs and manifest Ollama itself
//! would write.

use std::fs::File;
use std::path::Path;

use super::gguf::read_gguf_info;
use super::manifest::{
    config_json, manifest_json, Layer, MEDIA_TYPE_CONFIG, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE,
};
use super::name::OllamaName;
use crate::digest::hash_reader;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::read_regular_capped;
use crate::items::{BlobSource, OllamaModel, PackedBlob};
use crate::spec::OllamaSpec;

/// Template, system, license and params files are text; anything larger is
/// a mistake in the spec, not a prompt.
const MAX_SMALL_FILE: u64 = 16 << 20;

/// Reads a small file whole: a regular file of at most `MAX_SMALL_FILE`.
fn read_small(path: &Path) -> Result<Vec<u8>> {
    read_regular_capped(
        path,
        MAX_SMALL_FILE,
        "a model's template, system, license or params file",
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use crate::ollama::fixtures::*;
    use std::fs;

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
    fn a_fifo_as_template_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec_in(dir.path(), "tiny");
        fs::remove_file(dir.path().join("t.tmpl")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("t.tmpl"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = pack(&spec).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("t.tmpl"), "{err}");
    }
}
