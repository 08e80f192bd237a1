//! The agent's etcd client (agent/src/cluster/state.rs) against Debian's
//! real etcd, each member started from the environment file
//! agent/src/cluster/etcd_config.rs renders (read into the member's
//! environment: the rendered configuration is what runs), in network
//! namespaces on one LAN, with certificates from the cluster CA
//! (owui_bundle::cluster::ca). The client runs on a thread inside a node
//! namespace of its own on the same LAN.
//!
//! Needs root, iproute2 and etcd-server (.ci/run installs them).

use std::fs;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use owui_agent::cluster::etcd_config::{
    self, client_endpoints, local_endpoint, EtcdNode, TlsFiles,
};
use owui_agent::cluster::state::{
    ClusterState, Expect, HealthSummary, NodeRecord, StateError, TokenClaim,
};
use owui_agent::health::engine::State;
use owui_bundle::cluster::ca::{ClusterCa, NodeIdentity, NODE_CERT_LIFETIME};
use owui_bundle::cluster::site::ControlNode;
use owui_bundle::role::Role;
use owui_bundle::seed::NodeName;
use owui_tests::netns::{Lan, Node};

const ETCD: &str = "/usr/bin/etcd";

fn name(n: &str) -> NodeName {
    n.parse().unwrap()
}

/// Writes a key and a certificate for `node` from `ca` into `dir`.
fn certify(ca: &ClusterCa, dir: &Path, node: &str, role: Role, address: IpAddr) -> TlsFiles {
    let (issued, key) = ca
        .issue_with_key(
            &NodeIdentity {
                site: "lab".into(),
                node: name(node),
                role,
                addresses: vec![address],
            },
            SystemTime::now(),
            NODE_CERT_LIFETIME,
        )
        .unwrap();
    fs::create_dir_all(dir).unwrap();
    let files = TlsFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("node.crt"),
        key: dir.join("node.key"),
    };
    fs::write(&files.ca, &ca.cert_pem).unwrap();
    fs::write(&files.cert, &issued.cert_pem).unwrap();
    fs::write(&files.key, key).unwrap();
    files
}

