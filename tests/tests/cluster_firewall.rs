//! The site's ports in the real nftables of a node's namespace: the
//! image's own nftables.conf loaded, then `owui-agent cluster join` fills
//! its sets. A control node's agent API answers the site network and
//! nobody else on the LAN; a port the role does not serve stays shut; a
//! node that is not a control node opens nothing.

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use owui_tests::cluster::{SiteNode, TestSite};

/// Loads the image's ruleset into `node`'s namespace (its role includes
/// dropped: they open the role's own ports, not the site's).
fn load_image_ruleset(node: &SiteNode) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let conf = fs::read_to_string(repo.join("images/overlay/common/etc/nftables.conf")).unwrap();
    let conf: String = conf
        .lines()
        .filter(|l| !l.starts_with("include"))
        .map(|l| format!("{l}\n"))
        .collect();
    let file = node.root.join("../nftables.conf");
    fs::write(&file, conf).unwrap();
    let out = node
        .net
        .command("nft")
        .arg("-f")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A TCP listener on `port` in `node`'s namespace.
fn listen(node: &SiteNode, port: u16) -> Child {
    let child = node
        .net
        .command("python3")
        .args([
            "-c",
            &format!(
                "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',{port}))\ns.listen()\nwhile True:\n  c,_=s.accept(); c.close()"
            ),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    child
}

fn reaches(from: &SiteNode, to: &SiteNode, port: u16) -> bool {
    from.net
        .command("timeout")
        .args([
            "2",
            "bash",
            "-c",
            &format!("echo > /dev/tcp/{}/{port}", to.net.address),
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

fn sets(node: &SiteNode) -> String {
    let out = node
        .net
        .command("nft")
        .args(["list", "table", "inet", "owui"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_site_ports_answer_the_site_network_only() {
    // The site is the lower half of the LAN: .200 is on the wire but not in it.
    let mut site = TestSite::with_network("rome", 1, "198.51.100.0/25");
    let seed = site.seed("c1", "db", &[]);
    let c1 = site.node("c1", "db", 1, &seed);
    let seed = site.seed("app-1", "app", &[]);
    let app1 = site.node("app-1", "app", 11, &seed);
    let seed = site.seed("app-2", "app", &[]);
    let outsider = site.node("app-2", "app", 200, &seed);
    for n in [&c1, &app1] {
        load_image_ruleset(n);
    }
    let mut listeners = vec![listen(&c1, 7443), listen(&c1, 5000), listen(&app1, 7443)];

    // Before join: the image's ruleset shuts the site ports to everyone.
    assert!(!reaches(&app1, &c1, 7443));
    c1.agent(&["cluster", "join", "--json"]).ok();
    let rules = sets(&c1);
    assert!(rules.contains("198.51.100.0/25"), "{rules}");
    for port in ["2379", "2380", "7443"] {
        assert!(rules.contains(port), "{port} missing: {rules}");
    }
    assert!(
        reaches(&app1, &c1, 7443),
        "a site node cannot reach the agent API"
    );
    assert!(
        !reaches(&outsider, &c1, 7443),
        "a host outside the site network reached the agent API"
    );
    assert!(
        !reaches(&app1, &c1, 5000),
        "a port the role does not serve is open"
    );

    // A node that is not a control node opens nothing (its join fails for
    // want of a control node API, after the firewall is set).
    let out = app1.agent(&["cluster", "join", "--patience", "1s"]);
    assert_ne!(out.code, 0);
    assert!(
        !reaches(&c1, &app1, 7443),
        "a non-control node opened the agent API port"
    );
    for l in &mut listeners {
        let _ = l.kill();
        let _ = l.wait();
    }
}

/// The LAN itself (tests/src/netns.rs): two nodes reach each other over the
/// bridge, not once a cable is cut, and again once it is back. Needs root,
/// so it lives here and not among the unit tests (which run as nobody).
#[test]
fn nodes_on_the_lan_reach_each_other_until_cut() {
    let mut lan = owui_tests::netns::Lan::new();
    let a = lan.node(1);
    let b = lan.node(2);
    let ping = |from: &owui_tests::netns::Node, to: &owui_tests::netns::Node| {
        from.command("ping")
            .args(["-c1", "-W1", &to.address.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("ping")
            .success()
    };
    assert!(ping(&a, &b));
    lan.cut(&b, true);
    assert!(!ping(&a, &b));
    lan.cut(&b, false);
    assert!(ping(&a, &b));
}
