//! The environment file Debian's etcd reads (`/etc/default/etcd`, one
//! `ETCD_*=value` a line; its unit has `EnvironmentFile=-/etc/default/%p`)
//! for one control node. etcd 3.4 (bookworm) and 3.5 (trixie) both read every
//! variable written here.
//!
//! The rules, for every control node alike: mutual TLS for clients and peers
//! from the cluster CA, https URLs only, listening on the node's cluster
//! address (and 127.0.0.1 for clients, for the local agent), never on every
//! address; certificates on the site's revocation list refused; pre-vote on;
//! a backend quota and auto-compaction (values below).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use owui_bundle::cluster::site::{ControlNode, ETCD_CLIENT_PORT, ETCD_PEER_PORT};
use owui_bundle::error::{Error, Result};
use owui_bundle::seed::NodeName;

/// The backend quota: 2 GiB, etcd's own default and the size it is tested at,
/// written out so the value does not depend on the packaged version. Our
/// state is small (a node record is under 1 KiB; configuration, revocations
/// and Patroni's keys a few KiB more); with hourly compaction even 200 nodes
/// rewriting their record every 10 s keep under 100 MiB of history, so the
/// quota is there to stop a runaway writer before it fills the disk, with
/// room for fragmentation between defragmentations. A bigger backend only
/// slows the snapshot a rejoining member receives.
pub const QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Auto-compaction: keep one hour of history (periodic mode). Every key we
/// keep is current state, read at its latest revision, and fencing compares
/// the latest revision of a key, which compaction keeps; an hour lets a
/// watcher that lost its connection for less than that resume where it was.
pub const AUTO_COMPACTION_MODE: &str = "periodic";
pub const AUTO_COMPACTION_RETENTION: &str = "1h";

/// The files etcd's TLS reads, all issued from the cluster CA. The node's
/// certificate serves both as server and as client certificate (peers
/// connect to each other with it), so it carries both key usages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything one control node's etcd configuration is made from.
#[derive(Debug, Clone)]
pub struct EtcdNode<'a> {
    /// The site's name; the cluster token is derived from it, so members of
    /// two sites never take each other for the same cluster.
    pub site: &'a NodeName,
    /// This node's name: one of `members`.
    pub name: &'a NodeName,
    /// Every control node, this one included.
    pub members: &'a [ControlNode],
    pub data_dir: &'a Path,
    pub tls: &'a TlsFiles,
    /// The CA's revocation list (PEM): etcd refuses clients and peers whose
    /// certificate it lists. etcd reads it at every handshake and refuses
    /// every connection while it is missing, so it must exist first.
    pub crl: &'a Path,
}

/// `https://ADDRESS:PORT` (IPv6 in brackets).
fn url(address: IpAddr, port: u16) -> String {
    format!("https://{}", SocketAddr::new(address, port))
}

/// Where an etcd client reaches every member: the agent's endpoint list.
pub fn client_endpoints(members: &[ControlNode]) -> Vec<String> {
    members
        .iter()
        .map(|m| url(m.address, ETCD_CLIENT_PORT))
        .collect()
}

/// Where the agent on a control node reaches its own member.
pub fn local_endpoint() -> String {
    url(IpAddr::V4(Ipv4Addr::LOCALHOST), ETCD_CLIENT_PORT)
}

/// The cluster token for a site's etcd.
pub fn cluster_token(site: &NodeName) -> String {
    format!("owui-{site}")
}

/// Checks the member list: 1, 3 or 5 members, names and addresses unique,
/// no address that means "every address" or loopback.
fn check_members(members: &[ControlNode]) -> Result<()> {
    match members.len() {
        1 | 3 | 5 => {}
        0 => {
            return Err(Error::invalid(
                "control nodes",
                "none given: etcd needs 1, 3 or 5 control nodes",
            ))
        }
        n @ (2 | 4) => {
            return Err(Error::invalid(
                "control nodes",
                format!(
                    "{n} given: etcd writes only while a majority of its members is up, so \
                     {n} control nodes survive {} failed member(s), no more than {} do, and \
                     add one more member that can fail; use 1, 3 or 5",
                    (n - 1) / 2,
                    n - 1
                ),
            ))
        }
        n => {
            return Err(Error::invalid(
                "control nodes",
                format!(
                    "{n} given: use 1, 3 or 5 (more members make every write slower and \
                     survive no failure that 5 do not)"
                ),
            ))
        }
    }
    let mut names = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for m in members {
        if !names.insert(m.node.as_str()) {
            return Err(Error::invalid(
                format!("control node {}", m.node),
                "listed twice",
            ));
        }
        if !addresses.insert(m.address) {
            return Err(Error::invalid(
                format!("control node {}", m.node),
                format!("address {} is another control node's too", m.address),
            ));
        }
        if m.address.is_unspecified() || m.address.is_loopback() || m.address.is_multicast() {
            return Err(Error::invalid(
                format!("control node {}", m.node),
                format!(
                    "address {} is not a cluster address (etcd listens on the node's own \
                     cluster address only)",
                    m.address
                ),
            ));
        }
    }
    Ok(())
}

