//! `owui-builder build`: the stages from a role spec to a signed disk image.
//!
//! content → rootfs (mmdebstrap, erofs, verity; the slow one, cached by a key
//! over all of its inputs) → UKI → ESP → GPT disk → manifest, SBOM,
//! signature. Each stage prints its name and time. Outputs appear in the
//! output directory only when complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use owui_bundle::error::IoContext;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::progress::Progress;
use owui_bundle::sign::SecretKey;
use owui_bundle::{Error, Result, Sha256Digest};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::content::{self, Prefilled};
use super::disk::{
    self, PartitionImage, DATA_LABEL, DATA_TYPE, ESP_LABEL, ROOT_LABEL, VERITY_LABEL,
};
use super::esp::{self, EspFiles};
use super::manifest::{self, GpuDriver, ImageManifest, PulledImage, Uki, FORMAT};
use super::mirror::{self, AptFailure};
use super::rootfs::{self, Package, RootfsInputs};
use super::sbom::{self, SbomInputs};
use super::spec::ImageSpec;
use super::uki::{self, UkiParts};
use super::verity::{self, uuid_from, Verity};
use crate::pull::Pulled;

pub struct BuildOptions<'a> {
    pub spec: &'a ImageSpec,
    /// The `[[oci]]` images pulled from registries: recorded in the
    /// manifest and SBOM.
    pub pulled: &'a [Pulled],
    pub key: &'a SecretKey,
    pub out: &'a Path,
    pub agent_binary: &'a Path,
    /// Stage outputs and downloaded packages, kept between builds.
    pub cache_dir: &'a Path,
    /// Overrides the spec's mirror for this build (a site's own mirror).
    pub mirror: Option<&'a str>,
    /// Install from the cache's packages and signed indices alone.
    pub offline: bool,
    pub source_date_epoch: u64,
    /// false: build every stage afresh (the cache is still refreshed).
    pub reuse_cache: bool,
    pub quiet: bool,
    pub progress: &'a dyn Progress,
}

#[derive(Debug, Serialize)]
pub struct StageTime {
    pub stage: &'static str,
    pub seconds: f64,
    pub cached: bool,
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub image: PathBuf,
    pub manifest: PathBuf,
    pub sbom: PathBuf,
    pub role: String,
    pub version: String,
    pub root_hash: String,
    pub image_sha256: Sha256Digest,
    pub image_bytes: u64,
    pub stages: Vec<StageTime>,
}

