//! `owui-agent cluster join` and `cluster renew`: a node gets its cluster
//! certificate with no typing. A control node certifies itself with the CA
//! its seed carries; any other node makes its key here, and sends a CSR
//! and its seed's join token to a control node whose certificate chains to
//! the seed's CA pin (the token never goes to any other server). Control
//! nodes that cannot be reached are tried in turn with growing waits, and
//! the wait is said on the terminal.

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use owui_bundle::cluster::ca::{
    certified_node, key_and_csr, pem_der, unix_secs, CaPin, CertifiedNode, NodeIdentity, BACKDATE,
    NODE_CERT_LIFETIME,
};
use owui_bundle::cluster::site::{ControlNode, AGENT_API_PORT};
use owui_bundle::cluster::token::{utc, JoinToken};
use owui_bundle::cluster::SeedCluster;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::seed::Seed;
use owui_bundle::{Error, Result};
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::etcd_config;
use super::files::ClusterFiles;
use super::firewall;
use super::tls;
use super::wire::{self, Reply, Request};
use crate::config::load_seed;
use crate::layout::Root;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between rounds over the control nodes.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
pub struct Joined {
    pub node: String,
    pub role: String,
    /// "enrolled", "renewed", "self-certified" (a control node), "already
    /// enrolled", or "alone" (the seed names no site).
    pub action: &'static str,
    /// The control node that answered, when one did.
    pub via: Option<String>,
    /// None for a node alone.
    pub certificate: Option<CertificateSummary>,
}

#[derive(Debug, Serialize)]
pub struct CertificateSummary {
    pub site: String,
    pub serial: String,
    pub not_after: String,
}

impl Joined {
    pub fn alone(seed: &Seed) -> Joined {
        Joined {
            node: seed.node.to_string(),
            role: seed.role.to_string(),
            action: "alone",
            via: None,
            certificate: None,
        }
    }
}

/// The seed's cluster section, or why the node has none.
pub fn seed_cluster(seed: &Seed) -> Result<&SeedCluster> {
    seed.cluster.as_ref().ok_or_else(|| {
        Error::invalid(
            "the node seed",
            "names no site ([cluster]): this node runs alone; make its seed with `owui-builder cluster seed`",
        )
    })
}

fn joined(seed: &Seed, action: &'static str, via: Option<String>, c: &CertifiedNode) -> Joined {
    Joined {
        node: seed.node.to_string(),
        role: seed.role.to_string(),
        action,
        via,
        certificate: Some(CertificateSummary {
            site: c.site.clone(),
            serial: c.serial.clone(),
            not_after: utc(c.not_after),
        }),
    }
}

/// Enrols this node unless it is enrolled already. `token` replaces the
/// seed's (one made later with `cluster token create`); `patience` is how
/// long unreachable control nodes are waited for.
pub async fn join(root: &Root, token: Option<JoinToken>, patience: Duration) -> Result<Joined> {
    let seed = load_seed(root)?;
    let cluster = seed_cluster(&seed)?;
    let files = ClusterFiles::new(root)?;
    firewall::apply(cluster, cluster.control_secrets.is_some())?;
    if let Some(have) = files.load(&cluster.ca_pin)? {
        if have.certified.node == seed.node && have.certified.role == seed.role {
            if cluster.control_secrets.is_some() {
                write_etcd_config(root, &seed, cluster, &files)?;
            }
            return Ok(joined(&seed, "already enrolled", None, &have.certified));
        }
    }
    if let Some(secrets) = &cluster.control_secrets {
        let ca = secrets.ca("the node seed: [cluster.control_secrets]")?;
        let address = cluster
            .control
            .iter()
            .find(|c| c.node == seed.node)
            .map(|c| c.address)
            .ok_or_else(|| {
                Error::internal("the node seed", "control node missing from its own list")
            })?;
        let who = NodeIdentity {
            site: cluster.site.to_string(),
            node: seed.node.clone(),
            role: seed.role,
            addresses: vec![address, std::net::Ipv4Addr::LOCALHOST.into()],
        };
        let (issued, key) = ca.issue_with_key(&who, SystemTime::now(), NODE_CERT_LIFETIME)?;
        files.store(&ca.cert_pem, &issued.cert_pem, &key)?;
        write_etcd_config(root, &seed, cluster, &files)?;
        let certified = read_certified(&issued.cert_pem)?;
        return Ok(joined(&seed, "self-certified", None, &certified));
    }
    let token = match token {
        Some(t) => t,
        None => cluster
            .join_token
            .clone()
            .ok_or_else(|| Error::invalid("the node seed", "[cluster] has no join_token"))?,
    };
    let (key, csr) = key_and_csr(&seed.node)?;
    let request = Request::Enrol {
        node: seed.node.to_string(),
        role: seed.role.to_string(),
        token: token.to_string(),
        csr,
    };
    let config = tls::pinned_client(&cluster.ca_pin)?;
    let (via, reply) = ask_control_nodes(&cluster.control, config, &request, patience).await?;
    let (ca, cert) = accept_reply(reply, &via, &cluster.ca_pin)?;
    let certified = read_certified(&cert)?;
    check_issued(&seed, &certified, &cert, &key)?;
    files.store(&ca, &cert, &key)?;
    Ok(joined(&seed, "enrolled", Some(via), &certified))
}

