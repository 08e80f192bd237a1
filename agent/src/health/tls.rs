//! TLS health: nginx probed over HTTPS with its chain verified against the
//! cluster CA (presenting the node's client certificate where mutual TLS is
//! on), and the expiry of certificate files and of the certificate nginx
//! actually serves.
//!
//! The CA, client certificate and certificate files are read on every run,
//! so a renewed certificate counts from the next run without restarting the
//! agent. The checks have no timeout of their own: the engine bounds every
//! check.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use x509_parser::pem::Pem;

use super::outcome::{CheckResult, Observation};
use super::probes::{self, Expect};

/// A certificate file larger than this is not a certificate file.
const CERT_FILE_MAX: u64 = 1 << 20;

const DAY: i64 = 86_400;

/// Days of validity left below which a certificate needs attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Fewer days left than this: degraded.
    pub warn_days: u32,
    /// Fewer days left than this: failed.
    pub fail_days: u32,
}

/// The client certificate and key the probe presents (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentity {
    /// PEM certificate (chain) of this node.
    pub cert: PathBuf,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// An HTTPS endpoint whose chain must verify against `ca_file` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsProbe {
    pub url: String,
    /// The name verified in the server's certificate (and sent as SNI) when
    /// it differs from the URL's host, e.g. the site's name while the probe
    /// connects to `127.0.0.1`.
    pub server_name: Option<String>,
    /// PEM file with the CA certificate(s) trusted for this endpoint; the
    /// built-in web roots are never trusted.
    pub ca_file: PathBuf,
    pub client: Option<ClientIdentity>,
    pub expiry: Expiry,
}

/// What the checks need from one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub subject: String,
    /// Seconds since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
}

fn facts(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let validity = cert.validity();
    let subject = cert.subject().to_string();
    Ok(CertFacts {
        subject: if subject.is_empty() {
            "(empty subject)".into()
        } else {
            subject
        },
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        der: der.to_vec(),
    })
}

/// The certificates in `data`: PEM (every `CERTIFICATE` block; other blocks
/// such as a key are skipped) or a single DER certificate. `Err` when there
/// is none or one is malformed.
pub fn parse_certs(data: &[u8]) -> Result<Vec<CertFacts>, String> {
    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        return facts(data).map(|c| vec![c]).map_err(|e| {
            if data.is_empty() {
                "empty file, not a certificate".to_string()
            } else {
                format!("no PEM block and {e}")
            }
        });
    }
    let mut out = Vec::new();
    for (i, block) in Pem::iter_from_buffer(data).enumerate() {
        // Stop at the first bad block: the iterator does not move past it.
        let block = block.map_err(|e| format!("PEM block {}: {e}", i + 1))?;
        if block.label == "CERTIFICATE" || block.label == "X509 CERTIFICATE" {
            out.push(facts(&block.contents).map_err(|e| format!("PEM block {}: {e}", i + 1))?);
        }
    }
    if out.is_empty() {
        return Err("no CERTIFICATE block in it".into());
    }
    Ok(out)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut data = Vec::new();
    file.take(CERT_FILE_MAX + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if data.len() as u64 > CERT_FILE_MAX {
        return Err(format!(
            "{}: larger than {} KiB, not a certificate file",
            path.display(),
            CERT_FILE_MAX >> 10
        ));
    }
    Ok(data)
}

fn epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    };
    match t {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => format!("{secs} s after the epoch"),
    }
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

/// Expiry of one certificate at `now`: failed when expired or not yet
/// valid, else by the days it has left.
pub fn judge(cert: &CertFacts, expiry: Expiry, now: SystemTime) -> Observation {
    let now = epoch(now);
    let subject = &cert.subject;
    let until = rfc3339(cert.not_after);
    if cert.not_after <= now {
        let ago = (now - cert.not_after) / DAY;
        return Observation::Fail(format!("{subject} expired {until} ({} ago)", days(ago)));
    }
    if cert.not_before > now {
        return Observation::Fail(format!(
            "{subject} is not valid before {} (is the clock right?)",
            rfc3339(cert.not_before)
        ));
    }
    // Whole days left, rounded down: "0 days" is under a day.
    let left = (cert.not_after - now) / DAY;
    let detail = format!("{subject} expires {until} (in {})", days(left));
    if left < i64::from(expiry.fail_days) {
        Observation::Fail(detail)
    } else if left < i64::from(expiry.warn_days) {
        Observation::Warn(detail)
    } else {
        Observation::Ok(detail)
    }
}

