//! Role image specs: `images/<role>.toml` says what goes into a role image
//! (Debian suite and packages, units, Quadlet containers, overlay files,
//! partition sizes, kernel arguments, content to pre-fill). A role spec may
//! name one base spec (`images/base.toml`) whose lists it extends and whose
//! values it overrides. Relative paths resolve against the directory of the
//! file that names them. Every error names the file, the line and the key
//! (exit code 3, docs/exit-codes.md). The format is in docs/images.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::firmware::{DriverSet, Firmware, ModuleFlavour, Package};
use owui_bundle::oci::check_reference;
use owui_bundle::spec::{BundleSpec, HfSpec, OciSpec, OllamaSpec};
use owui_bundle::{Error, Result, Role, Sha256Digest};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Sizes are in MiB; these are the smallest the builder accepts.
pub const MIN_ESP_MIB: u64 = 64;
pub const MIN_ROOT_MIB: u64 = 256;
pub const MIN_DATA_MIB: u64 = 256;
/// The largest size of any partition (16 TiB), so sums cannot overflow.
pub const MAX_PARTITION_MIB: u64 = 16 << 20;
/// `content = "auto"`: the content's size plus this percentage plus
/// [`CONTENT_SLACK_MIB`] (room for the filesystem and later growth).
pub const CONTENT_AUTO_PERCENT: u64 = 20;
/// A fixed `content` size must hold the content plus this percentage (the
/// filesystem's own metadata) plus [`CONTENT_SLACK_MIB`].
pub const CONTENT_MIN_PERCENT: u64 = 3;
pub const CONTENT_SLACK_MIB: u64 = 64;

/// Kernel arguments the builder sets itself; a spec may not set them.
const RESERVED_CMDLINE: &[&str] = &[
    "root",
    "rootfstype",
    "rootflags",
    "ro",
    "rw",
    "init",
    "owui.verity",
    "roothash",
    "usrhash",
    "systemd.verity",
    "rd.systemd.verity",
    "systemd.verity_root_data",
    "systemd.verity_root_hash",
    "systemd.verity_root_options",
    "mount.usr",
    "mount.usrfstype",
    "mount.usrflags",
];

/// Unit types a spec may enable.
const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "timer",
    "target",
    "path",
    "mount",
    "automount",
    "swap",
    "slice",
];

/// Quadlet unit types a spec may install.
const QUADLET_SUFFIXES: &[&str] = &["container", "volume", "network", "pod", "image", "kube"];

/// The placeholder a Quadlet unit writes for a pre-filled image:
/// `Image=@OCI:ghcr.io/open-webui/open-webui@`. The builder replaces it with
/// `NAME@sha256:DIGEST` of the `[[oci]]` entry whose reference has that name.
pub const OCI_PLACEHOLDER_START: &str = "@OCI:";
const OCI_PLACEHOLDER_END: char = '@';

/// A role image spec, base merged in, checked, paths absolute.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The role spec file as given.
    pub file: PathBuf,
    pub role: Role,
    /// Part of the image's file name: `<role>-<version>.img`.
    pub version: String,
    pub debian: DebianSpec,
    pub units: UnitsSpec,
    /// Directories copied into the rootfs in this order (later ones win),
    /// resolved against the spec that names them.
    pub overlay_dirs: Vec<PathBuf>,
    /// File modes to set after the overlay copy, by path relative to the
    /// rootfs (`etc/owui/open-webui.env` → 0o600). Everything else keeps
    /// the mode it has in the overlay directory.
    pub overlay_modes: BTreeMap<PathBuf, u32>,
    pub partitions: Partitions,
    /// Arguments added after the builder's own (`root=`, `owui.verity=`).
    pub kernel_cmdline: Vec<String>,
    /// What to pre-fill on the content partition.
    pub content: ImageContent,
    /// The NVIDIA driver set (`[gpu]`; gpu and allinone images only).
    pub gpu: Option<GpuSpec>,
    /// Where `partitions.content` was set, for the size error.
    content_size_at: Option<Loc>,
}

/// `[gpu]`: the driver set an image carries and which kernel modules of it
/// the builder compiles for the image's kernel.
#[derive(Debug, Clone)]
pub struct GpuSpec {
    pub set: DriverSet,
    pub flavour: ModuleFlavour,
    /// The `firmware/` directory the set came from; it goes into the image
    /// at /usr/share/owui/firmware for the agent.
    pub firmware_dir: PathBuf,
}

impl GpuSpec {
    /// The set's DKMS package of the chosen flavour (checked at load).
    pub fn module_package(&self) -> Option<&Package> {
        let name = self.set.module_package(self.flavour)?;
        self.set.packages.iter().find(|p| p.name == name)
    }

    /// What goes into the image as it is: every package of the set but the
    /// DKMS ones (those are build inputs; their modules go in as our own
    /// package).
    pub fn runtime_packages(&self) -> impl Iterator<Item = &Package> {
        let dkms =
            [ModuleFlavour::Open, ModuleFlavour::Proprietary].map(|f| self.set.module_package(f));
        self.set
            .packages
            .iter()
            .filter(move |p| !dkms.contains(&Some(p.name.as_str())))
    }

    /// The packages the image installs from the archive: the runtime ones
    /// and the DKMS package it builds from.
    pub fn archive_packages(&self) -> impl Iterator<Item = &Package> {
        self.runtime_packages().chain(self.module_package())
    }

    /// The virtual package Debian's DKMS package provides and the driver
    /// packages depend on (`nvidia-tesla-535-kernel-dkms` provides
    /// `nvidia-tesla-535-kernel-535.274.02`); the module package we make
    /// provides it instead. The set parser checks the name ends in `-dkms`.
    pub fn provides(&self) -> String {
        let module = self.set.module_package(self.flavour).unwrap_or_default();
        let base = module.strip_suffix("-dkms").unwrap_or(module);
        format!("{base}-{}", self.set.version())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianSpec {
    pub suite: String,
    pub mirror: String,
    pub components: Vec<String>,
    /// Base and role packages together, sorted, each once.
    pub packages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitsSpec {
    /// The directory units and Quadlet files come from.
    pub dir: PathBuf,
    /// Units to enable, base first. Those found in `dir` are ours and must
    /// be installed (see [`UnitsSpec::own_units`]); the rest come from
    /// Debian packages.
    pub enable: Vec<String>,
    /// Quadlet files from `dir`, installed to /etc/containers/systemd/ after
    /// [`ImageSpec::render_quadlet`]; they start through their [Install]
    /// section, never through `enable`.
    pub quadlets: Vec<String>,
}

impl UnitsSpec {
    /// The enabled units that ship in `dir`, as paths.
    pub fn own_units(&self) -> Vec<PathBuf> {
        self.enable
            .iter()
            .map(|u| self.dir.join(u))
            .filter(|p| p.is_file())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    pub esp_mib: u64,
    pub root_mib: u64,
    pub content: ContentSize,
    /// Created on first boot by systemd-repart.
    pub data_mib: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentSize {
    /// The content's size plus 20 % plus 64 MiB.
    Auto,
    Mib(u64),
}

/// Containers and models to pre-fill: the tables of bundle specs, paths
/// resolved against the spec that lists them.
#[derive(Debug, Clone, Default)]
pub struct ImageContent {
    pub oci: Vec<OciSpec>,
    pub ollama: Vec<OllamaSpec>,
    pub huggingface: Vec<HfSpec>,
    /// Where each entry was written, in the same order.
    oci_at: Vec<Loc>,
    ollama_at: Vec<Loc>,
    huggingface_at: Vec<Loc>,
}

impl ImageContent {
    pub fn is_empty(&self) -> bool {
        self.oci.is_empty() && self.ollama.is_empty() && self.huggingface.is_empty()
    }

    /// The content as a bundle spec, for the code that packs bundles.
    pub fn to_bundle_spec(&self, role: Role, channel: &str, sequence: u64) -> BundleSpec {
        BundleSpec {
            channel: channel.to_string(),
            sequence,
            roles: vec![role],
            ollama: self.ollama.clone(),
            huggingface: self.huggingface.clone(),
            oci: self.oci.clone(),
            remove: Vec::new(),
        }
    }

    /// The `[[oci]]` entry whose reference names `repository` (the
    /// reference without tag and digest).
    pub fn oci_for(&self, repository: &str) -> Option<&OciSpec> {
        self.oci
            .iter()
            .find(|o| repository_of(&o.reference) == repository)
    }
}

// ---------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------

/// A file and line, for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    file: PathBuf,
    line: usize,
}

impl Loc {
    fn err(&self, key: &str, detail: impl Into<String>) -> Error {
        Error::invalid(
            format!("{} line {}: {key}", self.file.display(), self.line),
            detail,
        )
    }
}

/// A value and where it was written.
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    loc: Loc,
}

/// One spec file being read: its path, text and directory.
struct Source {
    file: PathBuf,
    text: String,
    dir: PathBuf,
}

impl Source {
    fn read(file: &Path) -> Result<Source> {
        let text = fs::read_to_string(file).at("reading image spec", file)?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Source {
            file: file.to_path_buf(),
            text,
            dir,
        })
    }

    fn loc(&self, span: Range<usize>) -> Loc {
        let end = span.start.min(self.text.len());
        let line = self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Loc {
            file: self.file.clone(),
            line,
        }
    }

    fn at<T>(&self, s: Spanned<T>) -> At<T> {
        let loc = self.loc(s.span());
        At {
            value: s.into_inner(),
            loc,
        }
    }

    /// A list of strings, each with its line; a value listed twice in this
    /// file is an error.
    fn list(&self, key: &str, items: Vec<Spanned<String>>) -> Result<Vec<At<String>>> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for item in items {
            let item = self.at(item);
            if !seen.insert(item.value.clone()) {
                return Err(item
                    .loc
                    .err(key, format!("{:?} is listed twice", item.value)));
            }
            out.push(item);
        }
        Ok(out)
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.dir.join(path)
        }
    }
}

