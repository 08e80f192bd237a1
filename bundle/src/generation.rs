//! Generations: each applied bundle yields a new, complete tree (Ollama
//! models dir, Hugging Face cache, OCI layout) plus a `state.json`, built in
//! `staging/` and renamed into `generations/<n>`. The `current` symlink is
//! switched with one rename, so a node is always at one whole generation.
//!
//! Layout under the bundles directory:
//! ```text
//! current -> generations/<n>
//! generations/<n>/{state.json, ollama/, huggingface/, oci/}
//! staging/<n>/        (being built; removed if found at start)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crash;
use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, refuse_unless_real_dir, write_atomic};
use crate::items::{HfSnapshot, Installed, ItemKey, OciImage, OllamaModel};

pub const STATE_FILE: &str = "state.json";
const STATE_MAX: u64 = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelState {
    pub sequence: u64,
    /// Manifest digest of the bundle applied on this channel.
    pub bundle: Sha256Digest,
}

/// One bundle application, as recorded in the generation it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedBundle {
    pub channel: String,
    pub sequence: u64,
    pub bundle: Sha256Digest,
    pub signed_by: String,
    /// Seconds since the epoch.
    pub applied_at: u64,
    /// Applied with --allow-downgrade over a newer or equal sequence.
    #[serde(default)]
    pub downgrade_forced: bool,
    /// Items another channel owned that this bundle replaced or removed,
    /// forced with --allow-takeover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub takeovers: Vec<Takeover>,
}

/// An item taken from the channel that owned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Takeover {
    /// The item's key (`ollama:host/namespace/model:tag`, `huggingface:org/name`, `oci:ref`).
    pub item: String,
    /// The channel that owned it before.
    pub from_channel: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationState {
    pub generation: u64,
    pub channels: BTreeMap<String, ChannelState>,
    /// The bundle that produced this generation.
    pub applied: Option<AppliedBundle>,
    #[serde(default)]
    pub ollama: Vec<OllamaModel>,
    #[serde(default)]
    pub huggingface: Vec<HfSnapshot>,
    #[serde(default)]
    pub oci: Vec<OciImage>,
    /// OCI refs removed by this generation, to take out of podman's store
    /// after the switch (podman's store is not part of the atomic switch;
    /// removal is idempotent and re-run until done).
    #[serde(default)]
    pub oci_removals: Vec<String>,
    /// The channel that installed each item (by item key): only that channel
    /// may replace or remove it (docs/bundles.md). Items from before owners
    /// were recorded have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owners: BTreeMap<String, String>,
}

impl GenerationState {
    /// Every blob this generation's trees use.
    pub fn referenced(&self) -> BTreeSet<Sha256Digest> {
        crate::items::referenced(&self.ollama, &self.huggingface, &self.oci)
    }

    /// Every item held, by key.
    pub fn keyed(&self) -> Result<BTreeMap<ItemKey, Installed<'_>>> {
        Ok(
            crate::items::keyed(&self.ollama, &self.huggingface, &self.oci)?
                .into_iter()
                .collect(),
        )
    }
}

pub struct Generations {
    dir: PathBuf,
}

/// Proof that this process holds the bundle lock.
pub struct BundleLock {
    _flock: nix::fcntl::Flock<fs::File>,
}

/// A generation being built under `staging/`.
pub struct Staged {
    pub number: u64,
    pub dir: PathBuf,
}

impl Generations {
    /// Opens the generations under `dir`, creating the directories.
    pub fn open(dir: &Path) -> Result<Self> {
        let g = Self::open_read_only(dir)?;
        fs::create_dir_all(g.generations_dir()).at("creating", &g.generations_dir())?;
        Ok(g)
    }

