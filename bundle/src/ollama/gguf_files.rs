//! Node side: the same models as plain GGUF files for llama.cpp's
//! `llama-server` in router mode (`--models-dir`), which serves each
//! `<id>.gguf` in its directory under the model id `<id>`: the name as
//! Ollama lists it (`sample:tiny.gguf` is model `sample:tiny` in Open
//! WebUI). Each file is a hard link to the model layer in the content
//! store, so the bytes are on disk once.

use std::collections::BTreeMap;
use std::path::Path;

use super::materialise::prepare;
use crate::error::{Error, Result};
use crate::fsutil::fsync_dir;
use crate::items::{OllamaModel, Owner};
use crate::store::ContentStore;
use crate::tree;

/// Makes `dest` hold one `<id>.gguf` per model. Everything is checked
/// before anything is written; two names that map to the same file are
/// refused. Safe to run again on a partly written `dest`.
pub fn materialise_gguf_files(
    store: &ContentStore,
    models: &[OllamaModel],
    dest: &Path,
    owner: Option<Owner>,
) -> Result<()> {
    let mut files = BTreeMap::new();
    for m in models {
        let p = prepare(store, m)?;
        let file = format!("{}.gguf", p.name.served_id());
        if let Some(other) = files.insert(file.clone(), (m.name.clone(), p.model_layer)) {
            return Err(Error::invalid(
                format!("Ollama model {:?}", m.name),
                format!(
                    "llama-server would serve it as {file:?}, the file of {:?} too; rename one",
                    other.0
                ),
            ));
        }
    }
    tree::ensure_root(dest, owner)?;
    tree::remove_stale_temps(dest)?;
    for (file, (_, digest)) in &files {
        tree::place_blob(store, digest, &dest.join(file))?;
    }
    fsync_dir(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::fixtures::*;
    use crate::ollama::pack;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    fn packed(dir: &Path, store: &ContentStore, name: &str) -> OllamaModel {
        let (item, blobs) = pack(&spec_in(dir, name)).unwrap();
        crate::store::commit_packed(store, &blobs);
        item
    }

    #[test]
    fn each_model_is_one_gguf_file_named_as_ollama_lists_it_and_linked_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let models = [
            packed(dir.path(), &store, "sample:tiny"),
            packed(dir.path(), &store, "team/embed"),
            packed(dir.path(), &store, "hub.example:5000/team/big:q4"),
        ];
        let dest = dir.path().join("gguf");
        materialise_gguf_files(&store, &models, &dest, None).unwrap();
        let mut names: Vec<String> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "hub.example:5000--team--big:q4.gguf",
                "sample:tiny.gguf",
                "team--embed:latest.gguf"
            ]
        );
        let file = dest.join("sample:tiny.gguf");
        assert_eq!(fs::read(&file).unwrap(), tiny_gguf());
        let in_store = store.blob_path(&d(GGUF_SHA));
        assert_eq!(
            fs::metadata(&file).unwrap().ino(),
            fs::metadata(in_store).unwrap().ino()
        );
        // Again on what is there: nothing fails.
        materialise_gguf_files(&store, &models, &dest, None).unwrap();
    }

    #[test]
    fn two_names_for_one_file_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        let models = [
            packed(dir.path(), &store, "team/embed:v1"),
            packed(dir.path(), &store, "team--embed:v1"),
        ];
        let dest = dir.path().join("gguf");
        let err = materialise_gguf_files(&store, &models, &dest, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("team--embed:v1.gguf") && err.contains("rename one"),
            "{err}"
        );
        assert!(!dest.exists());
    }
}
