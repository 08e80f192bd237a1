//! Bundle specs: the TOML an operator writes to say what goes into a bundle.
//! Relative paths resolve against the spec's own directory; unknown keys are
//! errors that name the file, line and key.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};
use crate::items::Removal;
use crate::role::Role;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSpec {
    /// Downgrade protection is per channel.
    pub channel: String,
    /// Must be higher than what the node has applied on this channel.
    pub sequence: u64,
    /// The node roles that accept this bundle.
    pub roles: Vec<Role>,
    #[serde(default)]
    pub ollama: Vec<OllamaSpec>,
    #[serde(default)]
    pub huggingface: Vec<HfSpec>,
    #[serde(default)]
    pub oci: Vec<OciSpec>,
    #[serde(default)]
    pub remove: Vec<RemoveSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaSpec {
    pub name: String,
    pub gguf: PathBuf,
    pub template: Option<PathBuf>,
    /// A JSON file of model parameters.
    pub params: Option<PathBuf>,
    pub system: Option<PathBuf>,
    pub license: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfSpec {
    pub repo: String,
    pub revision: String,
    #[serde(rename = "ref", default = "default_ref")]
    pub git_ref: String,
    /// A directory holding the snapshot's files.
    pub path: PathBuf,
}

impl OllamaSpec {
    /// Every file the model is made from: the GGUF, then the optional ones.
    pub fn paths_mut(&mut self) -> impl Iterator<Item = &mut PathBuf> {
        std::iter::once(&mut self.gguf).chain(
            [
                &mut self.template,
                &mut self.params,
                &mut self.system,
                &mut self.license,
            ]
            .into_iter()
            .flatten(),
        )
    }
}

fn default_ref() -> String {
    "main".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciSpec {
    #[serde(rename = "ref")]
    pub reference: String,
    /// An OCI image layout directory or an oci-archive file; `None`: pulled
    /// from the registry the reference names (by `owui-builder`, which sets
    /// this to the layout it pulled into before packing).
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveSpec {
    pub ollama: Option<String>,
    pub huggingface: Option<String>,
    pub oci: Option<String>,
}

/// A channel name: short, and safe to use as a file name.
pub fn check_channel(channel: &str) -> Result<()> {
    let ok = !channel.is_empty()
        && channel.len() <= 64
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !channel.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("channel {channel:?}"),
            "use 1-64 characters from A-Z a-z 0-9 - _ . (not starting with a dot)",
        ))
    }
}

impl BundleSpec {
    /// Reads, parses and checks a spec; paths come back absolute.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).at("reading bundle spec", path)?;
        let mut spec: BundleSpec = crate::toml_loc::parse(&path.display().to_string(), &text)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        spec.resolve_paths(&base);
        spec.check()
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        Ok(spec)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for m in &mut self.ollama {
            m.paths_mut().for_each(resolve);
        }
        for h in &mut self.huggingface {
            resolve(&mut h.path);
        }
        for o in self.oci.iter_mut().filter_map(|o| o.source.as_mut()) {
            resolve(o);
        }
    }

    fn check(&self) -> Result<()> {
        check_channel(&self.channel)?;
        if self.roles.is_empty() {
            return Err(Error::invalid("roles", "name at least one role"));
        }
        if self.sequence == 0 {
            return Err(Error::invalid("sequence", "must be 1 or more"));
        }
        let mut seen = BTreeSet::new();
        let names = self
            .ollama
            .iter()
            .map(|m| ("ollama", m.name.as_str()))
            .chain(
                self.huggingface
                    .iter()
                    .map(|h| ("huggingface", h.repo.as_str())),
            )
            .chain(self.oci.iter().map(|o| ("oci", o.reference.as_str())));
        for (kind, name) in names {
            if !seen.insert((kind, name)) {
                return Err(Error::invalid(
                    format!("[[{kind}]] {name:?}"),
                    "listed twice",
                ));
            }
        }
        self.removals()?;
        Ok(())
    }

    /// The `[[remove]]` tables as removals; each names exactly one thing.
    pub fn removals(&self) -> Result<Vec<Removal>> {
        self.remove
            .iter()
            .enumerate()
            .map(|(i, r)| match (&r.ollama, &r.huggingface, &r.oci) {
                (Some(n), None, None) => Ok(Removal::Ollama(n.clone())),
                (None, Some(n), None) => Ok(Removal::Huggingface(n.clone())),
                (None, None, Some(n)) => Ok(Removal::Oci(n.clone())),
                _ => Err(Error::invalid(
                    format!("[[remove]] number {}", i + 1),
                    "set exactly one of ollama, huggingface, oci",
                )),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<BundleSpec> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spec.toml");
        fs::write(&p, text).unwrap();
        BundleSpec::load(&p)
    }

    #[test]
    fn the_documented_example_parses() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/models.toml");
        let spec = BundleSpec::load(&example).unwrap();
        assert_eq!((spec.channel.as_str(), spec.sequence), ("models", 7));
        assert_eq!(spec.roles, vec![Role::Gpu, Role::Allinone]);
        assert_eq!(spec.ollama[0].name, "llama3.1:8b");
        // Relative paths resolve against the spec's directory.
        let dir = example.parent().unwrap();
        assert_eq!(spec.ollama[0].gguf, dir.join("models/llama3.1-8b.gguf"));
        assert_eq!(
            spec.ollama[0].template.as_deref(),
            Some(dir.join("llama3.tmpl").as_path())
        );
        assert_eq!(spec.huggingface[0].git_ref, "main");
        assert_eq!(
            spec.removals().unwrap(),
            vec![Removal::Ollama("llama3:8b".into())]
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = load("channel = \"m\"\nsequence = 1\nroles = [\"gpu\"]\n\n[[ollama]]\nname = \"a:b\"\ngguf = \"x\"\ncolour = \"red\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.toml"), "{err}");
        assert!(err.contains("line 8"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn rejects_bad_values() {
        for (text, needle) in [
            ("channel = \"m\"\nsequence = 1\nroles = [\"web\"]\n", "web"),
            ("channel = \"../x\"\nsequence = 1\nroles = [\"gpu\"]\n", "channel"),
            ("channel = \"m\"\nsequence = 0\nroles = [\"gpu\"]\n", "sequence"),
            ("channel = \"m\"\nsequence = 1\nroles = []\n", "roles"),
            ("channel = \"m\"\nsequence = 1\nroles = [\"gpu\"]\n[[remove]]\nollama = \"a\"\noci = \"b\"\n", "exactly one"),
        ] {
            let err = load(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
