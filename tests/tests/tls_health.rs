//! The TLS checks of `owui-agent status` against a real nginx the test
//! starts on a free port, with certificates made at test time: a good
//! certificate is healthy, one near its end degraded or failed, an expired
//! one or one from another CA failed with a clear detail, nginx killed is
//! failed and restarted healthy again; mutual TLS; certificate files with
//! bad content; the time-sync check and its config.

use std::fs;
use std::path::PathBuf;

use owui_tests::nginx::{NginxServer, ServerTls};
use owui_tests::pki::{Issued, TestCa, Usage};
use owui_tests::redis::free_port;
use owui_tests::site::Site;

const NAME: &str = "web.owui.test";

/// An app node whose nginx is the test's, trusting the CA at
/// `etc/owui/tls/ca.pem`, plus `extra` lines in `[health]`.
struct Node {
    site: Site,
    /// `etc/owui/tls` under the node's root.
    tls: PathBuf,
    nginx_dir: PathBuf,
}

impl Node {
    fn new(ca: &TestCa) -> Node {
        let site = Site::new("app");
        let tls = site.root.join("etc/owui/tls");
        fs::create_dir_all(&tls).unwrap();
        fs::write(tls.join("ca.pem"), &ca.pem).unwrap();
        fs::create_dir_all(site.root.join("proc")).unwrap();
        fs::write(
            site.root.join("proc/meminfo"),
            "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n",
        )
        .unwrap();
        let nginx_dir = site.work.join("nginx");
        Node {
            site,
            tls,
            nginx_dir,
        }
    }

    fn configure(&self, port: u16, extra: &str) {
        fs::write(
            self.site.root.join("etc/owui/agent.toml"),
            format!(
                "[health]\ntimeout_s = 5\ndisks = [\"/\"]\n\
                 nginx_url = \"https://127.0.0.1:{port}/health\"\n\
                 tls_ca_file = \"/etc/owui/tls/ca.pem\"\n{extra}"
            ),
        )
        .unwrap();
    }

    /// nginx serving `server` (written as `server.pem`/`server.key`).
    fn nginx(&self, port: u16, server: &Issued, client_ca: bool) -> NginxServer {
        server.write(&self.tls, "server");
        NginxServer::start(
            port,
            &self.nginx_dir,
            &ServerTls {
                cert: self.tls.join("server.pem"),
                key: self.tls.join("server.key"),
                client_ca: client_ca.then(|| self.tls.join("ca.pem")),
            },
        )
    }

    fn status(&self) -> serde_json::Value {
        let run = self.site.agent(&["status", "--json"]);
        assert!(
            [0, 8, 9, 10].contains(&run.code),
            "status could not run:\n{}",
            run.stderr
        );
        run.json()
    }

    /// (state, detail) of check `name`.
    fn check(&self, name: &str) -> (String, String) {
        let doc = self.status();
        let c = doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name} in {doc}"))
            .clone();
        (
            c["state"].as_str().unwrap().to_string(),
            c["detail"].as_str().unwrap().to_string(),
        )
    }
}

#[test]
fn good_certificate_then_nginx_killed_then_restarted() {
    let ca = TestCa::new("Cluster CA");
    let node = Node::new(&ca);
    let port = free_port();
    node.configure(port, &format!("nginx_server_name = \"{NAME}\"\n"));
    let mut nginx = node.nginx(port, &ca.issue(&[NAME], Usage::Server, -1.0, 365.5), false);

    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "healthy", "{detail}");
    assert!(
        detail.starts_with("HTTP 200; serves CN=web.owui.test expires ")
            && detail.contains("(in 365 days)"),
        "{detail}"
    );

    nginx.kill();
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(detail.contains("refused"), "{detail}");

    nginx.restart();
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "healthy", "{detail}");
}

#[test]
fn served_certificates_near_their_end_degrade_then_fail() {
    let ca = TestCa::new("Cluster CA");
    let node = Node::new(&ca);
    let port = free_port();
    node.configure(
        port,
        &format!(
            "nginx_server_name = \"{NAME}\"\ncert_files = [\"/etc/owui/tls/server.pem\"]\n\
             cert_warn_days = 30\ncert_fail_days = 7\n"
        ),
    );
    // 20 days left: degraded, on the probe and on the file.
    let mut nginx = node.nginx(port, &ca.issue(&[NAME], Usage::Server, -1.0, 20.5), false);
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "degraded", "{detail}");
    assert!(detail.contains("(in 20 days)"), "{detail}");
    let (state, detail) = node.check("cert:/etc/owui/tls/server.pem");
    assert_eq!(state, "degraded", "{detail}");
    assert!(detail.contains("server.pem"), "{detail}");

    // 3 days left: failed.
    ca.issue(&[NAME], Usage::Server, -1.0, 3.5)
        .write(&node.tls, "server");
    nginx.restart();
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(detail.contains("(in 3 days)"), "{detail}");
    assert_eq!(node.check("cert:/etc/owui/tls/server.pem").0, "failed");

    // Expired: the handshake itself is refused, and the file says since when.
    ca.issue(&[NAME], Usage::Server, -30.0, -2.5)
        .write(&node.tls, "server");
    nginx.restart();
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(detail.contains("expired"), "{detail}");
    let (state, detail) = node.check("cert:/etc/owui/tls/server.pem");
    assert_eq!(state, "failed", "{detail}");
    assert!(
        detail.contains("expired") && detail.contains("ago"),
        "{detail}"
    );
}

