//! Every host path the agent touches, derived from one root (`--root DIR`),
//! so tests and operators can work on a mounted disk. No other module writes
//! a literal `/etc` or `/var` path.
//!
//! A path under a root other than `/` is resolved inside the root, with the
//! kernel's `RESOLVE_IN_ROOT` rules: symlinks on the way are followed, but an
//! absolute target starts again at the root and `..` stops at the root, so a
//! link on the mounted disk (`var/lib/owui -> /srv/x`, `etc -> /etc`) can
//! never send a read or a write outside it. The walk is done here, one
//! component at a time (`lstat`, `readlink`, at most 40 links as the kernel
//! allows), and gives back a path with no symlink left in it: the kernel's
//! own resolution of that path cannot leave the root either. Under root `/`
//! the kernel resolves as it always does (a booted node links
//! /etc/owui/seed.toml to /run/owui/seed.toml on purpose) and paths are
//! plain joins. The root's tree is trusted not to change while a command
//! runs (it is root's to write).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};

/// The kernel's limit on symlinks in one path (ELOOP past it).
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone)]
pub struct Root(PathBuf);

/// Whether the path's last component is followed when it is a symlink.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Follow,
    Keep,
}

impl Root {
    pub fn new(dir: &Path) -> Self {
        Root(dir.to_path_buf())
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path of the node's own namespace (absolute, as configs write them),
    /// resolved inside the root, the last component included: what the node
    /// itself would open. Pass the whole path: a name joined to the result
    /// afterwards is not resolved, and a link there would be followed by the
    /// kernel from outside the root. A path that cannot be resolved is an
    /// error naming it: refused (exit 5) past 40 links, io (exit 1) when a
    /// link or directory on the way cannot be read.
    pub fn host(&self, path: &Path) -> Result<PathBuf> {
        self.walk(path, Last::Follow)
    }

    /// A path whose parent is resolved inside the root and whose last
    /// component is left as it is, for a caller that manages a symlink
    /// there itself (reads it with `read_link`, replaces it by rename) and
    /// never follows it.
    pub fn resolve_entry(&self, path: &Path) -> Result<PathBuf> {
        self.walk(path, Last::Keep)
    }

    /// The plain join: the path's normal components under the root.
    fn lexical(&self, path: &Path) -> PathBuf {
        let relative: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.0.join(relative)
    }

    fn walk(&self, path: &Path, last: Last) -> Result<PathBuf> {
        if self.0 == Path::new("/") {
            return Ok(self.lexical(path));
        }
        let mut pending: VecDeque<OsString> = VecDeque::new();
        push_front(&mut pending, path);
        // Relative to the root, free of symlinks (but for a kept last one).
        let mut resolved = PathBuf::new();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                // At the root, `..` is the root.
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&name);
            if pending.is_empty() && last == Last::Keep {
                resolved = candidate;
                break;
            }
            let host = self.0.join(&candidate);
            match fs::symlink_metadata(&host) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::refused(
                            self.lexical(path).display().to_string(),
                            format!(
                                "more than {MAX_LINKS} symbolic links on the way (a loop at {}?); it cannot be resolved inside the root {}",
                                host.display(),
                                self.0.display()
                            ),
                        ));
                    }
                    let target = fs::read_link(&host).at("reading link", &host)?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    push_front(&mut pending, &target);
                }
                // Missing (or under a non-directory): nothing below can be a
                // link; the path is what the caller will create or fail on.
                Ok(_) => resolved = candidate,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    resolved = candidate
                }
                Err(e) => return Err(e).at("resolving", &host),
            }
        }
        Ok(self.0.join(resolved))
    }

    pub fn etc(&self) -> Result<PathBuf> {
        self.host(Path::new("/etc/owui"))
    }

    pub fn seed(&self) -> Result<PathBuf> {
        self.host(Path::new("/etc/owui/seed.toml"))
    }

    pub fn agent_config(&self) -> Result<PathBuf> {
        self.host(Path::new("/etc/owui/agent.toml"))
    }

    /// The image's trust store: the keys the image was built to trust
    /// (read-only on a node).
    pub fn trust_dir(&self) -> Result<PathBuf> {
        self.host(Path::new("/etc/owui/trust"))
    }

    /// The node's trust state: the rotation statements applied here, layered
    /// over the image's keys (writable: the image's root is not).
    pub fn trust_state_dir(&self) -> Result<PathBuf> {
        self.host(Path::new("/var/lib/owui/trust"))
    }

    pub fn passwd(&self) -> Result<PathBuf> {
        self.host(Path::new("/etc/passwd"))
    }

    pub fn group(&self) -> Result<PathBuf> {
        self.host(Path::new("/etc/group"))
    }
}