/// How bad an observation is, to pick the worst of several.
fn rank(o: &Observation) -> u8 {
    match o {
        Observation::Ok(_) => 0,
        Observation::Warn(_) => 1,
        Observation::Fail(_) => 2,
    }
}

/// Expiry of the certificate file `path` (for a chain, the certificate that
/// expires first). A file that is missing, unreadable or holds no
/// certificate has failed: it is configured, so it should be there.
pub fn cert_file_at(path: &Path, expiry: Expiry, now: SystemTime) -> Observation {
    let data = match read_bounded(path) {
        Ok(d) => d,
        Err(e) => return Observation::Fail(e),
    };
    let certs = match parse_certs(&data) {
        Ok(c) => c,
        Err(e) => return Observation::Fail(format!("{}: {e}", path.display())),
    };
    let worst = certs
        .iter()
        .map(|c| judge(c, expiry, now))
        .zip(certs.iter())
        .max_by_key(|(o, c)| (rank(o), -c.not_after));
    let more = match certs.len() {
        1 => String::new(),
        n => format!(", first to expire of {n}"),
    };
    match worst {
        Some((Observation::Ok(d), _)) => Observation::Ok(format!("{d}{more}")),
        Some((Observation::Warn(d), _)) => {
            Observation::Warn(format!("{}: {d}{more}", path.display()))
        }
        Some((Observation::Fail(d), _)) => {
            Observation::Fail(format!("{}: {d}{more}", path.display()))
        }
        None => Observation::Fail(format!("{}: no certificate in it", path.display())),
    }
}

/// [`cert_file_at`] now, off the async workers (a file on a hung mount
/// blocks only a blocking-pool thread, and the engine's timeout still ends
/// the check).
pub async fn cert_file(path: &Path, expiry: Expiry) -> CheckResult {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || cert_file_at(&path, expiry, SystemTime::now()))
        .await
        .map_err(|e| format!("certificate check stopped: {e}"))
}

/// The client for one probe: trusts only the CA file's certificates,
/// presents the client identity, records the server's certificate, and
/// connects to the URL's address while verifying `server_name`.
async fn client(p: &HttpsProbe) -> Result<(reqwest::Client, String, String), String> {
    let ca_data = read_bounded(&p.ca_file).map_err(|e| format!("CA file: {e}"))?;
    let cas = parse_certs(&ca_data).map_err(|e| format!("CA file {}: {e}", p.ca_file.display()))?;
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .no_proxy();
    for ca in &cas {
        let cert = reqwest::Certificate::from_der(&ca.der)
            .map_err(|e| format!("CA file {}: {e}", p.ca_file.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    let ca_names = cas
        .iter()
        .map(|c| c.subject.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(id) = &p.client {
        let mut pem = read_bounded(&id.cert).map_err(|e| format!("client certificate: {e}"))?;
        pem.push(b'\n');
        pem.extend(read_bounded(&id.key).map_err(|e| format!("client key: {e}"))?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "client certificate {} with key {}: {}",
                id.cert.display(),
                id.key.display(),
                probes::root_cause(&e)
            )
        })?;
        builder = builder.identity(identity);
    }
    let mut url = reqwest::Url::parse(&p.url).map_err(|e| format!("bad URL {:?}: {e}", p.url))?;
    if url.scheme() != "https" {
        return Err(format!("{}: not an https:// URL", p.url));
    }
    if let Some(name) = &p.server_name {
        let port = url.port_or_known_default().unwrap_or(443);
        let Some(host) = url.host_str().map(str::to_string) else {
            return Err(format!("{}: no host", p.url));
        };
        // IPv6 hosts come in brackets.
        let addrs: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::from((ip, port))],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("resolving {host}: {e}"))?
                .collect(),
        };
        url.set_host(Some(name))
            .map_err(|e| format!("server name {name:?}: {e}"))?;
        builder = builder.resolve_to_addrs(name, &addrs);
    }
    let client = builder
        .build()
        .map_err(|e| format!("TLS client for {}: {}", p.url, probes::root_cause(&e)))?;
    Ok((client, url.to_string(), ca_names))
}

