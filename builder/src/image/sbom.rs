//! The SPDX 2.3 JSON software bill of materials: the image, its Debian
//! packages, owui-agent and the crates Cargo.lock resolves for it, its
//! containers and its models, each with a supplier, a version, a package URL
//! and, where we have one, a SHA-256 checksum; the image CONTAINS them and
//! each crate DEPENDS_ON its own dependencies. Meets the NTIA minimum
//! elements (`ntia-checker`) and SPDX validation (`pyspdxtools`).

use owui_bundle::manifest::Manifest;
use owui_bundle::oci::ImageReference;
use serde_json::{json, Value};

pub use super::manifest::PulledImage;
pub use super::rootfs::Package;

/// Who supplies what we build ourselves (the image, the agent, the NVIDIA
/// module package, the workspace's crates).
const OURS: &str = "Organization: owui-appliance";
/// The registry Cargo.lock names for crates.io crates.
const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

/// A crate in the agent's dependency graph, as Cargo.lock has it.
#[derive(Debug)]
pub struct Crate {
    pub name: &'static str,
    pub version: &'static str,
    /// `None` for the workspace's own crates.
    pub source: Option<&'static str>,
    /// SHA-256 of the `.crate` file (registry crates).
    pub checksum: Option<&'static str>,
    /// Indexes of its dependencies in the same list.
    pub dependencies: &'static [usize],
}

// `AGENT_CRATES`: owui-agent first, from the workspace's Cargo.lock at the
// builder's compile time (builder/build.rs says why that source).
include!(concat!(env!("OUT_DIR"), "/agent_crates.rs"));

pub struct SbomInputs<'a> {
    pub name: &'a str,
    /// The spec's version: the image package's `versionInfo`.
    pub version: &'a str,
    pub suite: &'a str,
    /// Makes the document namespace unique per build.
    pub root_hash: &'a str,
    pub source_date_epoch: u64,
    pub packages: &'a [Package],
    /// The agent's crate graph, the agent first ([`AGENT_CRATES`]).
    pub crates: &'a [Crate],
    pub content: Option<&'a Manifest>,
    /// Which of the content's images came from a registry, and from where.
    pub pulled: &'a [PulledImage],
}

fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

/// purl components escape what is not a letter, digit or `.-_~`.
fn purl_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SPDX IDs allow letters, digits, `.` and `-`.
fn spdx_id(kind: &str, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{kind}-{clean}")
}

fn package(id: &str, name: &str, version: &str, supplier: &str, purl: String) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "supplier": supplier,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

fn sha256(hex: &str) -> Value {
    json!([{ "algorithm": "SHA256", "checksumValue": hex }])
}

/// The supplier of a container image: the namespace its repository is
/// under (`ghcr.io/open-webui/…` is open-webui), or the registry for a
/// repository without one.
fn image_supplier(repository: &str) -> String {
    let mut parts = repository.split('/');
    let registry = parts.next().unwrap_or(repository);
    let rest: Vec<&str> = parts.collect();
    match rest.as_slice() {
        ["library", _] if registry == "docker.io" => {
            "Organization: Docker Official Images".to_string()
        }
        [namespace, _, ..] => format!("Organization: {namespace}"),
        _ => format!("Organization: {registry}"),
    }
}

/// An Ollama model's supplier: its namespace (`library` is Ollama's own).
fn ollama_supplier(name: &str) -> String {
    let path: Vec<&str> = name.split('/').collect();
    match path.as_slice() {
        [_] | ["library", _] | [_, "library", _] => "Organization: Ollama".to_string(),
        [namespace, _] | [_, namespace, _] => format!("Organization: {namespace}"),
        _ => format!("Organization: {}", path[0]),
    }
}

