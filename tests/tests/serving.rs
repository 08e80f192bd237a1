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
use owui_tests::open_webui::{OpenWebUi, ServingProof};
use owui_tests::redis::RedisServer;
use owui_tests::registry::TestRegistry;
use owui_tests::serving::{llama_server_args, push_serving_images, tiny_model, Podman};
use owui_tests::site::Site;

const ADMIN_EMAIL: &str = "admin@rack1-n07.example";
const ADMIN_PASSWORD: &str = "a long passphrase for the test";

/// The all-in-one image's Open WebUI settings (images/overlay/web's
/// open-webui.env, then allinone's open-webui.backends.env) with the keys
/// this test must set replacing the image's values: ports, the inference
/// server, Redis, and what the node's secrets file would add.
fn webui_env(dir: &Path, overrides: &[(&str, String)]) -> std::path::PathBuf {
    let image = [
        "web/etc/owui/open-webui.env",
        "allinone/etc/owui/open-webui.backends.env",
    ]
    .map(|f| {
        fs::read_to_string(repo().join("images/overlay").join(f))
            .unwrap_or_else(|e| panic!("the image's {f}: {e}"))
    })
    .concat();
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
            ("REDIS_URL", redis.clone()),
            ("WEBSOCKET_REDIS_URL", redis),
            ("RAG_OPENAI_API_BASE_URL", openai),
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

    let webui = OpenWebUi::plain(&format!("http://127.0.0.1:{webui_port}"));
    if let Err(e) = webui.wait_ok("/health", Duration::from_secs(300)) {
        panic!(
            "Open WebUI did not come up: {e}\n{}",
            podman.logs("owui-test-open-webui")
        );
    }
    let proof = ServingProof {
        webui: &webui,
        email: ADMIN_EMAIL,
        password: ADMIN_PASSWORD,
        model: "tiny:latest",
        slow: Duration::from_secs(120),
        embeddings_url: &format!("http://127.0.0.1:{llama_port}/v1"),
        logs: &|| {
            format!(
                "--- llama-server ---\n{}\n--- Open WebUI ---\n{}",
                podman.logs("owui-test-llama-server"),
                podman.logs("owui-test-open-webui")
            )
        },
    };
    proof.prove(&work);
}