/// nginx over HTTPS: the chain verifies against the CA file, the answer is
/// 2xx, and the certificate it serves is not near its end.
///
/// - `Fail` when the connection or handshake fails (the detail says why:
///   an unknown issuer names the CA it was checked against), on a non-2xx
///   answer, or when the served certificate has fewer than `fail_days` left;
/// - `Warn` when it has fewer than `warn_days` left;
/// - `Err` when the probe cannot be set up (CA file missing or not a
///   certificate, client key unreadable, bad URL).
pub async fn https(p: &HttpsProbe) -> CheckResult {
    let (client, url, ca_names) = client(p).await?;
    let answer = match probes::get(&client, &url).await {
        Ok(a) => a,
        Err(Ok(Observation::Fail(detail))) => {
            return Ok(Observation::Fail(explain(p, &detail, &ca_names)))
        }
        Err(other) => return other,
    };
    let http = match probes::judge(&url, &answer, Expect::Success) {
        Observation::Ok(d) => d,
        Observation::Fail(d) => {
            // nginx names TLS-level refusals (no or a bad client
            // certificate) in the title of its error page.
            return Ok(Observation::Fail(match nginx_reason(&answer.body) {
                Some(why) => format!("{d}: nginx says {why:?}"),
                None => d,
            }));
        }
        other => return Ok(other),
    };
    let Some(der) = answer.peer_certificate else {
        return Ok(Observation::Ok(format!(
            "{http}; served certificate not seen"
        )));
    };
    let served = match facts(&der) {
        Ok(f) => f,
        Err(e) => return Ok(Observation::Fail(format!("{url}: served certificate: {e}"))),
    };
    Ok(match judge(&served, p.expiry, SystemTime::now()) {
        Observation::Ok(d) => Observation::Ok(format!("{http}; serves {d}")),
        Observation::Warn(d) => Observation::Warn(format!("{url}: serves {d}")),
        Observation::Fail(d) => Observation::Fail(format!("{url}: serves {d}")),
    })
}

