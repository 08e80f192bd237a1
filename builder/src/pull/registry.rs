//! One registry, spoken to through `oci-client` (the distribution API:
//! bearer-token and basic auth, manifests, blobs). The crate hashes every
//! blob as it streams and fails on a digest mismatch; we write what it
//! streams into a cache temp file capped at the declared size, and only a
//! blob that checked out is renamed into the cache.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, LayerDescriptor,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use owui_bundle::error::IoContext;
use owui_bundle::oci::{ImageReference, Listed};
use owui_bundle::{Error, Result, Sha256Digest};
use tokio::io::{AsyncWrite, BufWriter};

use super::auth::{self, Credentials};
use super::cache::BlobCache;
use super::PullOptions;

/// The media types we ask for: OCI and Docker manifests and indexes (a
/// Docker one is refused later with a hint, rather than a 404 now).
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Blobs fetched at once from one registry.
const PARALLEL_BLOBS: usize = 4;
/// Blob writes are gathered into this much before they reach the file.
const WRITE_BUFFER: usize = 1 << 20;

pub struct Registry {
    runtime: tokio::runtime::Runtime,
    client: Client,
    auth: RegistryAuth,
    credentials: Option<Credentials>,
    credentials_file: Option<PathBuf>,
    /// The reference as written, for errors.
    written: String,
    /// `host[:port]` as the reference names it (docker.io for none).
    host: String,
    /// Where requests go instead of `host`, if a mirror is configured.
    mirror: Option<String>,
    repository: String,
    timeout: Duration,
}