// ---------------------------------------------------------------------------
// The TOML as written
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    role: Option<Spanned<Role>>,
    version: Option<Spanned<String>>,
    base: Option<Spanned<PathBuf>>,
    #[serde(default)]
    debian: RawDebian,
    #[serde(default)]
    units: RawUnits,
    #[serde(default)]
    overlay: RawOverlay,
    #[serde(default)]
    partitions: RawPartitions,
    #[serde(default)]
    kernel: RawKernel,
    #[serde(default)]
    oci: Vec<Spanned<OciSpec>>,
    #[serde(default)]
    ollama: Vec<Spanned<OllamaSpec>>,
    #[serde(default)]
    huggingface: Vec<Spanned<HfSpec>>,
    gpu: Option<Spanned<RawGpu>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    driver_set: Spanned<String>,
    kernel_modules: Spanned<ModuleFlavour>,
    /// Default: `../firmware` from the spec's directory (the repository's).
    firmware: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebian {
    suite: Option<Spanned<String>>,
    mirror: Option<Spanned<String>>,
    components: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    packages: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnits {
    #[serde(default)]
    enable: Vec<Spanned<String>>,
    #[serde(default)]
    quadlets: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverlay {
    #[serde(default)]
    dirs: Vec<Spanned<String>>,
    #[serde(default)]
    modes: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartitions {
    esp: Option<Spanned<u64>>,
    root: Option<Spanned<u64>>,
    content: Option<Spanned<ContentSize>>,
    data: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    #[serde(default)]
    cmdline: Vec<Spanned<String>>,
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

fn parse(src: &Source) -> Result<RawSpec> {
    toml::from_str(&src.text)
        .map_err(|e| Error::invalid(src.file.display().to_string(), e.to_string().trim_end()))
}

// ---------------------------------------------------------------------------
// Loading and merging
// ---------------------------------------------------------------------------

/// What one file contributes, with locations.
struct Layer {
    version: Option<At<String>>,
    suite: Option<At<String>>,
    mirror: Option<At<String>>,
    components: Option<(Loc, Vec<At<String>>)>,
    packages: Vec<At<String>>,
    enable: Vec<At<String>>,
    quadlets: Vec<At<String>>,
    dirs: Vec<At<PathBuf>>,
    modes: Vec<(String, At<String>)>,
    esp: Option<At<u64>>,
    root: Option<At<u64>>,
    content: Option<At<ContentSize>>,
    data: Option<At<u64>>,
    cmdline: Vec<At<String>>,
    oci: Vec<At<OciSpec>>,
    ollama: Vec<At<OllamaSpec>>,
    huggingface: Vec<At<HfSpec>>,
    gpu: Option<GpuLayer>,
}

/// `[gpu]` as written, the firmware path resolved.
struct GpuLayer {
    at: Loc,
    driver_set: At<String>,
    flavour: At<ModuleFlavour>,
    firmware: At<PathBuf>,
}

fn layer(src: &Source, raw: RawSpec) -> Result<Layer> {
    let RawSpec {
        role: _,
        version,
        base: _,
        debian,
        units,
        overlay,
        partitions,
        kernel,
        oci,
        ollama,
        huggingface,
        gpu,
    } = raw;
    let gpu = gpu.map(|g| {
        let at = src.loc(g.span());
        let g = g.into_inner();
        let firmware = match g.firmware {
            Some(f) => {
                let f = src.at(f);
                At {
                    value: src.resolve(&f.value),
                    loc: f.loc,
                }
            }
            None => At {
                value: src.resolve(Path::new("../firmware")),
                loc: at.clone(),
            },
        };
        GpuLayer {
            at,
            driver_set: src.at(g.driver_set),
            flavour: src.at(g.kernel_modules),
            firmware,
        }
    });
    let components = debian.components.map(|c| {
        let loc = src.loc(c.span());
        (loc, c.into_inner())
    });
    let components = match components {
        Some((loc, items)) => Some((loc, src.list("debian.components", items)?)),
        None => None,
    };
    let dirs = src
        .list("overlay.dirs", overlay.dirs)?
        .into_iter()
        .map(|d| At {
            value: src.resolve(Path::new(&d.value)),
            loc: d.loc,
        })
        .collect();
    let modes = overlay
        .modes
        .into_iter()
        .map(|(k, v)| (k, src.at(v)))
        .collect();
    let mut oci: Vec<At<OciSpec>> = oci.into_iter().map(|o| src.at(o)).collect();
    for o in &mut oci {
        o.value.source = src.resolve(&o.value.source);
    }
    let mut ollama: Vec<At<OllamaSpec>> = ollama.into_iter().map(|m| src.at(m)).collect();
    for m in &mut ollama {
        for p in m.value.paths_mut() {
            *p = src.resolve(p);
        }
    }
    let mut huggingface: Vec<At<HfSpec>> = huggingface.into_iter().map(|h| src.at(h)).collect();
    for h in &mut huggingface {
        h.value.path = src.resolve(&h.value.path);
    }
    Ok(Layer {
        version: version.map(|v| src.at(v)),
        suite: debian.suite.map(|v| src.at(v)),
        mirror: debian.mirror.map(|v| src.at(v)),
        components,
        packages: src.list("debian.packages", debian.packages)?,
        enable: src.list("units.enable", units.enable)?,
        quadlets: src.list("units.quadlets", units.quadlets)?,
        dirs,
        modes,
        esp: partitions.esp.map(|v| src.at(v)),
        root: partitions.root.map(|v| src.at(v)),
        content: partitions.content.map(|v| src.at(v)),
        data: partitions.data.map(|v| src.at(v)),
        cmdline: src.list("kernel.cmdline", kernel.cmdline)?,
        oci,
        ollama,
        huggingface,
        gpu,
    })
}

/// The later value if there is one, else the earlier.
fn pick<T>(base: Option<At<T>>, role: Option<At<T>>) -> Option<At<T>> {
    role.or(base)
}

/// Base items first, then the role's; a role item equal to a base item is
/// dropped (the base already has it).
fn concat<T: PartialEq>(base: Vec<At<T>>, role: Vec<At<T>>) -> Vec<At<T>> {
    let mut out = base;
    for item in role {
        if !out.iter().any(|o| o.value == item.value) {
            out.push(item);
        }
    }
    out
}

fn missing(file: &Path, key: &str, detail: &str) -> Error {
    Error::invalid(
        format!("{}: {key}", file.display()),
        format!("missing: {detail}"),
    )
}

impl ImageSpec {
    /// Reads a role spec and its base, merges and checks them, including
    /// that every content source exists. `units_dir` holds the units and
    /// Quadlet files the spec names (the repository's `units/`).
    pub fn load(path: &Path, units_dir: &Path) -> Result<ImageSpec> {
        let spec = ImageSpec::read(path, units_dir)?;
        spec.check_sources()?;
        Ok(spec)
    }

    /// Like [`ImageSpec::load`] but without looking for the content
    /// sources (for commands that only show a spec, and for tests).
    pub fn read(path: &Path, units_dir: &Path) -> Result<ImageSpec> {
        let src = Source::read(path)?;
        let raw = parse(&src)?;
        let Some(role) = raw.role.as_ref().map(|r| *r.get_ref()) else {
            return Err(missing(path, "role", "one of app, db, gpu, allinone"));
        };
        let base = match &raw.base {
            None => None,
            Some(b) => {
                let loc = src.loc(b.span());
                let base_path = src.resolve(b.get_ref());
                let base_src = Source::read(&base_path).map_err(|e| {
                    loc.err("base", format!("cannot read {}: {e}", base_path.display()))
                })?;
                let base_raw = parse(&base_src)?;
                if let Some(r) = &base_raw.role {
                    return Err(base_src
                        .loc(r.span())
                        .err("role", "the role belongs in the role spec, not in its base"));
                }
                if let Some(g) = &base_raw.gpu {
                    return Err(base_src.loc(g.span()).err(
                        "gpu",
                        "the driver set belongs in a gpu or allinone role spec, not in the base",
                    ));
                }
                if let Some(b2) = &base_raw.base {
                    return Err(base_src.loc(b2.span()).err(
                        "base",
                        "a base spec cannot name another base (one level only)",
                    ));
                }
                Some(layer(&base_src, base_raw)?)
            }
        };
        let own = layer(&src, raw)?;
        merge(path, role, base, own, units_dir)
    }

    /// Checks that every content source exists (OCI layouts or archives,
    /// GGUF files and the files an Ollama model names, Hugging Face
    /// snapshot directories).
    pub fn check_sources(&self) -> Result<()> {
        let c = &self.content;
        for (o, loc) in c.oci.iter().zip(&c.oci_at) {
            exists(loc, "oci.source", &o.source)?;
        }
        for (m, loc) in c.ollama.iter().zip(&c.ollama_at) {
            exists(loc, "ollama.gguf", &m.gguf)?;
            for (key, p) in [
                ("ollama.template", &m.template),
                ("ollama.params", &m.params),
                ("ollama.system", &m.system),
                ("ollama.license", &m.license),
            ] {
                if let Some(p) = p {
                    exists(loc, key, p)?;
                }
            }
        }
        for (h, loc) in c.huggingface.iter().zip(&c.huggingface_at) {
            if !h.path.is_dir() {
                return Err(loc.err(
                    "huggingface.path",
                    format!("{} is not a directory", h.path.display()),
                ));
            }
        }
        Ok(())
    }

    /// The content partition's size in MiB for `content_bytes` of content.
    /// `auto`: content + 20 % + 64 MiB. A fixed size must hold the content
    /// plus 3 % plus 64 MiB; a smaller one is an error naming the spec file,
    /// line and `partitions.content`.
    pub fn content_mib(&self, content_bytes: u64) -> Result<u64> {
        const MIB: u64 = 1 << 20;
        let content_mib = content_bytes.div_ceil(MIB);
        let with = |percent: u64| {
            content_mib
                .saturating_add((content_mib.saturating_mul(percent)).div_ceil(100))
                .saturating_add(CONTENT_SLACK_MIB)
        };
        match self.partitions.content {
            ContentSize::Auto => Ok(with(CONTENT_AUTO_PERCENT)),
            ContentSize::Mib(fixed) => {
                let needed = with(CONTENT_MIN_PERCENT);
                if fixed >= needed {
                    return Ok(fixed);
                }
                let detail = format!(
                    "{fixed} MiB is too small for {content_bytes} bytes of content: \
                     it needs at least {needed} MiB (or use \"auto\")"
                );
                Err(match &self.content_size_at {
                    Some(loc) => loc.err("partitions.content", detail),
                    None => Error::invalid(
                        format!("{}: partitions.content", self.file.display()),
                        detail,
                    ),
                })
            }
        }
    }

    /// The text of Quadlet file `name` (one of `units.quadlets`) with each
    /// `@OCI:NAME@` placeholder replaced by `NAME@sha256:…`, the digest
    /// `digest_of` gives for the pre-filled `[[oci]]` entry of that name
    /// (normally the manifest digest of the image as it is stored).
    pub fn render_quadlet(
        &self,
        name: &str,
        digest_of: impl Fn(&OciSpec) -> Option<Sha256Digest>,
    ) -> Result<String> {
        if !self.units.quadlets.iter().any(|q| q == name) {
            return Err(Error::invalid(
                format!("{}: units.quadlets", self.file.display()),
                format!("{name:?} is not listed"),
            ));
        }
        let path = self.units.dir.join(name);
        let text = fs::read_to_string(&path).at("reading Quadlet unit", &path)?;
        let what = |line: usize| format!("{} line {line}", path.display());
        let mut out = String::with_capacity(text.len());
        for (index, line) in text.split_inclusive('\n').enumerate() {
            let mut rest = line;
            while let Some(start) = rest.find(OCI_PLACEHOLDER_START) {
                out.push_str(&rest[..start]);
                let after = &rest[start + OCI_PLACEHOLDER_START.len()..];
                let (repository, tail) =
                    split_placeholder(after).map_err(|e| Error::invalid(what(index + 1), e))?;
                let oci = self.content.oci_for(repository).ok_or_else(|| {
                    Error::invalid(
                        what(index + 1),
                        format!("no [[oci]] entry pre-fills {repository}"),
                    )
                })?;
                let digest = digest_of(oci).ok_or_else(|| {
                    Error::invalid(
                        what(index + 1),
                        format!("no digest for the pre-filled image {}", oci.reference),
                    )
                })?;
                out.push_str(&format!("{repository}@{digest}"));
                rest = tail;
            }
            out.push_str(rest);
        }
        Ok(out)
    }
}

fn exists(loc: &Loc, key: &str, path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(loc.err(key, format!("{} does not exist", path.display())))
    }
}

fn merge(
    file: &Path,
    role: Role,
    base: Option<Layer>,
    own: Layer,
    units_dir: &Path,
) -> Result<ImageSpec> {
    let base = base.unwrap_or_else(|| Layer {
        version: None,
        suite: None,
        mirror: None,
        components: None,
        packages: Vec::new(),
        enable: Vec::new(),
        quadlets: Vec::new(),
        dirs: Vec::new(),
        modes: Vec::new(),
        esp: None,
        root: None,
        content: None,
        data: None,
        cmdline: Vec::new(),
        oci: Vec::new(),
        ollama: Vec::new(),
        huggingface: Vec::new(),
        gpu: None,
    });

    let version = pick(base.version, own.version)
        .ok_or_else(|| missing(file, "version", "a version such as \"0.1.0\""))?;
    check_version(&version)?;

    let suite = pick(base.suite, own.suite)
        .ok_or_else(|| missing(file, "debian.suite", "a Debian suite such as \"trixie\""))?;
    check_word(&suite, "debian.suite", "a Debian suite")?;
    let mirror = pick(base.mirror, own.mirror)
        .ok_or_else(|| missing(file, "debian.mirror", "a mirror URL"))?;
    check_mirror(&mirror)?;
    let (components_loc, components) = own
        .components
        .or(base.components)
        .ok_or_else(|| missing(file, "debian.components", "such as [\"main\"]"))?;
    if components.is_empty() {
        return Err(components_loc.err("debian.components", "name at least one component"));
    }
    for c in &components {
        check_word(c, "debian.components", "a Debian archive component")?;
    }
    let packages = concat(base.packages, own.packages);
    for p in &packages {
        check_package(p)?;
    }
    let mut package_names: Vec<String> = packages.into_iter().map(|p| p.value).collect();
    package_names.sort();
    package_names.dedup();

    let dirs = concat(base.dirs, own.dirs);
    for d in &dirs {
        if !d.value.is_dir() {
            return Err(d.loc.err(
                "overlay.dirs",
                format!("{} is not a directory", d.value.display()),
            ));
        }
    }
    let overlay_dirs: Vec<PathBuf> = dirs.into_iter().map(|d| d.value).collect();
    let mut overlay_modes = BTreeMap::new();
    for (path, mode) in base.modes.into_iter().chain(own.modes) {
        let (rel, bits) = check_mode(&path, &mode, &overlay_dirs)?;
        overlay_modes.insert(rel, bits);
    }

    let esp = pick(base.esp, own.esp)
        .ok_or_else(|| missing(file, "partitions.esp", "the ESP's size in MiB"))?;
    let root = pick(base.root, own.root)
        .ok_or_else(|| missing(file, "partitions.root", "the root's size in MiB"))?;
    let data = pick(base.data, own.data)
        .ok_or_else(|| missing(file, "partitions.data", "the data partition's size in MiB"))?;
    check_size(&esp, "partitions.esp", MIN_ESP_MIB)?;
    check_size(&root, "partitions.root", MIN_ROOT_MIB)?;
    check_size(&data, "partitions.data", MIN_DATA_MIB)?;
    let content_at = pick(base.content, own.content);
    if let Some(At {
        value: ContentSize::Mib(n),
        loc,
    }) = &content_at
    {
        if *n > MAX_PARTITION_MIB {
            return Err(loc.err(
                "partitions.content",
                format!("{n} MiB is more than the {MAX_PARTITION_MIB} MiB limit"),
            ));
        }
    }

    let cmdline = concat(base.cmdline, own.cmdline);
    for arg in &cmdline {
        check_cmdline_arg(arg)?;
    }

    let oci = concat_unique(base.oci, own.oci, "oci", |o| o.reference.clone())?;
    for o in &oci {
        check_reference(&o.value.reference).map_err(|e| o.loc.err("oci.ref", detail_of(e)))?;
    }
    let ollama = concat_unique(base.ollama, own.ollama, "ollama", |m| m.name.clone())?;
    let huggingface = concat_unique(base.huggingface, own.huggingface, "huggingface", |h| {
        h.repo.clone()
    })?;
    let (oci, oci_at) = unzip(oci);
    let (ollama, ollama_at) = unzip(ollama);
    let (huggingface, huggingface_at) = unzip(huggingface);
    let content = ImageContent {
        oci,
        ollama,
        huggingface,
        oci_at,
        ollama_at,
        huggingface_at,
    };

    let quadlets = concat(base.quadlets, own.quadlets);
    for q in &quadlets {
        check_quadlet(q, units_dir, &content)?;
    }
    let enable = concat(base.enable, own.enable);
    for u in &enable {
        check_unit(u, units_dir, &quadlets)?;
    }
    let components: Vec<String> = components.into_iter().map(|c| c.value).collect();
    let gpu = match own.gpu {
        Some(g) => Some(check_gpu(g, role, &suite.value, &components)?),
        None => None,
    };

    Ok(ImageSpec {
        file: file.to_path_buf(),
        role,
        version: version.value,
        debian: DebianSpec {
            suite: suite.value,
            mirror: mirror.value,
            components,
            packages: package_names,
        },
        units: UnitsSpec {
            dir: units_dir.to_path_buf(),
            enable: enable.into_iter().map(|u| u.value).collect(),
            quadlets: quadlets.into_iter().map(|q| q.value).collect(),
        },
        overlay_dirs,
        overlay_modes,
        partitions: Partitions {
            esp_mib: esp.value,
            root_mib: root.value,
            content: content_at.as_ref().map_or(ContentSize::Auto, |c| c.value),
            data_mib: data.value,
        },
        kernel_cmdline: cmdline.into_iter().map(|a| a.value).collect(),
        content,
        gpu,
        content_size_at: content_at.map(|c| c.loc),
    })
}

/// The `[gpu]` section against the role, the driver sets in its firmware
/// directory, the suite and the components the image installs from.
fn check_gpu(g: GpuLayer, role: Role, suite: &str, components: &[String]) -> Result<GpuSpec> {
    if !matches!(role, Role::Gpu | Role::Allinone) {
        return Err(g.at.err(
            "gpu",
            format!("a {role} image carries no NVIDIA driver: [gpu] is for gpu and allinone specs"),
        ));
    }
    let firmware = Firmware::load(&g.firmware.value)
        .map_err(|e| g.firmware.loc.err("gpu.firmware", e.to_string()))?;
    let name = &g.driver_set.value;
    let Some(set) = firmware.sets.get(name) else {
        let have: Vec<&str> = firmware.sets.keys().map(String::as_str).collect();
        return Err(g.driver_set.loc.err(
            "gpu.driver_set",
            format!(
                "no driver set {name:?} in {} (have: {})",
                g.firmware.value.join("sets").display(),
                have.join(", ")
            ),
        ));
    };
    if set.module_package(g.flavour.value).is_none() {
        return Err(g.flavour.loc.err(
            "gpu.kernel_modules",
            format!(
                "driver set {name:?} has no {} kernel modules",
                g.flavour.value
            ),
        ));
    }
    if set.suite != suite {
        return Err(g.driver_set.loc.err(
            "gpu.driver_set",
            format!(
                "driver set {name:?} is for Debian {} and the image is {suite}",
                set.suite
            ),
        ));
    }
    let spec = GpuSpec {
        set: set.clone(),
        flavour: g.flavour.value,
        firmware_dir: g.firmware.value,
    };
    let mut outside: Vec<String> = spec
        .archive_packages()
        .filter(|p| !components.contains(&p.component))
        .map(|p| format!("{} ({})", p.name, p.component))
        .collect();
    outside.dedup();
    if !outside.is_empty() {
        return Err(g.driver_set.loc.err(
            "gpu.driver_set",
            format!(
                "driver set {name:?} needs packages from components the image does not use: \
                 {}; add them to debian.components (now: {})",
                outside.join(", "),
                components.join(", ")
            ),
        ));
    }
    Ok(spec)
}

/// Base and role entries together; the same name twice (in one file or
/// across both) is an error at the second.
fn concat_unique<T>(
    base: Vec<At<T>>,
    own: Vec<At<T>>,
    table: &str,
    name: impl Fn(&T) -> String,
) -> Result<Vec<At<T>>> {
    let mut seen: BTreeMap<String, Loc> = BTreeMap::new();
    let all: Vec<At<T>> = base.into_iter().chain(own).collect();
    for item in &all {
        let n = name(&item.value);
        if let Some(first) = seen.get(&n) {
            return Err(item.loc.err(
                &format!("[[{table}]]"),
                format!(
                    "{n:?} is listed twice (first at {} line {})",
                    first.file.display(),
                    first.line
                ),
            ));
        }
        seen.insert(n, item.loc.clone());
    }
    Ok(all)
}

fn unzip<T>(items: Vec<At<T>>) -> (Vec<T>, Vec<Loc>) {
    items.into_iter().map(|a| (a.value, a.loc)).unzip()
}

/// The detail of an `Invalid` error from the bundle library, without its
/// own "what" prefix.
fn detail_of(e: Error) -> String {
    match e {
        Error::Invalid { detail, .. } => detail,
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

/// A version is part of the image's file name.
fn check_version(v: &At<String>) -> Result<()> {
    let s = &v.value;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
        && s.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(v.loc.err(
            "version",
            format!(
                "{s:?}: use 1-64 characters from A-Z a-z 0-9 . _ - + starting with a letter or digit"
            ),
        ))
    }
}

/// Suites and components: lower-case letters, digits, `-`.
fn check_word(v: &At<String>, key: &str, what: &str) -> Result<()> {
    let s = &v.value;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(v.loc.err(
            key,
            format!("{s:?} is not {what} (lower-case letters, digits and -)"),
        ))
    }
}

fn check_mirror(v: &At<String>) -> Result<()> {
    match mirror_problem(&v.value) {
        None => Ok(()),
        Some(problem) => Err(v.loc.err("debian.mirror", problem)),
    }
}

/// What is wrong with a mirror URL (the spec's or `--mirror`), if anything.
pub fn mirror_problem(s: &str) -> Option<String> {
    let scheme_ok = ["http://", "https://", "file:/", "copy:/", "mirror+file:/"]
        .iter()
        .any(|p| s.starts_with(p));
    let clean = !s.chars().any(|c| c.is_whitespace() || c.is_control());
    (!(scheme_ok && clean))
        .then(|| format!("{s:?}: use an http://, https:// or file:/ URL with no spaces"))
}

/// Debian policy 5.6.1: at least two characters, lower-case letters,
/// digits, `+`, `-`, `.`, starting with a letter or digit.
fn check_package(v: &At<String>) -> Result<()> {
    let s = &v.value;
    let b = s.as_bytes();
    let ok = b.len() >= 2
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(v.loc.err(
            "debian.packages",
            format!(
                "{s:?} is not a Debian package name (2 or more of a-z 0-9 + - ., \
                 starting with a letter or digit)"
            ),
        ))
    }
}

fn check_size(v: &At<u64>, key: &str, min: u64) -> Result<()> {
    if v.value < min {
        Err(v.loc.err(
            key,
            format!("{} MiB is below the minimum of {min} MiB", v.value),
        ))
    } else if v.value > MAX_PARTITION_MIB {
        Err(v.loc.err(
            key,
            format!(
                "{} MiB is more than the {MAX_PARTITION_MIB} MiB limit",
                v.value
            ),
        ))
    } else {
        Ok(())
    }
}

fn check_cmdline_arg(v: &At<String>) -> Result<()> {
    let s = &v.value;
    if s.is_empty() || s.len() > 1024 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(v.loc.err(
            "kernel.cmdline",
            format!("{s:?}: one non-empty argument per entry, with no spaces"),
        ));
    }
    let key = s.split_once('=').map_or(s.as_str(), |(k, _)| k);
    if RESERVED_CMDLINE.contains(&key) {
        return Err(v.loc.err(
            "kernel.cmdline",
            format!("{s:?}: the builder sets {key} itself (root and verity arguments)"),
        ));
    }
    Ok(())
}

/// `overlay.modes`: a relative path present in some overlay directory, and
/// an octal mode.
fn check_mode(path: &str, mode: &At<String>, dirs: &[PathBuf]) -> Result<(PathBuf, u32)> {
    let key = format!("overlay.modes.{path:?}");
    let rel = Path::new(path);
    let plain = !path.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(mode.loc.err(
            &key,
            "use a path relative to the root, such as \"etc/owui/open-webui.env\"",
        ));
    }
    if !dirs.iter().any(|d| d.join(rel).symlink_metadata().is_ok()) {
        return Err(mode.loc.err(&key, "no overlay directory has this path"));
    }
    let digits = mode.value.as_str();
    let bits = (!digits.is_empty() && digits.len() <= 4)
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .ok_or_else(|| {
            mode.loc.err(
                &key,
                format!("{digits:?} is not an octal mode such as \"0600\""),
            )
        })?;
    Ok((rel.to_path_buf(), bits))
}

