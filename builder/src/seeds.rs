//! `owui-builder seed create`: one node's seed (name and role), signed with
//! the site's key, for the OWUI-SEED medium or the image's ESP. The node
//! checks the signature against its image's trust store before it reads a
//! field (docs/seeds.md).

use std::path::{Path, PathBuf};

use owui_bundle::fsutil::write_atomic;
use owui_bundle::seed::{self, NodeName, Seed};
use owui_bundle::Result;
use serde::Serialize;

use crate::keys::load_secret;

#[derive(Debug, Serialize)]
pub struct Created {
    pub node: NodeName,
    pub role: String,
    pub key_id: String,
    pub seed: PathBuf,
    pub signature: PathBuf,
}

/// Checks every field and loads the key before writing anything, then
/// writes `out` and `out.minisig` (the signature over exactly those bytes).
pub fn create(node: &str, role: &str, key: &Path, out: &Path) -> Result<Created> {
    let seed = Seed {
        node: node.parse()?,
        role: seed::parse_role(role)?,
    };
    let key = load_secret(key)?;
    let bytes = seed.to_bytes()?;
    let signature = seed.sign(&key, &bytes);
    let sig_path = PathBuf::from(format!("{}.minisig", out.display()));
    // 0600: seeds will carry join tokens; the signature is public.
    write_atomic(out, &bytes, 0o600)?;
    write_atomic(&sig_path, signature.as_bytes(), 0o644)?;
    Ok(Created {
        node: seed.node,
        role: seed.role.as_str().to_string(),
        key_id: key.id.to_string(),
        seed: out.to_path_buf(),
        signature: sig_path,
    })
}

pub fn print_created(c: &Created) {
    println!(
        "seed of {} node {} written: {} and {} (signed by key {}); copy both to the OWUI-SEED medium as seed.toml and seed.toml.minisig",
        c.role,
        c.node,
        c.seed.display(),
        c.signature.display(),
        c.key_id
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use owui_bundle::sign::SecretKey;
    use owui_bundle::trust::TrustStore;
    use std::fs;

    fn key_file(dir: &Path) -> (PathBuf, SecretKey) {
        use std::os::unix::fs::PermissionsExt;
        let sk = SecretKey::generate();
        let path = dir.join("owui.key");
        fs::write(&path, sk.to_file_string()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        (path, sk)
    }

    #[test]
    fn a_created_seed_verifies_against_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, sk) = key_file(dir.path());
        let out = dir.path().join("seed.toml");
        let c = create("rack1-n07", "gpu", &key, &out).unwrap();
        assert_eq!(c.key_id, sk.id.to_string());
        let store = TrustStore::with_keys(vec![sk.public()], "test keys");
        let bytes = fs::read(&out).unwrap();
        let sig = fs::read(&c.signature).unwrap();
        let v = seed::verify(&store, "seed.toml", &bytes, Some(&sig)).unwrap();
        assert_eq!(v.seed.node.as_str(), "rack1-n07");
    }

    #[test]
    fn bad_fields_or_key_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = key_file(dir.path());
        let out = dir.path().join("out/seed.toml");
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        for (node, role, key) in [
            ("ai-1\nWEBUI_AUTH=False", "app", key.as_path()),
            ("Rack1", "app", key.as_path()),
            ("n1", "printer", key.as_path()),
            ("n1", "app", Path::new("/nonexistent/owui.key")),
        ] {
            let err = create(node, role, key, &out).unwrap_err();
            assert_ne!(err.exit_code(), 0);
            assert_eq!(
                fs::read_dir(out.parent().unwrap()).unwrap().count(),
                0,
                "{err}"
            );
        }
    }
}
