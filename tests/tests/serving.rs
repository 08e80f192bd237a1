//! Real serving from the appliance's own container images, short of the
//! disk image: Open WebUI (PyPI) and llama-server (Debian) as
//! `scripts/serving-images.sh` builds them, pushed to a real registry that
//! stands in for ghcr.io, pulled by digest into a signed bundle with a tiny
//! model llama.cpp runs, applied on a node root by `owui-agent`, and run
//! under podman from the node's store as the image's Quadlet units run
//! them (read-only, no capabilities, host network on loopback), with the
//! image's Open WebUI settings and a real Redis. Then Open WebUI's API as a
//! user meets it: the administrator signs in, a wrong password and sign-up
//! are refused, the bundle's model is listed, refused until the
//! administrator registers it, and then a streamed chat finishes.
//!
//! Needs root, podman, runc, skopeo, docker-registry, redis-server,
//! mmdebstrap and python3 with gguf and numpy (.ci/run installs them), and
//! Debian's and PyPI's package registries the first time (the images are
//! then cached under /var/tmp/owui-test-serving-cache).

use std::fs;
use std::path::Path;
use std::time::Duration;

use owui_tests::free_ports;
use owui_tests::image::repo;
use owui_tests::redis::RedisServer;
use owui_tests::registry::TestRegistry;
use owui_tests::serving::{
    http, llama_server_args, push_serving_images, tiny_model, wait_ok, Podman,
};
use owui_tests::site::Site;

const ADMIN_EMAIL: &str = "admin@rack1-n07.example";
const ADMIN_PASSWORD: &str = "a long passphrase for the test";

