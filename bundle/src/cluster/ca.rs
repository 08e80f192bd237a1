//! The cluster CA: made offline with the site (`owui-builder cluster
//! init`), carried only by control nodes' seeds, and the one issuer of the
//! certificates nodes speak mutual TLS with. A node that has not enrolled
//! yet knows the CA only by its pin: sha256 over the CA certificate's DER
//! SubjectPublicKeyInfo, so a re-issued CA certificate over the same key
//! keeps the pin (the rule kubeadm's discovery hash follows).
//!
//! A node certificate names the node (CN and DNS SAN), its role (OU) and
//! the site (O), so whoever checks it (the agent API, etcd by CN) reads
//! who is calling from the certificate alone.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::role::Role;
use crate::seed::NodeName;

/// How long the cluster CA lasts: the site's lifetime; node certificates
/// are what stays short.
const CA_DAYS: u64 = 10 * 365;
/// How far back a certificate's validity starts, for nodes whose clocks lag
/// the issuer's a little (beyond this, the clock-skew error names both).
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// A node certificate's default lifetime (renewed at two thirds of it).
pub const NODE_CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// The CA pin: `sha256:` and 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaPin([u8; 32]);

impl CaPin {
    /// The pin of the certificate `der` (any certificate: the caller
    /// decides it is meant to be the CA).
    pub fn of_cert_der(der: &[u8]) -> Result<CaPin> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::invalid("certificate", format!("not X.509 DER: {e}")))?;
        Ok(CaPin(
            Sha256::digest(cert.tbs_certificate.subject_pki.raw).into(),
        ))
    }
}

impl fmt::Display for CaPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl FromStr for CaPin {
    type Err = Error;

    fn from_str(text: &str) -> Result<CaPin> {
        let bad = || {
            Error::invalid(
                "CA pin",
                format!("{text:?} is not sha256: followed by 64 hex digits"),
            )
        };
        let hex = text.strip_prefix("sha256:").ok_or_else(bad)?;
        let mut pin = [0u8; 32];
        if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        hex::decode_to_slice(hex, &mut pin).map_err(|_| bad())?;
        Ok(CaPin(pin))
    }
}

crate::string_serde!(CaPin);

/// The cluster CA: its certificate and key, both PEM. The key is a secret:
/// files holding it are 0600 and it is never printed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<secret>")
            .finish()
    }
}

/// What a node asks to be certified as.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub site: String,
    pub node: NodeName,
    pub role: Role,
    /// Addresses put in the certificate (the node's cluster addresses).
    pub addresses: Vec<IpAddr>,
}

/// A certificate the CA issued: PEM, its serial (hex) and end of validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub cert_pem: String,
    pub serial: String,
    /// Seconds since the epoch.
    pub not_after: u64,
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::invalid(what, e.to_string())
}

fn to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

