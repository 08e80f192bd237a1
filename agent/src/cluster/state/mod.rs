//! The agent as an etcd client: the cluster's shared state, over mutual TLS
//! with this node's certificate. Key layout (docs/cluster.md, "Cluster
//! state in etcd"), all under [`PREFIX`]:
//!
//! - `nodes/<node>`: the node's record (JSON), under the node's lease, so a
//!   dead node's record ages out ([`Registration`]);
//! - `tokens/<id>`: a used join token, written exactly once
//!   ([`ClusterState::claim_token`]);
//! - `revoked/<serial>`: a revoked certificate (JSON: node, when);
//! - `config/<name>`: shared configuration, written with a revision check.
//!
//! Fencing (Jepsen's etcd advice: a lock alone does not give mutual
//! exclusion): every write that could let an older writer overwrite a newer
//! one is a transaction comparing the key's revision with the one the writer
//! last saw. A conditional write that fails returns the key's current value in
//! the same transaction, so a write retried on another member after a lost
//! answer recognises itself instead of reporting a conflict.
//!
//! Each endpoint has its own connection; a request goes to the member that
//! answered last and moves on to the next when a member cannot be reached,
//! so one member down costs one failed attempt, and an error names every
//! member tried and why it failed.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    AlarmAction, AlarmType, Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions,
    Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use owui_bundle::role::Role;
use owui_bundle::seed::NodeName;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use super::etcd_config::TlsFiles;

mod error;
mod registration;

use crate::health::engine::State;
use error::{no_space, reason, unreachable};
pub use error::{EndpointFailure, Result, StateError};
use registration::keep_alive;
pub use registration::Registration;

/// Every key the appliance writes starts with this; `v1` changes only with
/// an incompatible layout, so two layouts can live side by side during an
/// upgrade.
pub const PREFIX: &str = "/owui/v1/";

/// How long a node's record outlives its last keep-alive. 15 s: a dead node
/// leaves `status` within 15 s, while a live one renews every 5 s (a third
/// of the TTL) and so rides out two lost renewals or a leader election
/// (about 1 s here) without its record flickering.
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// Limits for one request to one member; the next member is tried after.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest certificate or key file read (a PEM chain is a few KiB).
const PEM_MAX: u64 = 64 * 1024;

/// A node's health in its record: the overall state and the checks that
/// are not healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSummary {
    pub state: State,
    pub failing: Vec<String>,
}

/// What a node publishes about itself (`nodes/<node>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: NodeName,
    pub role: Role,
    pub addresses: Vec<IpAddr>,
    pub agent_version: String,
    pub health: HealthSummary,
    /// When the node wrote this record (RFC 3339, UTC).
    pub last_seen: String,
}

/// The record as stored: with the registration that wrote it, so a record
/// written by a newer start of the same node is never taken for our own.
#[derive(Serialize)]
struct StoredRecord<'a> {
    #[serde(flatten)]
    record: &'a NodeRecord,
    incarnation: &'a str,
}

/// A value with the revision it was last written at, to write it back with
/// [`Expect::Revision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Vec<u8>,
    pub revision: i64,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist (create).
    Absent,
    /// The key was last written at this revision (update what was read).
    Revision(i64),
}

/// The outcome of [`ClusterState::claim_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenClaim {
    /// This call used the token: go on with the enrolment.
    Claimed,
    /// The token was used before, to enrol `node` through control node
    /// `by` at `at`: refuse.
    AlreadyUsed {
        node: String,
        by: String,
        at: String,
    },
}

#[derive(Serialize, Deserialize)]
struct ClaimRecord {
    /// The node the token enrolled.
    node: String,
    /// The control node whose agent accepted it.
    by: String,
    at: String,
    /// Tells this claim from another one by the same node.
    nonce: String,
}

#[derive(Serialize, Deserialize)]
struct RevokedRecord {
    node: String,
    at: String,
}

struct Member {
    endpoint: String,
    client: Client,
}

struct Members {
    members: Vec<Member>,
    /// The member that answered last: tried first.
    current: AtomicUsize,
    /// This node, for the records it writes.
    node: NodeName,
}

/// A connection to the site's etcd.
#[derive(Clone)]
pub struct ClusterState {
    inner: Arc<Members>,
}

fn node_key(node: &str) -> String {
    format!("{PREFIX}nodes/{node}")
}

fn token_key(id: &str) -> String {
    format!("{PREFIX}tokens/{id}")
}

fn revoked_key(serial: &str) -> String {
    format!("{PREFIX}revoked/{serial}")
}

