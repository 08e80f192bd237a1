//! Channel sequence floors: the highest sequence applied on each channel,
//! kept in `channels.json` beside the generations and apart from them, so
//! no recovery, gc or lost `current` link can lower one. A bundle on a
//! channel must be newer than its floor (or be the exact bundle at it).

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{read_regular_capped, write_atomic};
use crate::generation::{ChannelState, Generations};

pub const FLOORS_FILE: &str = "channels.json";
const FLOORS_FORMAT: &str = "owui-channels/1";
const FLOORS_MAX: u64 = 4 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FloorsFile {
    format: String,
    channels: BTreeMap<String, ChannelState>,
}

/// Each channel's floor: its highest sequence and the bundle that set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelFloors {
    channels: BTreeMap<String, ChannelState>,
}

fn path(generations: &Generations) -> PathBuf {
    generations.dir().join(FLOORS_FILE)
}

impl ChannelFloors {
    /// The floors file, raised by what every generation records (a node
    /// from before the file existed keeps its floors). Writes nothing.
    pub fn load(generations: &Generations) -> Result<Self> {
        let mut floors = Self::read(&path(generations))?;
        for state in generations.all()? {
            for (channel, at) in &state.channels {
                floors.raise(channel, at);
            }
        }
        Ok(floors)
    }

    fn read(path: &Path) -> Result<Self> {
        let bytes = match read_regular_capped(path, FLOORS_MAX, "the channel floors file") {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(e) => return Err(e),
        };
        let file: FloorsFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        if file.format != FLOORS_FORMAT {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("format {:?} is not {FLOORS_FORMAT}", file.format),
            ));
        }
        Ok(ChannelFloors {
            channels: file.channels,
        })
    }

    pub fn get(&self, channel: &str) -> Option<&ChannelState> {
        self.channels.get(channel)
    }

    /// Raises a channel's floor to `at` if `at` is higher; never lowers it.
    pub fn raise(&mut self, channel: &str, at: &ChannelState) {
        match self.channels.get(channel) {
            Some(floor) if floor.sequence >= at.sequence => {}
            _ => {
                self.channels.insert(channel.to_string(), at.clone());
            }
        }
    }

    /// Writes the floors atomically (temporary file, fsync, rename).
    pub fn save(&self, generations: &Generations) -> Result<()> {
        let body = serde_json::to_vec_pretty(&FloorsFile {
            format: FLOORS_FORMAT.to_string(),
            channels: self.channels.clone(),
        })
        .map_err(|e| Error::internal(format!("serialising {FLOORS_FILE}"), e.to_string()))?;
        write_atomic(&path(generations), &body, 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use crate::generation::GenerationState;

    fn at(sequence: u64, tag: &[u8]) -> ChannelState {
        ChannelState {
            sequence,
            bundle: Sha256Digest::of(tag),
        }
    }

    #[test]
    fn floors_only_rise_and_outlive_generations() {
        let dir = tempfile::tempdir().unwrap();
        let g = Generations::open(dir.path()).unwrap();
        assert_eq!(ChannelFloors::load(&g).unwrap(), ChannelFloors::default());
        let staged = g.stage().unwrap();
        let mut state = GenerationState {
            generation: staged.number,
            ..Default::default()
        };
        state.channels.insert("models".into(), at(3, b"b3"));
        g.commit(staged, &state).unwrap();
        // A generation's record raises a floor the file does not have yet.
        let mut floors = ChannelFloors::load(&g).unwrap();
        assert_eq!(floors.get("models"), Some(&at(3, b"b3")));
        floors.raise("models", &at(2, b"b2"));
        assert_eq!(floors.get("models"), Some(&at(3, b"b3")));
        floors.raise("models", &at(5, b"b5"));
        floors.save(&g).unwrap();
        // Generations gone (recovered, collected): the floor stays.
        g.remove(1).unwrap();
        fs_remove(&g.current_link());
        assert_eq!(
            ChannelFloors::load(&g).unwrap().get("models"),
            Some(&at(5, b"b5"))
        );
        std::fs::write(path(&g), b"{\"format\":\"x\",\"channels\":{}}").unwrap();
        assert_eq!(ChannelFloors::load(&g).unwrap_err().exit_code(), 3);
    }

    fn fs_remove(p: &Path) {
        std::fs::remove_file(p).unwrap();
    }
}