/// The image's Open WebUI settings (images/overlay/web/etc/owui/open-webui.env)
/// with the keys this test must set replacing the image's values: ports,
/// the inference server, Redis, and what the node's secrets file would add.
fn webui_env(dir: &Path, overrides: &[(&str, String)]) -> std::path::PathBuf {
    let image = fs::read_to_string(repo().join("images/overlay/web/etc/owui/open-webui.env"))
        .expect("the image's open-webui.env");
    let mut lines: Vec<String> = image
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("");
            !overrides.iter().any(|(k, _)| *k == key)
        })
        .map(str::to_string)
        .collect();
    lines.extend(overrides.iter().map(|(k, v)| format!("{k}={v}")));
    let path = dir.join("open-webui.env");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn open_webui_and_llama_server_from_a_signed_bundle_serve_a_chat() {
    let registry = TestRegistry::start();
    let site = Site::new("allinone");
    let work = site.work.clone();
    let images = push_serving_images(&registry, &work);

    // A signed bundle of both images, pulled by digest through the mirror,
    // and the model.
    tiny_model(&work.join("tiny.gguf"));
    let pinned = |name: &str| {
        let pushed = images.reference(name);
        let (_, path) = pushed.split_once('/').unwrap();
        let (repo_tag, digest) = path.split_once('@').unwrap();
        format!("ghcr.io/{repo_tag}@{digest}")
    };
    let spec = format!(
        "channel = \"serving\"\nsequence = 1\nroles = [\"allinone\"]\n\n\
         [[oci]]\nref = \"{}\"\n\n[[oci]]\nref = \"{}\"\n\n\
         [[ollama]]\nname = \"tiny:latest\"\ngguf = \"tiny.gguf\"\n",
        pinned("open-webui"),
        pinned("llama-server"),
    );
    fs::write(work.join("serving.toml"), spec).unwrap();
    let bundle = work.join("serving.owb");
    let mirror = format!("ghcr.io={}", registry.host());
    site.builder(&[
        "bundle",
        "create",
        work.join("serving.toml").to_str().unwrap(),
        "--key",
        &site.key(),
        "--out",
        bundle.to_str().unwrap(),
        "--cache",
        work.join("cache").to_str().unwrap(),
        "--registry-mirror",
        &mirror,
        "--registry-config",
        images.client.auth.to_str().unwrap(),
        "--registry-certs",
        images.client.certs.to_str().unwrap(),
    ])
    .ok();

    // The node: podman's store as the allinone agent.toml has it (overlay),
    // and llama-server's models directory.
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        "[bundles]\ngguf_models = \"/var/lib/owui/llama/models\"\n\
         [bundles.podman]\ndriver = \"overlay\"\ngraph_root = \"/var/lib/containers/storage\"\nrun_root = \"/run/containers/storage\"\n",
    )
    .unwrap();
    let applied = site
        .agent(&["bundle", "apply", bundle.to_str().unwrap(), "--json"])
        .ok()
        .json();
    // Not the live system (--root): nothing to restart.
    assert_eq!(
        applied["gguf_backend"]["outcome"], "not-needed",
        "{applied}"
    );
    let models = site.root.join("var/lib/owui/llama/models");
    assert!(models.join("tiny:latest.gguf").is_file());
    // The overlay driver mounts its own directory; under --root the agent
    // takes that mount away again, so nothing of the disk stays mounted.
    let root = site.root.canonicalize().unwrap();
    let mounted: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| Path::new(p).starts_with(&root))
        .collect();
    assert!(mounted.is_empty(), "left mounted under --root: {mounted:?}");

    let mut podman = Podman::new(
        &site.root.join("var/lib/containers/storage"),
        &site.root.join("run/containers/storage"),
        "overlay",
        &work,
    );
    let [llama_port, webui_port, redis_port] = free_ports::<3>();
    let _redis = RedisServer::start(redis_port, &work);

    let mut llama = vec![
        "-v".to_string(),
        format!("{}:/models:ro", models.display()),
        "-e".into(),
        "HOME=/tmp".into(),
        pinned("llama-server"),
    ];
    llama.extend(llama_server_args(llama_port));
    podman.run_detached("owui-test-llama-server", &llama);

    let data = work.join("open-webui");
    fs::create_dir_all(&data).unwrap();
    let redis = format!("redis://127.0.0.1:{redis_port}/0");
    let openai = format!("http://127.0.0.1:{llama_port}/v1");
    let env = webui_env(
        &work,
        &[
            ("PORT", webui_port.to_string()),
            ("OPENAI_API_BASE_URL", openai.clone()),
            ("OPENAI_API_KEY", "none".into()),
            ("ENABLE_OLLAMA_API", "False".into()),
            ("REDIS_URL", redis.clone()),
            ("WEBSOCKET_REDIS_URL", redis),
            ("RAG_EMBEDDING_ENGINE", "openai".into()),
            ("RAG_OPENAI_API_BASE_URL", openai),
            ("RAG_OPENAI_API_KEY", "none".into()),
            ("RAG_EMBEDDING_MODEL", "tiny:latest".into()),
            // No PostgreSQL with pgvector on the test host (Debian 12 has
            // none for PostgreSQL 15): Open WebUI's own SQLite and Chroma.
            ("VECTOR_DB", "chroma".into()),
            ("UVICORN_WORKERS", "1".into()),
            (
                "WEBUI_SECRET_KEY",
                "a test secret key of some length".into(),
            ),
            ("WEBUI_URL", format!("http://127.0.0.1:{webui_port}")),
            ("WEBUI_ADMIN_EMAIL", ADMIN_EMAIL.into()),
            ("WEBUI_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ("WEBUI_ADMIN_NAME", "Site administrator".into()),
        ],
    );
    podman.run_detached(
        "owui-test-open-webui",
        &[
            "--env-file".into(),
            env.display().to_string(),
            "-v".into(),
            format!("{}:/app/backend/data", data.display()),
            pinned("open-webui"),
        ],
    );

    let base = format!("http://127.0.0.1:{webui_port}");
    if let Err(e) = wait_ok(&format!("{base}/health"), Duration::from_secs(300)) {
        panic!(
            "Open WebUI did not come up: {e}\n{}",
            podman.logs("owui-test-open-webui")
        );
    }

    // Sign-in as the administrator the settings name; nobody else.
    let (code, body) = http(
        "POST",
        &format!("{base}/api/v1/auths/signin"),
        None,
        Some(&format!(
            r#"{{"email":"{ADMIN_EMAIL}","password":"{ADMIN_PASSWORD}"}}"#
        )),
    );
    assert_eq!(code, 200, "{body}");
    let signed_in: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(signed_in["role"], "admin", "{body}");
    let token = signed_in["token"].as_str().unwrap().to_string();
    let (code, body) = http(
        "POST",
        &format!("{base}/api/v1/auths/signin"),
        None,
        Some(&format!(
            r#"{{"email":"{ADMIN_EMAIL}","password":"wrong"}}"#
        )),
    );
    assert!(
        (400..500).contains(&code),
        "a wrong password: {code} {body}"
    );
    let (code, body) = http(
        "POST",
        &format!("{base}/api/v1/auths/signup"),
        None,
        Some(r#"{"name":"x","email":"first@example.org","password":"whatever-it-is"}"#),
    );
    assert!(
        (400..500).contains(&code),
        "sign-up is closed: {code} {body}"
    );

    // The bundle's model, through Open WebUI from llama-server.
    let (code, body) = http("GET", &format!("{base}/api/models"), Some(&token), None);
    assert_eq!(code, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"tiny:latest"),
        "models listed: {ids:?}\n{}",
        podman.logs("owui-test-llama-server")
    );

    // The image's settings hold administrators to model access control
    // too (BYPASS_ADMIN_ACCESS_CONTROL=False): a model nobody registered is
    // refused, even to the administrator, until one registers it (in the
    // UI: Workspace, Models) and grants it to whoever may use it.
    let chat = || {
        http(
            "POST",
            &format!("{base}/api/chat/completions"),
            Some(&token),
            Some(
                r#"{"model":"tiny:latest","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}"#,
            ),
        )
    };
    let (code, body) = chat();
    assert!(
        code == 400 && body.contains("Model not found"),
        "an unregistered model: {code} {body}"
    );
    let (code, body) = http(
        "POST",
        &format!("{base}/api/v1/models/create"),
        Some(&token),
        Some(r#"{"id":"tiny:latest","name":"tiny","meta":{},"params":{}}"#),
    );
    assert_eq!(code, 200, "registering the model: {body}");

    // A streamed chat completion: chunks, then the end. The tiny model's
    // words are noise, so the test reads the stream's shape, not its text.
    let (code, body) = chat();
    assert_eq!(code, 200, "{body}");
    let chunks: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    assert!(body.contains("data: [DONE]"), "{body}");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"].is_string()),
        "no chunk finished the answer: {body}"
    );
}
