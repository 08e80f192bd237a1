//! Ollama model names (`[[host/]namespace/]model[:tag]`), checked with the
//! rules of Ollama's `types/model/name.go`.

use std::path::PathBuf;

use crate::error::{Error, Result};

const DEFAULT_HOST: &str = "registry.ollama.ai";
const DEFAULT_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";

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

    /// The name as Ollama lists it: `model:tag` in the default namespace,
    /// else with the namespace (and a host other than the default) before
    /// it, `--` standing for `/` (a file name holds no `/`). llama-server
    /// serves `<this>.gguf` under this id.
    pub fn served_id(&self) -> String {
        let mut id = String::new();
        if self.host != DEFAULT_HOST {
            id.push_str(&self.host);
            id.push_str("--");
        }
        if self.host != DEFAULT_HOST || self.namespace != DEFAULT_NAMESPACE {
            id.push_str(&self.namespace);
            id.push_str("--");
        }
        id.push_str(&self.model);
        id.push(':');
        id.push_str(&self.tag);
        id
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
}