/// `name.suffix` with a known suffix and systemd's unit-name characters.
fn split_unit_name<'a>(name: &'a str, suffixes: &[&str]) -> Option<(&'a str, &'a str)> {
    let (stem, suffix) = name.rsplit_once('.')?;
    let ok = !stem.is_empty()
        && name.len() <= 255
        && suffixes.contains(&suffix)
        && stem.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'.' | b'@' | b'\\')
        });
    ok.then_some((stem, suffix))
}

/// The service Quadlet generates from a Quadlet file.
fn generated_service(quadlet: &str) -> Option<String> {
    let (stem, suffix) = split_unit_name(quadlet, QUADLET_SUFFIXES)?;
    Some(match suffix {
        "container" | "kube" => format!("{stem}.service"),
        other => format!("{stem}-{other}.service"),
    })
}

fn check_unit(u: &At<String>, units_dir: &Path, quadlets: &[At<String>]) -> Result<()> {
    let name = &u.value;
    let Some((stem, _)) = split_unit_name(name, UNIT_SUFFIXES) else {
        return Err(u.loc.err(
            "units.enable",
            format!(
                "{name:?} is not a unit name (NAME.service, .socket, .timer, .target, .path, \
                 .mount, .automount, .swap or .slice)"
            ),
        ));
    };
    if stem.ends_with('@') {
        return Err(u.loc.err(
            "units.enable",
            format!("{name:?} is a template: name an instance, such as {stem}main.service"),
        ));
    }
    if let Some(q) = quadlets
        .iter()
        .find(|q| generated_service(&q.value).as_deref() == Some(name.as_str()))
    {
        return Err(u.loc.err(
            "units.enable",
            format!(
                "{name:?} is generated from the Quadlet file {:?}, which starts it through its \
                 [Install] section: list it in units.quadlets only",
                q.value
            ),
        ));
    }
    // Ours must ship in units/; any other name is a Debian package's.
    if name.starts_with("owui-") && !units_dir.join(name).is_file() {
        return Err(u.loc.err(
            "units.enable",
            format!("{name:?} is not in {}", units_dir.display()),
        ));
    }
    Ok(())
}

