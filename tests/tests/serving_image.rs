//! The serving image booted as a site boots it: the repository's all-in-one
//! role (its base, packages, overlays and Quadlet units; the NVIDIA driver
//! set left out to spare the DKMS compile) with Open WebUI and llama-server
//! pulled by digest from a real registry standing in for ghcr.io and a tiny
//! model llama.cpp runs, built by owui-builder, booted under qemu with a
//! signed seed that names the administrator. Then, through the image's own
//! nginx (TLS, checked against the node's CA), PostgreSQL with pgvector,
//! Redis and llama-server: Open WebUI's /health and /ready, sign-in as the
//! seed's administrator and nobody else, a chat in headless Chromium, and an
//! answer that retrieval took from an uploaded document; then a reboot, and
//! the chat read back.
//!
//! Needs root, qemu, ovmf, mmdebstrap, podman, skopeo, docker-registry,
//! chromium with chromium-driver and python3-selenium, and Debian's and
//! PyPI's registries the first time (.ci/run installs and caches them).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use owui_tests::image::{
    boot_disk, build, keys, repo, seed_medium_of, signed_seed_with, ssh, ssh_key_pair, ssh_when_up,
};
use owui_tests::open_webui::{OpenWebUi, ServingProof, BROWSER_PROMPT};
use owui_tests::qemu::{Boot, Guest};
use owui_tests::registry::TestRegistry;
use owui_tests::serving::{push_serving_images, tiny_model};

const NODE: &str = "serve-1";
const ADMIN_EMAIL: &str = "ops@site.example";
/// Open WebUI under TCG: its first start (database migrations on
/// PostgreSQL included) takes minutes here.
const WEBUI_UP: Duration = Duration::from_secs(1200);

/// The all-in-one spec of the repository less its GPU driver set and the
/// services no test reaches (pgBackRest; the base's etcd is masked), with
/// the pushed images pinned by digest under their ghcr.io names and the
/// tiny model; a test overlay gives Open WebUI one worker (two emulated
/// CPUs) and PostgreSQL memory for a 3 GiB guest.
fn write_spec(dir: &Path, open_webui: &str, llama_server: &str) -> std::path::PathBuf {
    let images = repo().join("images");
    let overlay = dir.join("overlay");
    let env = overlay.join("etc/owui/open-webui.env");
    fs::create_dir_all(env.parent().unwrap()).unwrap();
    let shipped = fs::read_to_string(images.join("overlay/web/etc/owui/open-webui.env")).unwrap();
    assert!(shipped.contains("\nUVICORN_WORKERS=4\n"));
    fs::write(
        &env,
        shipped.replace("\nUVICORN_WORKERS=4\n", "\nUVICORN_WORKERS=1\n"),
    )
    .unwrap();
    let pg = overlay.join("etc/postgresql-common/createcluster.d/60-serving-test.conf");
    fs::create_dir_all(pg.parent().unwrap()).unwrap();
    fs::write(&pg, "shared_buffers = '128MB'\n").unwrap();
    tiny_model(&dir.join("tiny.gguf"));
    let o = |name: &str| images.join("overlay").join(name).display().to_string();
    let spec = format!(
        r#"role = "allinone"
base = "{base}"

[debian]
components = ["main"]
packages = ["nginx", "postgresql-17", "postgresql-17-pgvector", "redis-server",
            "podman", "crun", "netavark", "aardvark-dns", "catatonit"]

[units]
enable = ["nginx.service", "postgresql.service", "owui-postgresql-setup.service", "redis-server.service"]
quadlets = ["open-webui.container", "llama-server.container"]

[overlay]
dirs = ["{web}", "{containers}", "{postgresql}", "{redis}", "{inference}", "{allinone}", "overlay"]

[overlay.modes]
"etc/owui/open-webui.env" = "0600"
"etc/owui/vllm.env" = "0600"
"etc/owui/ollama.env" = "0600"
"etc/owui/open-terminal.env" = "0600"

[partitions]
root = 2048
data = 4096

[[oci]]
ref = "{open_webui}"

[[oci]]
ref = "{llama_server}"

[[ollama]]
name = "tiny:latest"
gguf = "tiny.gguf"
"#,
        base = images.join("base.toml").display(),
        web = o("web"),
        containers = o("containers"),
        postgresql = o("postgresql"),
        redis = o("redis"),
        inference = o("inference"),
        allinone = o("allinone"),
    );
    let path = dir.join("serving.toml");
    fs::write(&path, spec).unwrap();
    path
}

/// Runs `command` as root on the VM through `owui-agent as-root` (the only
/// way the operator account gets root).
fn as_root(vm: &Boot, identity: &Path, reason: &str, command: &str) -> String {
    let run = ssh(
        vm.ssh_port,
        identity,
        "owui-admin",
        &format!("sudo -n owui-agent as-root --reason '{reason}' -- {command}"),
        &[],
    );
    assert_eq!(run.code, 0, "{command}: {}\n{}", run.stderr, vm.excerpt());
    run.stdout
}