/// Programs the build runs, checked up front so a missing one fails in
/// seconds rather than after the rootfs stage.
const TOOLS: &[(&str, &str)] = &[
    ("mmdebstrap", "mmdebstrap"),
    ("mkfs.erofs", "erofs-utils"),
    ("veritysetup", "cryptsetup-bin"),
    ("mkfs.vfat", "dosfstools"),
    ("mcopy", "mtools"),
    ("mmd", "mtools"),
    ("systemd-repart", "systemd"),
    ("mkfs.ext4", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("strip", "binutils"),
];

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

pub fn check_tools(spec: &ImageSpec) -> Result<()> {
    let oci = (!spec.content.oci.is_empty()).then_some(("skopeo", "skopeo"));
    for (program, package) in TOOLS.iter().chain(oci.as_ref()) {
        if !on_path(program) {
            return Err(Error::tool(
                *program,
                format!("not found on PATH; install the Debian package {package}"),
            ));
        }
    }
    Ok(())
}

struct Stages {
    quiet: bool,
    times: Vec<StageTime>,
    total: usize,
}

impl Stages {
    fn run<T>(
        &mut self,
        stage: &'static str,
        what: &str,
        f: impl FnOnce() -> Result<(T, bool)>,
    ) -> Result<T> {
        let n = self.times.len() + 1;
        if !self.quiet {
            eprintln!("[{n}/{}] {stage}: {what}", self.total);
        }
        let start = Instant::now();
        let (value, cached) = f()?;
        let seconds = start.elapsed().as_secs_f64();
        if !self.quiet {
            let how = if cached { " (cached)" } else { "" };
            eprintln!("[{n}/{}] {stage}: done in {seconds:.1} s{how}", self.total);
        }
        self.times.push(StageTime {
            stage,
            seconds,
            cached,
        });
        Ok(value)
    }
}

/// Part of the rootfs cache key: bump it when the way the tree is made
/// changes (rootfs.rs, the assets), so no stale stage output is reused.
const TREE_FORMAT: u32 = 4;

/// The rootfs stage's outputs, as kept in the cache.
struct RootArtifacts {
    dir: PathBuf,
    verity: Verity,
    packages: Vec<Package>,
}

const ROOT_FILES: &[&str] = &[
    "root.erofs",
    "root.verity",
    "vmlinuz",
    "initrd",
    "linuxx64.efi.stub",
    "systemd-bootx64.efi",
    "os-release",
];

impl RootArtifacts {
    fn load(dir: &Path) -> Option<RootArtifacts> {
        let verity = serde_json::from_slice(&fs::read(dir.join("verity.json")).ok()?).ok()?;
        let packages = serde_json::from_slice(&fs::read(dir.join("packages.json")).ok()?).ok()?;
        ROOT_FILES
            .iter()
            .all(|f| dir.join(f).is_file())
            .then(|| RootArtifacts {
                dir: dir.to_path_buf(),
                verity,
                packages,
            })
    }
}

/// Hashes a tree's paths, modes, link targets and file contents.
fn hash_tree(h: &mut Sha256, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = fs::read_dir(dir)
        .at("reading", dir)?
        .collect::<std::io::Result<_>>()
        .at("reading", dir)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).at("reading", &path)?;
        h.update(entry.file_name().as_encoded_bytes());
        h.update(meta.permissions().mode().to_le_bytes());
        if meta.file_type().is_symlink() {
            h.update(
                fs::read_link(&path)
                    .at("reading", &path)?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if meta.is_dir() {
            h.update(b"{");
            hash_tree(h, &path)?;
            h.update(b"}");
        } else {
            h.update(fs::read(&path).at("reading", &path)?);
        }
        h.update([0]);
    }
    Ok(())
}

/// Where the rootfs stage's packages come from.
enum Source<'a> {
    /// A mirror (the spec's, or `--mirror`): its signed indices are kept in
    /// `keep_in` (the cache) for later offline builds.
    Mirror { url: &'a str, keep_in: &'a Path },
    /// `--offline`: the cache, served as a mirror.
    Cache(&'a Path),
}

impl Source<'_> {
    /// How progress lines and errors name it.
    fn describe(&self) -> String {
        match self {
            Source::Cache(cache) => mirror::offline_source(cache),
            Source::Mirror { url, .. } => format!("mirror {url}"),
        }
    }
}

