//! Every host path the agent touches, derived from one root (`--root DIR`),
//! so tests and operators can work on a mounted disk. No other module writes
//! a literal `/etc` or `/var` path.

use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: &Path) -> Self {
        Root(dir.to_path_buf())
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path of the node's own namespace (absolute, as configs write them),
    /// taken under the root.
    pub fn host(&self, path: &Path) -> PathBuf {
        let relative: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        self.0.join(relative)
    }

    pub fn etc(&self) -> PathBuf {
        self.host(Path::new("/etc/owui"))
    }

    pub fn seed(&self) -> PathBuf {
        self.etc().join("seed.toml")
    }

    pub fn agent_config(&self) -> PathBuf {
        self.etc().join("agent.toml")
    }

    /// The image's trust store: the keys the image was built to trust
    /// (read-only on a node).
    pub fn trust_dir(&self) -> PathBuf {
        self.etc().join("trust")
    }

    /// The node's trust state: the rotation statements applied here, layered
    /// over the image's keys (writable: the image's root is not).
    pub fn trust_state_dir(&self) -> PathBuf {
        self.host(Path::new("/var/lib/owui/trust"))
    }

    pub fn passwd(&self) -> PathBuf {
        self.host(Path::new("/etc/passwd"))
    }

    pub fn group(&self) -> PathBuf {
        self.host(Path::new("/etc/group"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let r = Root::new(Path::new("/mnt/disk"));
        assert_eq!(r.seed(), Path::new("/mnt/disk/etc/owui/seed.toml"));
        assert_eq!(
            r.host(Path::new("/var/../../x")),
            Path::new("/mnt/disk/var/x")
        );
    }
}
