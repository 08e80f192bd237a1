//! **Pinned images**: tags pinned, never `:main` or `:latest`; the appliance goes further and addresses everything by sha256
//! (DESIGN.md, "Signed content"), so a reference without `@sha256:` is drift.

use std::path::Path;

use owui_bundle::oci::reference::{strip_transport, ImageReference};
use owui_bundle::unit_file::parse_unit;

use super::files::read_text;
use super::{shown, Audit, Scope, Severity};

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

const IMAGE_ITEM: &str = "image pinned by digest";
const IMAGE_EXPECTED: &str = "NAME@sha256:<64 hex digits>";

/// None when `reference` is pinned by a sha256 digest; otherwise the severity:
/// a floating tag (`latest`, `main`, none) or a reference that does not parse
/// fails, a version tag only warns (the guide accepts version tags; the
/// appliance wants digests).
fn image_drift(reference: &str) -> Option<Severity> {
    let Ok(reference) = strip_transport(reference).parse::<ImageReference>() else {
        return Some(Severity::Fail);
    };
    match reference.tag() {
        _ if reference.is_digest_pinned() => None,
        None | Some("latest") | Some("main") => Some(Severity::Fail),
        Some(_) => Some(Severity::Warn),
    }
}

fn check_image(a: &mut Audit, reference: &str, found: String, source: &str) {
    a.checked.push(format!("image {}", shown(reference)));
    if let Some(severity) = image_drift(reference) {
        a.finding(severity, IMAGE_ITEM, IMAGE_EXPECTED, found, source);
    }
}