fn build_root(
    inputs: &RootfsInputs<'_>,
    source: &Source<'_>,
    injection: &Path,
    scratch: &Path,
    dest: &Path,
    key: &[u8; 32],
) -> Result<RootArtifacts> {
    let tree = scratch.join("rootfs");
    rootfs::debootstrap(inputs, injection, &tree).map_err(|e| {
        let what = source.describe();
        match (mirror::apt_failure(&e.to_string()), source) {
            (None, _) => e,
            (Some(AptFailure::Unverified(line)), _) => Error::untrusted(what, line),
            (Some(AptFailure::Missing(names)), Source::Cache(cache)) => {
                mirror::not_cached(cache, &names)
            }
            (Some(AptFailure::Missing(names)), Source::Mirror { .. }) => {
                Error::invalid(what, format!("does not have {}", names.join(", ")))
            }
        }
    })?;
    if let Source::Mirror { keep_in, .. } = source {
        mirror::keep_indices(inputs.apt_lists, &inputs.spec.debian, keep_in)?;
    }
    rootfs::finish_tree(&tree)?;
    let packages = rootfs::read_packages(&tree)?;

    let work = scratch.join("root-stage");
    fs::create_dir_all(&work).at("creating", &work)?;
    let copy = |from: &Path, name: &str| -> Result<()> {
        fs::copy(from, work.join(name))
            .at("copying", from)
            .map(|_| ())
    };
    let boot = tree.join("boot");
    let kernel = newest(&boot, "vmlinuz-")?;
    let initrd = newest(&boot, "initrd.img-")?;
    copy(&kernel, "vmlinuz")?;
    copy(&initrd, "initrd")?;
    let efi = tree.join("usr/lib/systemd/boot/efi");
    copy(&efi.join("linuxx64.efi.stub"), "linuxx64.efi.stub")?;
    copy(&efi.join("systemd-bootx64.efi"), "systemd-bootx64.efi")?;
    copy(&tree.join("usr/lib/os-release"), "os-release")?;
    // The kernel and initrd travel in the UKI; /boot in the root stays empty.
    for entry in fs::read_dir(&boot).at("reading", &boot)? {
        let path = entry.at("reading", &boot)?.path();
        fs::remove_file(&path).at("removing", &path)?;
    }
    let verity = verity::make_root(
        &tree,
        key,
        inputs.source_date_epoch,
        &work.join("root.erofs"),
        &work.join("root.verity"),
    )?;
    fs::remove_dir_all(&tree).at("removing", &tree)?;
    fs::write(work.join("verity.json"), to_json(&verity)?).at("writing", &work)?;
    fs::write(work.join("packages.json"), to_json(&packages)?).at("writing", &work)?;
    if dest.exists() {
        fs::remove_dir_all(dest).at("replacing", dest)?;
    }
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).at("creating", parent)?;
    }
    fs::rename(&work, dest).at("moving into the cache", dest)?;
    RootArtifacts::load(dest).ok_or_else(|| {
        Error::invalid(
            dest.display().to_string(),
            "the rootfs stage left incomplete outputs",
        )
    })
}

/// The file in `dir` whose name starts with `prefix`; the kernel package set
/// has one kernel, so more than one is an error rather than a guess.
fn newest(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .at("reading", dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::invalid(
            dir.display().to_string(),
            format!("no {prefix}* file: is linux-image-amd64 in debian.packages?"),
        )),
        _ => Err(Error::invalid(
            dir.display().to_string(),
            format!("more than one {prefix}* file; list exactly one kernel package"),
        )),
    }
}

/// The manifest's record of the driver set, from the module package the
/// rootfs stage installed (`owui-nvidia-modules-<kernel>`).
fn gpu_driver(spec: &ImageSpec, packages: &[Package]) -> Result<Option<GpuDriver>> {
    let Some(gpu) = &spec.gpu else {
        return Ok(None);
    };
    let modules = packages
        .iter()
        .find_map(|p| Some((p, p.name.strip_prefix(MODULES_PACKAGE_PREFIX)?)));
    let Some((package, kernel)) = modules else {
        return Err(Error::invalid(
            format!("{}: gpu", spec.file.display()),
            "the root filesystem has no NVIDIA module package",
        ));
    };
    Ok(Some(GpuDriver {
        driver_set: gpu.set.name().to_string(),
        driver_version: package.version.clone(),
        kernel_modules: gpu.flavour,
        kernel: kernel.to_string(),
        modules_package: package.name.clone(),
    }))
}

/// nvidia-modules.sh names the package it makes this plus the kernel.
const MODULES_PACKAGE_PREFIX: &str = "owui-nvidia-modules-";

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| Error::internal("stage output", e.to_string()))
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

