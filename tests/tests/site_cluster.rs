//! A site of real image nodes (tests/src/site_harness.rs) forms from its
//! seeds with no command typed on any node: the control node's units
//! certify it, start etcd and the agent API; the other node's
//! owui-cluster-join.service enrols it; each node's daemon publishes
//! itself, and `owui-agent status` on either shows both.

use std::time::{Duration, Instant};

use owui_tests::cluster::site_node_names;
use owui_tests::site::Run;
use owui_tests::site_harness::{signing_key, NodeSpec, Seed, Site, SiteNode};

fn builder(args: &[&str]) -> Run {
    Run::of(
        std::process::Command::new(owui_tests::site::bin("owui-builder"))
            .args(args)
            .output()
            .unwrap(),
    )
}

fn site_nodes(node: &SiteNode) -> Vec<String> {
    site_node_names(&node.status())
}

#[test]
fn image_nodes_form_a_site_from_their_seeds_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let dir_s = dir.to_str().unwrap();
    builder(&[
        "cluster",
        "init",
        "--name",
        "rome",
        "--network",
        "198.51.100.0/24",
        "--control",
        "c1=198.51.100.1",
        "--out",
        dir_s,
    ])
    .ok();
    let key = signing_key();
    let seed = |node: &str, address: &str| {
        let out = tmp.path().join(format!("{node}.toml"));
        builder(&[
            "cluster",
            "seed",
            "--site",
            dir_s,
            "--node",
            node,
            "--role",
            "app",
            "--address",
            address,
            "--key",
            key.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .ok();
        Seed::read(&out)
    };
    let site = Site::boot(&[
        NodeSpec {
            name: "c1",
            role: "app",
            host_octet: 1,
            seed: seed("c1", "198.51.100.1/24"),
        },
        NodeSpec {
            name: "web-1",
            role: "app",
            host_octet: 11,
            seed: seed("web-1", "198.51.100.11/24"),
        },
    ]);
    let (c1, web1) = (site.node("c1"), site.node("web-1"));
    let deadline = Instant::now() + Duration::from_secs(240);
    while site_nodes(web1) != ["c1", "web-1"] {
        assert!(
            Instant::now() < deadline,
            "the site did not form: web-1 sees {:?}\n{:#}\nc1 units:\n{}\nweb-1 join:\n{}",
            site_nodes(web1),
            web1.status()["site"],
            c1.journal(Some("owui-agent-api.service")) + &c1.journal(Some("owui-etcd.service")),
            web1.journal(Some("owui-cluster-join.service"))
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(site_nodes(c1), ["c1", "web-1"]);
    // The node made its own key, 0600, and holds a certificate naming it.
    let mode = web1
        .exec(&["stat", "-c", "%a", "/var/lib/owui/cluster/node.key"])
        .ok();
    assert_eq!(mode.stdout.trim(), "600");
    // Every unit started on both, the cluster's included.
    for node in [c1, web1] {
        let failed = node.exec(&["systemctl", "--failed", "--no-legend"]).stdout;
        assert!(failed.trim().is_empty(), "{}: {failed}", node.name);
    }
    let etcd = c1.exec(&[
        "systemctl",
        "is-active",
        "owui-etcd.service",
        "owui-agent-api.service",
    ]);
    assert_eq!(
        etcd.stdout.split_whitespace().collect::<Vec<_>>(),
        ["active", "active"]
    );
}
