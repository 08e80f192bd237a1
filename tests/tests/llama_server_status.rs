//! `owui-agent status` against the real llama-server (Debian's, in the
//! image `scripts/serving-images.sh` builds) in router mode, run under
//! podman with its Quadlet unit's arguments: a truncated GGUF beside a good
//! one makes the `llama-server` check degraded with llama.cpp's own words
//! for what is wrong, read from the container's log.
//!
//! Needs root, podman, runc, mmdebstrap and python3 with gguf and numpy
//! (.ci/run installs them); the image is cached under
//! /var/tmp/owui-test-serving-cache.

use std::fs;
use std::time::Duration;

use owui_tests::free_ports;
use owui_tests::open_webui::OpenWebUi;
use owui_tests::serving::{llama_server_args, serving_image_layout, tiny_model, Podman};
use owui_tests::site::Site;
use serde_json::json;

/// The container name the check reads the log of (the unit's is
/// `llama-server`; this one is in a store of the test's own).
const CONTAINER: &str = "owui-test-llama-status";

fn llama_check(site: &Site, podman: &Podman) -> serde_json::Value {
    let env = podman.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let doc = site.agent_env(&["status", "--json"], &env).json();
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "llama-server")
        .unwrap_or_else(|| panic!("no llama-server check in {doc}"))
        .clone()
}

#[test]
fn a_model_llama_server_cannot_load_shows_its_own_error_in_status() {
    let layout = serving_image_layout("llama-server");
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let models = work.join("models");
    fs::create_dir_all(&models).unwrap();
    tiny_model(&models.join("tiny.gguf"));
    // The same model cut short: its header promises tensors past the end.
    let whole = fs::read(models.join("tiny.gguf")).unwrap();
    fs::write(models.join("broken.gguf"), &whole[..whole.len() / 5]).unwrap();

    let mut podman = Podman::new(&work.join("storage"), &work.join("run"), "overlay", work);
    let image = podman.pull_layout(&layout);
    let [port] = free_ports::<1>();
    let mut args = vec![
        "-v".to_string(),
        format!("{}:/models:ro", models.display()),
        "-e".into(),
        "HOME=/tmp".into(),
        image,
    ];
    args.extend(llama_server_args(port));
    podman.run_detached(CONTAINER, &args);
    let base = format!("http://127.0.0.1:{port}");
    // Its OpenAI API, asked as Open WebUI asks it.
    let server = OpenWebUi::plain(&base);
    if let Err(e) = server.wait_ok("/health", Duration::from_secs(60)) {
        panic!("{e}\n{}", podman.logs(CONTAINER));
    }

    let site = Site::new("allinone");
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        format!(
            "[health]\nllama_server_url = \"{base}\"\nllama_server_container = \"{CONTAINER}\"\n\
             timeout_s = 20\ndisks = [\"/\"]\n"
        ),
    )
    .unwrap();

    // Nothing asked for yet: llama-server loads a model on first use.
    let check = llama_check(&site, &podman);
    assert_eq!(check["state"], "healthy", "{check}");
    assert_eq!(
        check["detail"], "2 model(s), none failed to load",
        "{check}"
    );

    // Asked for, as Open WebUI would: the good model answers, the broken
    // one does not.
    let chat = |model: &str| {
        let body = json!({
            "model": model,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "hi"}],
        });
        server.request("POST", "/v1/chat/completions", None, Some(&body))
    };
    let answer = chat("tiny");
    assert_eq!(
        answer.code,
        200,
        "{}\n{}",
        answer.body,
        podman.logs(CONTAINER)
    );
    let answer = chat("broken");
    assert_eq!(answer.code, 500, "{}", answer.body);

    let check = llama_check(&site, &podman);
    assert_eq!(check["state"], "degraded", "{check}");
    let detail = check["detail"].as_str().unwrap();
    for needle in [
        "model broken failed to load (exit code 1): ",
        // llama.cpp's own words, from the instance's log.
        "error loading model",
        "model is corrupted or incomplete",
    ] {
        assert!(
            detail.contains(needle),
            "{needle:?} not in {detail:?}\n{}",
            podman.logs(CONTAINER)
        );
    }
    assert!(!detail.contains("tiny"), "{detail}");
}
