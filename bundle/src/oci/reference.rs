//! Image references (`[domain/]path[:tag][@sha256:hex]`): the one parser of
//! the grammar skopeo and podman accept, used by the bundle, the builder and
//! the node's audit alike, and the fully qualified name podman files an
//! image under.

use std::fmt;
use std::str::FromStr;

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};

/// The registry an unqualified name (`hello`, `ollama/ollama`) lives on.
const DOCKER_HUB: &str = "docker.io";

/// A checked image reference: `[domain/]path[:tag][@sha256:hex]`.
///
/// Parsing follows the distribution reference grammar: a first component
/// with a `.` or a `:` (a port), or `localhost`, or with upper case (Docker's
/// rule) names a registry; path components are lower case; tags are
/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; the digest is `sha256:` and 64
/// lowercase hex characters. The parts are kept as written; `Display` gives
/// the normal form (`hello` is `docker.io/library/hello:latest`). Equality
/// compares the parts as written; compare `to_string()` for the same image.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `[domain/]path` as written.
    name: String,
    /// Where the domain ends in `name`; `None` when no domain was written.
    domain_end: Option<usize>,
    tag: Option<String>,
    digest: Option<Sha256Digest>,
}

impl ImageReference {
    /// The reference without tag and digest, as written (`ollama/ollama`,
    /// `localhost:5000/a/b`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry host (and port) as written; `None` when the reference
    /// names none and means Docker Hub.
    pub fn domain(&self) -> Option<&str> {
        self.domain_end.map(|end| &self.name[..end])
    }

    /// The repository path after the registry, as written.
    pub fn path(&self) -> &str {
        self.domain_end
            .map_or(self.name.as_str(), |end| &self.name[end + 1..])
    }

    /// The fully qualified repository, without tag or digest
    /// (`hello` is `docker.io/library/hello`).
    pub fn repository(&self) -> String {
        let domain = match self.domain() {
            None | Some("index.docker.io") => DOCKER_HUB,
            Some(domain) => domain,
        };
        let path = self.path();
        if domain == DOCKER_HUB && !path.contains('/') {
            format!("{domain}/library/{path}")
        } else {
            format!("{domain}/{path}")
        }
    }

    /// The tag as written; `None` when there is none (not `latest`).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The manifest digest after `@`, if any.
    pub fn digest(&self) -> Option<Sha256Digest> {
        self.digest
    }

    /// Whether the reference names its content by digest, so no registry
    /// or store can hand over other bytes under the same name.
    pub fn is_digest_pinned(&self) -> bool {
        self.digest.is_some()
    }
}

/// Checks an image reference against the grammar skopeo and podman accept,
/// so a bad one fails when the bundle is built rather than when a node
/// imports it.
pub fn check_reference(reference: &str) -> Result<()> {
    reference.parse::<ImageReference>().map(drop)
}

/// `image` without the transport podman reads before a reference
/// (`docker://`, `containers-storage:`), as a Quadlet `Image=` may write it.
pub fn strip_transport(image: &str) -> &str {
    image
        .strip_prefix("docker://")
        .or_else(|| image.strip_prefix("containers-storage:"))
        .unwrap_or(image)
}

impl FromStr for ImageReference {
    type Err = Error;

