//! Test fixtures shared by the Ollama unit tests: a tiny GGUF, a spec that
//! packs it, and the digests and JSON Ollama writes for that spec.

use std::fs;
use std::path::Path;

use super::gguf::{GGUF_TYPE_ARRAY, GGUF_TYPE_STRING, GGUF_TYPE_UINT32, GGUF_TYPE_UINT8};
use crate::digest::Sha256Digest;
use crate::spec::OllamaSpec;

pub(super) fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn gguf_header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&tensors.to_le_bytes());
    b.extend_from_slice(&kvs.to_le_bytes());
    b
}

/// A GGUF v3 header: architecture, file type, a string array and a u8
/// array (to exercise skipping), two tensors of 1.5e9 + 8 elements, then
/// 32 bytes standing in for tensor data. 430 bytes in all.
pub(super) fn tiny_gguf() -> Vec<u8> {
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

pub(super) fn spec_in(dir: &Path, name: &str) -> OllamaSpec {
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
pub(super) const GGUF_SHA: &str =
    "sha256:0dc2e514ef6c0cd5ef568a9103e8adc5d785074e462ebba0ec1b635ee5f5f418";
pub(super) const TMPL_SHA: &str =
    "sha256:b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315";
pub(super) const PARAMS_SHA: &str =
    "sha256:81c1dabb49a2d396200b91ae4ab60b882ac576dba062629e360980062253fd22";
pub(super) const CONFIG_SHA: &str =
    "sha256:b51287b2fd9a2402589fcdf068a382583893a1726b12b65643d8572e679ded5a";
pub(super) const MANIFEST_SHA: &str =
    "sha256:71fbc1e8e471fb62cbdafea774819849a83b341f3e3b6746b8f8a1fc4cd7c37c";
pub(super) const CONFIG_JSON: &str = r#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"1.5B","file_type":"Q4_K_M","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0dc2e514ef6c0cd5ef568a9103e8adc5d785074e462ebba0ec1b635ee5f5f418","sha256:b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315","sha256:81c1dabb49a2d396200b91ae4ab60b882ac576dba062629e360980062253fd22"]}}
"#;
pub(super) const MANIFEST_JSON: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:b51287b2fd9a2402589fcdf068a382583893a1726b12b65643d8572e679ded5a","size":413},"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:0dc2e514ef6c0cd5ef568a9103e8adc5d785074e462ebba0ec1b635ee5f5f418","size":430},{"mediaType":"application/vnd.ollama.image.template","digest":"sha256:b507b9c2f6ca642bffcd06665ea7c91f235fd32daeefdf875a0f938db05fb315","size":13},{"mediaType":"application/vnd.ollama.image.params","digest":"sha256:81c1dabb49a2d396200b91ae4ab60b882ac576dba062629e360980062253fd22","size":20}]}
"#;

pub(super) fn d(s: &str) -> Sha256Digest {
    Sha256Digest::parse(s).unwrap()
}