pub fn build(opts: &BuildOptions<'_>) -> Result<BuildReport> {
    let spec = opts.spec;
    check_tools(spec)?;
    spec.check_sources()?;
    spec.content_mib(content::estimate_bytes(spec)?)?;
    fs::create_dir_all(opts.out).at("creating", opts.out)?;
    let scratch = tempfile::Builder::new()
        .prefix(".owui-build-")
        .tempdir_in(opts.out)
        .at("creating a scratch directory in", opts.out)?;
    let scratch = scratch.path();
    let epoch = opts.source_date_epoch;
    let role = spec.role.as_str().to_string();
    let name = format!("{role}-{}", spec.version);
    let mut stages = Stages {
        quiet: opts.quiet,
        times: Vec::new(),
        total: 6,
    };

    // Offline: the cache's packages as a mirror, checked before any work.
    let url = opts.mirror.unwrap_or(&spec.debian.mirror);
    let (source, apt_source) = if opts.offline {
        let line = mirror::local_mirror(opts.cache_dir, &spec.debian, &scratch.join("mirror"))?;
        (Source::Cache(opts.cache_dir), line)
    } else {
        let d = &spec.debian;
        let line = format!(
            "deb {} {} {}",
            mirror::apt_uri(url),
            d.suite,
            d.components.join(" ")
        );
        (
            Source::Mirror {
                url,
                keep_in: opts.cache_dir,
            },
            line,
        )
    };

    // 1. Content, first: the Quadlet units name the images by the digests
    // it yields, and a too-small partition shows before the slow stage.
    // The data partition's tree is /var; the content goes in at lib/owui.
    let data_tree = scratch.join("data");
    let mount = content::data_layout(&data_tree)?;
    let prefilled: Prefilled = stages.run(
        "content",
        "containers and models into the content store",
        || {
            Ok((
                content::prefill(spec, opts.key, epoch, scratch, &mount, opts.progress)?,
                false,
            ))
        },
    )?;
    let content_mib = spec.content_mib(prefilled.bytes)?;
    let digest_of = |oci: &owui_bundle::spec::OciSpec| {
        prefilled
            .manifest
            .as_ref()
            .and_then(|m| m.oci.iter().find(|o| o.reference == oci.reference))
            .map(|o| o.manifest)
    };
    let mut quadlets = Vec::new();
    for q in &spec.units.quadlets {
        quadlets.push((q.clone(), spec.render_quadlet(q, digest_of)?));
    }

    // 2. Root filesystem, cached by a key over everything that goes in.
    let public = opts.key.public();
    let trust_name = format!("{}.pub", public.id);
    let trust_text = public.to_file_string();
    let image_info = serde_json::to_string_pretty(&serde_json::json!({
        "role": role,
        "version": spec.version,
    }))
    .unwrap_or_default();
    let inputs = RootfsInputs {
        spec,
        apt_source: &apt_source,
        apt_lists: &scratch.join("apt-lists"),
        agent_binary: opts.agent_binary,
        quadlets: &quadlets,
        trust_key: (&trust_name, &trust_text),
        image_info: &image_info,
        source_date_epoch: epoch,
        package_cache: &opts.cache_dir.join("debs"),
        module_cache: &opts.cache_dir.join("nvidia-modules"),
        progress: !opts.quiet,
    };
    let injection = scratch.join("inject");
    rootfs::write_injection(&inputs, &injection)?;
    // Where the packages come from (--mirror, --offline) is left out: an
    // offline rebuild must give the online build's bytes, and these key
    // the verity salt and the partition UUIDs.
    let mut h = Sha256::new();
    h.update(format!(
        "owui-builder {} rootfs {TREE_FORMAT}\n{:?}\n{epoch}\n{:?}\n",
        env!("CARGO_PKG_VERSION"),
        spec.debian,
        spec.units.enable
    ));
    // The injection holds the driver set files and the GPU script too.
    hash_tree(&mut h, &injection)?;
    let root_key: [u8; 32] = h.finalize().into();
    let root_key_hex = hex::encode(&root_key[..8]);
    let root_cache = opts.cache_dir.join(format!("rootfs-{root_key_hex}"));
    let packages_note = format!(
        "{} packages from {}, {}",
        spec.debian.packages.len(),
        spec.debian.suite,
        source.describe()
    );
    let root = stages.run("rootfs", &packages_note, || {
        if opts.reuse_cache {
            if let Some(found) = RootArtifacts::load(&root_cache) {
                return Ok((found, true));
            }
        }
        Ok((
            build_root(
                &inputs,
                &source,
                &injection,
                scratch,
                &root_cache,
                &root_key,
            )?,
            false,
        ))
    })?;
    let root_bytes = fs::metadata(root.dir.join("root.erofs"))
        .at("reading", &root.dir)?
        .len()
        + fs::metadata(root.dir.join("root.verity"))
            .at("reading", &root.dir)?
            .len();
    if mib(root_bytes) > spec.partitions.root_mib {
        return Err(Error::invalid(
            format!("{}: partitions.root", spec.file.display()),
            format!(
                "{} MiB is too small: the root filesystem and its verity tree take {} MiB",
                spec.partitions.root_mib,
                mib(root_bytes)
            ),
        ));
    }

    let gpu = gpu_driver(spec, &root.packages)?;

    // 3. The UKI: the command line carries the root hash, so the signature
    // over the UKI (or the manifest) covers the whole root.
    let v = &root.verity;
    let mut cmdline = vec![
        "root=/dev/mapper/root".to_string(),
        "rootfstype=erofs".into(),
        "ro".into(),
        format!("owui.verity={}", v.root_hash),
        format!("owui.verity.data={}", v.data_uuid),
        format!("owui.verity.hash={}", v.hash_uuid),
    ];
    cmdline.extend(spec.kernel_cmdline.iter().cloned());
    let cmdline = cmdline.join(" ");
    let uki_path = scratch.join("uki.efi");
    stages.run(
        "uki",
        "kernel, initrd and command line into one EFI binary",
        || {
            let read = |n: &str| fs::read(root.dir.join(n)).at("reading", &root.dir.join(n));
            let image = uki::assemble(
                &read("linuxx64.efi.stub")?,
                &UkiParts {
                    osrel: &read("os-release")?,
                    cmdline: cmdline.as_bytes(),
                    initrd: &read("initrd")?,
                    linux: &read("vmlinuz")?,
                },
            )?;
            fs::write(&uki_path, image).at("writing", &uki_path)?;
            Ok(((), false))
        },
    )?;

    // 4. ESP.
    let uki_name = format!("owui-{name}.efi");
    let esp_path = scratch.join("esp.img");
    stages.run(
        "esp",
        "systemd-boot and the UKI on a FAT32 partition",
        || {
            let need = fs::metadata(&uki_path).at("reading", &uki_path)?.len();
            if mib(need) + 8 > spec.partitions.esp_mib {
                return Err(Error::invalid(
                    format!("{}: partitions.esp", spec.file.display()),
                    format!(
                        "{} MiB cannot hold the {} MiB UKI",
                        spec.partitions.esp_mib,
                        mib(need)
                    ),
                ));
            }
            esp::make_esp(
                &EspFiles {
                    systemd_boot: &root.dir.join("systemd-bootx64.efi"),
                    uki: &uki_path,
                    uki_name: &uki_name,
                },
                spec.partitions.esp_mib,
                epoch,
                scratch,
                &esp_path,
            )?;
            Ok(((), false))
        },
    )?;

    // 5. Disk.
    let seed_of = |what: &str| -> [u8; 32] {
        Sha256::new()
            .chain_update(root_key)
            .chain_update(what.as_bytes())
            .chain_update(v.root_hash.as_bytes())
            .chain_update(prefilled.bytes.to_le_bytes())
            .finalize()
            .into()
    };
    let data_img = scratch.join("data.ext4");
    let tmp_image = scratch.join(format!("{name}.img"));
    stages.run("disk", "GPT: ESP, verity root, data partition", || {
        content::make_partition(
            &data_tree,
            content_mib,
            &uuid_from(&seed_of("data-fs")),
            epoch,
            &data_img,
        )?;
        let parts = [
            PartitionImage {
                repart_type: "esp",
                label: ESP_LABEL,
                uuid: uuid_from(&seed_of("esp")),
                file: esp_path.clone(),
                read_only: false,
            },
            PartitionImage {
                repart_type: "root-x86-64",
                label: ROOT_LABEL,
                uuid: v.data_uuid.clone(),
                file: root.dir.join("root.erofs"),
                read_only: true,
            },
            PartitionImage {
                repart_type: "root-x86-64-verity",
                label: VERITY_LABEL,
                uuid: v.hash_uuid.clone(),
                file: root.dir.join("root.verity"),
                read_only: true,
            },
            PartitionImage {
                repart_type: DATA_TYPE,
                label: DATA_LABEL,
                uuid: uuid_from(&seed_of("data")),
                file: data_img.clone(),
                read_only: false,
            },
        ];
        disk::assemble(&parts, &uuid_from(&seed_of("disk")), scratch, &tmp_image)?;
        Ok(((), false))
    })?;

    // 6. Manifest, SBOM, signature.
    let manifest_path = opts.out.join(format!("{name}.manifest.json"));
    let sbom_path = opts.out.join(format!("{name}.spdx.json"));
    let image_path = opts.out.join(format!("{name}.img"));
    let image = stages.run("manifest", "digests, SBOM and signature", || {
        let gpt = disk::read_gpt(&tmp_image)?;
        let partitions = gpt
            .iter()
            .map(|p| manifest::partition_digest(&tmp_image, p))
            .collect::<Result<Vec<_>>>()?;
        let pulled: Vec<PulledImage> = opts
            .pulled
            .iter()
            .map(|p| PulledImage {
                reference: p.reference.clone(),
                registry: p.registry.clone(),
                repository: p.repository.clone(),
                mirror: p.mirror.clone(),
                digest: p.digest,
                manifest: p.manifest,
            })
            .collect();
        let sbom = sbom::spdx(&SbomInputs {
            name: &format!("owui-{name}"),
            version: &spec.version,
            suite: &spec.debian.suite,
            root_hash: &v.root_hash,
            source_date_epoch: epoch,
            packages: &root.packages,
            crates: sbom::AGENT_CRATES,
            content: prefilled.manifest.as_ref(),
            pulled: &pulled,
        });
        let sbom_bytes = serde_json::to_vec_pretty(&sbom).unwrap_or_default();
        let tmp_sbom = scratch.join(format!("{name}.spdx.json"));
        fs::write(&tmp_sbom, &sbom_bytes).at("writing", &tmp_sbom)?;
        let image = manifest::file_digest(&tmp_image)?;
        let uki_digest = manifest::file_digest(&uki_path)?;
        let doc = ImageManifest {
            format: FORMAT.into(),
            role: role.clone(),
            version: spec.version.clone(),
            source_date_epoch: epoch,
            image: image.clone(),
            partitions,
            verity: v.clone(),
            uki: Uki {
                path: format!("EFI/Linux/{uki_name}"),
                sha256: uki_digest.sha256,
                cmdline: cmdline.clone(),
            },
            content: prefilled.manifest.clone(),
            pulled: pulled.clone(),
            packages: root.packages.clone(),
            gpu: gpu.clone(),
            sbom: manifest::file_digest(&tmp_sbom)?,
        };
        let bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| Error::internal("serialising the image manifest", e.to_string()))?;
        let signature = opts
            .key
            .sign(&bytes, &format!("owui image {name} {}", image.sha256));
        // The image last: a manifest without its image is harmless, an
        // image without its manifest cannot be verified.
        write_atomic(&sbom_path, &sbom_bytes, 0o644)?;
        write_atomic(&manifest_path, &bytes, 0o644)?;
        write_atomic(&minisig_path(&manifest_path), signature.as_bytes(), 0o644)?;
        fs::rename(&tmp_image, &image_path).at("moving into place", &image_path)?;
        Ok((image, false))
    })?;

    Ok(BuildReport {
        image: image_path,
        manifest: manifest_path,
        sbom: sbom_path,
        role,
        version: spec.version.clone(),
        root_hash: v.root_hash.clone(),
        image_sha256: image.sha256,
        image_bytes: image.size,
        stages: stages.times,
    })
}

pub fn minisig_path(manifest: &Path) -> PathBuf {
    let mut s = manifest.as_os_str().to_os_string();
    s.push(".minisig");
    PathBuf::from(s)
}
