//! Podman's store on the content partition, made the same in every build:
//! skopeo leaves the time of the copy in `layers.json`, a random token in
//! the lock files and random short names for the overlay layers (`l/NAME`,
//! each layer's `link` and `lower`). Times are clamped to the build's
//! SOURCE_DATE_EPOCH, lock files emptied (as in a new store), and the short
//! names derived from the layer IDs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};

use super::rootfs::sorted_entries;

/// The store's JSON lists whose entries carry a `created` time.
const TIMED_LISTS: &[&str] = &["overlay-layers/layers.json", "overlay-images/images.json"];

/// Normalises the store at `graph_root` (absent: nothing to do).
pub fn normalise(graph_root: &Path, epoch: u64) -> Result<()> {
    if !graph_root.exists() {
        return Ok(());
    }
    for list in TIMED_LISTS {
        clamp_created(&graph_root.join(list), epoch)?;
    }
    empty_lock_files(graph_root)?;
    rename_short_links(&graph_root.join("overlay"))
}

/// Sets every entry's `created` later than `epoch` (or unreadable) to
/// `epoch`; an image's own creation date, older, stays.
fn clamp_created(list: &Path, epoch: u64) -> Result<()> {
    let Ok(text) = fs::read(list) else {
        return Ok(());
    };
    let bad = |e: &dyn std::fmt::Display| Error::invalid(list.display().to_string(), e.to_string());
    let mut entries: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&text).map_err(|e| bad(&e))?;
    let limit = UNIX_EPOCH + Duration::from_secs(epoch);
    let stamp = humantime::format_rfc3339(limit).to_string();
    for entry in &mut entries {
        let Some(created) = entry.get_mut("created") else {
            continue;
        };
        let later = created
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .is_none_or(|t| t > limit);
        if later {
            *created = serde_json::Value::String(stamp.clone());
        }
    }
    let out = serde_json::to_vec(&entries).map_err(|e| bad(&e))?;
    fs::write(list, out).at("writing", list)
}

/// containers/storage writes a random "last writer" token into its lock
/// files; an empty one is what a new store has.
fn empty_lock_files(dir: &Path) -> Result<()> {
    for (name, path) in sorted_entries(dir)? {
        let meta = fs::symlink_metadata(&path).at("reading", &path)?;
        if meta.is_dir() {
            empty_lock_files(&path)?;
        } else if meta.is_file() && name.to_string_lossy().ends_with(".lock") && meta.len() > 0 {
            fs::write(&path, b"").at("emptying", &path)?;
        }
    }
    Ok(())
}

/// The overlay driver's short name for a layer: 26 characters as its own
/// random ones, here the start of the layer ID.
fn short_name(layer_id: &str) -> String {
    layer_id.chars().take(26).collect::<String>().to_uppercase()
}