pub fn spdx(input: &SbomInputs<'_>) -> Value {
    let image_purl = format!(
        "pkg:generic/owui-appliance/{}@{}",
        purl_escape(input.name),
        purl_escape(input.version)
    );
    let mut image = package("SPDXRef-Image", input.name, input.version, OURS, image_purl);
    image["primaryPackagePurpose"] = json!("OPERATING-SYSTEM");
    image["comment"] = json!(format!("dm-verity root hash {}", input.root_hash));
    let mut packages = vec![image];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    let mut relate = |from: &str, kind: &str, to: &str| {
        relationships.push(json!({
            "spdxElementId": from,
            "relationshipType": kind,
            "relatedSpdxElement": to,
        }));
    };
    for (i, p) in input.packages.iter().enumerate() {
        let id = format!("SPDXRef-deb-{i}");
        // Packages the builder makes (the NVIDIA modules) are not Debian's.
        let (vendor, supplier) = if p.name.starts_with("owui-") {
            ("owui", OURS)
        } else {
            ("debian", "Organization: Debian")
        };
        let purl = format!(
            "pkg:deb/{vendor}/{}@{}?arch={}&distro=debian-{}",
            purl_escape(&p.name),
            purl_escape(&p.version),
            purl_escape(&p.arch),
            purl_escape(input.suite)
        );
        packages.push(package(&id, &p.name, &p.version, supplier, purl));
        relate("SPDXRef-Image", "CONTAINS", &id);
    }
    let crate_ids: Vec<String> = input
        .crates
        .iter()
        .map(|c| spdx_id("crate", &format!("{}-{}", c.name, c.version)))
        .collect();
    for (c, id) in input.crates.iter().zip(&crate_ids) {
        let from_crates_io = c.source == Some(CRATES_IO);
        let (supplier, purl) = if from_crates_io {
            (
                "Organization: crates.io".to_string(),
                format!(
                    "pkg:cargo/{}@{}",
                    purl_escape(c.name),
                    purl_escape(c.version)
                ),
            )
        } else if c.source.is_none() {
            (
                OURS.to_string(),
                format!(
                    "pkg:generic/owui-appliance/{}@{}",
                    purl_escape(c.name),
                    purl_escape(c.version)
                ),
            )
        } else {
            // Another registry or a git source: named as the lock has it.
            let source = c.source.unwrap_or_default();
            (
                format!(
                    "Organization: {}",
                    source.split('#').next().unwrap_or(source)
                ),
                format!(
                    "pkg:cargo/{}@{}?repository_url={}",
                    purl_escape(c.name),
                    purl_escape(c.version),
                    purl_escape(source)
                ),
            )
        };
        let mut p = package(id, c.name, c.version, &supplier, purl);
        if from_crates_io {
            p["downloadLocation"] = json!(format!(
                "https://crates.io/api/v1/crates/{}/{}/download",
                c.name, c.version
            ));
        }
        if let Some(sum) = c.checksum {
            p["checksums"] = sha256(sum);
        }
        packages.push(p);
        for &dep in c.dependencies {
            if let Some(dep_id) = crate_ids.get(dep) {
                relate(id, "DEPENDS_ON", dep_id);
            }
        }
    }
    if let Some(agent) = crate_ids.first() {
        relate("SPDXRef-Image", "CONTAINS", agent);
    }
    if let Some(m) = input.content {
        for (i, o) in m.oci.iter().enumerate() {
            let id = format!("SPDXRef-oci-{i}");
            // Checked when the content was packed; the whole text otherwise.
            let parsed = o.reference.parse::<ImageReference>().ok();
            let (repo, tag, repository) = parsed
                .as_ref()
                .map_or((o.reference.as_str(), None, o.reference.clone()), |r| {
                    (r.name(), r.tag(), r.repository())
                });
            let name = repo.rsplit('/').next().unwrap_or(repo);
            let purl = format!(
                "pkg:oci/{}@{}?repository_url={}{}",
                purl_escape(name),
                purl_escape(&o.manifest.to_string()),
                purl_escape(repo),
                tag.map(|t| format!("&tag={}", purl_escape(t)))
                    .unwrap_or_default()
            );
            let version = tag.map_or_else(|| o.manifest.to_string(), str::to_string);
            let mut p = package(
                &id,
                &o.reference,
                &version,
                &image_supplier(&repository),
                purl,
            );
            p["checksums"] = sha256(&o.manifest.hex());
            if let Some(pulled) = input.pulled.iter().find(|p| p.reference == o.reference) {
                p["downloadLocation"] = json!(format!(
                    "https://{}/v2/{}/manifests/{}",
                    pulled.mirror.as_deref().unwrap_or(&pulled.registry),
                    pulled.repository,
                    pulled.digest
                ));
            }
            packages.push(p);
            relate("SPDXRef-Image", "CONTAINS", &id);
        }
        for (i, model) in m.ollama.iter().enumerate() {
            let id = format!("SPDXRef-ollama-{i}");
            let purl = format!("pkg:generic/ollama/{}", purl_escape(&model.name));
            let mut p = package(
                &id,
                &model.name,
                &model.manifest.to_string(),
                &ollama_supplier(&model.name),
                purl,
            );
            p["checksums"] = sha256(&model.manifest.hex());
            packages.push(p);
            relate("SPDXRef-Image", "CONTAINS", &id);
        }
        for (i, snap) in m.huggingface.iter().enumerate() {
            let id = format!("SPDXRef-hf-{i}");
            let purl = format!(
                "pkg:huggingface/{}@{}",
                snap.repo,
                purl_escape(&snap.revision)
            );
            let owner = snap.repo.split('/').next().unwrap_or(&snap.repo);
            packages.push(package(
                &id,
                &snap.repo,
                &snap.revision,
                &format!("Organization: {owner}"),
                purl,
            ));
            relate("SPDXRef-Image", "CONTAINS", &id);
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.name,
        "documentNamespace": format!("https://owui-appliance.invalid/spdx/{}/{}", input.name, input.root_hash),
        "creationInfo": {
            "created": rfc3339(input.source_date_epoch),
            "creators": [
                format!("Tool: owui-builder-{}", env!("CARGO_PKG_VERSION")),
                "Organization: owui-appliance",
            ],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_packages_get_package_urls_and_the_image_contains_them() {
        let packages = vec![Package {
            name: "libstdc++6".into(),
            version: "14.2.0-19".into(),
            arch: "amd64".into(),
        }];
        let doc = spdx(&SbomInputs {
            name: "owui-app-0.1.0",
            suite: "trixie",
            version: "1.0.0",
            root_hash: "ab",
            source_date_epoch: 1_700_000_000,
            packages: &packages,
            crates: &[],
            content: None,
            pulled: &[],
        });
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            doc["packages"][1]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libstdc%2B%2B6@14.2.0-19?arch=amd64&distro=debian-trixie"
        );
        assert_eq!(
            doc["relationships"][1]["relatedSpdxElement"],
            "SPDXRef-deb-0"
        );
    }

    /// Every package: a supplier other than NOASSERTION, a version and a
    /// purl; the image's version is the spec's; the agent's crates hang off
    /// the agent with their checksums.
    #[test]
    fn every_package_has_the_ntia_minimum_elements() {
        const CRATES: &[Crate] = &[
            Crate {
                name: "owui-agent",
                version: "0.1.0",
                source: None,
                checksum: None,
                dependencies: &[1],
            },
            Crate {
                name: "zbus",
                version: "5.1.0",
                source: Some(CRATES_IO),
                checksum: Some("ab12"),
                dependencies: &[2],
            },
            Crate {
                name: "zvariant",
                version: "5.0.0",
                source: Some(CRATES_IO),
                checksum: Some("cd34"),
                dependencies: &[],
            },
        ];
        let packages = [
            Package {
                name: "bash".into(),
                version: "5.2.37-2".into(),
                arch: "amd64".into(),
            },
            Package {
                name: "owui-nvidia-modules-6.12".into(),
                version: "535.274.02".into(),
                arch: "amd64".into(),
            },
        ];
        let doc = spdx(&SbomInputs {
            name: "owui-gpu-1.4.2",
            version: "1.4.2",
            suite: "trixie",
            root_hash: "ab",
            source_date_epoch: 0,
            packages: &packages,
            crates: CRATES,
            content: None,
            pulled: &[],
        });
        let all = doc["packages"].as_array().unwrap();
        assert_eq!(all.len(), 1 + 2 + 3);
        for p in all {
            let supplier = p["supplier"].as_str().unwrap_or_default();
            assert!(supplier.starts_with("Organization: "), "{p}");
            assert!(
                !p["versionInfo"].as_str().unwrap_or_default().is_empty(),
                "{p}"
            );
            assert!(p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:")));
        }
        assert_eq!(all[0]["versionInfo"], "1.4.2");
        assert_eq!(all[1]["supplier"], "Organization: Debian");
        assert_eq!(all[2]["supplier"], OURS);
        assert_eq!(
            all[4]["externalRefs"][0]["referenceLocator"],
            "pkg:cargo/zbus@5.1.0"
        );
        assert_eq!(all[4]["checksums"][0]["checksumValue"], "ab12");
        assert_eq!(
            all[4]["downloadLocation"],
            "https://crates.io/api/v1/crates/zbus/5.1.0/download"
        );
        let rels: Vec<(String, String, String)> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let f = |k: &str| r[k].as_str().unwrap().to_string();
                (
                    f("spdxElementId"),
                    f("relationshipType"),
                    f("relatedSpdxElement"),
                )
            })
            .collect();
        let has = |a: &str, k: &str, b: &str| {
            rels.contains(&(a.to_string(), k.to_string(), b.to_string()))
        };
        assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
        assert!(has(
            "SPDXRef-Image",
            "CONTAINS",
            "SPDXRef-crate-owui-agent-0.1.0"
        ));
        assert!(has(
            "SPDXRef-crate-owui-agent-0.1.0",
            "DEPENDS_ON",
            "SPDXRef-crate-zbus-5.1.0"
        ));
        assert!(has(
            "SPDXRef-crate-zbus-5.1.0",
            "DEPENDS_ON",
            "SPDXRef-crate-zvariant-5.0.0"
        ));
    }

    /// The list compiled in from Cargo.lock starts at the agent and holds
    /// the crates it links (no test-only ones of its own).
    #[test]
    fn the_agent_crates_come_from_the_lock() {
        assert_eq!(AGENT_CRATES[0].name, "owui-agent");
        for name in ["owui-bundle", "zbus", "tokio", "serde"] {
            assert!(AGENT_CRATES.iter().any(|c| c.name == name), "{name}");
        }
        for c in &AGENT_CRATES[1..] {
            assert!(c.source.is_none() || c.checksum.is_some(), "{c:?}");
        }
    }

    #[test]
    fn suppliers_come_from_namespaces() {
        assert_eq!(
            image_supplier("ghcr.io/open-webui/open-webui"),
            "Organization: open-webui"
        );
        assert_eq!(
            image_supplier("docker.io/library/busybox"),
            "Organization: Docker Official Images"
        );
        assert_eq!(
            image_supplier("localhost:5000/x"),
            "Organization: localhost:5000"
        );
        assert_eq!(ollama_supplier("llama3:8b"), "Organization: Ollama");
        assert_eq!(ollama_supplier("library/llama3:8b"), "Organization: Ollama");
        assert_eq!(ollama_supplier("acme/tiny:1"), "Organization: acme");
        assert_eq!(
            ollama_supplier("reg.example/acme/tiny:1"),
            "Organization: acme"
        );
    }

    #[test]
    fn pulled_images_name_where_they_came_from() {
        use owui_bundle::items::OciImage;
        use owui_bundle::Sha256Digest;
        let index = Sha256Digest::of(b"index");
        let image = |reference: &str| OciImage {
            reference: reference.into(),
            manifest: Sha256Digest::of(b"manifest"),
            media_type: owui_bundle::oci::OCI_MANIFEST.into(),
            manifest_size: 8,
            blobs: Vec::new(),
        };
        let pulled_ref = format!("reg.example:5000/owui/app:v1@{index}");
        let content = Manifest {
            format: "owui-bundle/1".into(),
            channel: "image".into(),
            sequence: 1,
            roles: Vec::new(),
            created: 0,
            blobs: Vec::new(),
            ollama: Vec::new(),
            huggingface: Vec::new(),
            oci: vec![image(&pulled_ref), image("ghcr.io/x/local:1")],
            remove: Vec::new(),
        };
        let pulled = [PulledImage {
            reference: pulled_ref,
            registry: "reg.example:5000".into(),
            repository: "owui/app".into(),
            mirror: None,
            digest: index,
            manifest: Sha256Digest::of(b"manifest"),
        }];
        let doc = spdx(&SbomInputs {
            name: "owui-app-0.1.0",
            suite: "trixie",
            version: "1.0.0",
            root_hash: "ab",
            source_date_epoch: 0,
            packages: &[],
            crates: &[],
            content: Some(&content),
            pulled: &pulled,
        });
        assert_eq!(
            doc["packages"][1]["downloadLocation"],
            format!("https://reg.example:5000/v2/owui/app/manifests/{index}")
        );
        assert_eq!(doc["packages"][2]["downloadLocation"], "NOASSERTION");
    }

    #[test]
    fn references_split_into_repository_and_tag() {
        let split_reference = |reference: &str| {
            let r: ImageReference = reference.parse().unwrap();
            (r.name().to_string(), r.tag().map(str::to_string))
        };
        let expect = |repo: &str, tag: Option<&str>| (repo.to_string(), tag.map(str::to_string));
        assert_eq!(
            split_reference("ghcr.io/open-webui/open-webui:v0.6.5"),
            expect("ghcr.io/open-webui/open-webui", Some("v0.6.5"))
        );
        assert_eq!(
            split_reference("localhost:5000/x"),
            expect("localhost:5000/x", None)
        );
        let digest = format!("sha256:{}", "0".repeat(64));
        assert_eq!(
            split_reference(&format!("a/b@{digest}")),
            expect("a/b", None)
        );
    }
}