/// One etcd member: its namespace, the environment its rendered file
/// gives, and the process (killed on drop).
struct Member {
    endpoint: String,
    net: Node,
    /// Its certificate (node cN), for a client on the member itself.
    tls: TlsFiles,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Member {
    fn start(&self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .net
            .command(ETCD)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd (package etcd-server)");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Kills the member as a power cut would (SIGKILL).
    fn kill(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A site's etcd: members on a LAN, the CA, and a client node.
/// Field order is drop order: processes first, then namespaces, then files.
struct Site {
    members: Vec<Member>,
    /// The client's namespace (198.51.100.100) and its certificate (node
    /// app1).
    client_net: Node,
    client_tls: TlsFiles,
    /// A certificate the CA issued and then revoked (on the CRL etcd reads).
    revoked_tls: TlsFiles,
    _lan: Lan,
    tmp: tempfile::TempDir,
}

impl Site {
    /// `n` members c1..cN at 198.51.100.1..N, started and serving;
    /// `quota` replaces the rendered backend quota when given.
    fn start(n: u8, quota: Option<u64>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("lab", SystemTime::now()).unwrap();
        let mut lan = Lan::new();
        let client_net = lan.node(100);
        let client_tls = certify(
            &ca,
            &tmp.path().join("app1"),
            "app1",
            Role::App,
            client_net.address.into(),
        );
        let revoked_dir = tmp.path().join("gone1");
        let revoked_tls = certify(
            &ca,
            &revoked_dir,
            "gone1",
            Role::App,
            client_net.address.into(),
        );
        let revoked_serial = owui_bundle::cluster::ca::certified_node(
            &owui_bundle::cluster::ca::pem_der(
                "revoked",
                &fs::read_to_string(&revoked_tls.cert).unwrap(),
                "CERTIFICATE",
            )
            .unwrap(),
        )
        .unwrap()
        .serial;
        let crl = tmp.path().join("ca.crl");
        fs::write(
            &crl,
            ca.crl(&[revoked_serial], 1, SystemTime::now()).unwrap(),
        )
        .unwrap();

        let nets: Vec<Node> = (1..=n).map(|i| lan.node(i)).collect();
        let controls: Vec<ControlNode> = nets
            .iter()
            .enumerate()
            .map(|(i, net)| ControlNode {
                node: name(&format!("c{}", i + 1)),
                address: net.address.into(),
            })
            .collect();
        let endpoints = client_endpoints(&controls);
        let mut members = Vec::new();
        for ((control, endpoint), net) in controls.iter().zip(endpoints).zip(nets) {
            let dir = tmp.path().join(control.node.as_str());
            let tls = certify(&ca, &dir, &control.node, Role::Db, control.address);
            let text = etcd_config::render(&EtcdNode {
                site: &name("lab"),
                name: &control.node,
                members: &controls,
                data_dir: &dir.join("data"),
                tls: &tls,
                crl: &crl,
            })
            .unwrap();
            fs::write(dir.join("etcd.env"), &text).unwrap();
            let mut env = etcd_config::parse(&text);
            if let Some(quota) = quota {
                for (k, v) in &mut env {
                    if k == "ETCD_QUOTA_BACKEND_BYTES" {
                        *v = quota.to_string();
                    }
                }
            }
            members.push(Member {
                endpoint,
                net,
                tls,
                env,
                log: tmp.path().join(format!("{}.log", control.node)),
                child: Mutex::new(None),
            });
        }
        let site = Site {
            members,
            client_net,
            client_tls,
            revoked_tls,
            _lan: lan,
            tmp,
        };
        for m in &site.members {
            m.start();
        }
        let endpoints = site.endpoints();
        site.client(|| async {
            let client = site.connect(&endpoints).await;
            eventually("a writable etcd cluster", Duration::from_secs(20), || {
                let client = client.clone();
                async move { client.put_config("ready", b"1", Expect::Absent).await.ok() }
            })
            .await;
        });
        site
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// Runs the future `body` makes on a thread inside the client's
    /// namespace, with its own runtime.
    fn client<T: Send, F: Future<Output = T>>(&self, body: impl FnOnce() -> F + Send) -> T {
        on(&self.client_net, body)
    }

    /// The client (node app1), retrying while the cluster starts.
    async fn connect(&self, endpoints: &[String]) -> ClusterState {
        let tls = self.client_tls.clone();
        let endpoints = endpoints.to_vec();
        eventually("an etcd member to answer", Duration::from_secs(20), || {
            let (tls, endpoints) = (tls.clone(), endpoints.clone());
            async move {
                ClusterState::connect(&endpoints, &tls, &name("app1"))
                    .await
                    .ok()
            }
        })
        .await
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // A failed test shows what etcd said.
        if std::thread::panicking() {
            for m in &self.members {
                let log = fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} log (last lines, newest first):", m.endpoint);
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Runs the future `body` makes on a thread inside `net`'s namespace, with
/// its own runtime (every socket it opens is in that namespace).
fn on<T: Send, F: Future<Output = T>>(net: &Node, body: impl FnOnce() -> F + Send) -> T {
    let netns = net.netns_path();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let ns = fs::File::open(&netns).unwrap();
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(body())
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Polls `probe` until it gives a value, up to `limit`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn record(node: &str, state: State) -> NodeRecord {
    NodeRecord {
        node: name(node),
        role: Role::App,
        addresses: vec!["198.51.100.100".parse().unwrap()],
        agent_version: env!("CARGO_PKG_VERSION").into(),
        health: HealthSummary {
            state,
            failing: Vec::new(),
        },
        last_seen: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    }
}

fn unreachable_endpoints(err: &StateError) -> Vec<String> {
    match err {
        StateError::Unreachable(failures) => failures.iter().map(|f| f.endpoint.clone()).collect(),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

/// Three members from rendered files serve a client with a cluster
/// certificate, and refuse one without a certificate, one over plain
/// HTTP, one whose certificate another CA issued, and one whose
/// certificate is revoked. Shared configuration is fenced by revision.
#[test]
fn three_members_serve_cluster_certificates_only() {
    let site = Site::start(3, None);
    let endpoints = site.endpoints();
    let other_ca = ClusterCa::generate("lab", SystemTime::now()).unwrap();
    let mut foreign = certify(
        &other_ca,
        &site.tmp.path().join("foreign"),
        "app1",
        Role::App,
        site.client_net.address.into(),
    );
    // It trusts the real CA: only the server's refusal can stop it.
    foreign.ca = site.client_tls.ca.clone();
    site.client(|| async {
        let state = site.connect(&endpoints).await;
        let probes = state.probe().await;
        assert!(probes.iter().all(|p| p.is_ok()), "{probes:?}");

        // Fenced configuration: create once; update only from what was read.
        let first = state
            .put_config("openwebui", b"v1", Expect::Absent)
            .await
            .unwrap();
        let err = state
            .put_config("openwebui", b"v0", Expect::Absent)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StateError::Conflict { found: Some(r), .. } if r == first),
            "{err}"
        );
        let second = state
            .put_config("openwebui", b"v2", Expect::Revision(first))
            .await
            .unwrap();
        // A writer still holding the first revision cannot overwrite v2.
        let err = state
            .put_config("openwebui", b"stale", Expect::Revision(first))
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Conflict { .. }), "{err}");
        let now = state.config("openwebui").await.unwrap().unwrap();
        assert_eq!((now.value.as_slice(), now.revision), (&b"v2"[..], second));

        // No client certificate: TLS with the right CA, nothing else.
        let ca = etcd_client::Certificate::from_pem(fs::read(&site.client_tls.ca).unwrap());
        let options = etcd_client::ConnectOptions::new()
            .with_tls(etcd_client::TlsOptions::new().ca_certificate(ca))
            .with_timeout(Duration::from_secs(3));
        let mut anonymous = etcd_client::Client::connect([&endpoints[0]], Some(options))
            .await
            .unwrap();
        let refused = anonymous.get("/owui/v1/config/openwebui", None).await;
        assert!(
            refused.is_err(),
            "a client without a certificate read {refused:?}"
        );
        // Plain HTTP: etcd serves TLS only.
        let plain = endpoints[0].replace("https://", "http://");
        let mut plain = etcd_client::Client::connect([plain], None).await.unwrap();
        assert!(plain.get("/owui/v1/config/openwebui", None).await.is_err());

        for (what, tls) in [("another CA's", &foreign), ("a revoked", &site.revoked_tls)] {
            let err = ClusterState::connect(&endpoints, tls, &name("app1"))
                .await
                .err()
                .unwrap_or_else(|| panic!("{what} certificate was served"));
            assert_eq!(unreachable_endpoints(&err), endpoints, "{what}: {err}");
        }
    });
}

/// A node's record lives while its keep-alive runs, and ages out when it
/// stops (the node died); a clean leave removes it at once. An older
/// registration of the node cannot overwrite a newer one's record.
#[test]
fn node_records_age_out_and_older_writers_are_fenced() {
    let site = Site::start(3, None);
    let endpoints = site.endpoints();
    site.client(|| async {
        let state = site.connect(&endpoints).await;
        let ttl = Duration::from_secs(2);
        let mut registration = state
            .register(&record("app1", State::Unknown), ttl)
            .await
            .unwrap();
        // Past the TTL, kept alive.
        tokio::time::sleep(ttl + Duration::from_secs(1)).await;
        registration
            .publish(&record("app1", State::Healthy))
            .await
            .unwrap();
        let nodes = state.nodes().await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].health.state, State::Healthy);

        // The node dies: its keep-alive stops, its lease is not revoked.
        drop(registration);
        let died = Instant::now();
        eventually(
            "the dead node's record to age out",
            Duration::from_secs(8),
            || {
                let state = state.clone();
                async move { state.nodes().await.unwrap().is_empty().then_some(()) }
            },
        )
        .await;
        assert!(
            died.elapsed() >= Duration::from_secs(1),
            "gone before its TTL"
        );

        // A clean leave removes the record without waiting.
        let registration = state
            .register(&record("app1", State::Healthy), ttl)
            .await
            .unwrap();
        registration.leave().await.unwrap();
        assert!(state.nodes().await.unwrap().is_empty());

        // Fencing: the node restarts (a new registration) while the old
        // process still runs; the old one's update is refused, the new
        // record stays.
        let mut old = state
            .register(&record("app1", State::Healthy), ttl)
            .await
            .unwrap();
        let mut new = state
            .register(&record("app1", State::Degraded), ttl)
            .await
            .unwrap();
        let err = old
            .publish(&record("app1", State::Failed))
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Conflict { .. }), "{err}");
        new.publish(&record("app1", State::Healthy)).await.unwrap();
        assert_eq!(state.nodes().await.unwrap()[0].health.state, State::Healthy);
        // The record gone, the old process is told to register again.
        new.leave().await.unwrap();
        let err = old
            .publish(&record("app1", State::Failed))
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::LeaseExpired { .. }), "{err}");
        assert!(state.nodes().await.unwrap().is_empty());

        // A node writes only its own record.
        let err = state
            .register(&record("app2", State::Healthy), ttl)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StateError::Invalid { .. }), "{err}");
    });
}