/// A Quadlet file: exists in units/, starts on boot, and pulls nothing: each
/// `Image=` is a placeholder of a pre-filled image or pinned by digest.
fn check_quadlet(q: &At<String>, units_dir: &Path, content: &ImageContent) -> Result<()> {
    let name = &q.value;
    let Some((_, suffix)) = split_unit_name(name, QUADLET_SUFFIXES) else {
        return Err(q.loc.err(
            "units.quadlets",
            format!(
                "{name:?} is not a Quadlet file name (NAME.container, .volume, .network, .pod, \
                 .image or .kube)"
            ),
        ));
    };
    let path = units_dir.join(name);
    let text = fs::read_to_string(&path).map_err(|e| {
        q.loc.err(
            "units.quadlets",
            format!("{name:?}: cannot read {}: {e}", path.display()),
        )
    })?;
    let err = |detail: String| q.loc.err("units.quadlets", format!("{name:?}: {detail}"));
    let mut section = "";
    let mut wanted = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if section == "Install" && matches!(key, "WantedBy" | "RequiredBy" | "UpheldBy") {
            wanted |= !value.is_empty();
        }
        if key != "Image" || !matches!(section, "Container" | "Image" | "Pod" | "Kube") {
            continue;
        }
        let here = index + 1;
        if let Some(after) = value.strip_prefix(OCI_PLACEHOLDER_START) {
            let (repository, tail) =
                split_placeholder(after).map_err(|e| err(format!("line {here}: {e}")))?;
            if !tail.is_empty() {
                return Err(err(format!(
                    "line {here}: nothing may follow the placeholder in Image="
                )));
            }
            if content.oci_for(repository).is_none() {
                return Err(err(format!(
                    "line {here}: image {repository} is not pre-filled: add an [[oci]] entry \
                     whose ref names it (nothing is pulled on a node)"
                )));
            }
        } else if !(is_digest_pinned(value)
            || value.ends_with(".image")
            || value.ends_with(".build"))
        {
            return Err(err(format!(
                "line {here}: Image={value} would be pulled by tag; write \
                 {OCI_PLACEHOLDER_START}NAME{OCI_PLACEHOLDER_END} for a pre-filled image"
            )));
        }
    }
    if suffix == "container" && !wanted {
        return Err(err(
            "has no [Install] WantedBy=, so it would never start".to_string()
        ));
    }
    Ok(())
}

