//! Enrolment against real processes: three control nodes (their agent API
//! and Debian's etcd, each in its own network namespace) and other nodes
//! that enrol from their seeds alone. Every bad enrolment is refused with
//! its own error and leaves nothing on the node: an expired, reused,
//! forged, foreign-site, other node's or other role's token, a control
//! node of another CA, a removed node renewing. One control node down, the
//! rest still enrol. A capture of the LAN finds no TCP stream that is not
//! TLS.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use owui_tests::cluster::{site_node_names, wait_for, SiteNode, TestSite};
use owui_tests::site::{snapshot, Run};

fn joined(node: &SiteNode, extra: &[&str]) -> Run {
    let mut args = vec!["cluster", "join", "--json", "--patience", "30s"];
    args.extend_from_slice(extra);
    node.agent(&args)
}

/// `args` must fail with `code`, say `needle`, and leave the node's root
/// as it was.
fn refused(node: &SiteNode, args: &[&str], code: i32, needle: &str) {
    let before = snapshot(&node.root);
    let out = node.agent(args);
    assert_eq!(out.code, code, "{args:?}: {}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(needle),
        "{args:?}: want {needle:?} in {}",
        out.stderr
    );
    assert_eq!(
        snapshot(&node.root),
        before,
        "{args:?} changed the node's files"
    );
}

