//! The seed's `[network]` section: how a node's wired port gets its
//! address. A node whose seed has none takes DHCP on every wired port (the
//! image's own `/etc/systemd/network/90-owui-wired.network`); a seed that
//! names an address pins it, on the port with the seed's MAC address when
//! it names one. `owui-agent seed import` turns the section into a
//! systemd-networkd file under `/run`, which sorts before the image's.
//!
//! Every value is checked where the seed is parsed, so nothing that reaches
//! the networkd file can add a line or a key of its own.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where `owui-agent seed import` writes the section's networkd file:
/// runtime, rewritten on every boot from the seed, and named to sort before
/// the image's DHCP default so that its `[Match]` wins.
pub const NETWORKD_FILE: &str = "/run/systemd/network/10-owui-seed.network";

/// The seed's `[network]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeNetwork {
    /// The wired port these settings are for; none: every wired port (a
    /// node with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddress>,
    /// A fixed address with its prefix; none: DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Cidr>,
    /// The default route, on the address's own network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// DNS servers, added to any DHCP gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<IpAddr>,
}

impl NodeNetwork {
    /// The rules that tie the keys together; `what` names the seed file.
    pub fn check(&self, what: &str) -> Result<()> {
        let Some(gateway) = self.gateway else {
            return Ok(());
        };
        let field = format!("{what}: [network] gateway");
        let Some(address) = &self.address else {
            return Err(Error::invalid(
                field,
                "needs an address: with DHCP, the gateway comes from DHCP",
            ));
        };
        if !address.contains(gateway) {
            return Err(Error::invalid(
                field,
                format!("{gateway} is not on the address's network {address}"),
            ));
        }
        Ok(())
    }

    /// The systemd-networkd file for these settings.
    pub fn networkd_file(&self) -> String {
        let mut out = String::from(
            "# Written by `owui-agent seed import` from the seed's [network] (docs/seeds.md).\n[Match]\n",
        );
        match &self.mac {
            Some(mac) => out.push_str(&format!("MACAddress={mac}\n")),
            None => out.push_str("Type=ether\nKind=!*\n"),
        }
        out.push_str("\n[Network]\n");
        match &self.address {
            Some(address) => {
                out.push_str(&format!("Address={address}\n"));
                // A fixed address stays fixed: no link-local or RA extras.
                out.push_str("LinkLocalAddressing=no\nIPv6AcceptRA=no\n");
            }
            None => out.push_str("DHCP=yes\n"),
        }
        if let Some(gateway) = self.gateway {
            out.push_str(&format!("Gateway={gateway}\n"));
        }
        for server in &self.dns {
            out.push_str(&format!("DNS={server}\n"));
        }
        out
    }
}

/// An Ethernet MAC address, six hex pairs joined by `:`, kept in lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacAddress([u8; 6]);

impl FromStr for MacAddress {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                format!("MAC address {text:?}"),
                "is not six hex pairs joined by ':' (e.g. 52:54:00:12:34:56)",
            )
        };
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddress(bytes))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An IPv4 or IPv6 address with its prefix length, `10.20.0.7/24`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    fn mask4(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    fn mask6(&self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// Whether `other` is on this address's network.
    pub fn contains(&self, other: IpAddr) -> bool {
        match (self.address, other) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                u32::from(a) & self.mask4() == u32::from(b) & self.mask4()
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                u128::from(a) & self.mask6() == u128::from(b) & self.mask6()
            }
            _ => false,
        }
    }

    /// The network itself: the address with its host bits cleared.
    pub fn network(&self) -> Cidr {
        let address = match self.address {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & self.mask4()).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & self.mask6()).into()),
        };
        Cidr {
            address,
            prefix: self.prefix,
        }
    }
}

impl FromStr for Cidr {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("address {text:?}"), why.to_string());
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| bad("needs its prefix length, e.g. 10.20.0.7/24"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| bad("is not an IPv4 or IPv6 address"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| bad(&format!("has a prefix length outside 1-{max}")))?;
        if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
            return Err(bad("is not an address a port can have"));
        }
        Ok(Cidr { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

crate::string_serde!(MacAddress);
crate::string_serde!(Cidr);

#[cfg(test)]
mod tests {
    use super::*;

    fn network(text: &str) -> NodeNetwork {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_fixed_address_on_one_port_renders_with_its_gateway_and_dns() {
        let n = network(
            "mac = \"52:54:00:AB:cd:01\"\naddress = \"10.20.0.7/24\"\ngateway = \"10.20.0.1\"\ndns = [\"10.20.0.2\", \"fd00::53\"]\n",
        );
        n.check("seed.toml").unwrap();
        let file = n.networkd_file();
        assert!(file.contains("MACAddress=52:54:00:ab:cd:01\n"), "{file}");
        assert!(file.contains("Address=10.20.0.7/24\n"), "{file}");
        assert!(
            file.contains("Gateway=10.20.0.1\nDNS=10.20.0.2\nDNS=fd00::53\n"),
            "{file}"
        );
        assert!(!file.contains("DHCP"), "{file}");
    }

    #[test]
    fn no_address_means_dhcp_on_every_wired_port() {
        let file = network("dns = [\"10.20.0.2\"]\n").networkd_file();
        assert!(file.contains("Type=ether\nKind=!*\n"), "{file}");
        assert!(file.contains("DHCP=yes\n"), "{file}");
    }

    #[test]
    fn values_that_are_not_what_they_claim_are_refused() {
        for (text, says) in [
            ("address = \"10.20.0.7\"", "prefix length"),
            ("address = \"10.20.0.7/33\"", "1-32"),
            (
                "address = \"10.20.0.7/24\\nDHCP=yes\"",
                "prefix length outside",
            ),
            (
                "address = \"127.0.0.1/8\"",
                "not an address a port can have",
            ),
            ("address = \"fd00::7/129\"", "1-128"),
            ("mac = \"52:54:00:12:34\"", "six hex pairs"),
            ("mac = \"52:54:00:12:34:56:78\"", "six hex pairs"),
            ("mac = \"52-54-00-12-34-56\"", "six hex pairs"),
            ("gateway = \"10.20.0.1\\n\"", "invalid IP address"),
            ("interface = \"eth0\"", "unknown field"),
        ] {
            let err = toml::from_str::<NodeNetwork>(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_gateway_needs_an_address_on_its_network() {
        let err = network("gateway = \"10.20.0.1\"")
            .check("s.toml")
            .unwrap_err();
        assert!(err.to_string().contains("needs an address"), "{err}");
        let err = network("address = \"10.20.0.7/24\"\ngateway = \"10.20.1.1\"")
            .check("s.toml")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("not on the address's network 10.20.0.7/24"),
            "{err}"
        );
        let err = network("address = \"10.20.0.7/24\"\ngateway = \"fd00::1\"")
            .check("s.toml")
            .unwrap_err();
        assert!(err.to_string().contains("not on"), "{err}");
        network("address = \"fd00::7/64\"\ngateway = \"fd00::1\"")
            .check("s.toml")
            .unwrap();
    }
}
