//! The site's ports in the node's firewall: the image's nftables.conf has
//! empty sets `cluster_tcp` (ports) and `cluster_net4`/`cluster_net6` (the
//! only sources allowed to reach them); `owui-agent cluster join` fills
//! them at every boot from the seed, so a control node answers its agent
//! API and etcd to the site network and to nobody else, and a node that is
//! not a control node opens nothing. One `nft -f` transaction: the sets
//! change all at once or not at all.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use owui_bundle::cluster::site::{AGENT_API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT};
use owui_bundle::cluster::SeedCluster;
use owui_bundle::{Error, Result};

const NFT: &str = "nft";

/// The TCP ports this node serves to the rest of the site.
pub fn cluster_ports(control: bool) -> Vec<u16> {
    if control {
        vec![AGENT_API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT]
    } else {
        Vec::new()
    }
}

/// The nft script that sets the sets. `add` makes a set that is missing (a
/// node whose ruleset is not the image's still gets them, unused), `flush`
/// empties it, so the script says the whole content.
pub fn script(cluster: &SeedCluster, control: bool) -> String {
    let network = cluster.network.network();
    let fill = match network.address {
        IpAddr::V4(_) => "cluster_net4",
        IpAddr::V6(_) => "cluster_net6",
    };
    let mut s = String::from("add table inet owui\n");
    s += "add set inet owui cluster_tcp { type inet_service; }\n";
    s += "add set inet owui cluster_net4 { type ipv4_addr; flags interval; }\n";
    s += "add set inet owui cluster_net6 { type ipv6_addr; flags interval; }\n";
    for set in ["cluster_tcp", "cluster_net4", "cluster_net6"] {
        s += &format!("flush set inet owui {set}\n");
    }
    let ports = cluster_ports(control);
    if !ports.is_empty() {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        s += &format!(
            "add element inet owui cluster_tcp {{ {} }}\n",
            list.join(", ")
        );
        s += &format!("add element inet owui {fill} {{ {network} }}\n");
    }
    s
}

/// Loads `script(cluster, control)` into the running ruleset.
pub fn apply(cluster: &SeedCluster, control: bool) -> Result<()> {
    let text = script(cluster, control);
    let mut child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::tool(NFT, format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::tool(NFT, format!("writing the rules: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::tool(NFT, e.to_string()))?;
    if !out.status.success() {
        return Err(Error::tool(
            NFT,
            format!(
                "refused the site's firewall sets: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}
