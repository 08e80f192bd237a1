//! The SPDX 2.3 JSON software bill of materials: the image, its Debian
//! packages, its containers and its models, each with a package URL.

use owui_bundle::manifest::Manifest;
use owui_bundle::oci::ImageReference;
use serde_json::{json, Value};

use super::manifest::PulledImage;
use super::rootfs::Package;

pub struct SbomInputs<'a> {
    pub name: &'a str,
    pub suite: &'a str,
    pub root_hash: &'a str,
    pub source_date_epoch: u64,
    pub packages: &'a [Package],
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

fn package(id: String, name: &str, version: &str, purl: String) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

pub fn spdx(input: &SbomInputs<'_>) -> Value {
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": input.name,
        "versionInfo": input.root_hash,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    })];
    let mut contains = Vec::new();
    for (i, p) in input.packages.iter().enumerate() {
        let id = format!("SPDXRef-deb-{i}");
        // Packages the builder makes (the NVIDIA modules) are not Debian's.
        let vendor = if p.name.starts_with("owui-") {
            "owui"
        } else {
            "debian"
        };
        let purl = format!(
            "pkg:deb/{vendor}/{}@{}?arch={}&distro=debian-{}",
            purl_escape(&p.name),
            purl_escape(&p.version),
            purl_escape(&p.arch),
            purl_escape(input.suite)
        );
        packages.push(package(id.clone(), &p.name, &p.version, purl));
        contains.push(id);
    }
    if let Some(m) = input.content {
        for (i, o) in m.oci.iter().enumerate() {
            let id = format!("SPDXRef-oci-{i}");
            // Checked when the content was packed; the whole text otherwise.
            let parsed = o.reference.parse::<ImageReference>().ok();
            let (repo, tag) = parsed
                .as_ref()
                .map_or((o.reference.as_str(), None), |r| (r.name(), r.tag()));
            let name = repo.rsplit('/').next().unwrap_or(repo);
            let purl = format!(
                "pkg:oci/{}@{}?repository_url={}{}",
                purl_escape(name),
                purl_escape(&o.manifest.to_string()),
                purl_escape(repo),
                tag.map(|t| format!("&tag={}", purl_escape(t)))
                    .unwrap_or_default()
            );
            let mut p = package(id.clone(), &o.reference, &o.manifest.to_string(), purl);
            if let Some(pulled) = input.pulled.iter().find(|p| p.reference == o.reference) {
                p["downloadLocation"] = json!(format!(
                    "https://{}/v2/{}/manifests/{}",
                    pulled.mirror.as_deref().unwrap_or(&pulled.registry),
                    pulled.repository,
                    pulled.digest
                ));
            }
            packages.push(p);
            contains.push(id);
        }
        for (i, model) in m.ollama.iter().enumerate() {
            let id = format!("SPDXRef-ollama-{i}");
            let purl = format!("pkg:generic/ollama/{}", purl_escape(&model.name));
            packages.push(package(
                id.clone(),
                &model.name,
                &model.manifest.to_string(),
                purl,
            ));
            contains.push(id);
        }
        for (i, snap) in m.huggingface.iter().enumerate() {
            let id = format!("SPDXRef-hf-{i}");
            let purl = format!(
                "pkg:huggingface/{}@{}",
                snap.repo,
                purl_escape(&snap.revision)
            );
            packages.push(package(id.clone(), &snap.repo, &snap.revision, purl));
            contains.push(id);
        }
    }
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    relationships.extend(contains.into_iter().map(|id| {
        json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        })
    }));
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": input.name,
        "documentNamespace": format!("https://owui-appliance.invalid/spdx/{}/{}", input.name, input.root_hash),
        "creationInfo": {
            "created": rfc3339(input.source_date_epoch),
            "creators": [format!("Tool: owui-builder-{}", env!("CARGO_PKG_VERSION"))],
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
            root_hash: "ab",
            source_date_epoch: 1_700_000_000,
            packages: &packages,
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
            root_hash: "ab",
            source_date_epoch: 0,
            packages: &[],
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