/// Seconds since the epoch (0 before it: a clock that far off fails the
/// validity checks anyway).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ClusterCa {
    /// A new CA for site `site` (ECDSA P-256), valid from `now`.
    pub fn generate(site: &str, now: SystemTime) -> Result<ClusterCa> {
        let key = KeyPair::generate().map_err(rcgen_err("cluster CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(rcgen_err("cluster CA certificate"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("owui cluster CA {site}"));
        params
            .distinguished_name
            .push(DnType::OrganizationName, site);
        // Signs node certificates only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = to_offset(now - BACKDATE);
        params.not_after = to_offset(now + Duration::from_secs(CA_DAYS * 24 * 3600));
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("cluster CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Checks that `cert_pem` and `key_pem` (read from `what`) are a CA
    /// certificate and its key.
    pub fn from_pem(what: &str, cert_pem: String, key_pem: String) -> Result<ClusterCa> {
        let ca = ClusterCa { cert_pem, key_pem };
        let key = ca.key(what)?;
        let der = ca.cert_der(what)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::invalid(what, format!("CA certificate: {e}")))?;
        if cert.tbs_certificate.subject_pki.raw
            != rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
        {
            return Err(Error::invalid(
                what,
                "the CA key is not the key of the CA certificate",
            ));
        }
        if !cert.is_ca() {
            return Err(Error::invalid(what, "the certificate is not a CA"));
        }
        Ok(ca)
    }

    fn key(&self, what: &str) -> Result<KeyPair> {
        KeyPair::from_pem(&self.key_pem).map_err(|e| Error::invalid(what, format!("CA key: {e}")))
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self, what: &str) -> Result<Vec<u8>> {
        pem_der(what, &self.cert_pem, "CERTIFICATE")
    }

    /// The pin nodes check the CA by.
    pub fn pin(&self) -> Result<CaPin> {
        CaPin::of_cert_der(&self.cert_der("cluster CA")?)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        Issuer::from_ca_cert_pem(&self.cert_pem, self.key("cluster CA")?)
            .map_err(rcgen_err("cluster CA"))
    }

    /// Certifies the key of `csr_pem` (whose signature proves the caller
    /// holds it) as `who`, valid for `lifetime` from `now`. Names in the CSR
    /// are ignored: only `who` reaches the certificate.
    pub fn issue_for_csr(
        &self,
        csr_pem: &str,
        who: &NodeIdentity,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<Issued> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(rcgen_err("certificate signing request"))?;
        let params = node_params(who, now, lifetime)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(rcgen_err("node certificate"))?;
        Ok(issued(&params, cert.pem(), now + lifetime))
    }

    /// A key and certificate for `who`, both made here: for the control
    /// nodes, whose seeds carry the CA, and for tests.
    pub fn issue_with_key(
        &self,
        who: &NodeIdentity,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<(Issued, String)> {
        let key = KeyPair::generate().map_err(rcgen_err("node key"))?;
        let params = node_params(who, now, lifetime)?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(rcgen_err("node certificate"))?;
        Ok((
            issued(&params, cert.pem(), now + lifetime),
            key.serialize_pem(),
        ))
    }
}

/// How long a CRL is good for: the control nodes write a new one whenever
/// a node is removed and at least this often.
pub const CRL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

impl ClusterCa {
    /// A CRL (PEM) listing `serials` (hex, as [`Issued::serial`]), number
    /// `number` (increasing with every CRL written), made at `now`.
    pub fn crl(&self, serials: &[String], number: u64, now: SystemTime) -> Result<String> {
        let revoked_certs = serials
            .iter()
            .map(|hex| {
                let bytes = hex::decode(hex)
                    .map_err(|_| Error::invalid("revoked serial", format!("{hex:?} is not hex")))?;
                Ok(rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: to_offset(now),
                    reason_code: Some(rcgen::RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect::<Result<_>>()?;
        let params = rcgen::CertificateRevocationListParams {
            this_update: to_offset(now - BACKDATE),
            next_update: to_offset(now + CRL_LIFETIME),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer()?)
            .and_then(|crl| crl.pem())
            .map_err(rcgen_err("certificate revocation list"))
    }
}

/// A new key and a CSR for it (PEM each: key, request); the node keeps the
/// key and sends the request. The CSR names the node only for logs: the CA
/// writes the names the join token was bound to.
pub fn key_and_csr(node: &NodeName) -> Result<(String, String)> {
    let key = KeyPair::generate().map_err(rcgen_err("node key"))?;
    let mut params =
        CertificateParams::new(vec![node.to_string()]).map_err(rcgen_err("node CSR"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, node.as_str());
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(rcgen_err("node CSR"))?;
    Ok((key.serialize_pem(), csr))
}

fn issued(params: &CertificateParams, cert_pem: String, end: SystemTime) -> Issued {
    Issued {
        cert_pem,
        serial: params
            .serial_number
            .as_ref()
            .map(|s| hex::encode(s.to_bytes()))
            .unwrap_or_default(),
        not_after: unix_secs(end),
    }
}

fn random_serial() -> SerialNumber {
    // 126 random bits (CA/B BR 7.1 asks for 64): the top bit clear keeps
    // the DER INTEGER positive and the next one set keeps its first byte
    // non-zero, so the serial's bytes are exactly what DER writes and what
    // readers (CRLs, x509 parsers) give back.
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn node_params(
    who: &NodeIdentity,
    now: SystemTime,
    lifetime: Duration,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(vec![who.node.to_string()])
        .map_err(rcgen_err("node certificate"))?;
    params
        .subject_alt_names
        .extend(who.addresses.iter().map(|a| SanType::IpAddress(*a)));
    params
        .distinguished_name
        .push(DnType::CommonName, who.node.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, who.role.as_str());
    params
        .distinguished_name
        .push(DnType::OrganizationName, who.site.as_str());
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = to_offset(now - BACKDATE);
    params.not_after = to_offset(now + lifetime);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The DER inside the first `label` PEM block of `pem`.
pub fn pem_der(what: &str, pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| Error::invalid(what, format!("no {begin} block")))?;
    let body = &pem[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or_else(|| Error::invalid(what, format!("no {end} line")))?;
    let b64: String = body[..stop].split_whitespace().collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Error::invalid(what, format!("{label} block is not base64: {e}")))
}

/// Who a node certificate names, read back from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedNode {
    pub site: String,
    pub node: NodeName,
    pub role: Role,
    pub serial: String,
    pub not_before: u64,
    pub not_after: u64,
}

/// Reads the node, role and site a certificate (DER) names; errors when it
/// is not a node certificate of ours.
pub fn certified_node(der: &[u8]) -> Result<CertifiedNode> {
    let what = "node certificate";
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::invalid(what, format!("not X.509 DER: {e}")))?;
    let subject = cert.subject();
    let one = |found: Option<&x509_parser::x509::AttributeTypeAndValue>, field: &str| {
        found
            .and_then(|a| a.as_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Error::invalid(what, format!("names no {field}")))
    };
    let node: NodeName = one(subject.iter_common_name().next(), "node (CN)")?.parse()?;
    let role = crate::seed::parse_role(&one(
        subject.iter_organizational_unit().next(),
        "role (OU)",
    )?)?;
    let site = one(subject.iter_organization().next(), "site (O)")?;
    let validity = cert.validity();
    Ok(CertifiedNode {
        site,
        node,
        role,
        serial: hex::encode(cert.raw_serial()),
        not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
        not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(0),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn who(node: &str, role: Role) -> NodeIdentity {
        NodeIdentity {
            site: "rome".into(),
            node: node.parse().unwrap(),
            role,
            addresses: vec!["198.51.100.7".parse().unwrap()],
        }
    }

    #[test]
    fn a_csr_is_certified_with_the_names_given_not_its_own() {
        let now = SystemTime::now();
        let ca = ClusterCa::generate("rome", now).unwrap();
        let (_key, csr) = key_and_csr(&"intruder".parse().unwrap()).unwrap();
        let issued = ca
            .issue_for_csr(&csr, &who("gpu-1", Role::Gpu), now, NODE_CERT_LIFETIME)
            .unwrap();
        let der = pem_der("cert", &issued.cert_pem, "CERTIFICATE").unwrap();
        let named = certified_node(&der).unwrap();
        assert_eq!(named.node.as_str(), "gpu-1");
        assert_eq!(named.role, Role::Gpu);
        assert_eq!(named.site, "rome");
        assert_eq!(named.serial, issued.serial);
        assert_eq!(named.not_after, issued.not_after);
        assert!(named.not_before + BACKDATE.as_secs() <= unix_secs(now) + 1);
    }

    #[test]
    fn a_crl_lists_the_serials_given() {
        let now = SystemTime::now();
        let ca = ClusterCa::generate("rome", now).unwrap();
        let (issued, _) = ca
            .issue_with_key(&who("app-1", Role::App), now, NODE_CERT_LIFETIME)
            .unwrap();
        let pem = ca
            .crl(std::slice::from_ref(&issued.serial), 7, now)
            .unwrap();
        let der = pem_der("crl", &pem, "X509 CRL").unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        let listed: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(listed, [issued.serial]);
        assert!(ca.crl(&["zz".into()], 8, now).is_err());
    }

    #[test]
    fn the_pin_is_the_keys_and_parses_back() {
        let now = SystemTime::now();
        let ca = ClusterCa::generate("rome", now).unwrap();
        let pin = ca.pin().unwrap();
        assert_eq!(pin.to_string().len(), 7 + 64);
        assert_eq!(pin.to_string().parse::<CaPin>().unwrap(), pin);
        let other = ClusterCa::generate("rome", now).unwrap();
        assert_ne!(other.pin().unwrap(), pin);
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "G".repeat(64)),
        ] {
            assert_eq!(bad.parse::<CaPin>().unwrap_err().exit_code(), 3);
        }
    }

    #[test]
    fn a_key_that_is_not_the_cas_is_refused() {
        let now = SystemTime::now();
        let a = ClusterCa::generate("rome", now).unwrap();
        let b = ClusterCa::generate("rome", now).unwrap();
        let err = ClusterCa::from_pem("site/ca", a.cert_pem.clone(), b.key_pem).unwrap_err();
        assert!(err.to_string().contains("not the key"), "{err}");
        assert!(ClusterCa::from_pem("site/ca", a.cert_pem.clone(), a.key_pem.clone()).is_ok());
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
