//! The TOML as written: one struct per table, every key optional where a
//! base may supply it, unknown keys refused, each value with its span.

use std::collections::BTreeMap;
use std::path::PathBuf;

use owui_bundle::firmware::ModuleFlavour;
use owui_bundle::spec::{HfSpec, OciSpec, OllamaSpec};
use owui_bundle::{Result, Role};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::loc::Source;
use super::ContentSize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpec {
    pub(super) role: Option<Spanned<Role>>,
    pub(super) version: Option<Spanned<String>>,
    pub(super) base: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pub(super) debian: RawDebian,
    #[serde(default)]
    pub(super) units: RawUnits,
    #[serde(default)]
    pub(super) overlay: RawOverlay,
    #[serde(default)]
    pub(super) partitions: RawPartitions,
    #[serde(default)]
    pub(super) kernel: RawKernel,
    #[serde(default)]
    pub(super) oci: Vec<Spanned<OciSpec>>,
    #[serde(default)]
    pub(super) ollama: Vec<Spanned<OllamaSpec>>,
    #[serde(default)]
    pub(super) huggingface: Vec<Spanned<HfSpec>>,
    pub(super) gpu: Option<Spanned<RawGpu>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGpu {
    pub(super) driver_set: Spanned<String>,
    pub(super) kernel_modules: Spanned<ModuleFlavour>,
    /// Default: `../firmware` from the spec's directory (the repository's).
    pub(super) firmware: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDebian {
    pub(super) suite: Option<Spanned<String>>,
    pub(super) mirror: Option<Spanned<String>>,
    pub(super) components: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub(super) packages: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnits {
    #[serde(default)]
    pub(super) enable: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) quadlets: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverlay {
    #[serde(default)]
    pub(super) dirs: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) modes: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPartitions {
    pub(super) esp: Option<Spanned<u64>>,
    pub(super) root: Option<Spanned<u64>>,
    pub(super) content: Option<Spanned<ContentSize>>,
    pub(super) data: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKernel {
    #[serde(default)]
    pub(super) cmdline: Vec<Spanned<String>>,
}

/// `content = "auto"` or a number of MiB.
impl<'de> Deserialize<'de> for ContentSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ContentSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\" or a size in MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<ContentSize, E> {
                Ok(ContentSize::Mib(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<ContentSize, E> {
                u64::try_from(v)
                    .map(ContentSize::Mib)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<ContentSize, E> {
                if v == "auto" {
                    Ok(ContentSize::Auto)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn parse(src: &Source) -> Result<RawSpec> {
    owui_bundle::toml_loc::parse(&src.file.display().to_string(), &src.text)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let f = Fixture::new();
        with_base(&f);
        let (code, e) = err_of(f.read(&ROLE.replace("[units]", "[units]\ncolour = 1")));
        assert_eq!(code, 3);
        assert!(
            e.contains("role.toml") && e.contains("line 6") && e.contains("colour"),
            "{e}"
        );
        // In the base too, and in a content table.
        f.write(
            "spec/base.toml",
            &BASE.replace("[kernel]", "[kernel]\nflavour = 1"),
        );
        let (_, e) = err_of(f.read(ROLE));
        assert!(e.contains("base.toml") && e.contains("flavour"), "{e}");
        with_base(&f);
        let (_, e) = err_of(f.read(&format!("{ROLE}tag = \"x\"\n")));
        assert!(e.contains("line 13") && e.contains("tag"), "{e}");
    }
}
