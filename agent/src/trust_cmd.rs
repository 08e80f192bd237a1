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

pub fn list(root: &Root) -> Result<TrustListing> {
    Ok(listing(&TrustStore::load(&root.trust_dir())?))
}

pub fn apply(root: &Root, statement: &Path) -> Result<TrustListing> {
    let mut store = TrustStore::load(&root.trust_dir())?;
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
