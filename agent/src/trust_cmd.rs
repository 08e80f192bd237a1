//! `owui-agent trust …`: show the trust store, apply rotation statements.

use std::path::Path;

use owui_bundle::trust::TrustStore;
use owui_bundle::Result;
use serde::Serialize;

use crate::layout::Root;

#[derive(Debug, Serialize)]
pub struct TrustListing {
    /// The image's keys (read-only).
    pub image_dir: String,
    /// The rotations applied on this node.
    pub state_dir: String,
    pub rotation_sequence: u64,
    pub trusted: Vec<String>,
    pub revoked: Vec<String>,
    /// Every key seen, with the layer it came from.
    pub keys: Vec<KeyListing>,
}

#[derive(Debug, Serialize)]
pub struct KeyListing {
    pub id: String,
    /// `None`: the image's key.
    pub added_by_rotation: Option<u64>,
    pub revoked_by_rotation: Option<u64>,
}

fn listing(root: &Root, store: &TrustStore) -> Result<TrustListing> {
    Ok(TrustListing {
        image_dir: root.trust_dir()?.display().to_string(),
        state_dir: root.trust_state_dir()?.display().to_string(),
        rotation_sequence: store.rotation_sequence(),
        trusted: store.trusted().map(|k| k.id.to_string()).collect(),
        revoked: store.revoked().cloned().collect(),
        keys: store
            .keys()
            .iter()
            .map(|k| KeyListing {
                id: k.key.id.to_string(),
                added_by_rotation: k.added_by,
                revoked_by_rotation: k.revoked_by,
            })
            .collect(),
    })
}

/// The trust store every signature on this node is checked against
/// (bundles, seeds, rotation statements): the one place that loads it. The
/// image's keys, with the rotations applied on this node replayed on top.
pub fn node_store(root: &Root) -> Result<TrustStore> {
    TrustStore::load(&root.trust_dir()?, &root.trust_state_dir()?)
}

pub fn list(root: &Root) -> Result<TrustListing> {
    listing(root, &node_store(root)?)
}

/// Applies a rotation into the node's trust state; the image's trust store
/// is never written.
pub fn apply(root: &Root, statement: &Path) -> Result<TrustListing> {
    let mut store = node_store(root)?;
    let stmt = store.apply_rotation(statement)?;
    tracing::warn!(sequence = stmt.sequence, added = stmt.add.len(), revoked = ?stmt.revoke, "trust store rotated");
    listing(root, &store)
}

pub fn print(l: &TrustListing) {
    println!("image keys {} (read-only)", l.image_dir);
    println!(
        "node trust state {} (rotation sequence {})",
        l.state_dir, l.rotation_sequence
    );
    for k in &l.keys {
        let from = match k.added_by_rotation {
            None => "from the image".to_string(),
            Some(n) => format!("added by rotation {n}"),
        };
        match k.revoked_by_rotation {
            None => println!("  trusted  {}  {from}", k.id),
            Some(n) => println!("  revoked  {}  {from}, revoked by rotation {n}", k.id),
        }
    }
    // Revoked before this node ever saw the key.
    for id in l
        .revoked
        .iter()
        .filter(|id| !l.keys.iter().any(|k| &k.id == *id))
    {
        println!("  revoked  {id}");
    }
}
