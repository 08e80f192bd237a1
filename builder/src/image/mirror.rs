//! Rebuilds with no network: the signed package indices of each online
//! build are kept in the cache next to the .deb files, and `--offline`
//! serves both to apt as a Debian-layout mirror. apt checks the mirror as
//! it checks deb.debian.org: InRelease against the host's Debian archive
//! keyring, each Packages file against InRelease's hashes, each .deb
//! against its Packages entry.
//!
//! Cache layout (a partial Debian mirror with its pool flattened):
//! `debs/<apt's file name>.deb`, `dists/<suite>/InRelease`,
//! `dists/<suite>/<component>/binary-amd64/Packages`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};

use super::rootfs::sorted_entries;
use super::spec::DebianSpec;

/// Images are x86-64 only (the UKI stub, the GPT root partition type).
const ARCH: &str = "amd64";

/// The URI apt is given for a mirror. apt reads `file:` mirrors in place,
/// so mmdebstrap would not find the essential packages under the chroot's
/// /var/cache/apt/archives; `copy:` is the same archive, copied like a
/// download, so the package cache fills the same way as online.
pub fn apt_uri(mirror: &str) -> String {
    match mirror.strip_prefix("file:") {
        Some(path) => format!("copy:{path}"),
        None => mirror.to_string(),
    }
}

/// Where a cached index goes, relative to the cache's `dists/<suite>`.
fn index_path(component: &str) -> PathBuf {
    Path::new(component).join(format!("binary-{ARCH}/Packages"))
}

/// Copies the suite's InRelease and Packages files from apt's lists
/// directory (as left by a successful install) into `cache/dists/<suite>`,
/// replacing the ones of an earlier build. apt names list files after the
/// URI: `deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages`.
pub fn keep_indices(lists: &Path, debian: &DebianSpec, cache: &Path) -> Result<()> {
    let suite = &debian.suite;
    let mut wanted = vec![(
        format!("_dists_{suite}_InRelease"),
        PathBuf::from("InRelease"),
    )];
    for c in &debian.components {
        wanted.push((
            format!("_dists_{suite}_{c}_binary-{ARCH}_Packages"),
            index_path(c),
        ));
    }
    let entries = sorted_entries(lists)?;
    let staging = cache.join(format!("dists/.{suite}.new"));
    if staging.exists() {
        fs::remove_dir_all(&staging).at("removing", &staging)?;
    }
    for (suffix, dest) in &wanted {
        let found = entries
            .iter()
            .find(|(name, _)| name.to_string_lossy().ends_with(suffix.as_str()));
        let Some((_, src)) = found else {
            return Err(Error::invalid(
                lists.display().to_string(),
                format!("apt left no *{suffix} file (compressed lists are not supported)"),
            ));
        };
        let dest = staging.join(dest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at("creating", parent)?;
        }
        fs::copy(src, &dest).at("copying a package index to", &dest)?;
    }
    let final_dir = cache.join("dists").join(suite);
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir).at("replacing", &final_dir)?;
    }
    fs::rename(&staging, &final_dir).at("moving into the cache", &final_dir)
}