/// Where a control node's etcd keeps its data, on the data partition.
pub const ETCD_DATA_DIR: &str = "/var/lib/owui/etcd";

/// A control node's etcd environment file (owui-etcd.service reads it),
/// written on every join so that it follows the agent's rules.
fn write_etcd_config(
    root: &Root,
    seed: &Seed,
    cluster: &SeedCluster,
    files: &ClusterFiles,
) -> Result<()> {
    if !files.crl().exists() {
        let ca = cluster
            .control_secrets
            .as_ref()
            .ok_or_else(|| Error::internal("the node seed", "a control node without its CA"))?
            .ca("the node seed: [cluster.control_secrets]")?;
        write_atomic(
            &files.crl(),
            ca.crl(&[], 1, SystemTime::now())?.as_bytes(),
            0o644,
        )?;
    }
    let data_dir = root.host(Path::new(ETCD_DATA_DIR))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&data_dir)
        .map_err(|e| Error::internal(data_dir.display().to_string(), e.to_string()))?;
    let text = etcd_config::render(&etcd_config::EtcdNode {
        site: &cluster.site,
        crl: &files.crl(),
        name: &seed.node,
        members: &cluster.control,
        data_dir: &data_dir,
        tls: &files.tls_files(),
    })?;
    write_atomic(&files.etcd_env(), text.as_bytes(), 0o600)
}

/// Renews this node's certificate over mutual TLS when two thirds of its
/// life are gone, or always with `force`.
pub async fn renew(root: &Root, force: bool, patience: Duration) -> Result<Joined> {
    let seed = load_seed(root)?;
    let cluster = seed_cluster(&seed)?;
    let files = ClusterFiles::new(root)?;
    let have = files.load(&cluster.ca_pin)?.ok_or_else(|| {
        Error::invalid(
            files.cert().display().to_string(),
            "missing: the node has not enrolled (`owui-agent cluster join`)",
        )
    })?;
    let c = &have.certified;
    // Issued BACKDATE after its not-before: two thirds of the life it was
    // issued for.
    let issued_at = c.not_before + BACKDATE.as_secs();
    let renew_at = issued_at + c.not_after.saturating_sub(issued_at) * 2 / 3;
    if !force && unix_secs(SystemTime::now()) < renew_at {
        return Ok(joined(&seed, "already enrolled", None, c));
    }
    let (key, csr) = key_and_csr(&seed.node)?;
    let config = tls::mutual_client(&have.ca_pem, have.identity()?)?;
    let (via, reply) =
        ask_control_nodes(&cluster.control, config, &Request::Renew { csr }, patience).await?;
    let (ca, cert) = accept_reply(reply, &via, &cluster.ca_pin)?;
    let certified = read_certified(&cert)?;
    check_issued(&seed, &certified, &cert, &key)?;
    files.store(&ca, &cert, &key)?;
    Ok(joined(&seed, "renewed", Some(via), &certified))
}

fn read_certified(cert_pem: &str) -> Result<CertifiedNode> {
    certified_node(&pem_der("the issued certificate", cert_pem, "CERTIFICATE")?)
}

