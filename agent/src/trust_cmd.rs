//! `owui-agent trust …`: show the trust store, apply rotation statements.

use std::path::Path;

use owui_bundle::trust::TrustStore;
use owui_bundle::Result;
use serde::Serialize;

use crate::layout::Root;

#[derive(Debug, Serialize)]
pub struct TrustListing {
    pub dir: String,
    pub trusted: Vec<String>,
    pub revoked: Vec<String>,
    pub rotation_sequence: u64,
}

fn listing(store: &TrustStore) -> TrustListing {
    TrustListing {
        dir: store.dir().display().to_string(),
        trusted: store.trusted().map(|k| k.id.to_string()).collect(),
        revoked: store.revoked().cloned().collect(),
        rotation_sequence: store.rotation_sequence(),
    }
}

/// The trust store every signature on this node is checked against
/// (bundles, seeds, rotation statements): the one place that loads it.
pub fn node_store(root: &Root) -> Result<TrustStore> {
    TrustStore::load(&root.trust_dir())
}

pub fn list(root: &Root) -> Result<TrustListing> {
    Ok(listing(&node_store(root)?))
}

pub fn apply(root: &Root, statement: &Path) -> Result<TrustListing> {
    let mut store = node_store(root)?;
    let stmt = store.apply_rotation(statement)?;
    tracing::warn!(sequence = stmt.sequence, added = stmt.add.len(), revoked = ?stmt.revoke, "trust store rotated");
    Ok(listing(&store))
}

pub fn print(l: &TrustListing) {
    println!(
        "trust store {} (rotation sequence {})",
        l.dir, l.rotation_sequence
    );
    for k in &l.trusted {
        println!("  trusted  {k}");
    }
    for k in &l.revoked {
        println!("  revoked  {k}");
    }
}