pub(super) fn audit_images(s: &mut Scope<'_>, a: &mut Audit) {
    let (root, cfg, units) = (s.root, s.cfg, &s.units);
    for unit in units {
        let Some((image, source)) = &unit.image else {
            a.errors.push(format!(
                "quadlet unit {}: no Image= in [Container]: cannot audit its image",
                unit.path.display()
            ));
            continue;
        };
        let dir = unit
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if image.ends_with(".image") {
            // A Quadlet .image unit next to this one names the reference.
            let image_unit = dir.join(image);
            let text = match read_text(root, &image_unit) {
                Ok((text, _)) => text,
                Err(reason) => {
                    a.errors.push(format!(
                        "quadlet image unit {}: {reason}",
                        image_unit.display()
                    ));
                    continue;
                }
            };
            let reference = parse_unit(&text)
                .into_iter()
                .filter(|l| l.section == "Image" && l.key == "Image")
                .map(|l| l.value)
                .next_back();
            match reference {
                Some(reference) if !reference.is_empty() => {
                    let found = shown(&reference);
                    check_image(a, &reference, found, &image_unit.display().to_string());
                }
                _ => a.errors.push(format!(
                    "quadlet image unit {}: no Image= in [Image]: cannot audit",
                    image_unit.display()
                )),
            }
        } else if image.ends_with(".build") {
            a.checked.push(format!("image {}", shown(image)));
            a.finding(
                Severity::Warn,
                IMAGE_ITEM,
                IMAGE_EXPECTED,
                format!("{} (built on the node, no digest to pin)", shown(image)),
                source.display().to_string(),
            );
        } else {
            check_image(a, image, shown(image), &source.display().to_string());
        }
    }
    for image in &cfg.images {
        check_image(
            a,
            image,
            shown(image),
            "hardening.images (agent configuration)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::fixture::*;
    use crate::hardening::{audit, HardeningConfig};

    #[test]
    fn images_must_be_pinned_by_digest() {
        let cases: &[(&str, Option<Severity>)] = &[
            ("ghcr.io/open-webui/open-webui:0.6", Some(Severity::Warn)),
            ("ghcr.io/open-webui/open-webui:latest", Some(Severity::Fail)),
            ("ghcr.io/open-webui/open-webui:main", Some(Severity::Fail)),
            ("ghcr.io/open-webui/open-terminal", Some(Severity::Fail)),
            ("localhost:5000/open-webui", Some(Severity::Fail)),
            ("localhost:5000/open-webui:1.2", Some(Severity::Warn)),
            (
                "ghcr.io/open-webui/open-webui@sha256:abc",
                Some(Severity::Fail),
            ),
            (
                "ghcr.io/open-webui/open-webui@sha512:0123",
                Some(Severity::Fail),
            ),
            // Once read here as tag "0.6:1" (a warning); the grammar, as
            // skopeo and the builder read it, refuses it.
            ("ghcr.io/open-webui/open-webui:0.6:1", Some(Severity::Fail)),
        ];
        for &(image, severity) in cases {
            assert_eq!(image_drift(image), severity, "{image}");
            let n = Node::compliant();
            n.replace(
                UNIT,
                &format!("Image=ghcr.io/open-webui/open-webui:0.6@{DIGEST}"),
                &format!("Image={image}"),
            );
            if let Some(severity) = severity {
                assert_finding(
                    only(&n.audit()),
                    IMAGE_ITEM,
                    IMAGE_EXPECTED,
                    image,
                    severity,
                    UNIT,
                );
            }
        }
        let upper = format!("x@{}", DIGEST.to_uppercase().replace("SHA256", "sha256"));
        assert_eq!(image_drift(&upper), Some(Severity::Fail));
        // A digest after a name podman refuses pins nothing (once passed here).
        let bad_name = format!("ghcr.io/Open-WebUI/open-webui@{DIGEST}");
        assert_eq!(image_drift(&bad_name), Some(Severity::Fail));
        for pinned in [
            format!("ghcr.io/open-webui/open-webui@{DIGEST}"),
            format!("docker://ghcr.io/open-webui/open-webui:0.6@{DIGEST}"),
            format!("localhost:5000/x:1@{DIGEST}"),
        ] {
            assert_eq!(image_drift(&pinned), None, "{pinned}");
        }

        // The extra list in the configuration.
        let n = Node::compliant();
        let cfg = HardeningConfig {
            images: vec![
                format!("docker.io/ollama/ollama@{DIGEST}"),
                "docker.io/vllm/vllm-openai:latest".into(),
            ],
            ..HardeningConfig::default()
        };
        let a = audit(n.root(), &cfg);
        assert_finding(
            only(&a),
            IMAGE_ITEM,
            IMAGE_EXPECTED,
            "docker.io/vllm/vllm-openai:latest",
            Severity::Fail,
            "hardening.images (agent configuration)",
        );
    }

    #[test]
    fn image_units_and_drop_ins_are_followed() {
        let n = Node::compliant();
        n.replace(
            UNIT,
            &format!("Image=ghcr.io/open-webui/open-webui:0.6@{DIGEST}"),
            "Image=open-webui.image",
        );
        n.write(
            "/etc/containers/systemd/open-webui.image",
            "[Image]\nImage=ghcr.io/open-webui/open-webui:0.6\n",
            0o644,
        );
        assert_finding(
            only(&n.audit()),
            IMAGE_ITEM,
            IMAGE_EXPECTED,
            "ghcr.io/open-webui/open-webui:0.6",
            Severity::Warn,
            "/etc/containers/systemd/open-webui.image",
        );
        n.write(
            &format!("{UNIT}.d/10-image.conf"),
            &format!("[Container]\nImage=ghcr.io/open-webui/open-webui@{DIGEST}\n"),
            0o644,
        );
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");

        n.write(
            &format!("{UNIT}.d/20-image.conf"),
            "[Container]\nImage=open-webui.build\n",
            0o644,
        );
        assert_finding(
            only(&n.audit()),
            IMAGE_ITEM,
            IMAGE_EXPECTED,
            "open-webui.build (built on the node, no digest to pin)",
            Severity::Warn,
            &format!("{UNIT}.d/20-image.conf"),
        );
    }
}