impl Registry {
    /// A client for the registry `reference` names: its credentials and
    /// certificate authorities, the timeouts; nothing is sent yet.
    pub fn connect(reference: &ImageReference, opts: &PullOptions) -> Result<Registry> {
        // reqwest's rustls needs a process-wide crypto provider; a second
        // install (one per image) finds it there already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let full = reference.repository();
        let (host, repository) = full
            .split_once('/')
            .map(|(h, r)| (h.to_string(), r.to_string()))
            .ok_or_else(|| Error::invalid(format!("OCI reference {reference}"), "no registry"))?;
        let mirror = opts
            .mirrors
            .iter()
            .find(|(from, _)| *from == host)
            .map(|(_, to)| to.clone());
        // The host spoken to: its credentials, its certificates.
        let peer = mirror.as_deref().unwrap_or(&host);
        let credentials_file = auth::config_path(opts.registry_config.as_deref());
        let credentials = match &credentials_file {
            Some(file) if file.exists() || opts.registry_config.is_some() => {
                auth::lookup(file, peer)?
            }
            _ => None,
        };
        let auth = match &credentials {
            Some(c) => RegistryAuth::Basic(c.user.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let config = ClientConfig {
            protocol: ClientProtocol::Https,
            extra_root_certificates: certificates(opts, peer)?,
            read_timeout: Some(opts.timeout),
            connect_timeout: Some(opts.timeout),
            max_concurrent_download: PARALLEL_BLOBS,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::invalid(format!("registry {host}"), chain(&e)))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::internal("starting the async runtime", e.to_string()))?;
        Ok(Registry {
            runtime,
            client,
            auth,
            credentials,
            credentials_file,
            written: reference.to_string(),
            host,
            mirror,
            repository,
            timeout: opts.timeout,
        })
    }

    /// The mirror requests go to, if any.
    pub fn mirror(&self) -> Option<&str> {
        self.mirror.as_deref()
    }

    fn reference(&self, tag: Option<&str>, digest: Option<&Sha256Digest>) -> Reference {
        let (registry, repository) = (self.host.clone(), self.repository.clone());
        let mut reference = match (digest, tag) {
            (Some(d), _) => Reference::with_digest(registry, repository, d.to_string()),
            (None, Some(t)) => Reference::with_tag(registry, repository, t.to_string()),
            (None, None) => Reference::with_tag(registry, repository, "latest".to_string()),
        };
        if let Some(m) = &self.mirror {
            reference.set_mirror_registry(m.clone());
        }
        reference
    }

    /// Fetches a manifest or index by digest (checked) or by tag; returns
    /// its bytes and digest.
    pub fn manifest(
        &self,
        tag: Option<&str>,
        digest: Option<&Sha256Digest>,
    ) -> Result<(Vec<u8>, Sha256Digest)> {
        let reference = self.reference(tag, digest);
        let (data, _) = self
            .runtime
            .block_on(
                self.client
                    .pull_manifest_raw(&reference, &self.auth, ACCEPT),
            )
            .map_err(|e| {
                let asked = match digest {
                    Some(d) => Asked::Manifest(d),
                    None => Asked::Tag(tag.unwrap_or("latest")),
                };
                self.error(&asked, e)
            })?;
        let actual = Sha256Digest::of(&data);
        if let Some(expected) = digest.filter(|d| **d != actual) {
            return Err(Error::untrusted(
                self.what(&format!("manifest {expected}")),
                format!("the registry served bytes hashing to {actual}"),
            ));
        }
        Ok((data.to_vec(), actual))
    }

    /// Fetches `blobs` into the cache, a few at a time; returns the bytes
    /// fetched. The first failure stops the pull; blobs that completed stay
    /// cached (each was checked), the others leave nothing.
    pub fn fetch_blobs(&self, blobs: &[Listed], cache: &BlobCache) -> Result<u64> {
        use futures_util::{stream, StreamExt, TryStreamExt};
        let reference = self.reference(None, None);
        self.runtime.block_on(async {
            self.client
                .store_auth_if_needed(reference.resolve_registry(), &self.auth)
                .await;
            stream::iter(blobs.iter().map(|b| self.fetch_blob(&reference, b, cache)))
                .buffer_unordered(PARALLEL_BLOBS)
                .try_fold(0, |total, n| async move { Ok(total + n) })
                .await
        })
    }

    async fn fetch_blob(
        &self,
        reference: &Reference,
        blob: &Listed,
        cache: &BlobCache,
    ) -> Result<u64> {
        let tmp = cache.temp()?;
        let file = tmp.reopen().at("opening", tmp.path())?;
        let mut out = Capped {
            inner: BufWriter::with_capacity(WRITE_BUFFER, tokio::fs::File::from_std(file)),
            left: blob.size,
        };
        let digest = blob.digest.to_string();
        let layer = LayerDescriptor {
            digest: &digest,
            urls: &None,
        };
        self.client
            .pull_blob(reference, &layer, &mut out)
            .await
            .map_err(|e| match e {
                OciDistributionError::DigestError(d) => Error::untrusted(
                    self.what(&format!("blob {}", blob.digest)),
                    format!("does not match its digest ({d}); nothing was kept"),
                ),
                OciDistributionError::IoError(e) if e.kind() == io::ErrorKind::InvalidData => {
                    Error::untrusted(
                        self.what(&format!("blob {}", blob.digest)),
                        format!("{e}; nothing was kept"),
                    )
                }
                e => self.error(&Asked::Blob(&blob.digest), e),
            })?;
        if out.left != 0 {
            return Err(Error::untrusted(
                self.what(&format!("blob {}", blob.digest)),
                format!(
                    "{} bytes where the manifest declares {}; nothing was kept",
                    blob.size - out.left,
                    blob.size
                ),
            ));
        }
        cache.commit(tmp, &blob.digest)?;
        Ok(blob.size)
    }

    /// `REFERENCE (PART) from registry HOST`, for errors.
    fn what(&self, part: &str) -> String {
        match &self.mirror {
            Some(m) => format!("{} ({part}) from mirror {m} of {}", self.written, self.host),
            None => format!("{} ({part}) from registry {}", self.written, self.host),
        }
    }

    /// Our error for a failed request, naming the registry and reference.
    fn error(&self, asked: &Asked, e: OciDistributionError) -> Error {
        let what = self.what(&asked.to_string());
        let denied = |codes: &[&OciErrorCode]| {
            codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => self.credentials_refused(&what),
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => self.credentials_refused(&what),
            OciDistributionError::RegistryError { ref envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| matches!(c, OciErrorCode::NameUnknown)) {
                    Error::invalid(
                        what,
                        format!("the registry has no repository {}", self.repository),
                    )
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    Error::invalid(what, asked.missing(&self.repository))
                } else if denied(&codes) {
                    self.credentials_refused(&what)
                } else {
                    unreachable_error(&what, &chain(&e))
                }
            }
            OciDistributionError::ServerError { code: 404, .. }
            | OciDistributionError::ImageManifestNotFoundError(_) => {
                Error::invalid(what, asked.missing(&self.repository))
            }
            OciDistributionError::RequestError(ref r) if r.is_timeout() => unreachable_error(
                &what,
                &format!(
                    "no answer within {} s ({})",
                    self.timeout.as_secs(),
                    chain(&e)
                ),
            ),
            e => unreachable_error(&what, &chain(&e)),
        }
    }