fn enrolled(node: &SiteNode) {
    let out = joined(node, &[]).ok();
    assert_eq!(out.json()["action"], "enrolled", "{}", out.stdout);
    let key = node.root.join("var/lib/owui/cluster/node.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

fn token(control: &SiteNode, node: &str, role: &str) -> String {
    let out = control
        .agent(&[
            "cluster", "token", "create", "--node", node, "--role", role, "--json",
        ])
        .ok();
    out.json()["token"].as_str().unwrap().to_string()
}

fn start_site(site: &mut TestSite, serve_args: &[&str]) -> Vec<SiteNode> {
    let roles = ["db", "app", "app"];
    let mut controls: Vec<SiteNode> = (1..=3u8)
        .map(|n| {
            let name = format!("c{n}");
            let seed = site.seed(&name, roles[n as usize - 1], &[]);
            site.node(&name, roles[n as usize - 1], n, &seed)
        })
        .collect();
    for c in &mut controls {
        c.start_control(serve_args);
    }
    controls
}

/// tshark on the LAN's bridge for the whole test.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(site: &TestSite) -> Capture {
        let file = site.tmp.path().join("lan.pcap");
        fs::File::create(&file).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        let child = site
            .lan
            .switch_command("tshark")
            .args(["-q", "-i", "br0", "-w", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tshark (.ci/run installs it)");
        std::thread::sleep(Duration::from_secs(2));
        Capture { child, file }
    }

    /// Every TCP stream that carried data, and the first bytes it carried.
    fn streams(mut self) -> Vec<(String, String)> {
        std::thread::sleep(Duration::from_secs(1));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
        let out = Command::new("tshark")
            .args([
                "-r",
                self.file.to_str().unwrap(),
                "-Y",
                "tcp.len > 0",
                "-T",
                "fields",
            ])
            .args(["-e", "tcp.stream", "-e", "tcp.dstport", "-e", "tcp.payload"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut first = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() == 3 {
                first
                    .entry(f[0].to_string())
                    .or_insert_with(|| (f[1].to_string(), f[2].to_string()));
            }
        }
        first.into_values().collect()
    }
}

#[test]
fn a_site_enrols_from_its_seeds_and_refuses_every_bad_enrolment() {
    let mut site = TestSite::new("rome", 3);
    let capture = Capture::start(&site);
    let controls = start_site(&mut site, &[]);
    let c1 = &controls[0];

    // Two nodes enrol from their seeds alone.
    let seed = site.seed("app-1", "app", &[]);
    let app1 = site.node("app-1", "app", 11, &seed);
    enrolled(&app1);
    let seed = site.seed("gpu-1", "gpu", &["--token-ttl", "1h"]);
    let gpu1 = site.node("gpu-1", "gpu", 12, &seed);
    enrolled(&gpu1);
    assert_eq!(joined(&gpu1, &[]).ok().json()["action"], "already enrolled");

    // Reused: the same token again, from a node that lost its files.
    fs::remove_dir_all(gpu1.root.join("var/lib/owui/cluster")).unwrap();
    refused(
        &gpu1,
        &["cluster", "join", "--patience", "5s"],
        5,
        "was used already",
    );

    // Expired.
    let seed = site.seed("gpu-2", "gpu", &["--token-ttl", "1s"]);
    let gpu2 = site.node("gpu-2", "gpu", 13, &seed);
    std::thread::sleep(Duration::from_secs(2));
    refused(
        &gpu2,
        &["cluster", "join", "--patience", "5s"],
        5,
        "expired at",
    );

    // Forged: a token for this node with its mac changed.
    let good = token(c1, "gpu-2", "gpu");
    let last = good.chars().last().unwrap();
    let forged = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    refused(
        &gpu2,
        &["cluster", "join", "--token", &forged],
        4,
        "forged or altered",
    );

    // Another node's token, and a token for another role.
    let other_node = token(c1, "app-2", "app");
    refused(
        &gpu2,
        &["cluster", "join", "--token", &other_node],
        5,
        "bound to node app-2",
    );
    let other_role = token(c1, "gpu-2", "db");
    refused(
        &gpu2,
        &["cluster", "join", "--token", &other_role],
        5,
        "is for a db node",
    );

    // Another site's token (its own key, its own name).
    let paris = TestSite::new("paris", 1);
    let seed = paris.seed("gpu-2", "gpu", &[]);
    let text = fs::read_to_string(seed).unwrap();
    let foreign = text
        .lines()
        .find_map(|l| l.strip_prefix("join_token = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    refused(
        &gpu2,
        &["cluster", "join", "--token", &foreign],
        4,
        "another site",
    );

    // The right token still works after all that.
    let fresh = token(c1, "gpu-2", "gpu");
    assert_eq!(
        joined(&gpu2, &["--token", &fresh]).ok().json()["action"],
        "enrolled"
    );

    // Renewal over mutual TLS, then removal: the removed node is refused.
    let before = fs::read_to_string(app1.root.join("var/lib/owui/cluster/node.crt")).unwrap();
    let out = app1.agent(&["cluster", "renew", "--force", "--json"]).ok();
    assert_eq!(out.json()["action"], "renewed");
    assert_ne!(
        fs::read_to_string(app1.root.join("var/lib/owui/cluster/node.crt")).unwrap(),
        before
    );
    c1.agent(&["cluster", "remove", "app-1", "--json"]).ok();
    refused(
        &app1,
        &["cluster", "renew", "--force", "--patience", "5s"],
        5,
        "was removed",
    );

    // One control node down: enrolment goes on through the others.
    let mut controls = controls;
    controls[0].stop("api");
    controls[0].stop("etcd");
    let seed = site.seed("gpu-3", "gpu", &[]);
    let gpu3 = site.node("gpu-3", "gpu", 14, &seed);
    let out = joined(&gpu3, &[]).ok();
    assert!(
        out.json()["via"].as_str().unwrap().starts_with("c2"),
        "{}",
        out.stdout
    );
    controls[0].start_etcd();
    controls[0].start_api(&[]);
    wait_for(
        "c1 back in the member list",
        Duration::from_secs(30),
        || controls[0].agent(&["cluster", "nodes", "--json"]).code == 0,
    );

    // Nothing between the nodes went in clear: every TCP stream that
    // carried data began with a TLS handshake record (0x16 0x03).
    let streams = capture.streams();
    assert!(
        streams.len() >= 10,
        "the capture saw too little: {streams:?}"
    );
    let clear: Vec<_> = streams
        .iter()
        .filter(|(_, payload)| !payload.starts_with("1603"))
        .collect();
    assert!(
        clear.is_empty(),
        "TCP streams not TLS (port, first bytes): {clear:?}"
    );
    for c in &controls {
        assert!(
            !c.log("api").contains("owuijoin1:"),
            "a token reached a log"
        );
    }
}

/// A control node of another CA, at the address the seed names: the pin
/// catches it before the token is sent; nothing is written.
#[test]
fn a_control_node_of_another_ca_never_sees_the_token() {
    let rome = TestSite::new("rome", 1);
    let seed = rome.seed("app-1", "app", &[]);
    // The impostor: a site of the same name and layout, its own CA.
    let mut rogue = TestSite::new("rome", 1);
    let rogue_seed = rogue.seed("c1", "db", &[]);
    let mut impostor = rogue.node("c1", "db", 1, &rogue_seed);
    impostor.start_control(&[]);
    // The node sits on the impostor's LAN with the real site's seed.
    let victim = rogue.node("app-1", "app", 11, &seed);
    refused(
        &victim,
        &["cluster", "join", "--patience", "10s"],
        4,
        "is not the site's",
    );
    assert!(
        !impostor.log("api").contains("enrol"),
        "{}",
        impostor.log("api")
    );
}

/// Unreachable control nodes: retried with backoff, then named.
#[test]
fn unreachable_control_nodes_are_retried_and_named() {
    let mut site = TestSite::new("rome", 1);
    let seed = site.seed("app-1", "app", &[]);
    let node = site.node("app-1", "app", 11, &seed);
    let out = node.agent(&["cluster", "join", "--patience", "12s"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("trying again"), "{}", out.stderr);
    assert!(
        out.stderr.contains("no control node answered")
            && out.stderr.contains("c1 (198.51.100.1:7443)"),
        "{}",
        out.stderr
    );
    assert!(!Path::new(&node.root.join("var/lib/owui/cluster/node.crt")).exists());
}

/// A certificate lifetime of seconds: renewal waits for two thirds of it.
#[test]
fn certificates_renew_at_two_thirds_of_their_life() {
    let mut site = TestSite::new("rome", 1);
    let seed = site.seed("c1", "db", &[]);
    let mut c1 = site.node("c1", "db", 1, &seed);
    c1.start_control(&["--cert-lifetime", "30s"]);
    let seed = site.seed("app-1", "app", &[]);
    let app1 = site.node("app-1", "app", 11, &seed);
    enrolled(&app1);
    let out = app1.agent(&["cluster", "renew", "--json"]).ok();
    assert_eq!(out.json()["action"], "already enrolled");
    std::thread::sleep(Duration::from_secs(21));
    let out = app1.agent(&["cluster", "renew", "--json"]).ok();
    assert_eq!(out.json()["action"], "renewed", "{}", out.stdout);
}

/// A node whose clock is a day behind: the certificate it gets is not yet
/// valid by its clock, and it says so with both times.
#[test]
fn a_node_clock_behind_the_certificate_is_named() {
    let mut site = TestSite::new("rome", 1);
    let seed = site.seed("c1", "db", &[]);
    let mut c1 = site.node("c1", "db", 1, &seed);
    c1.start_control(&[]);
    let seed = site.seed("app-1", "app", &[]);
    let app1 = site.node("app-1", "app", 11, &seed);
    let before = snapshot(&app1.root);
    let out = Run::of(
        app1.net
            .command("faketime")
            .args(["-f", "-1d"])
            .arg(owui_tests::site::bin("owui-agent"))
            .arg("--root")
            .arg(&app1.root)
            .args(["cluster", "join", "--patience", "10s"])
            .output()
            .unwrap(),
    );
    // The control node's own certificate is the first thing found not yet
    // valid by this clock: the handshake stops there, before the token.
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("this node's clock says"),
        "{}",
        out.stderr
    );
    assert_eq!(snapshot(&app1.root), before);
}

/// The daemons publish their nodes; `status` on any node shows the site;
/// a killed node ages out; etcd down, `status` says so and still shows the
/// node's own checks.
#[test]
fn status_shows_the_site_and_a_dead_node_ages_out() {
    let mut site = TestSite::new("rome", 1);
    let seed = site.seed("c1", "db", &[]);
    let mut c1 = site.node("c1", "db", 1, &seed);
    c1.start_control(&[]);
    let seed = site.seed("app-1", "app", &["--address", "198.51.100.11/24"]);
    let mut app1 = site.node("app-1", "app", 11, &seed);
    enrolled(&app1);
    for n in [&mut c1, &mut app1] {
        fs::write(
            n.root.join("etc/owui/agent.toml"),
            "[health]\ninterval_s = 1\ntimeout_s = 1\ndisks = [\"/\"]\n",
        )
        .unwrap();
        fs::create_dir_all(n.root.join("proc")).unwrap();
        fs::write(
            n.root.join("proc/meminfo"),
            "MemTotal: 1000 kB\nMemAvailable: 900 kB\n",
        )
        .unwrap();
        let root = n.root.display().to_string();
        let agent = owui_tests::site::bin("owui-agent");
        n.spawn("daemon", &agent, &["--root", &root, "run"], &[]);
    }
    let site_nodes = |n: &SiteNode| -> Vec<String> {
        let out = n.agent(&["status", "--json"]);
        site_node_names(&serde_json::from_str(&out.stdout).unwrap_or_default())
    };
    wait_for(
        "both nodes in app-1's status",
        Duration::from_secs(60),
        || site_nodes(&app1) == ["app-1", "c1"],
    );
    let text = app1.agent(&["status"]).stdout;
    assert!(
        text.contains("site rome") && text.contains("198.51.100.11"),
        "{text}"
    );

    // app-1's daemon killed: its record ages out of c1's view.
    app1.stop("daemon");
    wait_for("app-1 to age out", Duration::from_secs(40), || {
        site_nodes(&c1) == ["c1"]
    });

    // etcd down: app-1 says so and still shows its own checks.
    c1.stop("etcd");
    let out = app1.agent(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let error = doc["site"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("198.51.100.1:2379"), "{}", out.stdout);
    assert!(!doc["checks"].as_array().unwrap().is_empty());
}
