//! The agent API on control nodes (`owui-agent cluster serve`): enrols
//! nodes that present a join token and renews the certificates of nodes
//! that present their own, over TLS on the cluster address.
//!
//! An enrolment passes, in this order: the token parses; it was made with
//! the site's token key for this site (forged, altered and foreign tokens
//! fail here); it has not expired; it is bound to the node and role the
//! request names; its id has not been claimed before (an etcd transaction,
//! so the rule holds across every control node); and the CSR's signature
//! holds. Only then is a certificate issued, naming the token's node and
//! role and the address the request came from. A renewal passes when the
//! client's certificate verified at the handshake and its node is not
//! revoked.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use owui_bundle::cluster::ca::{certified_node, CertifiedNode, ClusterCa, NodeIdentity};
use owui_bundle::cluster::token::{JoinToken, TokenKey};
use owui_bundle::seed::{parse_role, NodeName};
use owui_bundle::{Error, Result};
use tokio::io::BufReader;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::wire::{self, Reply, Request};

/// What must hold across all control nodes: which token ids were used and
/// which nodes were removed. etcd keeps it ([`super::state`]).
pub trait Ledger: Send + Sync + 'static {
    /// None the first time `id` is claimed; every time after, on any
    /// control node, who claimed it and when.
    fn claim_token(
        &self,
        id: &str,
        node: &NodeName,
    ) -> impl std::future::Future<Output = Result<Option<String>>> + Send;
    /// Notes that certificate `serial` was issued to `node`, so that
    /// removing the node revokes it.
    fn record_issued(
        &self,
        node: &NodeName,
        serial: &str,
    ) -> impl std::future::Future<Output = Result<()>> + Send;
    /// True when certificate `serial` was revoked (its node removed).
    fn is_revoked(&self, serial: &str) -> impl std::future::Future<Output = Result<bool>> + Send;
}

/// The CA side of a control node.
pub struct Authority<L> {
    pub site: String,
    pub ca: ClusterCa,
    pub token_key: TokenKey,
    pub ledger: L,
    pub cert_lifetime: Duration,
}

impl<L: Ledger> Authority<L> {
    /// Answers one request from `peer`, which presented `client` (the
    /// certificate the handshake verified, if any).
    pub async fn answer(
        &self,
        request: Request,
        peer: IpAddr,
        client: Option<&CertifiedNode>,
    ) -> Result<Reply> {
        let now = SystemTime::now();
        let (who, csr) = match request {
            Request::Enrol {
                node,
                role,
                token,
                csr,
            } => (
                self.check_enrolment(&node, &role, &token, peer, now)
                    .await?,
                csr,
            ),
            Request::Renew { csr } => {
                let client = client.ok_or_else(|| {
                    Error::untrusted(
                        "renewal",
                        "needs the node's own certificate; an unenrolled node enrols with a join token",
                    )
                })?;
                if client.site != self.site {
                    return Err(Error::untrusted(
                        "renewal",
                        format!("the certificate is for site {:?}", client.site),
                    ));
                }
                if self.ledger.is_revoked(&client.serial).await? {
                    return Err(Error::refused(
                        format!("node {}", client.node),
                        "was removed from the site (`owui-agent cluster remove`); it enrols again only with a new join token",
                    ));
                }
                (
                    NodeIdentity {
                        site: self.site.clone(),
                        node: client.node.clone(),
                        role: client.role,
                        addresses: vec![peer],
                    },
                    csr,
                )
            }
        };
        let issued = self.ca.issue_for_csr(&csr, &who, now, self.cert_lifetime)?;
        // Recorded before the certificate leaves: a node is never holding
        // a certificate that its removal would miss.
        self.ledger.record_issued(&who.node, &issued.serial).await?;
        tracing::info!(
            node = %who.node, role = %who.role, serial = %issued.serial, address = %peer,
            "issued a node certificate"
        );
        Ok(Reply::issued(issued.cert_pem, self.ca.cert_pem.clone()))
    }

    async fn check_enrolment(
        &self,
        node: &str,
        role: &str,
        token: &str,
        peer: IpAddr,
        now: SystemTime,
    ) -> Result<NodeIdentity> {
        let node: NodeName = node.parse()?;
        let role = parse_role(role)?;
        let token: JoinToken = token.parse()?;
        self.token_key.check(&token, &self.site, now)?;
        if token.node() != &node {
            return Err(Error::refused(
                "join token",
                format!("is bound to node {}, not to {node}", token.node()),
            ));
        }
        if token.role() != role {
            return Err(Error::refused(
                "join token",
                format!(
                    "is for a {} node, {node} asked to join as {role}",
                    token.role()
                ),
            ));
        }
        if let Some(used) = self.ledger.claim_token(token.id(), &node).await? {
            return Err(Error::refused(
                "join token",
                format!(
                    "was used already ({used}; token id {}): a token enrols one node once",
                    token.id()
                ),
            ));
        }
        Ok(NodeIdentity {
            site: self.site.clone(),
            node,
            role,
            addresses: vec![peer],
        })
    }
}

/// The most connections the API holds at once (enrolments are a few a
/// minute even in a rack rollout).
const CONNECTIONS_MAX: usize = 64;

/// Serves the API on `listen` until the process ends. Each connection is
/// handled on its own task: one slow client cannot hold up the rest.
pub async fn serve<L: Ledger>(
    listen: SocketAddr,
    tls: rustls::ServerConfig,
    authority: Arc<Authority<L>>,
) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Error::internal(format!("agent API on {listen}"), e.to_string()))?;
    tracing::info!(%listen, "agent API listening");
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A flood of idle connections costs each one LINE_TIMEOUT at most,
        // and never more than CONNECTIONS_MAX at once: beyond, closed at once.
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "agent API: {CONNECTIONS_MAX} connections open, closing one more");
            continue;
        };
        let acceptor = acceptor.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(acceptor, stream, peer, &authority).await {
                tracing::warn!(%peer, error = %e, "agent API connection");
            }
            drop(permit);
        });
    }
}

async fn connection<L: Ledger>(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    authority: &Authority<L>,
) -> Result<()> {
    let name = format!("client {peer}");
    let tls = tokio::time::timeout(wire::LINE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| Error::invalid(&name, "TLS handshake timed out"))?
        .map_err(|e| Error::untrusted(&name, format!("TLS handshake: {e}")))?;
    let client = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(der) => Some(certified_node(der)?),
        None => None,
    };
    let mut stream = BufReader::new(tls);
    let request: Request = wire::read(&mut stream, &name).await?;
    let reply = match authority.answer(request, peer.ip(), client.as_ref()).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "agent API refused a request");
            Reply::refused(&e)
        }
    };
    wire::write(stream.get_mut(), &reply, &name).await
}