/// Puts `path`'s components (names and `..`) before those pending.
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(name) => pending.push_front(name.to_os_string()),
            Component::ParentDir => pending.push_front("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn paths_stay_under_the_root() {
        let r = Root::new(Path::new("/mnt/disk"));
        assert_eq!(r.seed().unwrap(), Path::new("/mnt/disk/etc/owui/seed.toml"));
        assert_eq!(
            r.host(Path::new("/var/../../x")).unwrap(),
            Path::new("/mnt/disk/x")
        );
    }

    #[test]
    fn the_system_root_is_a_plain_join() {
        let r = Root::new(Path::new("/"));
        assert_eq!(r.seed().unwrap(), Path::new("/etc/owui/seed.toml"));
    }

    /// A root, and a directory beside it that no path may reach.
    fn root_and_outside() -> (tempfile::TempDir, Root, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("node");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("var/lib")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        (tmp, Root::new(&root), outside)
    }

    #[test]
    fn absolute_links_start_again_at_the_root() {
        let (_tmp, r, outside) = root_and_outside();
        let root = r.path().to_path_buf();
        symlink(&outside, root.join("var/lib/owui")).unwrap();
        assert_eq!(
            r.host(Path::new("/var/lib/owui/content")).unwrap(),
            root.join(outside.strip_prefix("/").unwrap())
                .join("content")
        );
        symlink("/etc", root.join("etc")).unwrap();
        // etc -> /etc is etc itself again: a loop, refused.
        let err = r.host(Path::new("/etc/owui/seed.toml")).unwrap_err();
        assert!(err.to_string().contains("more than 40"), "{err}");
        assert!(err.to_string().contains("etc/owui/seed.toml"), "{err}");
        assert_eq!(err.exit_code(), 5);
        assert_eq!(r.seed().unwrap_err().exit_code(), 5);
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        let (_tmp, r, _outside) = root_and_outside();
        let root = r.path().to_path_buf();
        symlink("../../../../../../outside", root.join("var/lib/owui")).unwrap();
        fs::create_dir_all(root.join("outside/tls")).unwrap();
        symlink("tls", root.join("outside/link")).unwrap();
        assert_eq!(
            r.host(Path::new("/var/lib/owui/link/x")).unwrap(),
            root.join("outside/tls/x")
        );
    }

    #[test]
    fn a_kept_last_link_is_not_followed_but_its_parents_are() {
        let (_tmp, r, outside) = root_and_outside();
        let root = r.path().to_path_buf();
        fs::create_dir_all(root.join("srv/models")).unwrap();
        symlink("/srv", root.join("var/lib/ollama")).unwrap();
        symlink(&outside, root.join("srv/models/link")).unwrap();
        assert_eq!(
            r.resolve_entry(Path::new("/var/lib/ollama/models/link"))
                .unwrap(),
            root.join("srv/models/link")
        );
        assert_eq!(
            r.host(Path::new("/var/lib/ollama/models/link")).unwrap(),
            root.join(outside.strip_prefix("/").unwrap())
        );
    }
}
