//! Where a node keeps its cluster identity: on the data partition, so it
//! survives reboots and image upgrades; the key 0600 and made on the node.
//!
//! ```text
//! /var/lib/owui/cluster/ca.crt     the cluster CA (its pin checked against the seed's)
//! /var/lib/owui/cluster/node.crt   this node's certificate
//! /var/lib/owui/cluster/node.key   its key (0600)
//! /var/lib/owui/cluster/etcd.env   etcd's configuration (control nodes)
//! ```

use std::path::{Path, PathBuf};

use owui_bundle::cluster::ca::{certified_node, pem_der, CaPin, CertifiedNode};
use owui_bundle::fsutil::{read_regular_capped, write_atomic};
use owui_bundle::{Error, Result};

use super::etcd_config::TlsFiles;
use super::tls::Identity;
use crate::layout::Root;

pub const CLUSTER_DIR: &str = "/var/lib/owui/cluster";
const PEM_MAX: u64 = 64 * 1024;

/// The cluster files of the node under a root.
pub struct ClusterFiles {
    pub dir: PathBuf,
}

/// A node's certificate, key and CA as read from disk.
pub struct Enrolment {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub certified: CertifiedNode,
}

impl Enrolment {
    pub fn identity(&self) -> Result<Identity> {
        Identity::from_pem(
            "node certificate",
            &self.cert_pem,
            &self.ca_pem,
            &self.key_pem,
        )
    }
}

impl ClusterFiles {
    pub fn new(root: &Root) -> Result<ClusterFiles> {
        Ok(ClusterFiles {
            dir: root.host(Path::new(CLUSTER_DIR))?,
        })
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("node.crt")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("node.key")
    }
    pub fn crl(&self) -> PathBuf {
        self.dir.join("ca.crl")
    }
    /// A control node's etcd configuration (owui-etcd.service).
    pub fn etcd_env(&self) -> PathBuf {
        self.dir.join("etcd.env")
    }
    /// The files etcd and the etcd client use.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            ca: self.ca(),
            cert: self.cert(),
            key: self.key(),
        }
    }

    fn read(path: &Path) -> Result<String> {
        let what = path.display().to_string();
        let bytes = read_regular_capped(path, PEM_MAX, &what)?;
        String::from_utf8(bytes).map_err(|_| Error::invalid(what, "not UTF-8 PEM"))
    }

    /// The node's enrolment, None when it has none yet. A CA whose pin is
    /// not `pin` is an error: the files were not made for this site.
    pub fn load(&self, pin: &CaPin) -> Result<Option<Enrolment>> {
        if !self.cert().exists() {
            return Ok(None);
        }
        let ca_pem = Self::read(&self.ca())?;
        let ca_what = self.ca().display().to_string();
        let found = CaPin::of_cert_der(&pem_der(&ca_what, &ca_pem, "CERTIFICATE")?)?;
        if &found != pin {
            return Err(Error::untrusted(
                ca_what,
                format!("has pin {found}, the seed pins {pin}: this node's cluster files are another site's"),
            ));
        }
        let cert_pem = Self::read(&self.cert())?;
        let cert_what = self.cert().display().to_string();
        let certified = certified_node(&pem_der(&cert_what, &cert_pem, "CERTIFICATE")?)?;
        Ok(Some(Enrolment {
            ca_pem,
            cert_pem,
            key_pem: Self::read(&self.key())?,
            certified,
        }))
    }

    /// Writes a new enrolment: the key first (0600), the certificate last,
    /// so a node that stops halfway has no certificate without its key.
    pub fn store(&self, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::internal(self.dir.display().to_string(), e.to_string()))?;
        write_atomic(&self.key(), key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.ca(), ca_pem.as_bytes(), 0o644)?;
        write_atomic(&self.cert(), cert_pem.as_bytes(), 0o644)
    }
}