fn issued_key(node: &str, serial: &str) -> String {
    format!("{PREFIX}issued/{node}/{serial}")
}

fn config_key(name: &str) -> String {
    format!("{PREFIX}config/{name}")
}

/// A key segment: 1-128 characters `A-Z a-z 0-9 . _ -`, not starting with
/// a dot (no `.` or `..`), so no id can reach another key.
fn check_segment(what: &str, text: &str) -> Result<()> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && !text.starts_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid {
            what: format!("{what} {text:?}"),
            detail: "must be 1-128 characters A-Z a-z 0-9 . _ - not starting with '.'".into(),
        })
    }
}

/// A certificate serial as written in revocation keys: lower-case hex, no
/// separators, at most 40 digits (RFC 5280 allows 20 octets).
fn check_serial(serial: &str) -> Result<()> {
    let ok = !serial.is_empty()
        && serial.len() <= 40
        && serial
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid {
            what: format!("certificate serial {serial:?}"),
            detail: "must be 1-40 lower-case hex digits without separators".into(),
        })
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn read_pem(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let tls_error = |detail: String| StateError::Tls {
        path: path.display().to_string(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| tls_error(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(PEM_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| tls_error(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > PEM_MAX {
        return Err(tls_error(format!("larger than {PEM_MAX} bytes")));
    }
    if !bytes.starts_with(b"-----BEGIN ") {
        return Err(tls_error("is not PEM (no \"-----BEGIN\" line)".into()));
    }
    Ok(bytes)
}

impl ClusterState {
    /// Connects to `endpoints` (`https://ADDRESS:2379`) with the cluster CA
    /// and this node's certificate and key, and checks that at least one
    /// member answers. Fails with [`StateError::Unreachable`] naming every
    /// endpoint when none does.
    pub async fn connect(endpoints: &[String], tls: &TlsFiles, node: &NodeName) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(StateError::Invalid {
                what: "etcd endpoints".into(),
                detail: "none given".into(),
            });
        }
        let ca = Certificate::from_pem(read_pem(&tls.ca)?);
        let identity = Identity::from_pem(read_pem(&tls.cert)?, read_pem(&tls.key)?);
        let tls_options = TlsOptions::new().ca_certificate(ca).identity(identity);
        let mut members = Vec::new();
        for endpoint in endpoints {
            let Some(host) = endpoint.strip_prefix("https://") else {
                return Err(StateError::Invalid {
                    what: format!("etcd endpoint {endpoint:?}"),
                    detail: "must be an https:// URL (etcd is reached over mutual TLS only)".into(),
                });
            };
            // The local member on loopback: its certificate names this node
            // (and its cluster address, not 127.0.0.1), so check it for
            // this node's name.
            let tls_options = if host.starts_with("127.0.0.1:") || host.starts_with("[::1]:") {
                tls_options.clone().domain_name(node.as_str())
            } else {
                tls_options.clone()
            };
            let options = ConnectOptions::new()
                .with_tls(tls_options)
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_timeout(REQUEST_TIMEOUT)
                // A member cut off from the majority answers "no leader" at
                // once instead of waiting: the next member is tried.
                .with_require_leader(true);
            // Connections are made lazily, on the first request.
            let client = Client::connect([endpoint], Some(options))
                .await
                .map_err(|e| StateError::Invalid {
                    what: format!("etcd endpoint {endpoint:?}"),
                    detail: reason(&e),
                })?;
            members.push(Member {
                endpoint: endpoint.clone(),
                client,
            });
        }
        let state = ClusterState {
            inner: Arc::new(Members {
                members,
                current: AtomicUsize::new(0),
                node: node.clone(),
            }),
        };
        let probes = state.probe().await;
        if probes.iter().all(|p| p.is_err()) {
            return Err(StateError::Unreachable(
                probes.into_iter().filter_map(|p| p.err()).collect(),
            ));
        }
        if let Some(first) = probes.iter().position(|p| p.is_ok()) {
            state.inner.current.store(first, Ordering::Relaxed);
        }
        Ok(state)
    }

    /// Asks every member for its status, all at once: which members answer
    /// (`Ok(endpoint)`) and which do not, with the reason (for `status`).
    pub async fn probe(&self) -> Vec<Result<String, EndpointFailure>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, member) in self.inner.members.iter().enumerate() {
            let mut client = member.client.clone();
            let endpoint = member.endpoint.clone();
            tasks.spawn(async move {
                let answer = match client.status().await {
                    Ok(_) => Ok(endpoint),
                    Err(e) => Err(EndpointFailure {
                        endpoint,
                        reason: reason(&e),
                    }),
                };
                (i, answer)
            });
        }
        let mut answers: Vec<Option<Result<String, EndpointFailure>>> =
            vec![None; self.inner.members.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, answer)) = joined {
                answers[i] = Some(answer);
            }
        }
        answers
            .into_iter()
            .zip(&self.inner.members)
            .map(|(answer, member)| {
                answer.unwrap_or_else(|| {
                    Err(EndpointFailure {
                        endpoint: member.endpoint.clone(),
                        reason: "the probe task failed".into(),
                    })
                })
            })
            .collect()
    }

    /// Runs `request` on the member that answered last, then on each other
    /// member while members cannot be reached.
    async fn request<T, F, Fut>(&self, action: &'static str, request: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.inner.request(action, request).await
    }

    async fn txn(&self, action: &'static str, txn: Txn) -> Result<TxnResponse> {
        self.request(action, |mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    /// Raises [`StateError::NoSpace`] when a member has the NOSPACE alarm
    /// raised, even while nothing is being written (for `status`).
    pub async fn check_alarms(&self) -> Result<()> {
        let answer = self
            .request("reading alarms", |mut client| async move {
                client.alarm(AlarmAction::Get, AlarmType::None, None).await
            })
            .await?;
        let members: Vec<String> = answer
            .alarms()
            .iter()
            .filter(|a| a.alarm() == AlarmType::Nospace)
            .map(|a| format!("{:x}", a.member_id()))
            .collect();
        if members.is_empty() {
            Ok(())
        } else {
            Err(StateError::NoSpace(Some(format!(
                "raised by member {}",
                members.join(", ")
            ))))
        }
    }

    /// Publishes this node's record under a new lease of `ttl` and keeps the
    /// lease alive from a background task until the [`Registration`] is
    /// dropped (the record then ages out after `ttl`, as when the node
    /// dies) or [`Registration::leave`] removes it at once. A newer start of
    /// the node overwrites the record unconditionally: it is the newest
    /// writer, and the older one's next [`Registration::publish`] fails.
    pub async fn register(&self, record: &NodeRecord, ttl: Duration) -> Result<Registration> {
        self.check_own(record)?;
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let lease = self
            .request("granting a lease", |mut client| async move {
                client.lease_grant(seconds, None).await
            })
            .await?
            .id();
        let incarnation = random_hex();
        let key = node_key(&record.node);
        let value = stored_record(record, &incarnation)?;
        // A put inside a transaction answers with the revision it wrote at.
        let txn = Txn::new().and_then([TxnOp::put(
            key.clone(),
            value,
            Some(PutOptions::new().with_lease(lease)),
        )]);
        let answer = self.txn("writing the node record", txn).await?;
        let revision = answer.header().map(|h| h.revision()).unwrap_or(0);
        let expired = Arc::new(AtomicBool::new(false));
        let keep_alive = tokio::spawn(keep_alive(
            self.inner.clone(),
            lease,
            ttl / 3,
            expired.clone(),
        ));
        Ok(Registration {
            state: self.clone(),
            key,
            node: record.node.to_string(),
            lease,
            revision,
            incarnation,
            expired,
            keep_alive,
        })
    }

    /// A node writes only its own record: its certificate names it.
    fn check_own(&self, record: &NodeRecord) -> Result<()> {
        if record.node == self.inner.node {
            Ok(())
        } else {
            Err(StateError::Invalid {
                what: format!("node record for {}", record.node),
                detail: format!("node {} writes only its own record", self.inner.node),
            })
        }
    }

    /// Every live node's record, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let prefix = node_key("");
        let answer = self
            .request("listing nodes", |mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
        let mut nodes = Vec::new();
        for kv in answer.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let record: NodeRecord =
                serde_json::from_slice(kv.value()).map_err(|e| StateError::Malformed {
                    key: key.clone(),
                    detail: e.to_string(),
                })?;
            if key != node_key(&record.node) {
                return Err(StateError::Malformed {
                    key,
                    detail: format!("holds the record of node {}", record.node),
                });
            }
            nodes.push(record);
        }
        Ok(nodes)
    }

    /// Uses join token `id` to enrol `node`: succeeds
    /// ([`TokenClaim::Claimed`]) for exactly one call across all clients,
    /// ever. One transaction: create the key only if it was never created
    /// (create_revision 0); no lock.
    pub async fn claim_token(&self, id: &str, node: &NodeName) -> Result<TokenClaim> {
        check_segment("join token id", id)?;
        let key = token_key(id);
        let nonce = random_hex();
        let mine = serde_json::to_vec(&ClaimRecord {
            node: node.to_string(),
            by: self.inner.node.to_string(),
            at: now(),
            nonce: nonce.clone(),
        })
        .map_err(|e| internal_json(&key, e))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), mine, None)])
            .or_else([TxnOp::get(key.clone(), None)]);
        let answer = self.txn("claiming a join token", txn).await?;
        if answer.succeeded() {
            return Ok(TokenClaim::Claimed);
        }
        let Some(kv) = first_kv(&answer) else {
            return Err(StateError::Malformed {
                key,
                detail: "exists but could not be read back".into(),
            });
        };
        let theirs: ClaimRecord =
            serde_json::from_slice(kv.value()).map_err(|e| StateError::Malformed {
                key: key.clone(),
                detail: e.to_string(),
            })?;
        if theirs.nonce == nonce {
            // Our own write, retried on another member after its answer
            // was lost.
            Ok(TokenClaim::Claimed)
        } else {
            Ok(TokenClaim::AlreadyUsed {
                node: theirs.node,
                by: theirs.by,
                at: theirs.at,
            })
        }
    }

    /// Records that certificates `serials` (lower-case hex) of `node` are
    /// revoked. Revocation only ever adds keys; a serial revoked before
    /// keeps its first record (written only where absent).
    pub async fn revoke(&self, node: &NodeName, serials: &[String]) -> Result<()> {
        for serial in serials {
            check_serial(serial)?;
        }
        for serial in serials {
            let key = revoked_key(serial);
            let value = serde_json::to_vec(&RevokedRecord {
                node: node.to_string(),
                at: now(),
            })
            .map_err(|e| internal_json(&key, e))?;
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, value, None)]);
            self.txn("recording a revocation", txn).await?;
        }
        Ok(())
    }

    /// Records that certificate `serial` was issued to `node`, so that
    /// removing the node finds every certificate it holds.
    pub async fn record_issued(&self, node: &NodeName, serial: &str) -> Result<()> {
        check_serial(serial)?;
        let key = issued_key(node, serial);
        self.request("recording an issued certificate", |mut client| {
            let key = key.clone();
            async move { client.put(key, now(), None).await }
        })
        .await
        .map(|_| ())
    }

    /// The serials of every certificate issued to `node`.
    pub async fn issued(&self, node: &NodeName) -> Result<Vec<String>> {
        self.serials_under("listing issued certificates", &issued_key(node, ""))
            .await
    }

    /// Every revoked certificate serial (lower-case hex).
    pub async fn revoked(&self) -> Result<BTreeSet<String>> {
        Ok(self
            .serials_under("listing revocations", &revoked_key(""))
            .await?
            .into_iter()
            .collect())
    }

    /// The serials that end the keys under `prefix`, each checked.
    async fn serials_under(&self, action: &'static str, prefix: &str) -> Result<Vec<String>> {
        let answer = self
            .request(action, |mut client| {
                let prefix = prefix.to_string();
                async move {
                    client
                        .get(
                            prefix,
                            Some(GetOptions::new().with_prefix().with_keys_only()),
                        )
                        .await
                }
            })
            .await?;
        answer
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let serial = key.strip_prefix(prefix).unwrap_or_default().to_string();
                check_serial(&serial).map_err(|_| StateError::Malformed {
                    key,
                    detail: "does not end in a certificate serial".into(),
                })?;
                Ok(serial)
            })
            .collect()
    }

    /// Shared configuration `name` and the revision it was written at.
    pub async fn config(&self, name: &str) -> Result<Option<Versioned>> {
        check_segment("configuration name", name)?;
        let key = config_key(name);
        let answer = self
            .request("reading configuration", |mut client| {
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
        Ok(answer.kvs().first().map(|kv| Versioned {
            value: kv.value().to_vec(),
            revision: kv.mod_revision(),
        }))
    }

    /// Writes shared configuration `name` if it is still as `expect` says
    /// (fencing: a writer that read an older version cannot overwrite a
    /// newer one); returns the new revision, or [`StateError::Conflict`].
    pub async fn put_config(&self, name: &str, value: &[u8], expect: Expect) -> Result<i64> {
        check_segment("configuration name", name)?;
        conditional_put(
            self,
            "writing configuration",
            &config_key(name),
            value,
            expect,
            None,
        )
        .await
    }
}

/// Puts `value` at `key` if the key is as `expect` says; else returns the
/// current value in the same transaction. A failed comparison that finds
/// exactly `value` is our own write retried after a lost answer.
async fn conditional_put(
    state: &ClusterState,
    action: &'static str,
    key: &str,
    value: &[u8],
    expect: Expect,
    lease: Option<i64>,
) -> Result<i64> {
    let compare = match expect {
        Expect::Absent => Compare::create_revision(key, CompareOp::Equal, 0),
        Expect::Revision(r) => Compare::mod_revision(key, CompareOp::Equal, r),
    };
    let options = lease.map(|l| PutOptions::new().with_lease(l));
    let txn = Txn::new()
        .when([compare])
        .and_then([TxnOp::put(key, value, options)])
        .or_else([TxnOp::get(key, None)]);
    let answer = state.txn(action, txn).await?;
    if answer.succeeded() {
        return Ok(answer.header().map(|h| h.revision()).unwrap_or(0));
    }
    let current = first_kv(&answer);
    match current {
        Some(kv) if kv.value() == value => Ok(kv.mod_revision()),
        found => Err(StateError::Conflict {
            key: key.to_string(),
            expected: match expect {
                Expect::Absent => 0,
                Expect::Revision(r) => r,
            },
            found: found.map(|kv| kv.mod_revision()),
        }),
    }
}

fn first_kv(answer: &TxnResponse) -> Option<etcd_client::KeyValue> {
    answer.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

fn internal_json(key: &str, e: serde_json::Error) -> StateError {
    StateError::Internal {
        what: format!("serialising the record for {key}"),
        detail: e.to_string(),
    }
}

fn stored_record(record: &NodeRecord, incarnation: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(&StoredRecord {
        record,
        incarnation,
    })
    .map_err(|e| internal_json(&node_key(&record.node), e))
}

impl Members {
    async fn request<T, F, Fut>(&self, action: &'static str, request: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let count = self.members.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for step in 0..count {
            let i = (first + step) % count;
            let member = &self.members[i];
            match request(member.client.clone()).await {
                Ok(answer) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(e) if no_space(&e) => return Err(StateError::NoSpace(None)),
                Err(e) if unreachable(&e) => failures.push(EndpointFailure {
                    endpoint: member.endpoint.clone(),
                    reason: reason(&e),
                }),
                Err(e) => {
                    return Err(StateError::Refused {
                        action,
                        endpoint: member.endpoint.clone(),
                        detail: reason(&e),
                    })
                }
            }
        }
        Err(StateError::Unreachable(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_versioned_prefix() {
        assert_eq!(node_key("ctl1"), "/owui/v1/nodes/ctl1");
        assert_eq!(token_key("abc"), "/owui/v1/tokens/abc");
        assert_eq!(revoked_key("0a1b"), "/owui/v1/revoked/0a1b");
        assert_eq!(config_key("openwebui"), "/owui/v1/config/openwebui");
    }

    #[test]
    fn ids_that_could_reach_another_key_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "a b", "ä", &"x".repeat(129)] {
            assert!(check_segment("join token id", bad).is_err(), "{bad:?}");
        }
        for good in ["k7f2-9ab_c.d", "A", &"x".repeat(128)] {
            check_segment("join token id", good).unwrap();
        }
    }

    #[test]
    fn serials_are_lower_case_hex_only() {
        for bad in ["", "0A", "0a:1b", "xyz", &"a".repeat(41)] {
            let err = check_serial(bad).unwrap_err().to_string();
            assert!(err.contains("lower-case hex"), "{bad:?}: {err}");
        }
        check_serial("00ff").unwrap();
        check_serial(&"f".repeat(40)).unwrap();
    }

    #[test]
    fn the_quota_error_says_what_to_do() {
        let err = StateError::NoSpace(None).to_string();
        assert!(err.contains("NOSPACE"), "{err}");
        assert!(err.contains("space quota"), "{err}");
        assert!(err.contains("disarm"), "{err}");
    }

    #[test]
    fn an_unreachable_error_names_every_endpoint() {
        let err = StateError::Unreachable(vec![
            EndpointFailure {
                endpoint: "https://198.51.100.1:2379".into(),
                reason: "connection refused".into(),
            },
            EndpointFailure {
                endpoint: "https://198.51.100.2:2379".into(),
                reason: "timed out".into(),
            },
        ])
        .to_string();
        assert!(
            err.contains("https://198.51.100.1:2379 (connection refused)"),
            "{err}"
        );
        assert!(
            err.contains("https://198.51.100.2:2379 (timed out)"),
            "{err}"
        );
    }
}