#[test]
fn another_ca_or_another_name_fails_with_a_clear_detail() {
    let trusted = TestCa::new("Cluster CA");
    let other = TestCa::new("Someone Else CA");
    let node = Node::new(&trusted);
    let port = free_port();
    node.configure(port, &format!("nginx_server_name = \"{NAME}\"\n"));
    let mut first = node.nginx(
        port,
        &other.issue(&[NAME], Usage::Server, -1.0, 365.5),
        false,
    );
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(
        detail.contains("UnknownIssuer")
            && detail.contains("ca.pem")
            && detail.contains("CN=Cluster CA"),
        "{detail}"
    );

    // Trusted CA, but the probe checks the URL's address, which the
    // certificate does not name: the detail says what to set.
    first.kill();
    let nginx = node.nginx(
        port,
        &trusted.issue(&[NAME], Usage::Server, -1.0, 365.5),
        false,
    );
    node.configure(port, "");
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(
        detail.contains("127.0.0.1") && detail.contains("nginx_server_name"),
        "{detail}"
    );
    // A certificate that names the address works without a server name.
    drop(nginx);
    let _nginx = node.nginx(
        port,
        &trusted.issue(&[NAME, "127.0.0.1"], Usage::Server, -1.0, 365.5),
        false,
    );
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "healthy", "{detail}");

    // No CA file: the check cannot run.
    fs::remove_file(node.tls.join("ca.pem")).unwrap();
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "unknown", "{detail}");
    assert!(detail.contains("ca.pem"), "{detail}");
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new("Cluster CA");
    let node = Node::new(&ca);
    let port = free_port();
    let _nginx = node.nginx(port, &ca.issue(&[NAME], Usage::Server, -1.0, 365.5), true);
    node.configure(port, &format!("nginx_server_name = \"{NAME}\"\n"));
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(
        detail.contains("HTTP 400") && detail.contains("No required SSL certificate was sent"),
        "{detail}"
    );

    ca.issue(&["node-1"], Usage::Client, -1.0, 365.5)
        .write(&node.tls, "node");
    node.configure(
        port,
        &format!(
            "nginx_server_name = \"{NAME}\"\n\
             tls_client = {{ cert = \"/etc/owui/tls/node.pem\", key = \"/etc/owui/tls/node.key\" }}\n"
        ),
    );
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "healthy", "{detail}");

    // A client certificate from another CA is turned away.
    TestCa::new("Someone Else CA")
        .issue(&["node-1"], Usage::Client, -1.0, 365.5)
        .write(&node.tls, "node");
    let (state, detail) = node.check("nginx-tls");
    assert_eq!(state, "failed", "{detail}");
    assert!(detail.contains("SSL certificate error"), "{detail}");
}

