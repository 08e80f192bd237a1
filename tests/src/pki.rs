//! A test certificate authority made at test time with rcgen: a CA, and
//! server and client certificates it signs with chosen validity.

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>.key` (0600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir).expect("mkdir");
        fs::write(dir.join(format!("{stem}.pem")), &self.cert).expect("write cert");
        let key = dir.join(format!("{stem}.key"));
        fs::write(&key, &self.key).expect("write key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod key");
    }
}

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// Which side of a TLS connection a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
}

impl TestCa {
    /// A self-signed CA named `name`, valid for ten years from yesterday.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let pem = params.self_signed(&key).expect("self-sign CA").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name), valid from `from_days` to `to_days` days from
    /// now (negative: in the past). Give the end half a day past a whole
    /// number ("20.5") so that the whole days left read the same however
    /// long the test takes to look.
    pub fn issue(&self, names: &[&str], usage: Usage, from_days: f64, to_days: f64) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("leaf params");
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::seconds_f64(from_days * 86_400.0);
        params.not_after = now + Duration::seconds_f64(to_days * 86_400.0);
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}