/// Replaces the random `l/NAME` links with ones named after the layers,
/// and every `link` and `lower` file that names them.
fn rename_short_links(overlay: &Path) -> Result<()> {
    let links = overlay.join("l");
    if !links.is_dir() {
        return Ok(());
    }
    let mut renamed = BTreeMap::new();
    for (name, layer) in sorted_entries(overlay)? {
        let link_file = layer.join("link");
        let Ok(old) = fs::read_to_string(&link_file) else {
            continue;
        };
        let id = name.to_string_lossy().into_owned();
        renamed.insert(old, (id, link_file));
    }
    // All old links go first, so a new name can never meet an old one.
    for old in renamed.keys() {
        let link = links.join(old);
        fs::remove_file(&link).at("removing", &link)?;
    }
    for (id, link_file) in renamed.values() {
        let new = short_name(id);
        let link = links.join(&new);
        std::os::unix::fs::symlink(format!("../{id}/diff"), &link).at("linking", &link)?;
        fs::write(link_file, &new).at("writing", link_file)?;
    }
    for (_, layer) in sorted_entries(overlay)? {
        let lower_file = layer.join("lower");
        let Ok(lower) = fs::read_to_string(&lower_file) else {
            continue;
        };
        let mut names = Vec::new();
        for part in lower.split(':') {
            let found = part
                .strip_prefix("l/")
                .and_then(|old| renamed.get(old))
                .ok_or_else(|| {
                    Error::invalid(
                        lower_file.display().to_string(),
                        format!("names {part:?}, which is no layer's short link"),
                    )
                })?;
            names.push(format!("l/{}", short_name(&found.0)));
        }
        fs::write(&lower_file, names.join(":")).at("writing", &lower_file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store as skopeo leaves it: a two-layer image, the copy's time,
    /// lock tokens and random short names.
    #[test]
    fn times_locks_and_short_names_become_the_same_in_every_build() {
        let dir = tempfile::tempdir().unwrap();
        let g = dir.path();
        let base = "a".repeat(64);
        let top = "b".repeat(64);
        let made = |rel: &str, data: &str| {
            let p = g.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        };
        made(
            "overlay-layers/layers.json",
            &format!(
                r#"[{{"id":"{base}","created":"2026-12-06T23:48:57.409094298Z"}},{{"id":"{top}","created":"2020-01-01T00:00:00Z"}}]"#
            ),
        );
        made(
            "overlay-images/images.json",
            r#"[{"id":"c","created":"not a time"},{"id":"d"}]"#,
        );
        made("overlay-layers/layers.lock", "\u{1}random token");
        made("storage.lock", "");
        made(
            &format!("overlay/{base}/link"),
            "4QIPN26PJ5LLQ6LYYFWXSOIEQ3",
        );
        made(&format!("overlay/{base}/diff/etc/x"), "x");
        made(&format!("overlay/{top}/link"), "XBF6OSFVDTQCF3YFOLWEEQCR7A");
        made(
            &format!("overlay/{top}/lower"),
            "l/4QIPN26PJ5LLQ6LYYFWXSOIEQ3",
        );
        made(&format!("overlay/{top}/diff/etc/y"), "y");
        fs::create_dir_all(g.join("overlay/l")).unwrap();
        for (name, id) in [
            ("4QIPN26PJ5LLQ6LYYFWXSOIEQ3", &base),
            ("XBF6OSFVDTQCF3YFOLWEEQCR7A", &top),
        ] {
            std::os::unix::fs::symlink(format!("../{id}/diff"), g.join("overlay/l").join(name))
                .unwrap();
        }

        normalise(g, 1_700_000_000).unwrap();
        let read = |rel: &str| fs::read_to_string(g.join(rel)).unwrap();
        let layers: serde_json::Value =
            serde_json::from_str(&read("overlay-layers/layers.json")).unwrap();
        assert_eq!(layers[0]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            layers[1]["created"], "2020-01-01T00:00:00Z",
            "an older time stays"
        );
        assert_eq!(layers[1]["id"], top.as_str());
        let images: serde_json::Value =
            serde_json::from_str(&read("overlay-images/images.json")).unwrap();
        assert_eq!(images[0]["created"], "2023-11-14T22:13:20Z");
        assert!(images[1].get("created").is_none());
        assert_eq!(read("overlay-layers/layers.lock"), "");
        let (b, t) = ("A".repeat(26), "B".repeat(26));
        assert_eq!(read(&format!("overlay/{base}/link")), b);
        assert_eq!(read(&format!("overlay/{top}/link")), t);
        assert_eq!(read(&format!("overlay/{top}/lower")), format!("l/{b}"));
        let names: Vec<_> = sorted_entries(&g.join("overlay/l"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [b.clone(), t]);
        assert_eq!(read(&format!("overlay/l/{b}/etc/x")), "x");

        // A lower file naming a link that is not there: the file is named.
        made(&format!("overlay/{top}/lower"), "l/NOSUCHLINK");
        let err = normalise(g, 1_700_000_000).unwrap_err().to_string();
        assert!(err.contains("lower") && err.contains("NOSUCHLINK"), "{err}");
    }
}
