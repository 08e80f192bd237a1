//! What each value of a spec may be: versions, Debian names and mirrors,
//! partition sizes, kernel arguments, overlay modes, `units.enable`, the
//! Quadlet files in `units.quadlets` (parsed by `owui_bundle::unit_file`,
//! as the node's audit parses them: each `Image=` must be pre-filled, pinned
//! by digest or a listed `.image` file, and the unit must start on boot),
//! `[gpu]` against the firmware directory, and the content sources. Each
//! error names the file, the line and the key.

use std::fs;
use std::path::{Component, Path, PathBuf};

use owui_bundle::firmware::Firmware;
use owui_bundle::oci::reference::{strip_transport, ImageReference};
use owui_bundle::unit_file::parse_unit;
use owui_bundle::{Result, Role};

use super::loc::{At, Loc};
use super::merge::GpuLayer;
use super::quadlet::{split_placeholder, OCI_PLACEHOLDER_END, OCI_PLACEHOLDER_START};
use super::{GpuSpec, ImageContent, MAX_PARTITION_MIB};

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

/// Every content source exists: OCI layouts or archives, GGUF files and the
/// files an Ollama model names, Hugging Face snapshot directories.
pub(super) fn check_sources(c: &ImageContent) -> Result<()> {
    for (o, loc) in c.oci.iter().zip(&c.oci_at) {
        if let Some(source) = &o.source {
            exists(loc, "oci.source", source)?;
        }
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

fn exists(loc: &Loc, key: &str, path: &Path) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(loc.err(key, format!("{} does not exist", path.display())))
    }
}