/// The title of an nginx error page ("400 No required SSL certificate was
/// sent"), without the status code.
fn nginx_reason(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    let start = text.find("<title>")? + "<title>".len();
    let end = start + text[start..].find("</title>")?;
    let title = text[start..end].trim();
    let reason = title
        .split_once(' ')
        .filter(|(code, _)| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
        .map_or(title, |(_, rest)| rest);
    (!reason.is_empty()).then(|| reason.chars().take(200).collect())
}

/// Adds what an operator needs to a TLS verification failure.
fn explain(p: &HttpsProbe, detail: &str, ca_names: &str) -> String {
    if !detail.contains("invalid peer certificate") {
        return detail.to_string();
    }
    let mut out = format!(
        "{detail} (verified against {}: {ca_names})",
        p.ca_file.display()
    );
    if p.server_name.is_none() && detail.contains("not valid for name") {
        out.push_str("; set health.nginx_server_name to the name in nginx's certificate");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    const EXPIRY: Expiry = Expiry {
        warn_days: 30,
        fail_days: 7,
    };

    /// The "now" of the tests that judge expiry (2030-03-17), so that
    /// whole days come out exact however slow the machine is.
    const NOW: i64 = 1_900_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW as u64)
    }

    /// A self-signed certificate for `name`, valid from `from` to `to`
    /// days from [`NOW`]; returns (certificate PEM, key PEM).
    fn cert_at(name: &str, from: i64, to: i64) -> (String, String) {
        let at = |days: i64| time::OffsetDateTime::from_unix_timestamp(NOW + days * DAY).unwrap();
        make(name, at(from), at(to))
    }

    /// The same, from the real now (for the probe, which reads the clock).
    fn cert(name: &str, from: i64, to: i64) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        make(
            name,
            now + time::Duration::days(from),
            now + time::Duration::days(to),
        )
    }

    fn make(
        name: &str,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_before = not_before;
        params.not_after = not_after;
        (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn file_state(data: &[u8]) -> Observation {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("server.pem");
        std::fs::write(&p, data).unwrap();
        cert_file_at(&p, EXPIRY, now())
    }

    #[test]
    fn expiry_thresholds() {
        let (good, _) = cert_at("good.test", -1, 90);
        assert!(
            matches!(file_state(good.as_bytes()), Observation::Ok(ref d) if d.contains("CN=good.test") && d.contains("in 90 days")),
            "{:?}",
            file_state(good.as_bytes())
        );
        let (soon, _) = cert_at("soon.test", -1, 20);
        assert!(
            matches!(file_state(soon.as_bytes()), Observation::Warn(ref d) if d.contains("server.pem") && d.contains("in 20 days"))
        );
        let (very_soon, _) = cert_at("very-soon.test", -1, 3);
        assert!(
            matches!(file_state(very_soon.as_bytes()), Observation::Fail(ref d) if d.contains("in 3 days"))
        );
        let (expired, _) = cert_at("old.test", -30, -2);
        assert!(
            matches!(file_state(expired.as_bytes()), Observation::Fail(ref d) if d.contains("expired") && d.contains("2 days ago"))
        );
        // The edges: whole days left, compared with "fewer than".
        let facts = |days_left: i64| CertFacts {
            subject: "CN=edge".into(),
            not_before: NOW - DAY,
            not_after: NOW + days_left * DAY,
            der: Vec::new(),
        };
        let state = |days_left| rank(&judge(&facts(days_left), EXPIRY, now()));
        assert_eq!(
            [30, 29, 7, 6, 0].map(state),
            [0, 1, 1, 2, 2],
            "30 ok, 29 warn, 7 warn, 6 fail, expiring now fails"
        );
        let (future, _) = cert_at("future.test", 2, 90);
        assert!(
            matches!(file_state(future.as_bytes()), Observation::Fail(ref d) if d.contains("not valid before"))
        );
    }

    #[test]
    fn a_chain_reports_the_first_to_expire_and_keys_are_skipped() {
        let (long, key) = cert_at("long.test", -1, 400);
        let (short, _) = cert_at("short.test", -1, 10);
        let chain = format!("{key}{long}{short}");
        match file_state(chain.as_bytes()) {
            Observation::Warn(d) => {
                assert!(
                    d.contains("CN=short.test") && d.contains("first to expire of 2"),
                    "{d}"
                )
            }
            other => panic!("{other:?}"),
        }
        // DER is read too.
        let der = parse_certs(long.as_bytes()).unwrap().remove(0).der;
        assert!(matches!(file_state(&der), Observation::Ok(ref d) if d.contains("CN=long.test")));
    }

    #[test]
    fn bad_files_fail_naming_the_file() {
        let (_, key) = cert_at("k.test", -1, 90);
        for (data, says) in [
            (&b""[..], "empty file"),
            (b"hello, not a certificate\n", "no PEM block"),
            (key.as_bytes(), "no CERTIFICATE block"),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not an X.509 certificate",
            ),
            (b"-----BEGIN CERTIFICATE-----\n!!!\n", "PEM block 1"),
        ] {
            match file_state(data) {
                Observation::Fail(d) => {
                    assert!(d.contains("server.pem") && d.contains(says), "{d} / {says}")
                }
                other => panic!("{says}: {other:?}"),
            }
        }
        let missing = cert_file_at(Path::new("/nonexistent/ca.pem"), EXPIRY, SystemTime::now());
        assert!(matches!(missing, Observation::Fail(ref d) if d.contains("/nonexistent/ca.pem")));
    }

    #[test]
    fn nginx_error_pages_give_their_reason() {
        let page = b"<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n<body>";
        assert_eq!(
            nginx_reason(page).as_deref(),
            Some("No required SSL certificate was sent")
        );
        assert_eq!(nginx_reason(b"<title></title>"), None);
        assert_eq!(nginx_reason(b"<title>unterminated"), None);
        assert_eq!(nginx_reason(b"{\"status\": false}"), None);
        assert_eq!(
            nginx_reason("<title>é</title>".as_bytes()).as_deref(),
            Some("é")
        );
    }

    #[tokio::test]
    async fn a_probe_that_cannot_be_set_up_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let probe = |ca: &str, url: &str| HttpsProbe {
            url: url.into(),
            server_name: None,
            ca_file: dir.path().join(ca),
            client: None,
            expiry: EXPIRY,
        };
        let err = https(&probe("absent.pem", "https://127.0.0.1:1/"))
            .await
            .unwrap_err();
        assert!(
            err.contains("CA file") && err.contains("absent.pem"),
            "{err}"
        );
        std::fs::write(dir.path().join("junk.pem"), "junk").unwrap();
        let err = https(&probe("junk.pem", "https://127.0.0.1:1/"))
            .await
            .unwrap_err();
        assert!(err.contains("junk.pem"), "{err}");
        let (ca, key) = cert("ca.test", -1, 90);
        std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        let err = https(&probe("ca.pem", "http://127.0.0.1:1/"))
            .await
            .unwrap_err();
        assert!(err.contains("not an https"), "{err}");
        // A client key that is not one.
        std::fs::write(dir.path().join("client.pem"), &ca).unwrap();
        std::fs::write(dir.path().join("client.key"), "not a key").unwrap();
        let mut p = probe("ca.pem", "https://127.0.0.1:1/");
        p.client = Some(ClientIdentity {
            cert: dir.path().join("client.pem"),
            key: dir.path().join("client.key"),
        });
        let err = https(&p).await.unwrap_err();
        assert!(err.contains("client.key"), "{err}");
        // Nothing listening: the check ran and the service is down.
        std::fs::write(dir.path().join("client.key"), &key).unwrap();
        assert!(
            matches!(https(&p).await, Ok(Observation::Fail(ref d)) if d.contains("127.0.0.1:1"))
        );
    }
}
