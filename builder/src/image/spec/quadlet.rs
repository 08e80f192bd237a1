//! Quadlet files as the builder installs them: the `@OCI:NAME@` placeholder
//! a unit writes for a pre-filled image, its grammar, and rendering it to
//! `NAME@sha256:DIGEST`. What a Quadlet file may contain is checked in
//! `check`.

use std::fs;

use owui_bundle::error::IoContext;
use owui_bundle::oci::ImageReference;
use owui_bundle::spec::OciSpec;
use owui_bundle::{Error, Result, Sha256Digest};

use super::ImageSpec;

/// The placeholder a Quadlet unit writes for a pre-filled image:
/// `Image=@OCI:ghcr.io/open-webui/open-webui@`. The builder replaces it with
/// `NAME@sha256:DIGEST` of the `[[oci]]` entry whose reference has that name.
pub const OCI_PLACEHOLDER_START: &str = "@OCI:";
pub(super) const OCI_PLACEHOLDER_END: char = '@';

/// Quadlet file `name` of `spec` with its placeholders replaced (the entry
/// point is `ImageSpec::render_quadlet`).
pub(super) fn render(
    spec: &ImageSpec,
    name: &str,
    digest_of: impl Fn(&OciSpec) -> Option<Sha256Digest>,
) -> Result<String> {
    if !spec.units.quadlets.iter().any(|q| q == name) {
        return Err(Error::invalid(
            format!("{}: units.quadlets", spec.file.display()),
            format!("{name:?} is not listed"),
        ));
    }
    let path = spec.units.dir.join(name);
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
            let oci = spec.content.oci_for(repository).ok_or_else(|| {
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

/// Splits `NAME@rest` (the text after `@OCI:`): NAME must be a fully
/// qualified repository without tag or digest.
pub(super) fn split_placeholder(after: &str) -> std::result::Result<(&str, &str), String> {
    let Some(end) = after.find(OCI_PLACEHOLDER_END) else {
        return Err(format!(
            "unterminated placeholder: write {OCI_PLACEHOLDER_START}NAME{OCI_PLACEHOLDER_END}"
        ));
    };
    let (repository, tail) = (&after[..end], &after[end + 1..]);
    let name = match repository.parse::<ImageReference>() {
        Ok(name) if name.tag().is_none() && name.digest().is_none() => name,
        _ => {
            return Err(format!(
                "{OCI_PLACEHOLDER_START}{repository}{OCI_PLACEHOLDER_END}: name an image \
                 repository without tag or digest"
            ))
        }
    };
    if name.domain().is_none() {
        return Err(format!(
            "{OCI_PLACEHOLDER_START}{repository}{OCI_PLACEHOLDER_END}: write the registry too \
             (docker.io/ollama/ollama), as the [[oci]] ref does"
        ));
    }
    Ok((repository, tail))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::*;
    use super::*;

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
        let repository_of = |reference: &str| {
            let reference: ImageReference = reference.parse().unwrap();
            reference.name().to_string()
        };
        assert_eq!(
            repository_of(&format!("localhost:5000/a/b:1@{digest}")),
            "localhost:5000/a/b"
        );
        assert_eq!(
            repository_of("docker.io/ollama/ollama"),
            "docker.io/ollama/ollama"
        );
        // An upper-case first component names a registry (Docker's rule, and
        // check_reference's); this check once asked for the registry here.
        assert_eq!(split_placeholder("Example/app@"), Ok(("Example/app", "")));
        let e = split_placeholder("example/app@").unwrap_err();
        assert!(e.contains("write the registry too"), "{e}");
        assert!(s.content.oci_for("ghcr.io/example/app").is_some());
        assert!(s.content.oci_for("ghcr.io/example").is_none());
    }
}
