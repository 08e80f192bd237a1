//! `owui-builder cluster init` and `cluster seed`: the site made offline
//! (its CA, token key and site file) and one signed seed per node, a
//! control node's carrying the CA and token key, every other node's a join
//! token bound to its name and role (docs/cluster.md).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use owui_bundle::cluster::ca::ClusterCa;
use owui_bundle::cluster::site::{ControlNode, Site, SiteDir};
use owui_bundle::cluster::token::{utc, TokenKey};
use owui_bundle::cluster::{ControlSecrets, SeedCluster};
use owui_bundle::node_network::{Cidr, NodeNetwork};
use owui_bundle::seed::Seed;
use owui_bundle::{Error, Result, Role};
use serde::Serialize;

use crate::cli::SeedSettings;
use crate::seeds::{self, Created};

#[derive(Debug, Serialize)]
pub struct Initialised {
    pub site: String,
    pub dir: PathBuf,
    pub ca_pin: String,
    pub control: Vec<ControlNode>,
}

/// `NAME=ADDRESS`, as `--control` takes it.
pub fn parse_control(text: &str) -> Result<ControlNode> {
    let bad = |why: &str| Error::invalid(format!("--control {text:?}"), why.to_string());
    let (node, address) = text
        .split_once('=')
        .ok_or_else(|| bad("is not NAME=ADDRESS"))?;
    Ok(ControlNode {
        node: node.parse()?,
        address: address
            .parse()
            .map_err(|_| bad("has an address that is not an IP address"))?,
    })
}

/// Makes the site directory `out`: checks every argument first, then
/// writes the CA, the token key and the site file; refuses a directory
/// that holds anything.
pub fn init(
    name: &str,
    network: &str,
    control: &[String],
    front_door: Option<&str>,
    out: &Path,
) -> Result<Initialised> {
    let site = Site {
        name: name
            .parse()
            .map_err(|e: Error| Error::invalid("--name", e.to_string()))?,
        network: network.parse::<Cidr>()?,
        front_door: front_door
            .map(|f| {
                f.parse::<IpAddr>().map_err(|_| {
                    Error::invalid(format!("--front-door {f:?}"), "is not an IP address")
                })
            })
            .transpose()?,
        control: control
            .iter()
            .map(|c| parse_control(c))
            .collect::<Result<_>>()?,
    };
    site.check("the site")?;
    let ca = ClusterCa::generate(site.name.as_str(), SystemTime::now())?;
    let made = SiteDir::create(out, site, ca, TokenKey::generate())?;
    Ok(Initialised {
        site: made.site.name.to_string(),
        dir: made.dir,
        ca_pin: made.ca.pin()?.to_string(),
        control: made.site.control,
    })
}

pub fn print_initialised(i: &Initialised) {
    println!(
        "site {} made in {}: CA pin {}; control nodes {}. ca.key and token.key are secrets: keep the directory with the signing key.",
        i.site,
        i.dir.display(),
        i.ca_pin,
        i.control
            .iter()
            .map(|c| format!("{}={}", c.node, c.address))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[derive(Debug, Serialize)]
pub struct SeedMade {
    #[serde(flatten)]
    pub created: Created,
    pub site: String,
    pub control: bool,
    /// When the join token expires (RFC 3339); None for a control node.
    pub token_expires: Option<String>,
}

/// What `cluster seed` is asked for.
pub struct SeedRequest<'a> {
    pub site_dir: &'a Path,
    pub node: &'a str,
    pub role: &'a str,
    pub ssh_keys: &'a [PathBuf],
    pub settings: &'a SeedSettings,
    pub token_ttl: Duration,
    pub key: &'a Path,
    pub out: &'a Path,
}

/// One node's seed for the site in `req.site_dir`, signed with `req.key`.
pub fn seed(req: &SeedRequest) -> Result<SeedMade> {
    let site_dir = SiteDir::open(req.site_dir)?;
    let site = &site_dir.site;
    let mut seed = seeds::build(req.node, req.role, req.ssh_keys, req.settings)?;
    let control = site.control_node(&seed.node).cloned();
    place_on_site_network(&mut seed, site, control.as_ref())?;
    let (join_token, control_secrets) = match &control {
        Some(_) => (
            None,
            Some(ControlSecrets {
                ca_cert: site_dir.ca.cert_pem.clone(),
                ca_key: site_dir.ca.key_pem.clone(),
                token_key: site_dir.token_key.to_hex(),
            }),
        ),
        None => (
            Some(site_dir.token_key.issue(
                site.name.as_str(),
                &seed.node,
                seed.role,
                SystemTime::now(),
                req.token_ttl,
            )?),
            None,
        ),
    };
    let token_expires = join_token.as_ref().map(|t| utc(t.expires()));
    seed.cluster = Some(SeedCluster {
        site: site.name.clone(),
        network: site.network.clone(),
        ca_pin: site_dir.ca.pin()?,
        join_token,
        control: site.control.clone(),
        control_secrets,
    });
    if control.is_some() && seed.role == Role::Allinone {
        return Err(Error::invalid(
            format!("--role {}", seed.role),
            "an all-in-one node runs alone; a site's control nodes are app, db or gpu nodes",
        ));
    }
    let created = seeds::write_signed(&seed, req.key, req.out)?;
    Ok(SeedMade {
        created,
        site: site.name.to_string(),
        control: control.is_some(),
        token_expires,
    })
}

/// A node's address must be on the site network; a control node's is the
/// site file's (given with its prefix when --address is left out).
fn place_on_site_network(
    seed: &mut Seed,
    site: &Site,
    control: Option<&ControlNode>,
) -> Result<()> {
    let address = seed.network.as_ref().and_then(|n| n.address.clone());
    match (address, control) {
        (Some(a), _) if !site.network.contains(a.address) => Err(Error::invalid(
            format!("--address {a}"),
            format!("is not in site {}'s network {}", site.name, site.network),
        )),
        (Some(a), Some(c)) if a.address != c.address => Err(Error::invalid(
            format!("--address {a}"),
            format!(
                "control node {} is at {} in the site file",
                c.node, c.address
            ),
        )),
        (None, Some(c)) => {
            let network = seed.network.get_or_insert_with(NodeNetwork::default);
            network.address = Some(Cidr {
                address: c.address,
                prefix: site.network.prefix,
            });
            Ok(())
        }
        _ => Ok(()),
    }
}

pub fn print_seed(s: &SeedMade) {
    seeds::print_created(&s.created);
    match &s.token_expires {
        Some(expires) => println!(
            "{} enrols into site {} with a single-use join token that expires at {expires}",
            s.created.node, s.site
        ),
        None => println!(
            "{} is a control node of site {}: its seed carries the cluster CA key; keep it as secret as the signing key",
            s.created.node, s.site
        ),
    }
}
