//! The list of digests a site already holds (`owui-agent bundle have`), which
//! `owui-builder bundle create --have` uses to leave those blobs out.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};

pub const HAVE_FORMAT: &str = "owui-have/1";
const HAVE_MAX: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaveList {
    pub format: String,
    /// The node that exported it, for the operator's benefit.
    #[serde(default)]
    pub node: String,
    pub digests: BTreeSet<Sha256Digest>,
}

impl HaveList {
    pub fn new(node: &str, digests: impl IntoIterator<Item = Sha256Digest>) -> Self {
        HaveList {
            format: HAVE_FORMAT.to_string(),
            node: node.to_string(),
            digests: digests.into_iter().collect(),
        }
    }

    pub fn load(path: &Path) -> Result<Self> {
        let len = fs::metadata(path).at("reading", path)?.len();
        if len > HAVE_MAX {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("{len} bytes is over the {HAVE_MAX}-byte cap"),
            ));
        }
        let bytes = fs::read(path).at("reading", path)?;
        let have: HaveList = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        if have.format != HAVE_FORMAT {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("format {:?} is not {HAVE_FORMAT}", have.format),
            ));
        }
        Ok(have)
    }
}