fn is_digest_pinned(reference: &str) -> bool {
    reference
        .split_once('@')
        .is_some_and(|(_, d)| Sha256Digest::parse(d).is_ok())
}

/// Splits `NAME@rest` (the text after `@OCI:`): NAME must be a fully
/// qualified repository without tag or digest.
fn split_placeholder(after: &str) -> std::result::Result<(&str, &str), String> {
    let Some(end) = after.find(OCI_PLACEHOLDER_END) else {
        return Err(format!(
            "unterminated placeholder: write {OCI_PLACEHOLDER_START}NAME{OCI_PLACEHOLDER_END}"
        ));
    };
    let (repository, tail) = (&after[..end], &after[end + 1..]);
    if check_reference(repository).is_err() || repository != repository_of(repository) {
        return Err(format!(
            "{OCI_PLACEHOLDER_START}{repository}{OCI_PLACEHOLDER_END}: name an image repository \
             without tag or digest"
        ));
    }
    let first = repository.split('/').next().unwrap_or_default();
    if !repository.contains('/') || !(first.contains(['.', ':']) || first == "localhost") {
        return Err(format!(
            "{OCI_PLACEHOLDER_START}{repository}{OCI_PLACEHOLDER_END}: write the registry too \
             (docker.io/ollama/ollama), as the [[oci]] ref does"
        ));
    }
    Ok((repository, tail))
}

/// A reference without its digest and tag (a `:` before the last `/` is a
/// registry port, not a tag).
fn repository_of(reference: &str) -> &str {
    let name_tag = reference.split('@').next().unwrap_or(reference);
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[last_slash..].find(':') {
        Some(colon) => &name_tag[..last_slash + colon],
        None => name_tag,
    }
}

// ---------------------------------------------------------------------------
// Built-in specs
// ---------------------------------------------------------------------------

/// One file of the built-in tree, by its path in the repository.
enum Embedded {
    File(&'static str, &'static str),
    Link(&'static str, &'static str),
}

/// `images/` (without `content/`), `units/` and `firmware/` as compiled in;
/// a test keeps this list equal to the repository.
const EMBEDDED: &[Embedded] = &[
    Embedded::File(
        "images/base.toml",
        include_str!("../../../images/base.toml"),
    ),
    Embedded::File("images/app.toml", include_str!("../../../images/app.toml")),
    Embedded::File("images/db.toml", include_str!("../../../images/db.toml")),
    Embedded::File("images/gpu.toml", include_str!("../../../images/gpu.toml")),
    Embedded::File(
        "images/allinone.toml",
        include_str!("../../../images/allinone.toml"),
    ),
    Embedded::File(
        "images/overlay/common/etc/nftables.conf",
        include_str!("../../../images/overlay/common/etc/nftables.conf"),
    ),
    Embedded::File(
        "images/overlay/common/etc/nftables.d/README",
        include_str!("../../../images/overlay/common/etc/nftables.d/README"),
    ),
    Embedded::Link(
        "images/overlay/common/etc/owui/seed.toml",
        "../../run/owui/seed.toml",
    ),
    Embedded::Link(
        "images/overlay/common/etc/owui/secrets",
        "../../var/lib/owui/secrets",
    ),
    Embedded::Link(
        "images/overlay/common/etc/owui/tls",
        "../../var/lib/owui/tls",
    ),
    Embedded::File(
        "images/overlay/common/etc/ssh/sshd_config.d/50-owui.conf",
        include_str!("../../../images/overlay/common/etc/ssh/sshd_config.d/50-owui.conf"),
    ),
    Embedded::File(
        "images/overlay/common/etc/sysctl.d/90-owui.conf",
        include_str!("../../../images/overlay/common/etc/sysctl.d/90-owui.conf"),
    ),
    Embedded::File(
        "images/overlay/common/usr/lib/tmpfiles.d/owui.conf",
        include_str!("../../../images/overlay/common/usr/lib/tmpfiles.d/owui.conf"),
    ),
    Embedded::File(
        "images/overlay/web/etc/nginx/nginx.conf",
        include_str!("../../../images/overlay/web/etc/nginx/nginx.conf"),
    ),
    Embedded::File(
        "images/overlay/web/etc/nginx/conf.d/owui.conf",
        include_str!("../../../images/overlay/web/etc/nginx/conf.d/owui.conf"),
    ),
    Embedded::File(
        "images/overlay/web/etc/nginx/owui-proxy.conf",
        include_str!("../../../images/overlay/web/etc/nginx/owui-proxy.conf"),
    ),
    Embedded::File(
        "images/overlay/web/etc/owui/open-webui.env",
        include_str!("../../../images/overlay/web/etc/owui/open-webui.env"),
    ),
    Embedded::File(
        "images/overlay/web/etc/owui/open-terminal.env",
        include_str!("../../../images/overlay/web/etc/owui/open-terminal.env"),
    ),
    Embedded::File(
        "images/overlay/containers/etc/containers/storage.conf",
        include_str!("../../../images/overlay/containers/etc/containers/storage.conf"),
    ),
    Embedded::File(
        "images/overlay/containers/etc/containers/containers.conf.d/50-owui.conf",
        include_str!(
            "../../../images/overlay/containers/etc/containers/containers.conf.d/50-owui.conf"
        ),
    ),
    Embedded::File(
        "images/overlay/containers/etc/containers/registries.conf.d/50-owui.conf",
        include_str!(
            "../../../images/overlay/containers/etc/containers/registries.conf.d/50-owui.conf"
        ),
    ),
    Embedded::File(
        "images/overlay/redis/etc/redis/redis.conf",
        include_str!("../../../images/overlay/redis/etc/redis/redis.conf"),
    ),
    Embedded::File(
        "images/overlay/redis/etc/redis/owui.conf",
        include_str!("../../../images/overlay/redis/etc/redis/owui.conf"),
    ),
    Embedded::File(
        "images/overlay/postgresql/etc/postgresql-common/createcluster.d/50-owui.conf",
        include_str!(
            "../../../images/overlay/postgresql/etc/postgresql-common/createcluster.d/50-owui.conf"
        ),
    ),
    Embedded::File(
        "images/overlay/inference/etc/owui/vllm.env",
        include_str!("../../../images/overlay/inference/etc/owui/vllm.env"),
    ),
    Embedded::File(
        "images/overlay/app/etc/owui/agent.toml",
        include_str!("../../../images/overlay/app/etc/owui/agent.toml"),
    ),
    Embedded::File(
        "images/overlay/db/etc/owui/agent.toml",
        include_str!("../../../images/overlay/db/etc/owui/agent.toml"),
    ),
    Embedded::File(
        "images/overlay/db/etc/nftables.d/db.nft",
        include_str!("../../../images/overlay/db/etc/nftables.d/db.nft"),
    ),
    Embedded::File(
        "images/overlay/gpu/etc/owui/agent.toml",
        include_str!("../../../images/overlay/gpu/etc/owui/agent.toml"),
    ),
    Embedded::File(
        "images/overlay/gpu/etc/nftables.d/gpu.nft",
        include_str!("../../../images/overlay/gpu/etc/nftables.d/gpu.nft"),
    ),
    Embedded::File(
        "images/overlay/gpu/etc/owui/ollama.env",
        include_str!("../../../images/overlay/gpu/etc/owui/ollama.env"),
    ),
    Embedded::File(
        "images/overlay/gpu/etc/owui/vllm.yaml",
        include_str!("../../../images/overlay/gpu/etc/owui/vllm.yaml"),
    ),
    Embedded::File(
        "images/overlay/allinone/etc/owui/agent.toml",
        include_str!("../../../images/overlay/allinone/etc/owui/agent.toml"),
    ),
    Embedded::File(
        "images/overlay/allinone/etc/owui/ollama.env",
        include_str!("../../../images/overlay/allinone/etc/owui/ollama.env"),
    ),
    Embedded::File(
        "images/overlay/allinone/etc/owui/vllm.yaml",
        include_str!("../../../images/overlay/allinone/etc/owui/vllm.yaml"),
    ),
    Embedded::File(
        "units/owui-agent.service",
        include_str!("../../../units/owui-agent.service"),
    ),
    Embedded::File(
        "units/owui-seed.service",
        include_str!("../../../units/owui-seed.service"),
    ),
    Embedded::File(
        "units/owui-secrets.service",
        include_str!("../../../units/owui-secrets.service"),
    ),
    Embedded::File(
        "units/owui-postgresql-setup.service",
        include_str!("../../../units/owui-postgresql-setup.service"),
    ),
    Embedded::File(
        "units/owui-gpu-setup.service",
        include_str!("../../../units/owui-gpu-setup.service"),
    ),
    Embedded::File(
        "units/owui-ready.service",
        include_str!("../../../units/owui-ready.service"),
    ),
    Embedded::File("units/var.mount", include_str!("../../../units/var.mount")),
    Embedded::File(
        "units/var-lib-owui.mount",
        include_str!("../../../units/var-lib-owui.mount"),
    ),
    Embedded::File("units/efi.mount", include_str!("../../../units/efi.mount")),
    Embedded::File(
        "units/owui-ssh-host-keys.service",
        include_str!("../../../units/owui-ssh-host-keys.service"),
    ),
    Embedded::File(
        "units/open-webui.container",
        include_str!("../../../units/open-webui.container"),
    ),
    Embedded::File(
        "units/open-terminal.container",
        include_str!("../../../units/open-terminal.container"),
    ),
    Embedded::File(
        "firmware/gpus.toml",
        include_str!("../../../firmware/gpus.toml"),
    ),
    Embedded::File(
        "firmware/sets/debian-tesla-535.toml",
        include_str!("../../../firmware/sets/debian-tesla-535.toml"),
    ),
    Embedded::File(
        "units/ollama.container",
        include_str!("../../../units/ollama.container"),
    ),
    Embedded::File(
        "units/vllm.container",
        include_str!("../../../units/vllm.container"),
    ),
];