    /// Opens for reading only: creates nothing; a directory not made yet
    /// holds no generation. A link planted where our own directories
    /// belong is refused, for reading as for writing.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let g = Generations {
            dir: dir.to_path_buf(),
        };
        refuse_unless_real_dir(&g.generations_dir())?;
        refuse_unless_real_dir(&g.staging_dir())?;
        Ok(g)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn generations_dir(&self) -> PathBuf {
        self.dir.join("generations")
    }

    fn staging_dir(&self) -> PathBuf {
        self.dir.join("staging")
    }

    pub fn current_link(&self) -> PathBuf {
        self.dir.join("current")
    }

    pub fn path_of(&self, n: u64) -> PathBuf {
        self.generations_dir().join(n.to_string())
    }

    fn read_state(&self, n: u64) -> Result<GenerationState> {
        let path = self.path_of(n).join(STATE_FILE);
        let len = fs::metadata(&path).at("reading", &path)?.len();
        if len > STATE_MAX {
            return Err(Error::invalid(
                path.display().to_string(),
                "state file is too large",
            ));
        }
        let bytes = fs::read(&path).at("reading", &path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
    }

    /// Takes the node's bundle lock: one apply or gc at a time. Held until
    /// the guard drops (or the process dies: the kernel releases it).
    pub fn lock(&self) -> Result<BundleLock> {
        let path = self.dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at("opening", &path)?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map(|f| BundleLock { _flock: f })
            .map_err(|(_, errno)| {
                if errno == nix::errno::Errno::EWOULDBLOCK {
                    Error::refused(
                        path.display().to_string(),
                        "another bundle apply or gc is running on this node",
                    )
                } else {
                    Error::Io {
                        action: "locking",
                        path: path.clone(),
                        source: errno.into(),
                    }
                }
            })
    }

    /// The generation `current` points at. With the link missing but
    /// generations present, the newest: every generation is sealed before
    /// it is renamed into place, and none is older than the one that was
    /// current, so nothing goes back (apply and gc re-create the link).
    pub fn current(&self) -> Result<Option<GenerationState>> {
        match self.current_number()? {
            Some(n) => self.read_state(n).map(Some),
            None => Ok(None),
        }
    }

    fn current_number(&self) -> Result<Option<u64>> {
        match self.linked_number()? {
            Some(n) => Ok(Some(n)),
            None => {
                let newest = self.numbers()?.last().copied();
                if let Some(n) = newest {
                    tracing::warn!(
                        link = %self.current_link().display(),
                        generation = n,
                        "the current link is missing; taking the newest generation"
                    );
                }
                Ok(newest)
            }
        }
    }

    /// The generation the `current` link names, if the link exists.
    fn linked_number(&self) -> Result<Option<u64>> {
        let link = self.current_link();
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("reading", &link),
        };
        let n = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                Error::invalid(
                    link.display().to_string(),
                    format!("points at {target:?}, not a generation"),
                )
            })?;
        Ok(Some(n))
    }

    /// Numbers of all complete generations, ascending.
    pub fn numbers(&self) -> Result<Vec<u64>> {
        let dir = self.generations_dir();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            r => r.at("listing", &dir)?,
        };
        for entry in entries {
            let entry = entry.at("listing", &dir)?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(n);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    pub fn all(&self) -> Result<Vec<GenerationState>> {
        self.numbers()?
            .into_iter()
            .map(|n| self.read_state(n))
            .collect()
    }

    /// Clears leftovers of an interrupted apply: staging trees, and complete
    /// generations newer than `current` that were never switched to. A
    /// missing `current` link is re-made to the newest generation (see
    /// [`Generations::current`]), never treated as "no generation".
    pub fn recover(&self) -> Result<()> {
        remove_tree(&self.staging_dir())?;
        let current = match (self.linked_number()?, self.current_number()?) {
            (None, Some(newest)) => {
                self.switch(newest)?;
                newest
            }
            (_, n) => n.unwrap_or(0),
        };
        for n in self.numbers()? {
            if n > current {
                remove_tree(&self.path_of(n))?;
            }
        }
        Ok(())
    }

    /// Starts a new generation numbered after every existing one.
    pub fn stage(&self) -> Result<Staged> {
        let number = self.numbers()?.last().copied().unwrap_or(0) + 1;
        let dir = self.staging_dir().join(number.to_string());
        remove_tree(&dir)?;
        fs::create_dir_all(&dir).at("creating", &dir)?;
        Ok(Staged { number, dir })
    }

    /// Seals a staged generation (state written last), moves it into
    /// `generations/`, and switches `current` to it with one rename.
    pub fn commit(&self, staged: Staged, state: &GenerationState) -> Result<()> {
        let body = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::internal("serialising the generation state", e.to_string()))?;
        sync_tree(&staged.dir)?;
        write_atomic(&staged.dir.join(STATE_FILE), &body, 0o644)?;
        crash::point("generation-sealed");
        let final_dir = self.path_of(staged.number);
        fs::rename(&staged.dir, &final_dir).at("renaming into", &final_dir)?;
        fsync_dir(&self.generations_dir())?;
        // An idle node has no staging directory; leaving none keeps it so.
        let _ = fs::remove_dir(self.staging_dir());
        crash::point("generation-renamed");
        self.switch(staged.number)?;
        crash::point("current-switched");
        Ok(())
    }

    /// Points `current` at generation `n` with one rename.
    fn switch(&self, n: u64) -> Result<()> {
        let tmp_link = self.dir.join("current.tmp");
        let _ = fs::remove_file(&tmp_link);
        symlink(Path::new("generations").join(n.to_string()), &tmp_link)
            .at("creating", &tmp_link)?;
        fs::rename(&tmp_link, self.current_link()).at("switching", &self.current_link())?;
        fsync_dir(&self.dir)
    }

    /// Removes a generation that is not current.
    pub fn remove(&self, n: u64) -> Result<()> {
        remove_tree(&self.path_of(n))?;
        fsync_dir(&self.generations_dir())
    }
}

fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e).at("removing", path),
        _ => Ok(()),
    }
}

/// fsyncs every directory in a tree (files are synced as they are written,
/// hard links need only their directory entries synced).
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at("listing", dir)? {
        let entry = entry.at("listing", dir)?;
        if entry.file_type().at("reading", &entry.path())?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_apply_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::open(dir.path()).unwrap();
        let held = g.lock().unwrap();
        let err = g.lock().err().unwrap();
        assert_eq!(err.exit_code(), 5);
        assert!(err.to_string().contains("another bundle apply"));
        drop(held);
        g.lock().unwrap();
    }

    #[test]
    fn commit_switches_current_and_recover_drops_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::open(dir.path()).unwrap();
        assert!(g.current().unwrap().is_none());
        let staged = g.stage().unwrap();
        let state = GenerationState {
            generation: staged.number,
            ..Default::default()
        };
        g.commit(staged, &state).unwrap();
        assert_eq!(g.current().unwrap().unwrap().generation, 1);
        // A generation built but never switched to is removed by recover.
        let staged = g.stage().unwrap();
        fs::create_dir_all(staged.dir.join("ollama")).unwrap();
        fs::create_dir_all(g.path_of(7)).unwrap();
        g.recover().unwrap();
        assert_eq!(g.numbers().unwrap(), vec![1]);
        assert!(!dir.path().join("staging").exists());
    }

    #[test]
    fn a_lost_current_link_means_the_newest_generation_never_none() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::open(dir.path()).unwrap();
        for _ in 0..2 {
            let staged = g.stage().unwrap();
            let state = GenerationState {
                generation: staged.number,
                ..Default::default()
            };
            g.commit(staged, &state).unwrap();
        }
        fs::remove_file(g.current_link()).unwrap();
        let read_only = Generations::open_read_only(dir.path()).unwrap();
        assert_eq!(read_only.current().unwrap().unwrap().generation, 2);
        assert!(fs::read_link(g.current_link()).is_err());
        g.recover().unwrap();
        assert_eq!(g.numbers().unwrap(), vec![1, 2]);
        assert_eq!(
            fs::read_link(g.current_link()).unwrap(),
            Path::new("generations/2")
        );
        // Nothing there yet: read-only opens see no generation and create nothing.
        let missing = dir.path().join("missing");
        let empty = Generations::open_read_only(&missing).unwrap();
        assert!(empty.current().unwrap().is_none());
        assert!(empty.all().unwrap().is_empty());
        assert!(!missing.exists());
    }
}