/// A path as an env-file value: absolute, and only characters that need no
/// quoting (systemd's EnvironmentFile treats quotes, backslashes and
/// whitespace specially; a path that needs them is refused, not escaped).
fn env_path(what: &str, path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| {
        Error::invalid(format!("{what} {}", path.display()), "is not valid UTF-8")
    })?;
    if !path.is_absolute() {
        return Err(Error::invalid(
            format!("{what} {text:?}"),
            "must be an absolute path",
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._-+@:,".contains(*c)))
    {
        return Err(Error::invalid(
            format!("{what} {text:?}"),
            format!("holds {c:?}: only A-Z a-z 0-9 / . _ - + @ : , are written into etcd's environment file"),
        ));
    }
    Ok(text.to_string())
}

/// Renders the environment file for `node`.
pub fn render(node: &EtcdNode<'_>) -> Result<String> {
    check_members(node.members)?;
    let me = node
        .members
        .iter()
        .find(|m| &m.node == node.name)
        .ok_or_else(|| {
            Error::invalid(
                format!("node {}", node.name),
                "is not one of the control nodes; only control nodes run etcd",
            )
        })?;
    let data_dir = env_path("etcd data directory", node.data_dir)?;
    let ca = env_path("cluster CA file", &node.tls.ca)?;
    let cert = env_path("node certificate file", &node.tls.cert)?;
    let key = env_path("node key file", &node.tls.key)?;
    let crl = env_path("revocation list file", node.crl)?;

    let peer_url = url(me.address, ETCD_PEER_PORT);
    let client_url = url(me.address, ETCD_CLIENT_PORT);
    let initial_cluster = node
        .members
        .iter()
        .map(|m| format!("{}={}", m.node, url(m.address, ETCD_PEER_PORT)))
        .collect::<Vec<_>>()
        .join(",");

    let quota = QUOTA_BACKEND_BYTES.to_string();
    let vars: [(&str, &str); 27] = [
        ("ETCD_NAME", node.name.as_str()),
        ("ETCD_DATA_DIR", &data_dir),
        // Listen on the cluster address (and loopback for the local
        // agent), never 0.0.0.0: etcd serves nothing on other networks.
        ("ETCD_LISTEN_PEER_URLS", &peer_url),
        (
            "ETCD_LISTEN_CLIENT_URLS",
            &format!("{client_url},{}", local_endpoint()),
        ),
        ("ETCD_INITIAL_ADVERTISE_PEER_URLS", &peer_url),
        ("ETCD_ADVERTISE_CLIENT_URLS", &client_url),
        ("ETCD_INITIAL_CLUSTER", &initial_cluster),
        // Read only on the first start (an empty data directory); a member
        // that restarts rejoins from its data directory.
        ("ETCD_INITIAL_CLUSTER_STATE", "new"),
        ("ETCD_INITIAL_CLUSTER_TOKEN", &cluster_token(node.site)),
        // Clients: TLS with a certificate from the cluster CA, nothing else.
        ("ETCD_CERT_FILE", &cert),
        ("ETCD_KEY_FILE", &key),
        ("ETCD_TRUSTED_CA_FILE", &ca),
        ("ETCD_CLIENT_CERT_AUTH", "true"),
        ("ETCD_CLIENT_CRL_FILE", &crl),
        ("ETCD_AUTO_TLS", "false"),
        // Peers: the same, with the same node certificate.
        ("ETCD_PEER_CERT_FILE", &cert),
        ("ETCD_PEER_KEY_FILE", &key),
        ("ETCD_PEER_TRUSTED_CA_FILE", &ca),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true"),
        ("ETCD_PEER_CRL_FILE", &crl),
        ("ETCD_PEER_AUTO_TLS", "false"),
        // A member that was cut off does not force an election when it
        // comes back (it asks first), so a flapping link cannot depose a
        // healthy leader.
        ("ETCD_PRE_VOTE", "true"),
        ("ETCD_QUOTA_BACKEND_BYTES", &quota),
        ("ETCD_AUTO_COMPACTION_MODE", AUTO_COMPACTION_MODE),
        ("ETCD_AUTO_COMPACTION_RETENTION", AUTO_COMPACTION_RETENTION),
        // Structured logs on 3.4 as on 3.5 (3.4's default logger is
        // deprecated); the v2 API stays off (Patroni speaks v3).
        ("ETCD_LOGGER", "zap"),
        ("ETCD_ENABLE_V2", "false"),
    ];
    let mut text =
        String::from("# Written by owui-agent from the site's control nodes; do not edit.\n");
    for (name, value) in vars {
        let _ = writeln!(text, "{name}={value}");
    }
    Ok(text)
}

/// The variables of a rendered file, in order (comments and blank lines
/// skipped): what systemd hands etcd, for a test that starts etcd by hand.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> NodeName {
        n.parse().unwrap()
    }

    fn members(n: u8) -> Vec<ControlNode> {
        (1..=n)
            .map(|i| ControlNode {
                node: name(&format!("ctl{i}")),
                address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)),
            })
            .collect()
    }

    fn tls() -> TlsFiles {
        TlsFiles {
            ca: "/etc/owui/cluster/ca.pem".into(),
            cert: "/etc/owui/cluster/node.pem".into(),
            key: "/etc/owui/cluster/node.key".into(),
        }
    }

    fn render_for(me: &str, members: &[ControlNode]) -> Result<String> {
        let me = name(me);
        render(&EtcdNode {
            site: &name("lab1"),
            name: &me,
            members,
            data_dir: Path::new("/var/lib/etcd/owui"),
            tls: &tls(),
            crl: Path::new("/etc/owui/cluster/ca.crl"),
        })
    }

    fn var(text: &str, key: &str) -> String {
        let found: Vec<_> = parse(text).into_iter().filter(|(k, _)| k == key).collect();
        assert_eq!(found.len(), 1, "{key} once in:\n{text}");
        found[0].1.clone()
    }

    #[test]
    fn three_members_render_mutual_tls_on_the_cluster_address() {
        let text = render_for("ctl2", &members(3)).unwrap();
        assert_eq!(var(&text, "ETCD_NAME"), "ctl2");
        assert_eq!(var(&text, "ETCD_DATA_DIR"), "/var/lib/etcd/owui");
        assert_eq!(
            var(&text, "ETCD_LISTEN_PEER_URLS"),
            "https://198.51.100.2:2380"
        );
        assert_eq!(
            var(&text, "ETCD_LISTEN_CLIENT_URLS"),
            "https://198.51.100.2:2379,https://127.0.0.1:2379"
        );
        assert_eq!(
            var(&text, "ETCD_ADVERTISE_CLIENT_URLS"),
            "https://198.51.100.2:2379"
        );
        assert_eq!(
            var(&text, "ETCD_INITIAL_ADVERTISE_PEER_URLS"),
            "https://198.51.100.2:2380"
        );
        assert_eq!(
            var(&text, "ETCD_INITIAL_CLUSTER"),
            "ctl1=https://198.51.100.1:2380,ctl2=https://198.51.100.2:2380,\
             ctl3=https://198.51.100.3:2380"
        );
        assert_eq!(var(&text, "ETCD_INITIAL_CLUSTER_STATE"), "new");
        assert_eq!(var(&text, "ETCD_INITIAL_CLUSTER_TOKEN"), "owui-lab1");
        for (k, v) in [
            ("ETCD_CLIENT_CERT_AUTH", "true"),
            ("ETCD_PEER_CLIENT_CERT_AUTH", "true"),
            ("ETCD_AUTO_TLS", "false"),
            ("ETCD_PEER_AUTO_TLS", "false"),
            ("ETCD_TRUSTED_CA_FILE", "/etc/owui/cluster/ca.pem"),
            ("ETCD_PEER_TRUSTED_CA_FILE", "/etc/owui/cluster/ca.pem"),
            ("ETCD_CERT_FILE", "/etc/owui/cluster/node.pem"),
            ("ETCD_PEER_CERT_FILE", "/etc/owui/cluster/node.pem"),
            ("ETCD_KEY_FILE", "/etc/owui/cluster/node.key"),
            ("ETCD_PEER_KEY_FILE", "/etc/owui/cluster/node.key"),
            ("ETCD_CLIENT_CRL_FILE", "/etc/owui/cluster/ca.crl"),
            ("ETCD_PEER_CRL_FILE", "/etc/owui/cluster/ca.crl"),
            ("ETCD_PRE_VOTE", "true"),
            ("ETCD_QUOTA_BACKEND_BYTES", "2147483648"),
            ("ETCD_AUTO_COMPACTION_MODE", "periodic"),
            ("ETCD_AUTO_COMPACTION_RETENTION", "1h"),
            ("ETCD_ENABLE_V2", "false"),
        ] {
            assert_eq!(var(&text, k), v, "{k}");
        }
    }

    #[test]
    fn no_url_is_plain_http_or_every_address() {
        let text = render_for("ctl1", &members(5)).unwrap();
        for (k, v) in parse(&text) {
            if k.ends_with("_URLS") || k == "ETCD_INITIAL_CLUSTER" {
                assert!(!v.contains("http://"), "{k}={v}");
                assert!(!v.contains("0.0.0.0") && !v.contains("[::]"), "{k}={v}");
            }
        }
    }

    #[test]
    fn ipv6_members_are_bracketed() {
        let members = vec![ControlNode {
            node: name("ctl1"),
            address: "2001:db8::1".parse().unwrap(),
        }];
        let text = render_for("ctl1", &members).unwrap();
        assert_eq!(
            var(&text, "ETCD_LISTEN_PEER_URLS"),
            "https://[2001:db8::1]:2380"
        );
        assert_eq!(
            client_endpoints(&members),
            vec!["https://[2001:db8::1]:2379"]
        );
    }

    #[test]
    fn an_even_number_of_control_nodes_is_refused_with_the_reason() {
        for n in [2, 4] {
            let err = render_for("ctl1", &members(n)).unwrap_err().to_string();
            assert!(err.contains(&format!("{n} given")), "{err}");
            assert!(err.contains("majority"), "{err}");
            assert!(err.contains("1, 3 or 5"), "{err}");
        }
        let err = render_for("ctl1", &members(6)).unwrap_err().to_string();
        assert!(err.contains("1, 3 or 5"), "{err}");
        let err = render_for("ctl1", &[]).unwrap_err().to_string();
        assert!(err.contains("none given"), "{err}");
    }

    #[test]
    fn bad_member_lists_are_refused() {
        let mut twice = members(3);
        twice[2].node = name("ctl1");
        let err = render_for("ctl1", &twice).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");

        let mut same_address = members(3);
        same_address[2].address = same_address[0].address;
        let err = render_for("ctl1", &same_address).unwrap_err().to_string();
        assert!(err.contains("another control node's"), "{err}");

        for bad in ["0.0.0.0", "127.0.0.1", "::"] {
            let mut m = members(1);
            m[0].address = bad.parse().unwrap();
            let err = render_for("ctl1", &m).unwrap_err().to_string();
            assert!(err.contains("not a cluster address"), "{bad}: {err}");
        }

        let err = render_for("app1", &members(3)).unwrap_err().to_string();
        assert!(err.contains("not one of the control nodes"), "{err}");
    }

    #[test]
    fn paths_that_need_quoting_are_refused() {
        let me = name("ctl1");
        let m = members(1);
        for (dir, why) in [
            ("/var/lib/etcd dir", "' '"),
            ("/var/lib/etcd\nETCD_X=1", "'\\n'"),
            ("/var/lib/$HOME", "'$'"),
            ("var/lib/etcd", "absolute"),
        ] {
            let err = render(&EtcdNode {
                site: &name("lab1"),
                name: &me,
                members: &m,
                data_dir: Path::new(dir),
                tls: &tls(),
                crl: Path::new("/etc/owui/cluster/ca.crl"),
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("etcd data directory"), "{dir:?}: {err}");
            assert!(err.contains(why), "{dir:?}: {err}");
        }
    }
}