/// Two clients on different members claim the same join token ids at the
/// same time, many rounds at once: exactly one wins each id, the other
/// is told who used it.
#[test]
fn racing_token_claims_have_exactly_one_winner() {
    let site = Site::start(3, None);
    let endpoints = site.endpoints();
    let mut rotated = endpoints.clone();
    rotated.rotate_left(1);
    site.client(|| async {
        let a = site.connect(&endpoints).await;
        let b = site.connect(&rotated).await;
        let rounds = 64;
        let mut tasks = tokio::task::JoinSet::new();
        for round in 0..rounds {
            let (a, b) = (a.clone(), b.clone());
            tasks.spawn(async move {
                let id = format!("token-{round}");
                let (gpu_a, gpu_b) = (name("gpu-a"), name("gpu-b"));
                let (x, y) = tokio::join!(a.claim_token(&id, &gpu_a), b.claim_token(&id, &gpu_b));
                (x.unwrap(), y.unwrap())
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = tasks.join_next().await {
            outcomes.push(done.unwrap());
        }
        assert_eq!(outcomes.len(), rounds);
        for (x, y) in outcomes {
            let winners = [&x, &y]
                .iter()
                .filter(|c| ***c == TokenClaim::Claimed)
                .count();
            assert_eq!(winners, 1, "{x:?} / {y:?}");
            let loser = if x == TokenClaim::Claimed { &y } else { &x };
            let TokenClaim::AlreadyUsed { node, by, .. } = loser else {
                panic!("{loser:?}")
            };
            assert!(node == "gpu-a" || node == "gpu-b", "{node}");
            assert_eq!(by, "app1");
        }
        // Used is used, later too.
        assert!(matches!(
            a.claim_token("token-0", &name("gpu-c")).await.unwrap(),
            TokenClaim::AlreadyUsed { .. }
        ));
        // Revocations: add-only, a set of serials.
        a.revoke(&name("gpu-a"), &["4a01".into(), "4a02".into()])
            .await
            .unwrap();
        b.revoke(&name("gpu-a"), &["4a02".into()]).await.unwrap();
        let revoked = b.revoked().await.unwrap();
        assert_eq!(revoked.into_iter().collect::<Vec<_>>(), ["4a01", "4a02"]);
    });
}

/// One member stopped: the client, which was using it, moves to another
/// member and writes (after an election if it was the leader); a client
/// of the stopped member alone is told which endpoint failed and why.
/// Started again, the member rejoins and serves what was written while it
/// was down.
#[test]
fn a_stopped_member_leaves_the_cluster_writable_and_rejoins() {
    let site = Site::start(3, None);
    let endpoints = site.endpoints();
    let down = endpoints[0].clone();
    site.client(|| async {
        let state = site.connect(&endpoints).await;
        state.config("ready").await.unwrap();
        site.members[0].kill();
        let killed = Instant::now();
        eventually(
            "a write with one member down",
            Duration::from_secs(10),
            || {
                let state = state.clone();
                async move {
                    state
                        .put_config("while-down", b"written", Expect::Absent)
                        .await
                        .ok()
                }
            },
        )
        .await;
        eprintln!("written {:?} after the member stopped", killed.elapsed());
        let probes = state.probe().await;
        let failed: Vec<_> = probes.iter().filter_map(|p| p.as_ref().err()).collect();
        assert_eq!(failed.len(), 1, "{probes:?}");
        assert_eq!(failed[0].endpoint, down);
        let err =
            ClusterState::connect(std::slice::from_ref(&down), &site.client_tls, &name("app1"))
                .await
                .err()
                .unwrap();
        assert_eq!(unreachable_endpoints(&err), std::slice::from_ref(&down));
        assert!(err.to_string().contains(&down), "{err}");
    });
    site.members[0].start();
    site.client(|| async {
        let alone = site.connect(std::slice::from_ref(&down)).await;
        // A linearizable read through the restarted member alone: it has a
        // leader again and the write made while it was down.
        let value = eventually("the member to rejoin", Duration::from_secs(20), || {
            let alone = alone.clone();
            async move { alone.config("while-down").await.ok().flatten() }
        })
        .await;
        assert_eq!(value.value, b"written");
    });
}

/// A member whose backend quota is full: writes come back as the NOSPACE
/// error (never a panic), the alarm is seen without writing, and reads
/// still work.
#[test]
fn a_full_quota_is_the_nospace_error() {
    let site = Site::start(1, Some(1024 * 1024));
    let endpoints = site.endpoints();
    site.client(|| async {
        let state = site.connect(&endpoints).await;
        let ttl = Duration::from_secs(30);
        let _registration = state
            .register(&record("app1", State::Healthy), ttl)
            .await
            .unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut full = None;
        for i in 0..64 {
            match state
                .put_config(&format!("filler-{i}"), &chunk, Expect::Absent)
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    full = Some(e);
                    break;
                }
            }
        }
        let err = full.expect("1 MiB quota never filled by 4 MiB of writes");
        assert!(matches!(err, StateError::NoSpace(_)), "{err:?}");
        assert!(err.to_string().contains("NOSPACE"), "{err}");
        let err = state.check_alarms().await.unwrap_err();
        assert!(matches!(err, StateError::NoSpace(Some(_))), "{err:?}");
        let err = state
            .claim_token("after-full", &name("gpu-a"))
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::NoSpace(_)), "{err:?}");
        assert_eq!(state.nodes().await.unwrap().len(), 1);
    });

    // The recovery docs/cluster.md gives, as written there (paths and
    // address filled in), after removing what filled the quota.
    let member = &site.members[0];
    let dir = member.tls.ca.parent().unwrap().display().to_string();
    let env = format!(
        "export ETCDCTL_ENDPOINTS={} ETCDCTL_CACERT={dir}/ca.crt ETCDCTL_CERT={dir}/node.crt \
         ETCDCTL_KEY={dir}/node.key\n",
        member.endpoint
    );
    let shell = |script: &str| {
        let out = member
            .net
            .command("bash")
            .args(["-euo", "pipefail", "-c", script])
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "{script}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    shell(&format!(
        "{env}etcdctl del --prefix /owui/v1/config/filler-"
    ));
    let doc =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cluster.md")).unwrap();
    let recovery = doc
        .split("#### Full quota")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("docs/cluster.md: a sh block under \"Full quota\"")
        .replace("/var/lib/owui/cluster", &dir)
        .replace("ADDRESS", &member.net.address.to_string());
    shell(&recovery);
    site.client(|| async {
        let state = site.connect(&endpoints).await;
        state.check_alarms().await.unwrap();
        state
            .put_config("after-recovery", b"1", Expect::Absent)
            .await
            .unwrap();
    });
}

/// The agent on a control node reaches its own member over loopback, the
/// member's certificate checked for the node's name.
#[test]
fn the_local_agent_reaches_its_member_over_loopback() {
    let site = Site::start(1, None);
    let member = &site.members[0];
    on(&member.net, || async {
        let state = ClusterState::connect(&[local_endpoint()], &member.tls, &name("c1"))
            .await
            .unwrap();
        state
            .put_config("local", b"1", Expect::Absent)
            .await
            .unwrap();
        // Another name than the certificate's is refused.
        let err = ClusterState::connect(&[local_endpoint()], &member.tls, &name("c2"))
            .await
            .err()
            .unwrap();
        assert_eq!(unreachable_endpoints(&err), [local_endpoint()]);
    });
}