/// The certificate is for our key, our name and role, and valid now by our
/// clock (a clock too far behind the control node's is named with both
/// times).
fn check_issued(seed: &Seed, c: &CertifiedNode, cert_pem: &str, key_pem: &str) -> Result<()> {
    let what = "the issued certificate";
    if c.node != seed.node || c.role != seed.role {
        return Err(Error::untrusted(
            what,
            format!(
                "names {} as {}, this node is {} as {}",
                c.node, c.role, seed.node, seed.role
            ),
        ));
    }
    let key =
        rcgen::KeyPair::from_pem(key_pem).map_err(|e| Error::internal(what, e.to_string()))?;
    let der = pem_der(what, cert_pem, "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::invalid(what, e.to_string()))?;
    if cert.tbs_certificate.subject_pki.raw
        != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    {
        return Err(Error::untrusted(what, "is not for the key this node made"));
    }
    let now = unix_secs(SystemTime::now());
    if now < c.not_before || now >= c.not_after {
        return Err(Error::refused(
            what,
            format!(
                "is valid from {} to {}, but this node's clock says {}: set the clock (chrony, or the firmware's) and run again",
                utc(c.not_before),
                utc(c.not_after),
                utc(now)
            ),
        ));
    }
    Ok(())
}

/// The CA and certificate of an answer; a refusal becomes the error the
/// control node gave, with its exit code's kind.
fn accept_reply(reply: Reply, via: &str, pin: &CaPin) -> Result<(String, String)> {
    if let Some(r) = reply.refused {
        let what = format!("control node {via}");
        return Err(match r.code {
            3 => Error::invalid(what, r.error),
            4 => Error::untrusted(what, r.error),
            5 => Error::refused(what, r.error),
            _ => Error::internal(what, r.error),
        });
    }
    let (Some(ca), Some(cert)) = (reply.ca, reply.cert) else {
        return Err(Error::invalid(
            format!("control node {via}"),
            "answered with no certificate",
        ));
    };
    let found = CaPin::of_cert_der(&pem_der("the CA sent", &ca, "CERTIFICATE")?)?;
    if &found != pin {
        return Err(Error::untrusted(
            format!("control node {via}"),
            format!("sent CA {found}, the seed pins {pin}"),
        ));
    }
    Ok((ca, cert))
}

/// One round: each control node in turn; the first that answers gives the
/// reply (an answer that refuses counts: it is final). Between rounds the
/// wait doubles up to BACKOFF_MAX, until `patience` is spent.
async fn ask_control_nodes(
    control: &[ControlNode],
    config: rustls::ClientConfig,
    request: &Request,
    patience: Duration,
) -> Result<(String, Reply)> {
    let connector = TlsConnector::from(Arc::new(config));
    let start = Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let mut unreachable = Vec::new();
        for c in control {
            let label = format!("{} ({}:{AGENT_API_PORT})", c.node, c.address);
            match ask(&connector, c, request).await {
                Ok(reply) => return Ok((label, reply)),
                Err(Attempt::Untrusted(e)) => return Err(e),
                Err(Attempt::Unreachable(why)) => unreachable.push(format!("{label}: {why}")),
            }
        }
        if start.elapsed() + wait > patience {
            return Err(Error::refused(
                "enrolment",
                format!(
                    "no control node answered in {}: {}",
                    humantime::format_duration(Duration::from_secs(start.elapsed().as_secs())),
                    unreachable.join("; ")
                ),
            ));
        }
        eprintln!(
            "no control node answered ({}); trying again in {}",
            unreachable.join("; "),
            humantime::format_duration(wait)
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(BACKOFF_MAX);
    }
}

enum Attempt {
    /// Worth another try later.
    Unreachable(String),
    /// The server is not the site's: stop, say so.
    Untrusted(Error),
}

async fn ask(
    connector: &TlsConnector,
    c: &ControlNode,
    request: &Request,
) -> std::result::Result<Reply, Attempt> {
    let addr = SocketAddr::new(c.address, AGENT_API_PORT);
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Attempt::Unreachable("no answer in 5 s".into()))?
        .map_err(|e| Attempt::Unreachable(e.to_string()))?;
    let name = ServerName::try_from(c.node.to_string())
        .map_err(|e| Attempt::Untrusted(Error::invalid("control node name", e.to_string())))?;
    let label = format!("control node {} ({addr})", c.node);
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| Attempt::Unreachable("TLS handshake timed out".into()))?
        .map_err(|e| {
            // A handshake the server refused (our certificate revoked) or
            // one we refused (not the pinned CA): both are final.
            Attempt::Untrusted(Error::untrusted(&label, format!("TLS: {e}")))
        })?;
    let mut stream = BufReader::new(tls);
    wire::write(stream.get_mut(), request, &label)
        .await
        .map_err(|e| Attempt::Unreachable(e.to_string()))?;
    wire::read(&mut stream, &label)
        .await
        .map_err(|e| Attempt::Unreachable(e.to_string()))
}
