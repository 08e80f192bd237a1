//! The cluster's trust, made on the build side and carried by seeds: the
//! site ([`site`]), its CA and node certificates ([`ca`]), join tokens
//! ([`token`]) and the seed's `[cluster]` section ([`SeedCluster`]).
//! docs/cluster.md describes the whole.

pub mod ca;
pub mod site;
pub mod token;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::node_network::Cidr;
use crate::role::Role;
use crate::seed::NodeName;
use ca::{CaPin, ClusterCa};
use site::ControlNode;
use token::{JoinToken, TokenKey};

/// The seed's `[cluster]` section. A control node's carries the CA and the
/// token key (`[cluster.control_secrets]`); every other node's carries only
/// the CA pin and a join token bound to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCluster {
    pub site: NodeName,
    /// The cluster network: the only sources the node's cluster ports
    /// answer, and where its services listen.
    pub network: Cidr,
    /// sha256 of the CA's SubjectPublicKeyInfo: a control node whose
    /// certificate does not chain to it is never sent the token.
    pub ca_pin: CaPin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_token: Option<JoinToken>,
    /// Where the agent API and etcd run.
    pub control: Vec<ControlNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_secrets: Option<ControlSecrets>,
}

/// What a control node needs to run the CA and check tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSecrets {
    pub ca_cert: String,
    pub ca_key: String,
    pub token_key: String,
}

impl std::fmt::Debug for ControlSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlSecrets(<secret>)")
    }
}

impl ControlSecrets {
    pub fn ca(&self, what: &str) -> Result<ClusterCa> {
        ClusterCa::from_pem(what, self.ca_cert.clone(), self.ca_key.clone())
    }

    pub fn token_key(&self, what: &str) -> Result<TokenKey> {
        TokenKey::from_hex(what, &self.token_key)
    }
}

impl SeedCluster {
    /// The rules that tie the section to the seed's node and role; `what`
    /// names the seed file.
    pub fn check(&self, what: &str, node: &NodeName, role: Role) -> Result<()> {
        let field = |f: &str| format!("{what}: [cluster] {f}");
        if let Some(c) = self
            .control
            .iter()
            .find(|c| !self.network.contains(c.address))
        {
            return Err(Error::invalid(
                field("control"),
                format!(
                    "control node {} at {} is not in the network {}",
                    c.node, c.address, self.network
                ),
            ));
        }
        let is_control = self.control.iter().any(|c| &c.node == node);
        match (&self.join_token, &self.control_secrets) {
            (Some(_), Some(_)) => Err(Error::invalid(
                field("join_token"),
                "a seed carries a join token or control secrets, not both",
            )),
            (None, None) => Err(Error::invalid(
                field("join_token"),
                "missing: a node that is not a control node enrols with a join token",
            )),
            (Some(_), None) if is_control => Err(Error::invalid(
                field("control_secrets"),
                format!("missing: {node} is a control node of the site"),
            )),
            (None, Some(_)) if !is_control => Err(Error::invalid(
                field("control_secrets"),
                format!("{node} is not in the site's control list, so it may not carry the CA"),
            )),
            (Some(token), None) => {
                if token.site() != self.site.as_str() {
                    return Err(Error::invalid(
                        field("join_token"),
                        format!(
                            "is for site {:?}, the seed for site {}",
                            token.site(),
                            self.site
                        ),
                    ));
                }
                if token.node() != node || token.role() != role {
                    return Err(Error::invalid(
                        field("join_token"),
                        format!(
                            "is bound to node {} as {}, the seed is node {node} as {role}",
                            token.node(),
                            token.role()
                        ),
                    ));
                }
                Ok(())
            }
            (None, Some(secrets)) => {
                let ca = secrets.ca(&field("control_secrets.ca_key"))?;
                if ca.pin()? != self.ca_pin {
                    return Err(Error::invalid(
                        field("control_secrets.ca_cert"),
                        "is not the CA the seed's ca_pin names",
                    ));
                }
                secrets.token_key(&field("control_secrets.token_key"))?;
                Ok(())
            }
        }
    }
}