#[test]
fn certificate_files_with_bad_content_fail_naming_the_file() {
    let ca = TestCa::new("Cluster CA");
    let node = Node::new(&ca);
    let good = ca.issue(&[NAME], Usage::Server, -1.0, 365.5);
    good.write(&node.tls, "good");
    fs::write(node.tls.join("garbage.pem"), "this is not a certificate\n").unwrap();
    fs::write(node.tls.join("empty.pem"), "").unwrap();
    fs::write(
        node.tls.join("truncated.pem"),
        &good.cert[..good.cert.len() / 2],
    )
    .unwrap();
    let files = [
        "good.pem",
        "ca.pem",
        "garbage.pem",
        "empty.pem",
        "good.key",
        "truncated.pem",
        "absent.pem",
    ];
    let list = files
        .iter()
        .map(|f| format!("\"/etc/owui/tls/{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // No nginx on this node: its check is off.
    fs::write(
        node.site.root.join("etc/owui/agent.toml"),
        format!("[health]\ndisks = [\"/\"]\nnginx_url = \"\"\ncert_files = [{list}]\n"),
    )
    .unwrap();
    let doc = node.status();
    let checks = doc["checks"].as_array().unwrap();
    assert!(!checks.iter().any(|c| c["name"] == "nginx-tls"), "{doc}");
    let get = |f: &str| {
        let c = checks
            .iter()
            .find(|c| c["name"] == format!("cert:/etc/owui/tls/{f}"))
            .unwrap_or_else(|| panic!("no check for {f} in {doc}"));
        assert_eq!(c["kind"], "cert");
        (
            c["state"].as_str().unwrap().to_string(),
            c["detail"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(get("good.pem").0, "healthy", "{:?}", get("good.pem"));
    let (state, detail) = get("ca.pem");
    assert_eq!(state, "healthy", "{detail}");
    assert!(detail.contains("CN=Cluster CA"), "{detail}");
    for (file, says) in [
        ("garbage.pem", "no PEM block"),
        ("empty.pem", "empty file"),
        ("good.key", "no CERTIFICATE block"),
        ("truncated.pem", "PEM block 1"),
        ("absent.pem", "No such file"),
    ] {
        let (state, detail) = get(file);
        assert_eq!(state, "failed", "{file}: {detail}");
        assert!(
            detail.contains(&format!("tls/{file}")) && detail.contains(says),
            "{file}: {detail}"
        );
    }
    assert_eq!(doc["overall"], "failed");
}

#[test]
fn time_sync_is_reported_and_configurable() {
    let ca = TestCa::new("Cluster CA");
    let node = Node::new(&ca);
    let agent_toml = node.site.root.join("etc/owui/agent.toml");
    fs::write(&agent_toml, "[health]\ndisks = [\"/\"]\nnginx_url = \"\"\n").unwrap();
    // Whatever this machine's clock does, the check reads it and says so.
    let (state, detail) = node.check("time-sync");
    assert!(
        (state == "healthy" && detail.starts_with("synchronised"))
            || (state == "degraded" && detail.contains("synchronised")),
        "{state}: {detail}"
    );
    // "failed" turns an unsynchronised clock into a failure.
    fs::write(
        &agent_toml,
        "[health]\ndisks = [\"/\"]\nnginx_url = \"\"\ntime_sync = \"failed\"\n",
    )
    .unwrap();
    let (strict, _) = node.check("time-sync");
    assert!(
        (state == "healthy" && strict == "healthy") || (state == "degraded" && strict != "healthy"),
        "{state} then {strict}"
    );
    fs::write(
        &agent_toml,
        "[health]\ndisks = [\"/\"]\nnginx_url = \"\"\ntime_sync = \"off\"\n",
    )
    .unwrap();
    let doc = node.status();
    assert!(
        !doc["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "time-sync"),
        "{doc}"
    );
}

#[test]
fn bad_tls_config_is_refused_naming_the_key() {
    let ca = TestCa::new("Cluster CA");
    let node = Node::new(&ca);
    let agent_toml = node.site.root.join("etc/owui/agent.toml");
    for (text, line, key) in [
        (
            "[health]\ntime_sync = \"sometimes\"\n",
            "line 2",
            "sometimes",
        ),
        (
            "[health]\ndisks = []\ntls_client = { cert = \"/etc/owui/tls/node.pem\" }\n",
            "line 3",
            "key",
        ),
        (
            "[health]\ncert_warn_days = -1\n",
            "line 2",
            "cert_warn_days",
        ),
    ] {
        fs::write(&agent_toml, text).unwrap();
        let run = node.site.agent(&["status", "--json"]);
        assert_eq!(run.code, 3, "{text}: {}", run.stderr);
        assert!(
            run.stderr.contains("agent.toml")
                && run.stderr.contains(line)
                && run.stderr.contains(key),
            "{text}: {}",
            run.stderr
        );
    }
}

/// First boot on a web node: `secrets init` makes nginx's certificate and the
/// CA the health check trusts; a real nginx serves them and the check, left
/// at its image defaults (CA /etc/owui/tls/ca.pem, no server name), passes.
#[test]
fn the_certificate_secrets_init_makes_is_served_and_trusted() {
    let site = Site::new("app");
    let made = site.agent(&["secrets", "init", "--json"]).ok().json();
    let created: Vec<&str> = made["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for file in [
        "/etc/owui/tls/fullchain.pem",
        "/etc/owui/tls/privkey.pem",
        "/etc/owui/tls/ca.pem",
    ] {
        assert!(created.contains(&file), "{made}");
    }
    // The report names files, never what is in them.
    let password = fs::read_to_string(site.root.join("etc/owui/secrets/admin-password")).unwrap();
    assert!(!made.to_string().contains(password.trim()));

    let port = free_port();
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        format!("[health]\ntimeout_s = 5\ndisks = [\"/\"]\nnginx_url = \"https://127.0.0.1:{port}/health\"\n"),
    )
    .unwrap();
    let tls = site.root.join("etc/owui/tls");
    let _nginx = NginxServer::start(
        port,
        &site.work.join("nginx"),
        &ServerTls {
            cert: tls.join("fullchain.pem"),
            key: tls.join("privkey.pem"),
            client_ca: None,
        },
    );
    let doc = site.agent(&["status", "--json"]).json();
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "nginx-tls")
        .unwrap_or_else(|| panic!("no nginx-tls check in {doc}"));
    assert_eq!(check["state"], "healthy", "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("CN=node-1"),
        "{check}"
    );

    // A second boot changes nothing.
    let again = site.agent(&["secrets", "init", "--json"]).ok().json();
    assert_eq!(again["created"], serde_json::json!([]), "{again}");
}