/// Writes the built-in `images/`, `units/` and `firmware/` trees under `dir` (replacing
/// files of the same names) and returns `dir/images`. Content is not built
/// in: put it under `dir/images/content/` as in the repository.
pub fn write_builtin(dir: &Path) -> Result<PathBuf> {
    for entry in EMBEDDED {
        let rel = match entry {
            Embedded::File(rel, _) | Embedded::Link(rel, _) => rel,
        };
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).at("creating", parent)?;
        }
        match path.symlink_metadata() {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path).at("replacing", &path)?,
            Ok(_) => fs::remove_file(&path).at("replacing", &path)?,
            Err(_) => {}
        }
        match entry {
            Embedded::File(_, text) => fs::write(&path, text).at("writing", &path)?,
            Embedded::Link(_, target) => {
                std::os::unix::fs::symlink(target, &path).at("writing", &path)?
            }
        }
    }
    Ok(dir.join("images"))
}

impl ImageSpec {
    /// The built-in spec of `role` (`app`, `db`, `gpu`, `allinone`): the
    /// repository's `images/`, `units/` and `firmware/` as compiled in,
    /// written under `dir` by [`write_builtin`] and loaded from there, so
    /// `owui-builder build allinone` needs no spec files. Content sources
    /// must be under `dir/images/content/`.
    pub fn builtin(role: &str, dir: &Path) -> Result<ImageSpec> {
        let images = builtin_tree(role, dir)?;
        ImageSpec::load(&images.join(format!("{role}.toml")), &dir.join("units"))
    }
}

fn builtin_tree(role: &str, dir: &Path) -> Result<PathBuf> {
    if !Role::ALL.iter().any(|r| r.as_str() == role) {
        return Err(Error::invalid(
            format!("built-in spec {role:?}"),
            "no such role: use app, db, gpu or allinone, or a spec file's path",
        ));
    }
    write_builtin(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// A spec directory with a units/ dir, an overlay dir and a content file.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    const QUADLET: &str =
        "[Container]\nImage=@OCI:ghcr.io/example/app@\n\n[Install]\nWantedBy=multi-user.target\n";

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path();
            fs::create_dir_all(p.join("units")).unwrap();
            fs::create_dir_all(p.join("spec/overlay/x/etc")).unwrap();
            fs::write(p.join("spec/overlay/x/etc/app.env"), "A=1\n").unwrap();
            fs::create_dir_all(p.join("spec/content/app")).unwrap();
            fs::write(p.join("units/owui-x.service"), "[Service]\n").unwrap();
            fs::write(p.join("units/app.container"), QUADLET).unwrap();
            Fixture { dir }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, rel: &str, text: &str) -> PathBuf {
            let p = self.path(rel);
            fs::write(&p, text).unwrap();
            p
        }

        fn read(&self, text: &str) -> Result<ImageSpec> {
            let p = self.write("spec/role.toml", text);
            ImageSpec::read(&p, &self.path("units"))
        }

        fn load(&self, text: &str) -> Result<ImageSpec> {
            let p = self.write("spec/role.toml", text);
            ImageSpec::load(&p, &self.path("units"))
        }
    }

    const BASE: &str = r#"version = "1.0"
[debian]
suite = "trixie"
mirror = "http://deb.debian.org/debian"
components = ["main"]
packages = ["systemd", "linux-image-amd64"]
[units]
enable = ["owui-x.service"]
[overlay]
dirs = ["overlay/x"]
[partitions]
esp = 128
root = 1024
data = 1024
[kernel]
cmdline = ["quiet"]
"#;

    const ROLE: &str = r#"role = "app"
