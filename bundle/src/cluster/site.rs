//! The site: what `owui-builder cluster init` writes into the site
//! directory and every later build-side command reads back.
//!
//! ```text
//! SITE/site.toml     name, network, front door, control nodes (public)
//! SITE/ca.crt        the cluster CA certificate (public)
//! SITE/ca.key        its key (0600)
//! SITE/token.key     the join-token key (0600)
//! ```
//!
//! The CA key and token key are as secret as the signing key and are kept
//! with it; they leave the site directory only inside control nodes' seeds.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ca::ClusterCa;
use super::token::TokenKey;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{read_regular_capped, write_atomic};
use crate::node_network::Cidr;
use crate::seed::NodeName;

pub const SITE_FILE: &str = "site.toml";
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const TOKEN_KEY_FILE: &str = "token.key";
/// The TCP port every control node's agent API listens on.
pub const AGENT_API_PORT: u16 = 7443;
/// etcd's client and peer ports (IANA).
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// Largest site file or key read.
const FILE_MAX: u64 = 64 * 1024;

/// A control node: runs the CA's agent API and an etcd member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlNode {
    pub node: NodeName,
    pub address: IpAddr,
}

/// `site.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site's name: in certificates (O), tokens and seeds.
    pub name: NodeName,
    /// The cluster network: every node address is in it, and services
    /// listen on it only.
    pub network: Cidr,
    /// The address clients reach Open WebUI at (held by one app node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_door: Option<IpAddr>,
    /// 1, 3 or 5 control nodes.
    pub control: Vec<ControlNode>,
}

impl Site {
    /// The rules no single field shows; `what` names the file.
    pub fn check(&self, what: &str) -> Result<()> {
        let n = self.control.len();
        if ![1, 3, 5].contains(&n) {
            return Err(Error::invalid(
                format!("{what}: control"),
                format!(
                    "names {n} control nodes; a site has 1, 3 or 5 (etcd needs a majority: an even count adds a node to fail without adding one to lose)"
                ),
            ));
        }
        for (i, c) in self.control.iter().enumerate() {
            if !self.network.contains(c.address) {
                return Err(Error::invalid(
                    format!("{what}: control node {}", c.node),
                    format!(
                        "address {} is not in the site network {}",
                        c.address, self.network
                    ),
                ));
            }
            if let Some(dup) = self.control[..i]
                .iter()
                .find(|o| o.node == c.node || o.address == c.address)
            {
                return Err(Error::invalid(
                    format!("{what}: control node {}", c.node),
                    format!("has the same name or address as control node {}", dup.node),
                ));
            }
        }
        if let Some(front) = self.front_door {
            if !self.network.contains(front) {
                return Err(Error::invalid(
                    format!("{what}: front_door"),
                    format!("{front} is not in the site network {}", self.network),
                ));
            }
            if let Some(c) = self.control.iter().find(|c| c.address == front) {
                return Err(Error::invalid(
                    format!("{what}: front_door"),
                    format!("{front} is control node {}'s own address; the front door moves between app nodes", c.node),
                ));
            }
        }
        Ok(())
    }

    pub fn control_node(&self, node: &NodeName) -> Option<&ControlNode> {
        self.control.iter().find(|c| &c.node == node)
    }
}

/// A site directory read back: the file, the CA and the token key.
#[derive(Debug)]
pub struct SiteDir {
    pub dir: PathBuf,
    pub site: Site,
    pub ca: ClusterCa,
    pub token_key: TokenKey,
}

fn read_text(path: &Path) -> Result<String> {
    let what = path.display().to_string();
    let bytes = read_regular_capped(path, FILE_MAX, &what)?;
    String::from_utf8(bytes).map_err(|_| Error::invalid(what, "not UTF-8"))
}

impl SiteDir {
    /// Makes `dir` (which must not exist, or be empty) for `site`.
    pub fn create(dir: &Path, site: Site, ca: ClusterCa, token_key: TokenKey) -> Result<SiteDir> {
        site.check(SITE_FILE)?;
        if dir.exists() && fs::read_dir(dir).at("reading", dir)?.next().is_some() {
            return Err(Error::refused(
                dir.display().to_string(),
                "is not empty: a site is made once; its CA and keys are never overwritten",
            ));
        }
        fs::create_dir_all(dir).at("creating", dir)?;
        let text = toml::to_string(&site)
            .map_err(|e| Error::internal("serialising the site", e.to_string()))?;
        // Secrets first and 0600: a crash leaves no public file pointing at
        // a missing key.
        write_atomic(&dir.join(CA_KEY_FILE), ca.key_pem.as_bytes(), 0o600)?;
        write_atomic(
            &dir.join(TOKEN_KEY_FILE),
            format!("{}\n", token_key.to_hex()).as_bytes(),
            0o600,
        )?;
        write_atomic(&dir.join(CA_CERT_FILE), ca.cert_pem.as_bytes(), 0o644)?;
        write_atomic(&dir.join(SITE_FILE), text.as_bytes(), 0o644)?;
        Ok(SiteDir {
            dir: dir.to_path_buf(),
            site,
            ca,
            token_key,
        })
    }

    /// Reads and checks the site directory `dir`.
    pub fn open(dir: &Path) -> Result<SiteDir> {
        let file = dir.join(SITE_FILE);
        let what = file.display().to_string();
        let text = read_text(&file)?;
        let site: Site = crate::toml_loc::parse(&what, &text)?;
        site.check(&what)?;
        let ca = ClusterCa::from_pem(
            &dir.join(CA_KEY_FILE).display().to_string(),
            read_text(&dir.join(CA_CERT_FILE))?,
            read_text(&dir.join(CA_KEY_FILE))?,
        )?;
        let key_file = dir.join(TOKEN_KEY_FILE);
        let token_key =
            TokenKey::from_hex(&key_file.display().to_string(), &read_text(&key_file)?)?;
        Ok(SiteDir {
            dir: dir.to_path_buf(),
            site,
            ca,
            token_key,
        })
    }
}