    fn from_str(reference: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid(format!("OCI reference {reference:?}"), why);
        if reference.is_empty() {
            return Err(bad("is empty".into()));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("contains whitespace or control characters".into()));
        }
        let (name_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        let digest = digest
            .map(|d| {
                Sha256Digest::parse(d).map_err(|_| {
                    bad(format!(
                        "the digest {d:?} after '@' must be sha256: and 64 lowercase hex \
                         characters"
                    ))
                })
            })
            .transpose()?;
        let (name, tag) = split_tag(name_tag);
        if let Some(tag) = tag.filter(|t| !valid_tag(t)) {
            return Err(bad(format!(
                "the tag {tag:?} must be 1-128 characters from A-Z a-z 0-9 _ . - (not starting \
                 with . or -)"
            )));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(bad("the name must be 1-255 characters".into()));
        }
        let domain_end = match name.split_once('/') {
            Some((first, _)) if looks_like_domain(first) => {
                if !valid_domain(first) {
                    return Err(bad(format!(
                        "the registry host {first:?} must be host[:port] with letters, digits, \
                         '-' and '.'"
                    )));
                }
                Some(first.len())
            }
            _ => None,
        };
        let path = domain_end.map_or(name, |end| &name[end + 1..]);
        if let Some(component) = path.split('/').find(|c| !valid_path_component(c)) {
            return Err(bad(format!(
                "the path component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes"
            )));
        }
        Ok(ImageReference {
            name: name.to_string(),
            domain_end,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// The normal form containers-storage files an image under
/// (`hello` is `docker.io/library/hello:latest`). Naming images this way
/// to podman also keeps a short name from being taken as an image-ID prefix.
impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        match (&self.tag, &self.digest) {
            (Some(tag), _) => write!(f, ":{tag}")?,
            (None, None) => f.write_str(":latest")?,
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits `name[:tag]`; a colon before the last slash is a registry port.
fn split_tag(name_tag: &str) -> (&str, Option<&str>) {
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[slash..].rfind(':') {
        Some(i) => (&name_tag[..slash + i], Some(&name_tag[slash + i + 1..])),
        None => (name_tag, None),
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && matches!(b, b'.' | b'-'))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(reference: &str) -> ImageReference {
        reference
            .parse()
            .unwrap_or_else(|e| panic!("{reference}: {e}"))
    }

    fn normalize(reference: &str) -> String {
        parse(reference).to_string()
    }

    fn tag_of(reference: &str) -> Option<String> {
        parse(reference).tag().map(str::to_string)
    }

    fn digest() -> String {
        format!("sha256:{}", "a".repeat(64))
    }

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
        assert_eq!(
            tag_of(&format!("reg:5000/o/w:t@{digest}")).as_deref(),
            Some("t")
        );
    }

    /// One test per good reference: it parses, and `Display` gives its
    /// normal form, which parses back to itself.
    macro_rules! accepted {
        ($($case:ident: $reference:expr => $normal:expr;)*) => {$(
            #[test]
            fn $case() {
                let reference: String = $reference.into();
                let normal: String = $normal.into();
                assert_eq!(parse(&reference).to_string(), normal);
                assert_eq!(parse(&normal).to_string(), normal);
            }
        )*};
    }

    /// One test per bad reference: refused (exit 3), the message saying what
    /// is wrong.
    macro_rules! refused {
        ($($case:ident: $reference:expr => $reason:expr;)*) => {$(
            #[test]
            fn $case() {
                let reference: String = $reference.into();
                let err = reference.parse::<ImageReference>().unwrap_err();
                assert_eq!(err.exit_code(), 3, "{err}");
                let text = err.to_string();
                assert!(text.contains($reason), "{text}");
            }
        )*};
    }

    mod accepted {
        use super::*;

        accepted! {
            docker_hub_short_name: "hello" => "docker.io/library/hello:latest";
            docker_hub_user_repository: "ollama/ollama:0.5" => "docker.io/ollama/ollama:0.5";
            docker_hub_fully_written: "docker.io/library/redis:7" => "docker.io/library/redis:7";
            index_docker_io: "index.docker.io/hello" => "docker.io/library/hello:latest";
            port_in_registry: "localhost:5000/a/b" => "localhost:5000/a/b:latest";
            localhost_without_port: "localhost/x" => "localhost/x:latest";
            nested_path: "ghcr.io/a/b/c/d:1" => "ghcr.io/a/b/c/d:1";
            separators: "reg.example:443/a/b_c__d---e.f:1.0-rc_1" => "reg.example:443/a/b_c__d---e.f:1.0-rc_1";
            latest_tag: "x:latest" => "docker.io/library/x:latest";
            digest_without_tag: format!("x@{}", digest()) => format!("docker.io/library/x@{}", digest());
            tag_and_digest: format!("ghcr.io/o/w:v1@{}", digest()) => format!("ghcr.io/o/w:v1@{}", digest());
            upper_case_registry: "Registry.Example.COM/x/y" => "Registry.Example.COM/x/y:latest";
            upper_case_first_component_is_a_registry: "Reg/x" => "Reg/x:latest";
            tag_of_128: format!("x:_{}", "T".repeat(127)) => format!("docker.io/library/x:_{}", "T".repeat(127));
        }
    }

    mod refused {
        use super::*;

        refused! {
            empty: "" => "is empty";
            space: "a b" => "whitespace";
            control_character: "a\u{7}b" => "control";
            upper_case_repository: "x/Upper" => "path component \"Upper\"";
            upper_case_short_name: "Hello" => "path component \"Hello\"";
            leading_dash: "-rm" => "path component \"-rm\"";
            trailing_dot: "x/y." => "path component \"y.\"";
            double_dot: "x/a..b" => "path component \"a..b\"";
            empty_path_component: "ghcr.io//x" => "path component \"\"";
            registry_alone: "ghcr.io/" => "path component \"\"";
            port_not_a_number: "host:port/x" => "registry host \"host:port\"";
            transport_prefix: "docker://ghcr.io/x" => "registry host \"docker:\"";
            two_colons_in_the_last_component: "ghcr.io/x:a:b" => "path component \"x:a\"";
            empty_tag: "x/y:" => "the tag \"\"";
            tag_starting_with_a_dot: "x/y:.tag" => "the tag \".tag\"";
            tag_of_129: format!("x:{}", "t".repeat(129)) => "the tag";
            short_digest: "x/y@sha256:abc" => "the digest \"sha256:abc\"";
            upper_case_digest: format!("x@sha256:{}", "A".repeat(64)) => "the digest";
            other_algorithm: format!("x@sha512:{}", "a".repeat(128)) => "the digest";
            empty_name_before_a_digest: format!("@{}", digest()) => "the name must be";
            empty_name_before_a_tag: ":latest" => "the name must be";
            name_of_256: "a".repeat(256) => "the name must be";
        }
    }

    #[test]
    fn parts_are_kept_as_written() {
        let r = parse(&format!("localhost:5000/a/b:1@{}", digest()));
        assert_eq!(r.name(), "localhost:5000/a/b");
        assert_eq!(r.domain(), Some("localhost:5000"));
        assert_eq!(r.path(), "a/b");
        assert_eq!(r.repository(), "localhost:5000/a/b");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest().map(|d| d.to_string()), Some(digest()));
        assert!(r.is_digest_pinned());

        let r = parse("ollama/ollama");
        assert_eq!(r.name(), "ollama/ollama");
        assert_eq!(r.domain(), None);
        assert_eq!(r.path(), "ollama/ollama");
        assert_eq!(r.repository(), "docker.io/ollama/ollama");
        assert_eq!((r.tag(), r.digest()), (None, None));
        assert!(!r.is_digest_pinned());
    }

    #[test]
    fn latest_is_a_tag_and_a_digest_pins() {
        let latest = parse("x:latest");
        assert_eq!(latest.tag(), Some("latest"));
        assert!(!latest.is_digest_pinned());
        let pinned = parse(&format!("x@{}", digest()));
        assert_eq!(pinned.tag(), None);
        assert!(pinned.is_digest_pinned());
        assert!(!pinned.to_string().contains(":latest"));
    }

    #[test]
    fn transports_are_stripped() {
        assert_eq!(strip_transport("docker://ghcr.io/x:1"), "ghcr.io/x:1");
        assert_eq!(strip_transport("containers-storage:x"), "x");
        assert_eq!(strip_transport("ghcr.io/x:1"), "ghcr.io/x:1");
    }
}