base = "base.toml"
[debian]
packages = ["nginx", "systemd"]
[units]
enable = ["nginx.service"]
quadlets = ["app.container"]
[overlay.modes]
"etc/app.env" = "0600"
[[oci]]
ref = "ghcr.io/example/app:1.2"
source = "content/app"
"#;

    fn with_base(f: &Fixture) {
        f.write("spec/base.toml", BASE);
    }

    fn err_of(r: Result<ImageSpec>) -> (u8, String) {
        let e = r.unwrap_err();
        (e.exit_code(), e.to_string())
    }

    #[test]
    fn a_role_spec_merges_its_base() {
        let f = Fixture::new();
        with_base(&f);
        let s = f.load(ROLE).unwrap();
        assert_eq!(s.role, Role::App);
        assert_eq!(s.version, "1.0");
        assert_eq!(s.debian.suite, "trixie");
        assert_eq!(s.debian.components, ["main"]);
        // Sorted, each once.
        assert_eq!(s.debian.packages, ["linux-image-amd64", "nginx", "systemd"]);
        assert_eq!(s.units.enable, ["owui-x.service", "nginx.service"]);
        assert_eq!(s.units.own_units(), [f.path("units/owui-x.service")]);
        assert_eq!(s.units.quadlets, ["app.container"]);
        assert_eq!(s.overlay_dirs, [f.path("spec/overlay/x")]);
        assert_eq!(s.overlay_modes[Path::new("etc/app.env")], 0o600);
        assert_eq!(
            s.partitions,
            Partitions {
                esp_mib: 128,
                root_mib: 1024,
                content: ContentSize::Auto,
                data_mib: 1024
            }
        );
        assert_eq!(s.kernel_cmdline, ["quiet"]);
        assert_eq!(s.content.oci[0].source, f.path("spec/content/app"));
        assert!(!s.content.is_empty());
        let b = s.content.to_bundle_spec(s.role, "image", 1);
        assert_eq!((b.roles, b.oci.len()), (vec![Role::App], 1));

        // The role's values replace the base's.
        let text = ROLE.replace(
            "[[oci]]",
            "[partitions]\nroot = 4096\ncontent = 500\n[kernel]\ncmdline = [\"quiet\", \"x=1\"]\n[[oci]]",
        );
        let s = f.read(&format!("version = \"2.0\"\n{text}")).unwrap();
        assert_eq!(s.version, "2.0");
        assert_eq!(
            (
                s.partitions.root_mib,
                s.partitions.esp_mib,
                s.partitions.content
            ),
            (4096, 128, ContentSize::Mib(500))
        );
        assert_eq!(s.kernel_cmdline, ["quiet", "x=1"]);
    }

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

    #[test]
    fn role_and_version_checks() {
        let f = Fixture::new();
        with_base(&f);
        let (code, e) = err_of(f.read(&ROLE.replace("\"app\"", "\"web\"")));
        assert_eq!(code, 3);
        assert!(e.contains("line 1") && e.contains("web"), "{e}");
        let (_, e) = err_of(f.read(&ROLE.replace("role = \"app\"\n", "")));
        assert!(
            e.contains("role.toml: role") && e.contains("missing"),
            "{e}"
        );
        f.write("spec/base.toml", &format!("role = \"db\"\n{BASE}"));
        let (_, e) = err_of(f.read(ROLE));
        assert!(e.contains("base.toml line 1: role"), "{e}");
        f.write("spec/base.toml", &format!("base = \"other.toml\"\n{BASE}"));
        let (_, e) = err_of(f.read(ROLE));
        assert!(
            e.contains("base.toml line 1: base") && e.contains("one level"),
            "{e}"
        );
        let (_, e) = err_of(f.read(&ROLE.replace("base.toml", "nope.toml")));
        assert!(
            e.contains("role.toml line 2: base") && e.contains("nope.toml"),
            "{e}"
        );
        for bad in ["../1", "", "1 0", ".1", "a/b"] {
            f.write(
                "spec/base.toml",
                &BASE.replace("\"1.0\"", &format!("{bad:?}")),
            );
            let (_, e) = err_of(f.read(ROLE));
            assert!(e.contains("base.toml line 1: version"), "{bad}: {e}");
        }
        f.write("spec/base.toml", &BASE.replace("version = \"1.0\"\n", ""));
        let (_, e) = err_of(f.read(ROLE));
        assert!(
            e.contains("role.toml: version") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn debian_checks() {
        let f = Fixture::new();
        with_base(&f);
        for (from, to, needle) in [
            ("\"nginx\"", "\"\"", "line 4: debian.packages"),
            (
                "\"nginx\"",
                "\"Nginx\"",
                "\"Nginx\" is not a Debian package name",
            ),
            ("\"nginx\"", "\"ngin x\"", "debian.packages"),
            ("\"nginx\"", "\"x\"", "debian.packages"),
            ("\"nginx\"", "\"-x\"", "debian.packages"),
            (
                "\"nginx\"",
                "\"nginx\", \"nginx\"",
                "\"nginx\" is listed twice",
            ),
        ] {
            let (code, e) = err_of(f.read(&ROLE.replacen(from, to, 1)));
            assert_eq!(code, 3);
            assert!(e.contains("role.toml") && e.contains(needle), "{to}: {e}");
        }
        for (from, to, needle) in [
            ("\"trixie\"", "\"Trixie\"", "line 3: debian.suite"),
            (
                "\"http://deb.debian.org/debian\"",
                "\"ftp://x\"",
                "line 4: debian.mirror",
            ),
            (
                "\"http://deb.debian.org/debian\"",
                "\"http://a b\"",
                "debian.mirror",
            ),
            ("[\"main\"]", "[]", "line 5: debian.components"),
            ("[\"main\"]", "[\"main\", \"main\"]", "listed twice"),
            ("[\"main\"]", "[\"ma in\"]", "debian.components"),
        ] {
            f.write("spec/base.toml", &BASE.replace(from, to));
            let (_, e) = err_of(f.read(ROLE));
            assert!(e.contains("base.toml") && e.contains(needle), "{to}: {e}");
        }
        f.write("spec/base.toml", &BASE.replace("suite = \"trixie\"\n", ""));
        let (_, e) = err_of(f.read(ROLE));
        assert!(e.contains("debian.suite") && e.contains("missing"), "{e}");
        // A file:/ mirror (a local package cache) is fine.
        f.write(
            "spec/base.toml",
            &BASE.replace("http://deb.debian.org/debian", "file:/srv/mirror"),
        );
        assert_eq!(f.read(ROLE).unwrap().debian.mirror, "file:/srv/mirror");
    }

    #[test]
    fn unit_checks() {
        let f = Fixture::new();
        with_base(&f);
        for (to, needle) in [
            (
                "\"owui-missing.service\"",
                "\"owui-missing.service\" is not in",
            ),
            ("\"nginx\"", "\"nginx\" is not a unit name"),
            ("\"nginx.conf\"", "is not a unit name"),
            ("\"postgresql@.service\"", "is a template"),
            (
                "\"app.service\"",
                "generated from the Quadlet file \"app.container\"",
            ),
            ("\"nginx.service\", \"nginx.service\"", "listed twice"),
        ] {
            let (code, e) = err_of(f.read(&ROLE.replace("\"nginx.service\"", to)));
            assert_eq!(code, 3);
            assert!(
                e.contains("role.toml line 6: units.enable") && e.contains(needle),
                "{to}: {e}"
            );
        }
        // A Debian unit we cannot check, a template instance: fine.
        let s = f
            .read(&ROLE.replace("\"nginx.service\"", "\"postgresql@17-main.service\""))
            .unwrap();
        assert!(s
            .units
            .enable
            .contains(&"postgresql@17-main.service".to_string()));

        for (to, needle) in [
            ("\"missing.container\"", "cannot read"),
            ("\"app.conf\"", "not a Quadlet file name"),
            ("\"../units/app.container\"", "not a Quadlet file name"),
            ("\"app.container\", \"app.container\"", "listed twice"),
        ] {
            let (_, e) = err_of(f.read(&ROLE.replace("\"app.container\"", to)));
            assert!(
                e.contains("line 7: units.quadlets") && e.contains(needle),
                "{to}: {e}"
            );
        }
    }

    #[test]
    fn quadlet_images_must_be_prefilled_or_pinned() {
        let f = Fixture::new();
        with_base(&f);
        let cases = [
            (
                "Image=docker.io/library/alpine:3.19",
                "would be pulled by tag",
            ),
            (
                "Image=docker.io/library/alpine:latest",
                "would be pulled by tag",
            ),
            (
                "Image=@OCI:ghcr.io/example/other@",
                "ghcr.io/example/other is not pre-filled",
            ),
            ("Image=@OCI:ghcr.io/example/app", "unterminated placeholder"),
            (
                "Image=@OCI:ghcr.io/example/app:1.2@",
                "without tag or digest",
            ),
            ("Image=@OCI:example/app@", "write the registry too"),
            ("Image=@OCI:ghcr.io/example/app@x", "nothing may follow"),
        ];
        for (line, needle) in cases {
            f.write(
                "units/app.container",
                &QUADLET.replace("Image=@OCI:ghcr.io/example/app@", line),
            );
            let (code, e) = err_of(f.read(ROLE));
            assert_eq!(code, 3);
            assert!(
                e.contains("units.quadlets") && e.contains("line 2") && e.contains(needle),
                "{line}: {e}"
            );
        }
        let digest = format!("sha256:{}", "ab".repeat(32));
        f.write(
            "units/app.container",
            &QUADLET.replace(
                "@OCI:ghcr.io/example/app@",
                &format!("docker.io/x/y@{digest}"),
            ),
        );
        f.read(ROLE).unwrap();
        f.write("units/app.container", "[Container]\nImage=app.image\n");
        let (_, e) = err_of(f.read(ROLE));
        assert!(e.contains("never start"), "{e}");
    }

    #[test]
    fn quadlets_render_with_digests() {
        let f = Fixture::new();
        with_base(&f);
        let s = f.read(ROLE).unwrap();
        let digest = Sha256Digest::of(b"manifest");
        let text = s
            .render_quadlet("app.container", |o| {
                (o.reference == "ghcr.io/example/app:1.2").then_some(digest)
            })
            .unwrap();
        assert!(
            text.contains(&format!("\nImage=ghcr.io/example/app@{digest}\n")),
            "{text}"
        );
        assert!(text.ends_with("WantedBy=multi-user.target\n"));
        let e = s.render_quadlet("app.container", |_| None).unwrap_err();
        assert!(e.to_string().contains("no digest"), "{e}");
        let e = s
            .render_quadlet("other.container", |_| Some(digest))
            .unwrap_err();
        assert!(e.to_string().contains("not listed"), "{e}");
        assert_eq!(
            repository_of("localhost:5000/a/b:1@sha256:00"),
            "localhost:5000/a/b"
        );
        assert_eq!(
            repository_of("docker.io/ollama/ollama"),
            "docker.io/ollama/ollama"
        );
        assert!(s.content.oci_for("ghcr.io/example/app").is_some());
        assert!(s.content.oci_for("ghcr.io/example").is_none());
    }

    #[test]
    fn overlay_checks() {
        let f = Fixture::new();
        with_base(&f);
        let (code, e) = err_of(f.read(&ROLE.replace(
            "[overlay.modes]",
            "[overlay]\ndirs = [\"overlay/none\"]\n[overlay.modes]",
        )));
        assert_eq!(code, 3);
        assert!(
            e.contains("role.toml line 9: overlay.dirs") && e.contains("not a directory"),
            "{e}"
        );
        for (from, to, needle) in [
            (
                "\"etc/app.env\"",
                "\"etc/none\"",
                "no overlay directory has this path",
            ),
            (
                "\"etc/app.env\"",
                "\"/etc/app.env\"",
                "relative to the root",
            ),
            (
                "\"etc/app.env\"",
                "\"etc/../app.env\"",
                "relative to the root",
            ),
            ("\"0600\"", "\"0800\"", "not an octal mode"),
            ("\"0600\"", "\"rw\"", "not an octal mode"),
            ("\"0600\"", "\"106000\"", "not an octal mode"),
        ] {
            let (_, e) = err_of(f.read(&ROLE.replace(from, to)));
            assert!(
                e.contains("line 9: overlay.modes") && e.contains(needle),
                "{to}: {e}"
            );
        }
    }

    #[test]
    fn partition_checks() {
        let f = Fixture::new();
        with_base(&f);
        for (from, to, needle) in [
            ("esp = 128", "esp = 1", "line 12: partitions.esp"),
            ("root = 1024", "root = 10", "line 13: partitions.root"),
            ("data = 1024", "data = 0", "line 14: partitions.data"),
            ("data = 1024", "data = -5", "line 14"),
            ("data = 1024", "data = \"big\"", "line 14"),
            ("data = 1024", "data = 99999999999", "limit"),
            ("data = 1024", "data = 1024\ncontent = \"some\"", "line 15"),
            ("data = 1024", "data = 1024\ncontent = -1", "line 15"),
            (
                "data = 1024",
                "data = 1024\ncontent = 99999999999",
                "line 15: partitions.content",
            ),
        ] {
            f.write("spec/base.toml", &BASE.replace(from, to));
            let (code, e) = err_of(f.read(ROLE));
            assert_eq!(code, 3);
            assert!(e.contains("base.toml") && e.contains(needle), "{to}: {e}");
        }
        f.write("spec/base.toml", &BASE.replace("esp = 128\n", ""));
        let (_, e) = err_of(f.read(ROLE));
        assert!(e.contains("partitions.esp") && e.contains("missing"), "{e}");
    }

    #[test]
    fn content_partition_size() {
        let f = Fixture::new();
        with_base(&f);
        const MIB: u64 = 1 << 20;
        let auto = f.read(ROLE).unwrap();
        assert_eq!(auto.content_mib(0).unwrap(), 64);
        // 1000 MiB + 20 % + 64; a partial MiB counts as one.
        assert_eq!(auto.content_mib(1000 * MIB).unwrap(), 1264);
        assert_eq!(auto.content_mib(1000 * MIB - 1).unwrap(), 1264);
        assert!(auto.content_mib(u64::MAX).unwrap() > u64::MAX / (1 << 20));

        let fixed = f
            .read(&ROLE.replace("[[oci]]", "[partitions]\ncontent = 1100\n[[oci]]"))
            .unwrap();
        assert_eq!(fixed.partitions.content, ContentSize::Mib(1100));
        // 1000 MiB + 3 % + 64 = 1094 fits in 1100; 1100 MiB does not.
        assert_eq!(fixed.content_mib(1000 * MIB).unwrap(), 1100);
        let e = fixed.content_mib(1100 * MIB).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        let e = e.to_string();
        assert!(
            e.contains("role.toml line 11: partitions.content") && e.contains("1197 MiB"),
            "{e}"
        );
    }

    #[test]
    fn kernel_cmdline_checks() {
        let f = Fixture::new();
        with_base(&f);
        for (to, needle) in [
            ("\"root=/dev/sda2\"", "sets root itself"),
            ("\"owui.verity=abc\"", "sets owui.verity itself"),
            ("\"roothash=abc\"", "sets roothash itself"),
            ("\"rw\"", "sets rw itself"),
            ("\"a b\"", "no spaces"),
            ("\"\"", "no spaces"),
            ("\"quiet\", \"quiet\"", "listed twice"),
        ] {
            f.write(
                "spec/base.toml",
                &BASE.replace("[\"quiet\"]", &format!("[{to}]")),
            );
            let (code, e) = err_of(f.read(ROLE));
            assert_eq!(code, 3);
            assert!(
                e.contains("base.toml line 16: kernel.cmdline") && e.contains(needle),
                "{to}: {e}"
            );
        }
    }

    #[test]
    fn content_checks() {
        let f = Fixture::new();
        with_base(&f);
        // The same image twice, here across base and role.
        f.write(
            "spec/base.toml",
            &format!(
                "{BASE}[[oci]]\nref = \"ghcr.io/example/app:1.2\"\nsource = \"content/app\"\n"
            ),
        );
        let (code, e) = err_of(f.read(ROLE));
        assert_eq!(code, 3);
        assert!(
            e.contains("role.toml line 10: [[oci]]")
                && e.contains("first at")
                && e.contains("base.toml line 17"),
            "{e}"
        );
        with_base(&f);
        let (_, e) =
            err_of(f.read(&ROLE.replace("ghcr.io/example/app:1.2", "ghcr.io/Example/app:1.2")));
        assert!(e.contains("line 10: oci.ref"), "{e}");

        // Sources: checked by load, not by read.
        let text = format!(
            "{ROLE}[[ollama]]\nname = \"m:1\"\ngguf = \"m.gguf\"\n[[huggingface]]\nrepo = \"a/b\"\nrevision = \"0\"\npath = \"hf\"\n"
        );
        f.read(&text).unwrap();
        let (code, e) = err_of(f.load(&text));
        assert_eq!(code, 3);
        assert!(
            e.contains("line 13: ollama.gguf") && e.contains("m.gguf"),
            "{e}"
        );
        f.write("spec/m.gguf", "GGUF");
        let (_, e) = err_of(f.load(&text));
        assert!(
            e.contains("line 16: huggingface.path") && e.contains("not a directory"),
            "{e}"
        );
        fs::create_dir(f.path("spec/hf")).unwrap();
        let s = f.load(&text).unwrap();
        assert_eq!(s.content.ollama[0].gguf, f.path("spec/m.gguf"));
        fs::remove_dir(f.path("spec/content/app")).unwrap();
        let (_, e) = err_of(f.load(&text));
        assert!(e.contains("line 10: oci.source"), "{e}");
        let (_, e) = err_of(f.load(&text.replace("ollama]]\n", "ollama]]\ntemplate = \"t\"\n")));
        assert!(
            e.contains("ollama.template") || e.contains("oci.source"),
            "{e}"
        );
    }

    #[test]
    fn a_spec_without_a_base_is_complete_by_itself() {
        let f = Fixture::new();
        let text = format!("role = \"db\"\n{BASE}");
        let s = f.read(&text).unwrap();
        assert_eq!((s.role, s.units.quadlets.len()), (Role::Db, 0));
        assert!(s.content.is_empty());
    }

    #[test]
    fn gpu_section_checks() {
        let f = Fixture::new();
        with_base(&f);
        let firmware = repo().join("firmware");
        let gpu = |role: &str, components: &str, section: &str| {
            format!(
                "role = \"{role}\"\nbase = \"base.toml\"\n[debian]\ncomponents = {components}\n\
                 [gpu]\nfirmware = \"{}\"\n{section}",
                firmware.display()
            )
        };
        let all = r#"["main", "contrib", "non-free", "non-free-firmware"]"#;
        let tesla = "driver_set = \"debian-tesla-535\"\nkernel_modules = \"proprietary\"\n";
        let s = f.read(&gpu("gpu", all, tesla)).unwrap();
        let g = s.gpu.unwrap();
        assert_eq!(
            (g.set.name(), g.flavour),
            ("debian-tesla-535", ModuleFlavour::Proprietary)
        );
        let names: Vec<&str> = g.archive_packages().map(|p| p.name.as_str()).collect();
        assert!(
            names.contains(&"nvidia-tesla-535-kernel-dkms")
                && names.contains(&"libnvidia-tesla-535-cuda1")
        );
        let runtime: Vec<&str> = g.runtime_packages().map(|p| p.name.as_str()).collect();
        assert!(!runtime.contains(&"nvidia-tesla-535-kernel-dkms"));
        // What the driver packages depend on, as the DKMS package provides it.
        assert_eq!(g.provides(), "nvidia-tesla-535-kernel-535.274.02");

        // An unknown set names the file, the line, the key and the sets there are.
        let (code, e) = err_of(f.read(&gpu(
            "gpu",
            all,
            "driver_set = \"debian-550\"\nkernel_modules = \"proprietary\"\n",
        )));
        assert_eq!(code, 3);
        assert!(
            e.contains("role.toml line 7: gpu.driver_set")
                && e.contains("debian-550")
                && e.contains("have: debian-tesla-535"),
            "{e}"
        );
        // The set's packages must be in the image's components.
        let (_, e) = err_of(f.read(&gpu("allinone", r#"["main", "non-free"]"#, tesla)));
        assert!(
            e.contains("gpu.driver_set")
                && e.contains("nvidia-persistenced (contrib)")
                && e.contains("firmware-nvidia-tesla-535-gsp (non-free-firmware)"),
            "{e}"
        );
        let (_, e) = err_of(f.read(&gpu(
            "gpu",
            all,
            "driver_set = \"debian-tesla-535\"\nkernel_modules = \"closed\"\n",
        )));
        assert!(
            e.contains("role.toml") && e.contains("kernel_modules"),
            "{e}"
        );
        // Debian has no open modules of 535.
        let (_, e) = err_of(f.read(&gpu(
            "gpu",
            all,
            "driver_set = \"debian-tesla-535\"\nkernel_modules = \"open\"\n",
        )));
        assert!(
            e.contains("role.toml line") && e.contains("has no open kernel modules"),
            "{e}"
        );
        // Only gpu and allinone images carry a driver.
        let (_, e) = err_of(f.read(&gpu("app", all, tesla)));
        assert!(
            e.contains("role.toml line 5: gpu") && e.contains("app image"),
            "{e}"
        );
        // Not in the base: every role would get it.
        f.write("spec/base.toml", &format!("{BASE}[gpu]\n{tesla}"));
        let (_, e) = err_of(f.read(&gpu("gpu", all, tesla)));
        assert!(
            e.contains("base.toml line") && e.contains("role spec"),
            "{e}"
        );
    }

    #[test]
    fn every_shipped_spec_reads() {
        let images = repo().join("images");
        let units = repo().join("units");
        for role in Role::ALL {
            let s = ImageSpec::read(&images.join(format!("{role}.toml")), &units)
                .unwrap_or_else(|e| panic!("{role}: {e}"));
            assert_eq!(s.role, role);
            assert_eq!(s.debian.suite, "trixie");
            for p in [
                "systemd",
                "linux-image-amd64",
                "cryptsetup-bin",
                "systemd-repart",
            ] {
                assert!(s.debian.packages.iter().any(|x| x == p), "{role}: {p}");
            }
            assert!(s.units.enable.iter().any(|u| u == "owui-agent.service"));
            // Every Quadlet renders to digest-pinned images.
            let digest = Sha256Digest::of(role.as_str().as_bytes());
            for q in &s.units.quadlets {
                let text = s.render_quadlet(q, |_| Some(digest)).unwrap();
                assert!(!text.contains(OCI_PLACEHOLDER_START), "{q}");
                assert!(text.contains(&format!("@{digest}\n")), "{q}");
            }
            // Content is not in the repository (the main job writes
            // stand-ins under images/content/): where it is missing, load
            // says so, naming the line.
            if s.content.oci.iter().any(|o| !o.source.exists()) {
                let e = s.check_sources().unwrap_err().to_string();
                assert!(
                    e.contains(&format!("{role}.toml line")) && e.contains("oci.source"),
                    "{e}"
                );
            }
        }
        for role in [Role::Gpu, Role::Allinone] {
            let s = ImageSpec::read(&images.join(format!("{role}.toml")), &units).unwrap();
            let g = s.gpu.unwrap_or_else(|| panic!("{role}: no [gpu]"));
            assert_eq!(
                (g.set.name(), g.flavour),
                ("debian-tesla-535", ModuleFlavour::Proprietary)
            );
        }
        let all = ImageSpec::read(&images.join("allinone.toml"), &units).unwrap();
        for q in [
            "open-webui.container",
            "ollama.container",
            "vllm.container",
            "open-terminal.container",
        ] {
            assert!(all.units.quadlets.iter().any(|x| x == q), "{q}");
        }
    }

    #[test]
    fn the_builtin_tree_is_the_repository() {
        let root = repo();
        let mut on_disk = BTreeSet::new();
        fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if rel == "images/content" {
                    continue;
                }
                let meta = p.symlink_metadata().unwrap();
                if meta.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.insert(rel);
                }
            }
        }
        walk(&root.join("images"), &root, &mut on_disk);
        walk(&root.join("units"), &root, &mut on_disk);
        walk(&root.join("firmware"), &root, &mut on_disk);
        let embedded: BTreeSet<String> = EMBEDDED
            .iter()
            .map(|e| match e {
                Embedded::File(p, _) | Embedded::Link(p, _) => p.to_string(),
            })
            .collect();
        assert_eq!(
            embedded, on_disk,
            "update EMBEDDED in builder/src/image/spec.rs"
        );
        for e in EMBEDDED {
            match e {
                Embedded::File(p, text) => {
                    assert_eq!(fs::read_to_string(root.join(p)).unwrap(), *text, "{p}")
                }
                Embedded::Link(p, target) => {
                    assert_eq!(
                        fs::read_link(root.join(p)).unwrap(),
                        Path::new(target),
                        "{p}"
                    )
                }
            }
        }

        // Written out and read back: the same specs.
        let dir = tempfile::tempdir().unwrap();
        let images = write_builtin(dir.path()).unwrap();
        // Twice: files and links are replaced.
        write_builtin(dir.path()).unwrap();
        for role in Role::ALL {
            let s = ImageSpec::read(
                &images.join(format!("{role}.toml")),
                &dir.path().join("units"),
            )
            .unwrap();
            assert_eq!(s.role, role);
        }
        assert_eq!(
            fs::read_link(images.join("overlay/common/etc/owui/seed.toml")).unwrap(),
            Path::new("../../run/owui/seed.toml")
        );
        // builtin() loads, so it wants the content.
        let e = ImageSpec::builtin("allinone", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("allinone.toml line") && e.contains("oci.source"),
            "{e}"
        );
        let db = ImageSpec::builtin("db", dir.path()).unwrap();
        assert_eq!(db.role, Role::Db);
        let (code, e) = err_of(ImageSpec::builtin("web", dir.path()));
        assert_eq!(code, 3);
        assert!(e.contains("web") && e.contains("allinone"), "{e}");
    }
}
