//! The multi-node harness (tests/src/site_harness.rs): three nodes of the
//! real app image boot from their own seeds, reach each other over the
//! bridge, and a node stopped and started again keeps its /var; a node
//! whose power is cut comes back.

use std::process::Stdio;
use std::time::{Duration, Instant};

use owui_tests::site_harness::{NodeSpec, Seed, Site, SiteNode};

const ROLE: &str = "app";

fn spec(name: &'static str, host_octet: u8) -> NodeSpec<'static> {
    let address = format!("198.51.100.{host_octet}/24");
    NodeSpec {
        name,
        role: ROLE,
        host_octet,
        seed: Seed::create(name, ROLE, &["--address", &address]),
    }
}

#[test]
fn three_nodes_boot_from_their_seeds_reach_each_other_and_keep_their_state() {
    let started = Instant::now();
    let mut site = Site::boot(&[spec("web-1", 11), spec("web-2", 12), spec("web-3", 13)]);
    eprintln!("three nodes ready: {:?}", started.elapsed());

    for node in site.nodes() {
        // The gate imported this node's seed: its name is the hostname,
        // and the agent answers for it.
        let hostname = node.exec(&["hostname"]).ok();
        assert_eq!(hostname.stdout.trim(), node.name, "{}", node.journal(None));
        let status = node.status();
        assert_eq!(status["node"], node.name.as_str(), "{status:#}");
        assert_eq!(status["role"], ROLE, "{status:#}");
        // The image's own audit finds nothing on a node as it boots (it
        // found LLMNR on 0.0.0.0:5355 and a backends file others could
        // read; here it cannot audit Secure Boot or the Quadlet units).
        let findings = &status["hardening"]["findings"];
        assert_eq!(findings, &serde_json::json!([]), "{status:#}");
        // The image's own systemd, not the host's (bookworm's 252).
        let version = node.exec(&["systemctl", "--version"]).ok();
        assert!(
            version.stdout.starts_with("systemd 257"),
            "{}",
            version.stdout
        );
        // Every unit started: the firewall too (it did not load without
        // netbase's /etc/protocols), and the READY banner is out.
        let state = node.exec(&["systemctl", "is-system-running", "--wait"]);
        let failed = node.exec(&["systemctl", "--failed", "--no-legend"]).stdout;
        assert_eq!(
            state.stdout.trim(),
            "running",
            "{failed}{}",
            node.journal(None)
        );
        let tables = node.exec(&["nft", "list", "tables"]).ok();
        assert!(
            tables.stdout.contains("table inet owui"),
            "{}",
            tables.stdout
        );
        let banner = format!("OWUI-AGENT READY role={ROLE} node={}", node.name);
        let shown = node.console_shows(&banner, Duration::from_secs(10));
        assert!(shown, "{}", node.console());
    }

    // Every node reaches every other over the bridge, through the
    // image's firewall (the host's ping in the node's namespace: the image
    // has none).
    for from in site.nodes() {
        for to in site.nodes() {
            assert!(ping(from, to), "{} → {}", from.name, to.name);
        }
    }

    // A node powered off and on keeps what its data partition holds.
    let node = site.node_mut("web-2");
    node.exec(&["sh", "-c", "echo kept > /var/lib/owui/harness-mark"])
        .ok();
    let stopped = Instant::now();
    node.stop();
    node.start();
    eprintln!("web-2 stopped and ready again: {:?}", stopped.elapsed());
    let mark = node.exec(&["cat", "/var/lib/owui/harness-mark"]).ok();
    assert_eq!(mark.stdout, "kept\n");
    assert_eq!(node.status()["node"], "web-2");
    assert!(ping(site.node("web-2"), site.node("web-1")));

    // A power cut: no shutdown, and the node still comes back.
    let node = site.node_mut("web-3");
    node.power_cut();
    node.start();
    assert_eq!(node.status()["node"], "web-3");
}

fn ping(from: &SiteNode, to: &SiteNode) -> bool {
    from.net
        .command("ping")
        .args(["-c1", "-W2", &to.net.address.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}