/// Waits for the READY banner.
fn wait_ready(vm: &mut Boot) {
    let banner = format!("OWUI-AGENT READY role=allinone node={NODE}");
    let seen = vm.wait_for(&[&banner], Duration::from_secs(900));
    assert_eq!(seen, Some(banner), "{}", vm.excerpt());
}

#[test]
fn the_booted_serving_image_answers_in_a_browser_and_keeps_the_chat_across_a_reboot() {
    let work = tempfile::Builder::new()
        .prefix("owui-serving-image-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let dir = work.path();
    let registry = TestRegistry::start();
    let pushed = push_serving_images(&registry, dir);
    let pinned = |name: &str| {
        let (_, path) = pushed.reference(name).split_once('/').unwrap();
        format!("ghcr.io/{path}")
    };
    let spec = write_spec(dir, &pinned("open-webui"), &pinned("llama-server"));
    let (key, _) = keys(dir);
    let out = dir.join("out");
    let mirror = format!("ghcr.io={}", registry.host());
    let started = Instant::now();
    build(
        &spec,
        &key,
        &out,
        Path::new("/var/tmp/owui-test-image-cache"),
        &[
            "--registry-mirror",
            &mirror,
            "--registry-config",
            pushed.client.auth.to_str().unwrap(),
            "--registry-certs",
            pushed.client.certs.to_str().unwrap(),
        ],
    )
    .ok();
    eprintln!("serving image built in {:?}", started.elapsed());

    // The seed names the administrator and lets the test's key in over SSH.
    let (identity, public) = ssh_key_pair(dir, "operator");
    let seed = signed_seed_with(
        dir,
        &key,
        NODE,
        "allinone",
        &[
            "--ssh-key",
            public.to_str().unwrap(),
            "--admin-email",
            ADMIN_EMAIL,
            "--admin-name",
            "Site Ops",
        ],
    );
    let medium = seed_medium_of(dir, &seed);
    let disk = boot_disk(&out.join("allinone-0.1.0.img"), &dir.join("disk.img"));

    let powered_on = Instant::now();
    let mut vm = Boot::start_guest(dir, &disk, &[&medium], Guest::SERVING);
    wait_ready(&mut vm);
    let marker = format!("Open WebUI administrator {ADMIN_EMAIL}, first password ");
    let _ = vm.wait_for(&[&marker], Duration::from_secs(30));
    let password = vm
        .log()
        .split(&marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no first password on the console:\n{}", vm.excerpt()));
    eprintln!("READY {:?} after power-on", powered_on.elapsed());

    // The node's CA, read as root over SSH: curl checks nginx against it.
    let first = ssh_when_up(
        vm.ssh_port,
        &identity,
        "owui-admin",
        Duration::from_secs(300),
    );
    assert_eq!(first.code, 0, "{}\n{}", first.stderr, vm.excerpt());
    let ca = dir.join("node-ca.pem");
    fs::write(
        &ca,
        as_root(
            &vm,
            &identity,
            "serving test: the node CA",
            "cat /etc/owui/tls/ca.pem",
        ),
    )
    .unwrap();
    let webui = OpenWebUi::tls(NODE, vm.https_port, &ca);
    if let Err(e) = webui.wait_ok("/health", WEBUI_UP) {
        let journal = as_root(
            &vm,
            &identity,
            "serving test: why",
            "journalctl -b --no-pager -n 80 -u open-webui -u llama-server -u nginx",
        );
        panic!("Open WebUI did not answer through nginx: {e}\n{journal}");
    }
    webui.wait_ok("/ready", Duration::from_secs(120)).unwrap();
    eprintln!(
        "Open WebUI answered {:?} after power-on",
        powered_on.elapsed()
    );

    let logs = || {
        as_root(
            &vm,
            &identity,
            "serving test: logs",
            "journalctl -b --no-pager -n 120 -u open-webui -u llama-server",
        )
    };
    let proof = ServingProof {
        webui: &webui,
        email: ADMIN_EMAIL,
        password: &password,
        model: "tiny:latest",
        slow: Duration::from_secs(900),
        embeddings_url: "http://127.0.0.1:8000/v1",
        logs: &logs,
    };
    let chat_id = proof.prove(dir);
    eprintln!(
        "first answer in the browser {:?} after power-on",
        powered_on.elapsed()
    );

    // A reboot (qemu runs with -no-reboot: the VM stops, and starts again
    // on the same disk), then the chat read back.
    let _ = ssh(
        vm.ssh_port,
        &identity,
        "owui-admin",
        "sudo -n owui-agent as-root --reason 'serving test: reboot' -- systemctl reboot",
        &[],
    );
    assert!(
        vm.wait_stopped(Duration::from_secs(300)),
        "no reboot:\n{}",
        vm.excerpt()
    );
    drop(vm);
    let mut vm = Boot::start_guest(dir, &disk, &[&medium], Guest::SERVING);
    wait_ready(&mut vm);
    let webui = OpenWebUi::tls(NODE, vm.https_port, &ca);
    webui.wait_ok("/health", WEBUI_UP).unwrap();
    let token = webui.admin_token(ADMIN_EMAIL, &password);
    webui.assert_chat_holds(&token, &chat_id, BROWSER_PROMPT);
}