/// The `[gpu]` section against the role, the driver sets in its firmware
/// directory, the suite and the components the image installs from.
pub(super) fn check_gpu(
    g: GpuLayer,
    role: Role,
    suite: &str,
    components: &[String],
) -> Result<GpuSpec> {
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

/// A version is part of the image's file name.
pub(super) fn check_version(v: &At<String>) -> Result<()> {
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
pub(super) fn check_word(v: &At<String>, key: &str, what: &str) -> Result<()> {
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

pub(super) fn check_mirror(v: &At<String>) -> Result<()> {
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
pub(super) fn check_package(v: &At<String>) -> Result<()> {
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

pub(super) fn check_size(v: &At<u64>, key: &str, min: u64) -> Result<()> {
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

pub(super) fn check_cmdline_arg(v: &At<String>) -> Result<()> {
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
pub(super) fn check_mode(
    path: &str,
    mode: &At<String>,
    dirs: &[PathBuf],
) -> Result<(PathBuf, u32)> {
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

pub(super) fn check_unit(u: &At<String>, units_dir: &Path, quadlets: &[At<String>]) -> Result<()> {
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
/// `Image=` is a placeholder of a pre-filled image or pinned by digest, or
/// (outside an `.image` file) names an `.image` file also listed in
/// `quadlets`, which is installed next to it and checked the same way. What
/// the node's audit would report is refused: it follows `.image` files, but a
/// `.build` file is built on the node and has no digest to pin.
pub(super) fn check_quadlet(
    q: &At<String>,
    units_dir: &Path,
    quadlets: &[At<String>],
    content: &ImageContent,
) -> Result<()> {
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
    let lines = parse_unit(&text);
    let wanted = lines.iter().any(|l| {
        l.section == "Install"
            && matches!(l.key.as_str(), "WantedBy" | "RequiredBy" | "UpheldBy")
            && !l.value.is_empty()
    });
    if suffix == "container" && !wanted {
        return Err(err(
            "has no [Install] WantedBy=, so it would never start".to_string()
        ));
    }
    // The image a .container runs or an .image pulls: the last Image= of its
    // section (an empty one resets), as Quadlet and the node's audit read it.
    let own = match suffix {
        "container" => Some("Container"),
        "image" => Some("Image"),
        _ => None,
    };
    if let Some(section) = own {
        let effective = lines
            .iter()
            .rfind(|l| l.section == section && l.key == "Image");
        if effective.is_none_or(|l| l.value.is_empty()) {
            return Err(err(format!(
                "has no Image= in [{section}], so the node's audit cannot check its image"
            )));
        }
    }
    let images = lines.iter().filter(|l| {
        l.key == "Image" && matches!(l.section.as_str(), "Container" | "Image" | "Pod" | "Kube")
    });
    for l in images {
        let (here, value) = (l.line, l.value.as_str());
        if value.is_empty() {
            continue;
        } else if let Some(after) = value.strip_prefix(OCI_PLACEHOLDER_START) {
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
        } else if value.ends_with(".build") {
            return Err(err(format!(
                "line {here}: Image={value} is built on the node, so it has no digest to pin \
                 (the node's audit reports it); pre-fill the image and write \
                 {OCI_PLACEHOLDER_START}NAME{OCI_PLACEHOLDER_END}"
            )));
        } else if value.ends_with(".image") && l.section != "Image" {
            if !quadlets.iter().any(|other| other.value == value) {
                return Err(err(format!(
                    "line {here}: Image={value} names an .image file that units.quadlets does \
                     not list: list it, so it is installed next to this one"
                )));
            }
        } else if !is_digest_pinned(value) {
            return Err(err(format!(
                "line {here}: Image={value} would be pulled by tag; write \
                 {OCI_PLACEHOLDER_START}NAME{OCI_PLACEHOLDER_END} for a pre-filled image"
            )));
        }
    }
    Ok(())
}

/// Whether a Quadlet `Image=` value names its image by digest.
fn is_digest_pinned(image: &str) -> bool {
    strip_transport(image)
        .parse::<ImageReference>()
        .is_ok_and(|r| r.is_digest_pinned())
}

#[cfg(test)]
mod tests {
    use owui_bundle::firmware::ModuleFlavour;

    use super::super::fixture::*;
    use super::*;

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
        // What the node's audit reads: a transport before the reference is
        // fine; a digest after a name podman refuses pins nothing (the
        // builder once took anything before '@').
        for (image, pinned) in [
            (format!("docker://docker.io/x/y@{digest}"), true),
            (format!("docker.io/x/Y@{digest}"), false),
        ] {
            f.write(
                "units/app.container",
                &QUADLET.replace("@OCI:ghcr.io/example/app@", &image),
            );
            assert_eq!(f.read(ROLE).is_ok(), pinned, "{image}");
        }
        f.write("units/app.container", "[Container]\nImage=app.image\n");
        let (_, e) = err_of(f.read(ROLE));
        assert!(e.contains("never start"), "{e}");
    }

    /// What the node's audit (agent `hardening::images`) reports, refused
    /// here: a `.build` image, an `.image` file that is not installed next to
    /// the unit, a unit without an image to check. A listed `.image` file is
    /// followed and its own `Image=` checked.
    #[test]
    fn quadlet_images_are_what_the_audit_accepts() {
        let f = Fixture::new();
        with_base(&f);
        let with_image = ROLE.replace("\"app.container\"", "\"app.container\", \"app.image\"");
        let cases = [
            (
                ROLE,
                "Image=app.build",
                "app.container",
                "line 2: Image=app.build is built on the node",
            ),
            (
                ROLE,
                "Image=app.image",
                "app.container",
                "line 2: Image=app.image names an .image file that units.quadlets does not list",
            ),
            (
                ROLE,
                "Image=",
                "app.container",
                "has no Image= in [Container]",
            ),
            (
                &with_image,
                "Image=app.image",
                "app.image",
                "has no Image= in [Image]",
            ),
        ];
        for (role, line, needle_file, needle) in cases {
            f.write(
                "units/app.container",
                &QUADLET.replace("Image=@OCI:ghcr.io/example/app@", line),
            );
            f.write("units/app.image", "[Image]\n");
            let (code, e) = err_of(f.read(role));
            assert_eq!(code, 3);
            assert!(
                e.contains("units.quadlets") && e.contains(needle_file) && e.contains(needle),
                "{line}: {e}"
            );
        }
        // A listed .image file is followed: its own Image= is checked.
        f.write("units/app.image", "[Image]\nImage=docker.io/x/y:1\n");
        let (_, e) = err_of(f.read(&with_image));
        assert!(
            e.contains("\"app.image\": line 2: Image=docker.io/x/y:1 would be pulled by tag"),
            "{e}"
        );
        f.write(
            "units/app.image",
            "[Image]\nImage=@OCI:ghcr.io/example/app@\n",
        );
        let s = f.read(&with_image).unwrap();
        assert_eq!(s.units.quadlets, ["app.container", "app.image"]);
        // Parsed as the node parses it: a value continued on the next line.
        f.write(
            "units/app.container",
            &QUADLET.replace(
                "Image=@OCI:ghcr.io/example/app@",
                "Image=\\\n  @OCI:ghcr.io/example/app@",
            ),
        );
        f.read(ROLE).unwrap();
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
}
