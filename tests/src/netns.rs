//! Several hosts on one machine: a switch namespace holding a bridge, and
//! one network namespace per node with a veth pair onto the bridge and an
//! address in 198.51.100.0/24 (a documentation range; the host's own
//! interface has 192.0.2.0/24). Everything made is removed on drop, also
//! when a test fails. Faults: cut a node's cable ([`Lan::cut`]).
//!
//! Needs root and iproute2 (.ci/run installs it).

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix every node address is in.
pub const PREFIX_LEN: u8 = 24;

/// A bridge in its own namespace and the node namespaces plugged into it.
pub struct Lan {
    /// Short tag that starts every name made, unique per Lan in this process.
    tag: String,
    nodes: Vec<Node>,
}

/// One host: a network namespace with `eth0` on the LAN and loopback up.
#[derive(Debug, Clone)]
pub struct Node {
    /// The namespace's name (`ip netns exec NAME …`).
    pub netns: String,
    pub address: Ipv4Addr,
    /// The switch-side end of the node's cable.
    port: String,
}

impl Node {
    /// `program args…` inside this node's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns, program]);
        command
    }

    /// The namespace file, for `systemd-nspawn --network-namespace-path`.
    pub fn netns_path(&self) -> String {
        format!("/run/netns/{}", self.netns)
    }
}

fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Lan {
    /// A bridge with no nodes yet, in namespace `<tag>sw`.
    pub fn new() -> Lan {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "o{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let lan = Lan {
            tag,
            nodes: Vec::new(),
        };
        let sw = lan.switch();
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        lan
    }

    fn switch(&self) -> String {
        format!("{}sw", self.tag)
    }

    /// Plugs in node number `host` (1-254) at 198.51.100.`host`.
    pub fn node(&mut self, host: u8) -> Node {
        let address = Ipv4Addr::new(198, 51, 100, host);
        let netns = format!("{}n{host}", self.tag);
        // Interface names stay under 15 bytes: the tag is at most 12.
        let port = format!("{}p{host}", self.tag);
        let sw = self.switch();
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &port, "netns", &sw, "type", "veth", "peer", "name", "eth0", "netns",
            &netns,
        ]);
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
        let cidr = format!("{address}/{PREFIX_LEN}");
        ip(&["-n", &netns, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let node = Node {
            netns,
            address,
            port,
        };
        self.nodes.push(node.clone());
        node
    }

    /// Cuts `node`'s cable at the switch (`false` plugs it back in).
    pub fn cut(&self, node: &Node, cut: bool) {
        let state = if cut { "down" } else { "up" };
        ip(&["-n", &self.switch(), "link", "set", &node.port, state]);
    }

    /// `program args…` in the switch's namespace (a packet capture on br0).
    pub fn switch_command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.switch(), program]);
        command
    }
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of every veth pair; errors
        // are ignored so one leftover does not hide a test's own failure.
        for name in self
            .nodes
            .iter()
            .map(|n| n.netns.clone())
            .chain([self.switch()])
        {
            let _ = Command::new("ip")
                .args(["netns", "delete", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}
