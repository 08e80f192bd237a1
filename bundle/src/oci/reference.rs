//! Image references (`[domain/]path[:tag][@sha256:hex]`): the grammar
//! skopeo and podman accept, and the fully qualified name podman files an
//! image under.

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};

/// Checks an image reference against the grammar skopeo and podman accept
/// (`[domain/]path[:tag][@sha256:hex]`), so a bad one fails when the bundle
/// is built rather than when a node imports it.
pub fn check_reference(reference: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("OCI reference {reference:?}"), why));
    if reference.is_empty() {
        return bad("is empty");
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("contains whitespace or control characters");
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        if Sha256Digest::parse(d).is_err() {
            return bad("the digest after '@' must be sha256: and 64 lowercase hex characters");
        }
    }
    let (name, tag) = split_tag(name_tag);
    if let Some(tag) = tag {
        let ok = tag.len() <= 128
            && tag.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && matches!(b, b'.' | b'-'))
            })
            && !tag.is_empty();
        if !ok {
            return bad("the tag must be 1-128 characters from A-Z a-z 0-9 _ . - (not starting with . or -)");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("the name must be 1-255 characters");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && looks_like_domain(components[0]) {
        if !valid_domain(components[0]) {
            return bad("the registry host must be host[:port] with letters, digits, '-' and '.'");
        }
        components.remove(0);
    }
    if !components.iter().all(|c| valid_path_component(c)) {
        return bad("each path component must be lowercase letters and digits, separated by '.', '_', '__' or dashes");
    }
    Ok(())
}

/// Splits `name[:tag]`; a colon before the last slash is a registry port.
fn split_tag(name_tag: &str) -> (&str, Option<&str>) {
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[slash..].rfind(':') {
        Some(i) => (&name_tag[..slash + i], Some(&name_tag[slash + i + 1..])),
        None => (name_tag, None),
    }
}

/// Docker's rule: a first component with a dot, a port or uppercase, or
/// `localhost`, names a registry; anything else is a Docker Hub path.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && host.split('.').all(label_ok)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// The fully qualified name containers-storage files an image under
/// (`hello` is `docker.io/library/hello:latest`). Naming images this way
/// to podman also keeps a short name from being taken as an image-ID prefix.
pub(super) fn normalize(reference: &str) -> String {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = split_tag(name_tag);
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first, rest.to_string()),
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// The tag of a reference, which is what `skopeo copy ... oci:DIR:TAG`
/// writes as the ref.name annotation.
pub(super) fn tag_of(reference: &str) -> Option<&str> {
    let name_tag = reference.split('@').next().unwrap_or(reference);
    split_tag(name_tag).1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked_and_normalized() {
        for good in [
            "ghcr.io/open-webui/open-webui:v0.6.5",
            "hello",
            "library/hello:latest",
            "localhost:5000/a/b_c__d---e.f:1.0-rc_1",
            "Registry.Example.COM/x/y",
            &format!("x/y@sha256:{}", "a".repeat(64)),
            &format!("x/y:t@sha256:{}", "a".repeat(64)),
        ] {
            check_reference(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            " ",
            "a b",
            "a\tb",
            "a\u{7}b",
            "x/Upper",
            "x/y:",
            "x/y:.tag",
            "x/-y",
            "x/y.",
            "x/a..b",
            "x/y@sha256:abc",
            "x/y@md5:00",
            "-rm",
            "host:port/x",
            &format!("x/y:{}", "t".repeat(129)),
        ] {
            let err = check_reference(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 3, "{bad}");
        }
        assert_eq!(normalize("hello"), "docker.io/library/hello:latest");
        assert_eq!(normalize("a/b:1"), "docker.io/a/b:1");
        assert_eq!(normalize("localhost/x"), "localhost/x:latest");
        assert_eq!(normalize("ghcr.io/o/w:v1"), "ghcr.io/o/w:v1");
        assert_eq!(normalize("reg:5000/o/w"), "reg:5000/o/w:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("x@{digest}")),
            format!("docker.io/library/x@{digest}")
        );
        assert_eq!(tag_of("reg:5000/o/w"), None);
        assert_eq!(tag_of(&format!("reg:5000/o/w:t@{digest}")), Some("t"));
    }
}
