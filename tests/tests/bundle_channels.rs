//! Channels against each other and against recovery: an item belongs to
//! the channel that installed it, "already applied" means the node holds
//! what the bundle installed, and channel sequence floors outlive the
//! generations (a lost `current` link, gc) so no older bundle comes back.

use std::fs;
use std::path::PathBuf;

use owui_tests::site::{gguf, noise, ollama_source, sha256_hex, spec_head, Site};
use serde_json::Value;

const MODEL: &str = "tiny:1b";
const TAKEN: &str = "ollama:registry.ollama.ai/library/tiny:1b";

/// The weights a bundle's `tiny:1b` carries (see `ollama_source`).
fn weights(seed: usize) -> Vec<u8> {
    gguf("llama", &noise(seed as u64 + 7, seed))
}

/// The bytes of the model layer Ollama serves for `tiny:1b`: read through
/// the node's exposed models directory, manifest first, as Ollama does.
fn served(site: &Site) -> Vec<u8> {
    let models = site.root.join("var/lib/ollama/models");
    let manifest: Value = serde_json::from_slice(
        &fs::read(models.join("manifests/registry.ollama.ai/library/tiny/1b")).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.ollama.image.model")
        .unwrap();
    let digest = layer["digest"].as_str().unwrap().replace(':', "-");
    fs::read(models.join("blobs").join(digest)).unwrap()
}

fn pack_model(site: &Site, channel: &str, sequence: u64, seed: usize) -> PathBuf {
    let tag = format!("{channel}-{sequence}");
    site.pack(
        &tag,
        &format!(
            "{}{}",
            spec_head(channel, sequence, &["gpu"]),
            ollama_source(&site.work, &tag, MODEL, seed)
        ),
    )
}

fn apply(site: &Site, bundle: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["bundle", "apply", bundle.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    site.agent(&args).ok().json()
}

#[test]
fn another_channel_may_not_replace_a_model_unless_forced() {
    let site = Site::new("gpu");
    let models = pack_model(&site, "models", 2, 300_000);
    let legacy = pack_model(&site, "legacy", 1, 200_000);
    let (new, old) = (weights(300_000), weights(200_000));

    assert_eq!(apply(&site, &models, &[])["verdict"], "new");
    assert_eq!(sha256_hex(&served(&site)), sha256_hex(&new));

    // An older signed bundle on another channel may not put back older
    // weights under the same name: verify and apply refuse, nothing changes.
    let legacy_arg = legacy.to_str().unwrap();
    for verb in ["verify", "apply"] {
        site.refused(
            &["bundle", verb, legacy_arg],
            5,
            "was installed by channel \"models\"",
        );
    }
    assert_eq!(sha256_hex(&served(&site)), sha256_hex(&new));
    assert_eq!(apply(&site, &models, &[])["verdict"], "already-applied");

    // Forced, it is logged and recorded where `bundle list` shows it.
    let forced = site
        .agent(&["bundle", "apply", legacy_arg, "--allow-takeover", "--json"])
        .ok();
    assert!(
        forced.stderr.contains("takeover forced"),
        "{}",
        forced.stderr
    );
    assert_eq!(forced.json()["takeovers"][0]["item"], TAKEN);
    assert_eq!(sha256_hex(&served(&site)), sha256_hex(&old));
    let list = site.agent(&["bundle", "list", "--json"]).ok().json();
    let taken = &list["generations"][1]["applied"]["takeovers"][0];
    assert_eq!(taken["item"], TAKEN);
    assert_eq!(taken["from_channel"], "models");
    let human = site.agent(&["bundle", "list"]).ok().stdout;
    assert!(human.contains("TAKEOVER forced"), "{human}");

    // "models" 2 is no longer what the node holds, so it is not "already
    // applied"; taking the model back is a takeover from "legacy" now.
    let models_arg = models.to_str().unwrap();
    site.refused(
        &["bundle", "apply", models_arg],
        5,
        "was installed by channel \"legacy\"",
    );
    let back = apply(&site, &models, &["--allow-takeover"]);
    assert_eq!(back["verdict"], "reapply");
    assert_eq!(sha256_hex(&served(&site)), sha256_hex(&new));
    assert_eq!(apply(&site, &models, &[])["verdict"], "already-applied");
}

#[test]
fn a_channel_may_remove_only_what_it_installed() {
    let site = Site::new("gpu");
    let models = pack_model(&site, "models", 1, 100_000);
    apply(&site, &models, &[]);
    let spec = format!(
        "{}[[remove]]\nollama = \"{MODEL}\"\n",
        spec_head("cleanup", 1, &["gpu"])
    );
    let removal = site.pack("cleanup-1", &spec);
    site.refused(
        &["bundle", "apply", removal.to_str().unwrap()],
        5,
        "may not replace or remove it",
    );
    assert_eq!(sha256_hex(&served(&site)), sha256_hex(&weights(100_000)));
}

#[test]
fn sequence_floors_survive_a_lost_current_link_and_gc() {
    let site = Site::new("gpu");
    let one = pack_model(&site, "models", 1, 100_000);
    let two = pack_model(&site, "models", 2, 150_000);
    apply(&site, &one, &[]);
    apply(&site, &two, &[]);
    let bundles = site.root.join("var/lib/owui/bundles");
    let one_arg = one.to_str().unwrap();

    // `current` gone: the node neither forgets its floor nor drops its
    // generations; the older bundle is refused and nothing changes.
    fs::remove_file(bundles.join("current")).unwrap();
    for verb in ["verify", "apply"] {
        site.refused(&["bundle", verb, one_arg], 5, "is not newer than 2");
    }
    // gc re-makes the link to the newest generation, never an older one.
    site.agent(&["bundle", "gc", "--keep", "1"]).ok();
    let list = site.agent(&["bundle", "list", "--json"]).ok().json();
    assert_eq!(list["current"], 2);
    assert_eq!(sha256_hex(&served(&site)), sha256_hex(&weights(150_000)));

    // Even with every generation gone, the floor stays.
    fs::remove_file(bundles.join("current")).unwrap();
    fs::remove_dir_all(bundles.join("generations")).unwrap();
    site.refused(&["bundle", "apply", one_arg], 5, "is not newer than 2");
    let floors: Value =
        serde_json::from_slice(&fs::read(bundles.join("channels.json")).unwrap()).unwrap();
    assert_eq!(floors["channels"]["models"]["sequence"], 2);
}