/// A Debian-layout mirror in `dir` made of the cache's indices and .deb
/// files (symbolic links, so it costs nothing); returns the line for apt's
/// sources.list. Fails naming what is missing when the cache never saw an
/// online build of this suite.
pub fn local_mirror(cache: &Path, debian: &DebianSpec, dir: &Path) -> Result<String> {
    let cache = fs::canonicalize(cache).unwrap_or_else(|_| cache.to_path_buf());
    let dists = cache.join("dists").join(&debian.suite);
    let mut missing = Vec::new();
    let in_release = dists.join("InRelease");
    if !in_release.is_file() {
        missing.push(in_release.display().to_string());
    }
    for c in &debian.components {
        let p = dists.join(index_path(c));
        if !p.is_file() {
            missing.push(p.display().to_string());
        }
    }
    if !missing.is_empty() {
        return Err(Error::invalid(
            offline_source(&cache),
            format!(
                "no package index of {} {} here (missing {}); run one online build \
                 of this spec with this --cache first",
                debian.suite,
                debian.components.join(" "),
                missing.join(", ")
            ),
        ));
    }
    let debs = cache.join("debs");
    let have: HashMap<String, PathBuf> = if debs.is_dir() {
        sorted_entries(&debs)?
            .into_iter()
            .map(|(name, path)| (name.to_string_lossy().into_owned(), path))
            .collect()
    } else {
        HashMap::new()
    };
    // One-line sources.list entries are split at white space.
    if dir.to_string_lossy().contains(char::is_whitespace) {
        return Err(Error::invalid(
            dir.display().to_string(),
            "--offline needs an --out path without spaces (its local mirror goes there)",
        ));
    }
    let dists_dir = dir.join("dists");
    fs::create_dir_all(&dists_dir).at("creating", &dists_dir)?;
    let suite_link = dists_dir.join(&debian.suite);
    symlink(&dists, &suite_link).at("creating link", &suite_link)?;
    let mut served = HashSet::new();
    for c in &debian.components {
        let index = dists.join(index_path(c));
        let text = fs::read_to_string(&index).at("reading", &index)?;
        for entry in pool_entries(&text) {
            let Some(deb) = have.get(&entry.cache_name) else {
                continue;
            };
            // Links are made before apt has checked the index: a path
            // that leaves the pool must not place one elsewhere.
            let inside = entry.filename.starts_with("pool/")
                && Path::new(entry.filename)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)));
            if !inside {
                return Err(Error::invalid(
                    index.display().to_string(),
                    format!(
                        "package {}: Filename {:?} is not under pool/",
                        entry.package, entry.filename
                    ),
                ));
            }
            served.insert(entry.package.to_string());
            let dest = dir.join(entry.filename);
            if dest.symlink_metadata().is_ok() {
                continue;
            }
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).at("creating", parent)?;
            }
            symlink(deb, &dest).at("creating link", &dest)?;
        }
    }
    // The spec's own packages are checked here, all at once; a missing
    // dependency shows when apt fails (see apt_failure).
    let absent: Vec<String> = debian
        .packages
        .iter()
        .filter(|p| !served.contains(p.as_str()))
        .cloned()
        .collect();
    if !absent.is_empty() {
        return Err(not_cached(&cache, &absent));
    }
    // The indices were current when saved; an expiry date on them (a
    // security suite's) would make a later offline rebuild fail for a
    // reason that is not about integrity. The signature is still checked.
    let release = fs::read_to_string(&in_release).at("reading", &in_release)?;
    let options = if has_valid_until(&release) {
        "[check-valid-until=no] "
    } else {
        ""
    };
    Ok(format!(
        "deb {options}copy://{} {} {}",
        dir.display(),
        debian.suite,
        debian.components.join(" ")
    ))
}

/// One package of a Packages index: the pool path it is served at, and
/// the name apt gives the file in /var/cache/apt/archives (the epoch's
/// colon escaped).
struct PoolEntry<'a> {
    package: &'a str,
    filename: &'a str,
    cache_name: String,
}

fn pool_entries(index: &str) -> impl Iterator<Item = PoolEntry<'_>> {
    index.split("\n\n").filter_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        };
        let package = field("Package")?;
        let filename = field("Filename")?;
        let cache_name = format!(
            "{package}_{}_{}.deb",
            field("Version")?.replace(':', "%3a"),
            field("Architecture")?
        );
        Some(PoolEntry {
            package,
            filename,
            cache_name,
        })
    })
}

/// Whether an InRelease file has a Valid-Until field (the armour and the
/// base64 signature cannot hold a line starting so; hash lists are
/// indented).
fn has_valid_until(in_release: &str) -> bool {
    in_release.lines().any(|l| l.starts_with("Valid-Until:"))
}

/// How errors name the offline build's package source.
pub fn offline_source(cache: &Path) -> String {
    format!("--offline, cache {}", cache.display())
}

/// The error for packages an offline build needs and the cache lacks.
pub fn not_cached(cache: &Path, packages: &[String]) -> Error {
    Error::invalid(
        offline_source(cache),
        format!(
            "not in the package cache: {}; run one online build of this spec \
             with this --cache first",
            packages.join(", ")
        ),
    )
}

/// What a failed install says about the mirror (or the offline cache),
/// when it says it plainly.
#[derive(Debug, PartialEq, Eq)]
pub enum AptFailure {
    /// Packages whose file is not there ("Failed to fetch …/NAME_VER_ARCH.deb
    /// … No such file" or "404").
    Missing(Vec<String>),
    /// A signature or hash that does not check out: apt's own line.
    Unverified(String),
}

