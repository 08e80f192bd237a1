//! TLS between nodes: rustls configurations for the agent API.
//!
//! A node that has not enrolled knows the cluster CA only by its pin, so
//! its first connection checks that the chain the control node sends ends
//! in a certificate whose key has that pin, and then verifies the server's
//! certificate against that CA as usual (name, validity, signature). The
//! token is sent only over a connection that passed. Once enrolled, a node
//! verifies against the CA certificate it stored (whose pin it checked)
//! and authenticates with its own certificate.

use std::sync::Arc;

use owui_bundle::cluster::ca::CaPin;
use owui_bundle::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain (leaf first) and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// From PEM: the leaf, then the CA, and the leaf's key.
    pub fn from_pem(what: &str, cert_pem: &str, ca_pem: &str, key_pem: &str) -> Result<Identity> {
        let mut chain = certs(what, cert_pem)?;
        chain.extend(certs(what, ca_pem)?);
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| Error::invalid(what, format!("private key: {e}")))?;
        Ok(Identity { chain, key })
    }
}

/// Every certificate in `pem`.
pub fn certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(what, format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(what, "holds no certificate"));
    }
    Ok(certs)
}

fn tls_err(what: &str) -> impl Fn(rustls::Error) -> Error + '_ {
    move |e| Error::invalid(what, e.to_string())
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(tls_err("cluster CA certificate"))?;
    Ok(Arc::new(roots))
}

/// Checks the server against the pinned CA, which it must send in its
/// chain.
#[derive(Debug)]
struct PinnedCa {
    pin: CaPin,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| CaPin::of_cert_der(c).is_ok_and(|p| p == self.pin))
            .ok_or_else(|| {
                let sent: Vec<String> = intermediates
                    .iter()
                    .filter_map(|c| CaPin::of_cert_der(c).ok().map(|p| p.to_string()))
                    .collect();
                rustls::Error::General(format!(
                    "the control node's CA is not the site's: the seed pins {}, the server sent {}",
                    self.pin,
                    if sent.is_empty() {
                        "no CA".to_string()
                    } else {
                        sent.join(", ")
                    }
                ))
            })?;
        let roots =
            roots(&ca.clone().into_owned()).map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(clock_hint)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate that is not valid yet or any more by this node's clock is
/// most often the clock's fault: say so with both times.
fn clock_hint(e: rustls::Error) -> rustls::Error {
    use rustls::CertificateError::{ExpiredContext, NotValidYetContext};
    let secs = |t: UnixTime| owui_bundle::cluster::token::utc(t.as_secs());
    match &e {
        rustls::Error::InvalidCertificate(NotValidYetContext { time, not_before }) => {
            rustls::Error::General(format!(
                "the control node's certificate is valid from {}, but this node's clock says {}: set the clock (chrony, or the firmware's) and run again",
                secs(*not_before),
                secs(*time)
            ))
        }
        rustls::Error::InvalidCertificate(ExpiredContext { time, not_after }) => {
            rustls::Error::General(format!(
                "the control node's certificate expired at {}, and this node's clock says {}: if the clock is wrong, set it and run again",
                secs(*not_after),
                secs(*time)
            ))
        }
        _ => e,
    }
}

/// A client that trusts only a server chaining to the CA with `pin`, and
/// presents no certificate (enrolment).
pub fn pinned_client(pin: &CaPin) -> Result<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(PinnedCa {
        pin: pin.clone(),
        provider: provider.clone(),
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("TLS client"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A client that trusts the cluster CA `ca_pem` and authenticates as
/// `identity` (an enrolled node).
pub fn mutual_client(ca_pem: &str, identity: Identity) -> Result<ClientConfig> {
    let ca = certs("cluster CA", ca_pem)?;
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("TLS client"))?
        .with_root_certificates(roots(&ca[0])?)
        .with_client_auth_cert(identity.chain, identity.key)
        .map_err(tls_err("node certificate"))
}

/// The agent API's server side: presents `identity` (its chain ends in
/// the CA, so a pinning client finds it) and asks every client for a
/// certificate from the CA, accepting none (enrolment is by token).
/// Certificates in `crls` (DER CRLs) are refused at the handshake.
pub fn api_server(
    ca_pem: &str,
    identity: Identity,
    crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig> {
    let ca = certs("cluster CA", ca_pem)?;
    let provider = provider();
    let clients = WebPkiClientVerifier::builder_with_provider(roots(&ca[0])?, provider.clone())
        .with_crls(crls)
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::invalid("client verifier", e.to_string()))?;
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err("TLS server"))?
        .with_client_cert_verifier(clients)
        .with_single_cert(identity.chain, identity.key)
        .map_err(tls_err("node certificate"))
}
