//! A role spec over its base: each file becomes a [`Layer`] (values with
//! their locations, paths resolved against that file's directory); the
//! role's values replace the base's, lists are the base's then the role's,
//! and the result is checked value by value into an [`ImageSpec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use owui_bundle::firmware::ModuleFlavour;
use owui_bundle::oci::check_reference;
use owui_bundle::spec::{HfSpec, OciSpec, OllamaSpec};
use owui_bundle::{Error, Result, Role};

use super::check::{
    check_cmdline_arg, check_gpu, check_mirror, check_mode, check_package, check_quadlet,
    check_size, check_unit, check_version, check_word,
};
use super::loc::{At, Loc, Source};
use super::raw::{parse, RawSpec};
use super::{
    ContentSize, DebianSpec, ImageContent, ImageSpec, Partitions, UnitsSpec, MAX_PARTITION_MIB,
    MIN_DATA_MIB, MIN_ESP_MIB, MIN_ROOT_MIB,
};

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
pub(super) struct GpuLayer {
    pub(super) at: Loc,
    pub(super) driver_set: At<String>,
    pub(super) flavour: At<ModuleFlavour>,
    pub(super) firmware: At<PathBuf>,
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
    for o in oci.iter_mut().filter_map(|o| o.value.source.as_mut()) {
        *o = src.resolve(o);
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

/// Reads the role spec at `path` and the base it names (one level; the
/// base may not set `role`, `base` or `[gpu]`), then merges and checks
/// them.
pub(super) fn read(path: &Path, units_dir: &Path) -> Result<ImageSpec> {
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
        check_quadlet(q, units_dir, &quadlets, &content)?;
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
                format!("{n:?} is listed twice (first at {first})"),
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

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

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
        assert_eq!(s.content.oci[0].source, Some(f.path("spec/content/app")));
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
    fn a_spec_without_a_base_is_complete_by_itself() {
        let f = Fixture::new();
        let text = format!("role = \"db\"\n{BASE}");
        let s = f.read(&text).unwrap();
        assert_eq!((s.role, s.units.quadlets.len()), (Role::Db, 0));
        assert!(s.content.is_empty());
    }
}