    fn credentials_refused(&self, what: &str) -> Error {
        let peer = self.mirror.as_deref().unwrap_or(&self.host);
        let detail = match (&self.credentials, &self.credentials_file) {
            (Some(c), _) => format!(
                "registry {} refused the credentials of user {:?} from {}",
                peer,
                c.user,
                c.file.display()
            ),
            (None, Some(f)) => format!(
                "registry {} asks for credentials and {} has none for it",
                peer,
                f.display()
            ),
            (None, None) => format!(
                "registry {} asks for credentials; name a config.json with \
                 --registry-config or $REGISTRY_AUTH_FILE",
                peer
            ),
        };
        Error::untrusted(what, detail)
    }
}

/// What a request asked the registry for.
enum Asked<'a> {
    Manifest(&'a Sha256Digest),
    Tag(&'a str),
    Blob(&'a Sha256Digest),
}

impl Asked<'_> {
    /// Why the registry has it not: the digest (or tag) named, not a bare 404.
    fn missing(&self, repository: &str) -> String {
        match self {
            Asked::Manifest(d) => format!(
                "the digest is not there: repository {repository} has no manifest or index {d} \
                 (a digest from another registry or repository, or one deleted since)"
            ),
            Asked::Tag(t) => format!("repository {repository} has no tag {t:?}"),
            Asked::Blob(d) => format!(
                "repository {repository} has no blob {d}, though the image's manifest lists it"
            ),
        }
    }
}

impl std::fmt::Display for Asked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Asked::Manifest(d) => write!(f, "manifest {d}"),
            Asked::Tag(t) => write!(f, "manifest :{t}"),
            Asked::Blob(d) => write!(f, "blob {d}"),
        }
    }
}

/// A network failure: exit 1, like an I/O error, naming the reference.
fn unreachable_error(what: &str, detail: &str) -> Error {
    Error::Io {
        action: "pulling",
        path: PathBuf::from(what),
        source: io::Error::other(detail.to_string()),
    }
}

/// An error with its causes (reqwest hides the interesting part there).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Certificate authorities for `host`: every `*.crt` in
/// `CERTS/<host[:port]>/`, the layout podman and skopeo read from
/// /etc/containers/certs.d; the system's authorities are trusted as well.
fn certificates(opts: &PullOptions, host: &str) -> Result<Vec<Certificate>> {
    let dir = opts.certs_dir.join(host);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).at("reading", &dir),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.at("reading", &dir)?.path();
        if path.extension().is_some_and(|e| e == "crt") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            Ok(Certificate {
                encoding: CertificateEncoding::Pem,
                data: std::fs::read(&p).at("reading", &p)?,
            })
        })
        .collect()
}

/// Passes writes on until `left` bytes are used up, then fails: a registry
/// cannot fill the disk by sending more than the manifest declares.
struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Capped<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the registry sent more bytes than the manifest declares",
            )));
        }
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.left -= n as u64;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