pub fn apt_failure(output: &str) -> Option<AptFailure> {
    let unverified = [
        "Hash Sum mismatch",
        "NO_PUBKEY",
        "signatures were invalid",
        "is not signed",
    ];
    let is_unverified = |l: &&str| unverified.iter().any(|u| l.contains(u));
    // apt's "E:" line names the file; the others are its details.
    let mut lines = output.lines().filter(is_unverified);
    if let Some(first) = lines.clone().next() {
        let line = lines.find(|l| l.starts_with("E:")).unwrap_or(first);
        return Some(AptFailure::Unverified(line.trim().to_string()));
    }
    let mut names: Vec<String> = output
        .lines()
        .filter(|l| {
            l.contains("Failed to fetch ") && (l.contains("No such file") || l.contains("404"))
        })
        .filter_map(|l| {
            let url = l.split_whitespace().find(|w| w.ends_with(".deb"))?;
            let file = url.rsplit('/').next()?;
            Some(file.split('_').next()?.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    (!names.is_empty()).then_some(AptFailure::Missing(names))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_entries_name_files_as_apt_caches_them() {
        let index = "Package: libc6\nVersion: 2.41-12\nArchitecture: amd64\n\
                     Filename: pool/main/g/glibc/libc6_2.41-12_amd64.deb\nSize: 1\n\n\
                     Package: e2fsprogs\nVersion: 1:1.47.2-3\nArchitecture: amd64\n\
                     Filename: pool/main/e/e2fsprogs/e2fsprogs_1.47.2-3_amd64.deb\n";
        let got: Vec<_> = pool_entries(index)
            .map(|e| (e.filename, e.cache_name))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "pool/main/g/glibc/libc6_2.41-12_amd64.deb",
                    "libc6_2.41-12_amd64.deb".to_string()
                ),
                (
                    "pool/main/e/e2fsprogs/e2fsprogs_1.47.2-3_amd64.deb",
                    "e2fsprogs_1%3a1.47.2-3_amd64.deb".to_string()
                ),
            ]
        );
    }

    #[test]
    fn valid_until_is_read_from_the_release_fields_only() {
        let head = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n";
        let main = format!("{head}Origin: Debian\nSuite: stable\nDate: x\n SHA256:\n");
        let security = format!("{head}Origin: Debian\nValid-Until: Sat, 28 Nov 2026\n");
        assert!(!has_valid_until(&main));
        assert!(has_valid_until(&security));
    }

    #[test]
    fn failed_fetches_become_package_names_and_bad_hashes_stay_distrusted() {
        let out = "E: Failed to fetch copy:/m/pool/main/u/util-linux/libmount1_2.41%2b1_amd64.deb  \
                   Failed to stat - stat (2: No such file or directory)\n\
                   E: Failed to fetch http://m/pool/main/b/base-passwd/base-passwd_3.6.7_amd64.deb  \
                   404  Not Found [IP: ::1 80]\n\
                   E: Unable to fetch some archives\n";
        let missing =
            |names: &[&str]| AptFailure::Missing(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            apt_failure(out),
            Some(missing(&["base-passwd", "libmount1"]))
        );
        let bad =
            "E: Failed to fetch copy:/m/pool/main/z/zstd/zstd_1.5_amd64.deb  Hash Sum mismatch\n";
        assert_eq!(
            apt_failure(bad),
            Some(AptFailure::Unverified(bad.trim().to_string()))
        );
        assert_eq!(apt_failure("E: Sub-process /usr/bin/dpkg returned 1"), None);
    }

    #[test]
    fn a_pool_path_leaving_the_mirror_is_refused_before_any_link() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let index = cache.join("dists/trixie/main/binary-amd64");
        fs::create_dir_all(&index).unwrap();
        fs::create_dir_all(cache.join("debs")).unwrap();
        fs::write(cache.join("dists/trixie/InRelease"), "Suite: stable\n").unwrap();
        fs::write(cache.join("debs/zstd_1.5_amd64.deb"), "").unwrap();
        fs::write(
            index.join("Packages"),
            "Package: zstd\nVersion: 1.5\nArchitecture: amd64\nFilename: pool/../../../x\n",
        )
        .unwrap();
        let debian = DebianSpec {
            suite: "trixie".into(),
            mirror: "http://deb.debian.org/debian".into(),
            components: vec!["main".into()],
            packages: vec!["zstd".into()],
        };
        let mirror = tmp.path().join("mirror");
        let err = local_mirror(&cache, &debian, &mirror).unwrap_err();
        assert!(err.to_string().contains("not under pool/"), "{err}");
        assert!(!tmp.path().join("x").exists());

        fs::write(
            index.join("Packages"),
            "Package: zstd\nVersion: 1.5\nArchitecture: amd64\nFilename: pool/main/z/zstd_1.5_amd64.deb\n",
        )
        .unwrap();
        fs::remove_dir_all(&mirror).unwrap();
        let line = local_mirror(&cache, &debian, &mirror).unwrap();
        assert_eq!(line, format!("deb copy://{} trixie main", mirror.display()));
        assert!(mirror.join("pool/main/z/zstd_1.5_amd64.deb").is_file());
        assert!(mirror.join("dists/trixie/InRelease").is_file());
    }

    #[test]
    fn file_mirrors_are_copied_like_downloads() {
        assert_eq!(apt_uri("file:///srv/debian"), "copy:///srv/debian");
        assert_eq!(
            apt_uri("http://deb.debian.org/debian"),
            "http://deb.debian.org/debian"
        );
    }
}
