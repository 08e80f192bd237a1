//! Which checks each role runs, defined in one place, and the probe each
//! check calls. Endpoints, paths and thresholds come from the `[health]`
//! table of `etc/owui/agent.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use owui_bundle::Role;
use serde::Deserialize;

use super::dbus::Bus;
use super::engine::Policy;
use super::llama::{self, LlamaProbe};
use super::outcome::CheckResult;
use super::probes::{self, Expect, Thresholds};
use super::space::{self, Limits, Sources};
use super::timesync::{self, TimeSyncMode};
use super::tls::{self, ClientIdentity, Expiry, HttpsProbe};
use super::{postgres, redis, systemd};
use crate::layout::Root;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub interval_s: u64,
    pub timeout_s: u64,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub open_webui_url: String,
    pub ollama_url: String,
    pub vllm_url: String,
    /// llama-server, the all-in-one role's inference server.
    pub llama_server_url: String,
    /// Its container (units/llama-server.container's `ContainerName=`),
    /// whose log says why a model failed to load.
    pub llama_server_container: String,
    /// libpq keyword/value connection string.
    pub postgres: String,
    /// `host:port` or a unix socket path.
    pub redis: String,
    /// File holding the Redis password (read at each check, never logged).
    pub redis_password_file: Option<PathBuf>,
    /// D-Bus address of systemd's bus; empty is the system bus.
    pub systemd_bus: String,
    /// Units to watch; empty means the role's own units.
    pub units: Vec<String>,
    /// Filesystems whose free space is watched (one `disk:` check each,
    /// and one line each in status's partition list).
    pub disks: Vec<PathBuf>,
    pub disk_warn_percent: f64,
    pub disk_fail_percent: f64,
    /// Free space below these is degraded / failed whatever the share.
    pub disk_warn_free_mib: u64,
    pub disk_fail_free_mib: u64,
    pub memory_warn_percent: f64,
    pub memory_fail_percent: f64,
    /// nginx in front of Open WebUI (app and allinone roles), probed over
    /// HTTPS; empty turns the check off.
    pub nginx_url: String,
    /// The name checked in nginx's certificate (and sent as SNI) when the
    /// URL's host is an address; empty checks the URL's host.
    pub nginx_server_name: String,
    /// The cluster CA: the only certificates the nginx probe trusts.
    pub tls_ca_file: PathBuf,
    /// Client certificate and key the nginx probe presents (mutual TLS).
    pub tls_client: Option<ClientIdentity>,
    /// Certificate files whose expiry is watched, one check each.
    pub cert_files: Vec<PathBuf>,
    pub cert_warn_days: u32,
    pub cert_fail_days: u32,
    /// What an unsynchronised clock makes the node: `degraded`, `failed`,
    /// or `off` (no check).
    pub time_sync: TimeSyncMode,
    /// A synchronised clock whose maximum error is above this is degraded.
    pub time_max_error_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval_s: 15,
            timeout_s: 5,
            failure_threshold: 3,
            success_threshold: 2,
            open_webui_url: "http://127.0.0.1:8080".into(),
            ollama_url: "http://127.0.0.1:11434".into(),
            vllm_url: "http://127.0.0.1:8000".into(),
            llama_server_url: "http://127.0.0.1:8000".into(),
            llama_server_container: "llama-server".into(),
            postgres: "host=/run/postgresql user=owui_agent dbname=postgres".into(),
            redis: "127.0.0.1:6379".into(),
            redis_password_file: None,
            systemd_bus: String::new(),
            units: Vec::new(),
            disks: vec!["/".into(), "/var/lib/owui".into()],
            disk_warn_percent: 85.0,
            disk_fail_percent: 95.0,
            disk_warn_free_mib: 2048,
            disk_fail_free_mib: 256,
            memory_warn_percent: 90.0,
            memory_fail_percent: 97.0,
            nginx_url: "https://127.0.0.1:443/".into(),
            nginx_server_name: String::new(),
            tls_ca_file: "/etc/owui/tls/ca.pem".into(),
            tls_client: None,
            cert_files: Vec::new(),
            cert_warn_days: 30,
            cert_fail_days: 7,
            time_sync: TimeSyncMode::Degraded,
            time_max_error_ms: 1000,
        }
    }
}

impl HealthConfig {
    pub fn disk_limits(&self) -> Limits {
        Limits {
            warn_percent: self.disk_warn_percent,
            fail_percent: self.disk_fail_percent,
            warn_free_bytes: self.disk_warn_free_mib.saturating_mul(1 << 20),
            fail_free_bytes: self.disk_fail_free_mib.saturating_mul(1 << 20),
        }
    }
}

/// What a check calls.
#[derive(Debug, Clone)]
pub enum Probe {
    Http {
        url: String,
        expect: Expect,
    },
    /// llama-server's router and the models it failed to load.
    LlamaServer(LlamaProbe),
    Disk {
        /// As configured, and on the host.
        mount: PathBuf,
        path: PathBuf,
        limits: Limits,
        sources: Sources,
    },
    Memory {
        meminfo: PathBuf,
        thresholds: Thresholds,
    },
    Postgres {
        conninfo: String,
    },
    Redis {
        addr: String,
        password_file: Option<PathBuf>,
    },
    Unit {
        unit: String,
    },
    /// Every unit systemd holds as failed, whatever the role.
    FailedUnits,
    /// nginx over TLS, chain verified against the cluster CA.
    Https(HttpsProbe),
    CertFile {
        path: PathBuf,
        expiry: Expiry,
    },
    TimeSync(timesync::Policy),
    /// NVIDIA GPUs through NVML (or the fixture), under this root; the
    /// `[gpu]` table of agent.toml is read at each run.
    Gpu {
        root: Root,
    },
}

/// What the probes share: one HTTP client, one connection to systemd's bus
/// (made on first use and again after a failure, so a bus that comes up
/// later is found).
pub struct Probes {
    http: reqwest::Client,
    bus_address: Option<String>,
    bus: tokio::sync::Mutex<Option<Bus>>,
}

impl Probes {
    pub fn new(cfg: &HealthConfig) -> Probes {
        Probes {
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
            bus_address: (!cfg.systemd_bus.is_empty()).then(|| cfg.systemd_bus.clone()),
            bus: tokio::sync::Mutex::new(None),
        }
    }

    async fn bus(&self) -> Result<Bus, String> {
        let mut slot = self.bus.lock().await;
        if let Some(bus) = slot.as_ref() {
            return Ok(bus.clone());
        }
        let bus = Bus::connect(self.bus_address.as_deref()).await?;
        *slot = Some(bus.clone());
        Ok(bus)
    }
}

#[derive(Debug, Clone)]
pub struct CheckDef {
    pub name: String,
    pub kind: &'static str,
    pub policy: Policy,
    pub probe: Probe,
}

impl CheckDef {
    pub async fn run(&self, probes: &Probes) -> CheckResult {
        match &self.probe {
            Probe::Http { url, expect } => probes::http(&probes.http, url, *expect).await,
            Probe::LlamaServer(p) => llama::check(&probes.http, p).await,
            Probe::Unit { unit } => systemd::check(&probes.bus().await?, unit).await,
            Probe::FailedUnits => systemd::failed_units(&probes.bus().await?).await,
            Probe::Disk {
                mount,
                path,
                limits,
                sources,
            } => space::check(mount, path, limits, sources),
            Probe::Memory {
                meminfo,
                thresholds,
            } => probes::memory(meminfo, *thresholds),
            Probe::Postgres { conninfo } => postgres::check(conninfo).await,
            Probe::Https(p) => tls::https(p).await,
            Probe::CertFile { path, expiry } => tls::cert_file(path, *expiry).await,
            Probe::TimeSync(policy) => timesync::check(*policy, || probes.bus()).await,
            Probe::Gpu { root } => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || crate::gpu::health::check_node(&root))
                    .await
                    .unwrap_or_else(|e| Err(format!("the GPU check task failed: {e}")))
            }
            Probe::Redis {
                addr,
                password_file,
            } => {
                let password = match password_file {
                    Some(p) => Some(read_secret(p)?),
                    None => None,
                };
                redis::check(addr, password.as_deref()).await
            }
        }
    }
}

fn read_secret(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| format!("reading the password file {}: {e}", path.display()))
}

fn join_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// The systemd units a role runs (host services from Debian, AI apps as
/// Quadlet-generated services).
fn role_units(role: Role) -> &'static [&'static str] {
    const APP: &[&str] = &[
        "nginx.service",
        "open-webui.service",
        "open-terminal.service",
    ];
    // etcd is not the db role's: control nodes of any role run it
    // (owui-etcd.service), and `status` shows each member in its site view.
    const DB: &[&str] = &["postgresql.service", "redis-server.service"];
    const GPU: &[&str] = &["ollama.service", "vllm.service"];
    // images/allinone.toml: llama-server instead of Ollama and vLLM, no
    // Open Terminal (README, "What is not built").
    const ALL: &[&str] = &[
        "nginx.service",
        "open-webui.service",
        "llama-server.service",
        "postgresql.service",
        "redis-server.service",
    ];
    match role {
        Role::App => APP,
        Role::Db => DB,
        Role::Gpu => GPU,
        Role::Allinone => ALL,
    }
}

/// The checks a node of `role` runs; an error when a path they read cannot
/// be resolved inside the root.
pub fn checks(role: Role, cfg: &HealthConfig, root: &Root) -> owui_bundle::Result<Vec<CheckDef>> {
    let policy = Policy {
        interval: Duration::from_secs(cfg.interval_s.max(1)),
        timeout: Duration::from_secs(cfg.timeout_s.max(1)),
        failure_threshold: cfg.failure_threshold.max(1),
        success_threshold: cfg.success_threshold.max(1),
    };
    let app = matches!(role, Role::App | Role::Allinone);
    let db = matches!(role, Role::Db | Role::Allinone);
    let gpu = matches!(role, Role::Gpu | Role::Allinone);
    let def = |name: String, kind, probe| CheckDef {
        name,
        kind,
        policy,
        probe,
    };
    let http = |name: &str, base: &str, path: &str, expect| {
        def(
            name.to_string(),
            "http",
            Probe::Http {
                url: join_url(base, path),
                expect,
            },
        )
    };
    let expiry = Expiry {
        warn_days: cfg.cert_warn_days,
        fail_days: cfg.cert_fail_days,
    };
    let mut out = Vec::new();
    if app {
        out.push(http(
            "open-webui",
            &cfg.open_webui_url,
            "/health",
            Expect::StatusTrue,
        ));
        out.push(http(
            "open-webui-db",
            &cfg.open_webui_url,
            "/health/db",
            Expect::StatusTrue,
        ));
        out.push(http(
            "open-webui-admin",
            &cfg.open_webui_url,
            "/api/config",
            Expect::AdminExists,
        ));
        if !cfg.nginx_url.is_empty() {
            out.push(def(
                "nginx-tls".into(),
                "tls",
                Probe::Https(HttpsProbe {
                    url: cfg.nginx_url.clone(),
                    server_name: (!cfg.nginx_server_name.is_empty())
                        .then(|| cfg.nginx_server_name.clone()),
                    ca_file: root.host(&cfg.tls_ca_file)?,
                    client: cfg
                        .tls_client
                        .as_ref()
                        .map(|c| -> owui_bundle::Result<ClientIdentity> {
                            Ok(ClientIdentity {
                                cert: root.host(&c.cert)?,
                                key: root.host(&c.key)?,
                            })
                        })
                        .transpose()?,
                    expiry,
                }),
            ));
        }
    }
    if db {
        out.push(def(
            "postgresql".into(),
            "postgres",
            Probe::Postgres {
                conninfo: cfg.postgres.clone(),
            },
        ));
        out.push(def(
            "redis".into(),
            "redis",
            Probe::Redis {
                addr: cfg.redis.clone(),
                password_file: cfg
                    .redis_password_file
                    .as_ref()
                    .map(|p| root.host(p))
                    .transpose()?,
            },
        ));
    }
    if role == Role::Gpu {
        out.push(http(
            "ollama",
            &cfg.ollama_url,
            "/api/version",
            Expect::Version,
        ));
        out.push(http("vllm", &cfg.vllm_url, "/health", Expect::Success));
    }
    if role == Role::Allinone {
        out.push(def(
            "llama-server".into(),
            "http",
            Probe::LlamaServer(LlamaProbe {
                url: cfg.llama_server_url.clone(),
                container: cfg.llama_server_container.clone(),
            }),
        ));
    }
    if gpu {
        out.push(def(
            crate::gpu::health::CHECK_NAME.into(),
            crate::gpu::health::CHECK_KIND,
            Probe::Gpu { root: root.clone() },
        ));
    }
    let units: Vec<String> = if cfg.units.is_empty() {
        role_units(role).iter().map(|u| u.to_string()).collect()
    } else {
        cfg.units.clone()
    };
    for unit in units {
        out.push(def(format!("unit:{unit}"), "systemd", Probe::Unit { unit }));
    }
    out.push(def("failed-units".into(), "systemd", Probe::FailedUnits));
    let sources = Sources::of(root)?;
    for path in &cfg.disks {
        out.push(def(
            format!("disk:{}", path.display()),
            "disk",
            Probe::Disk {
                mount: path.clone(),
                path: root.host(path)?,
                limits: cfg.disk_limits(),
                sources: sources.clone(),
            },
        ));
    }
    out.push(def(
        "memory".into(),
        "memory",
        Probe::Memory {
            meminfo: root.host(Path::new("/proc/meminfo"))?,
            thresholds: Thresholds {
                warn_percent: cfg.memory_warn_percent,
                fail_percent: cfg.memory_fail_percent,
            },
        },
    ));
    for path in &cfg.cert_files {
        out.push(def(
            format!("cert:{}", path.display()),
            "cert",
            Probe::CertFile {
                path: root.host(path)?,
                expiry,
            },
        ));
    }
    if cfg.time_sync != TimeSyncMode::Off {
        out.push(def(
            "time-sync".into(),
            "time",
            Probe::TimeSync(timesync::Policy {
                unsynced: cfg.time_sync,
                max_error: Duration::from_millis(cfg.time_max_error_ms),
            }),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_gets_its_services() {
        let root = Root::new(Path::new("/mnt/n"));
        let names = |role| -> Vec<String> {
            checks(role, &HealthConfig::default(), &root)
                .unwrap()
                .into_iter()
                .map(|c| c.name)
                .collect()
        };
        let common = [
            "failed-units",
            "disk:/",
            "disk:/var/lib/owui",
            "memory",
            "time-sync",
        ];
        let app = [
            "open-webui",
            "open-webui-db",
            "open-webui-admin",
            "nginx-tls",
            "unit:nginx.service",
            "unit:open-webui.service",
            "unit:open-terminal.service",
        ];
        assert_eq!(names(Role::App), [&app[..], &common].concat());
        let db = [
            "postgresql",
            "redis",
            "unit:postgresql.service",
            "unit:redis-server.service",
        ];
        assert_eq!(names(Role::Db), [&db[..], &common].concat());
        let gpu = [
            "ollama",
            "vllm",
            "gpu",
            "unit:ollama.service",
            "unit:vllm.service",
        ];
        assert_eq!(names(Role::Gpu), [&gpu[..], &common].concat());
        let allinone = [
            "open-webui",
            "open-webui-db",
            "open-webui-admin",
            "nginx-tls",
            "postgresql",
            "redis",
            "llama-server",
            "gpu",
            "unit:nginx.service",
            "unit:open-webui.service",
            "unit:llama-server.service",
            "unit:postgresql.service",
            "unit:redis-server.service",
        ];
        assert_eq!(names(Role::Allinone), [&allinone[..], &common].concat());
        // Configured units replace the role's list.
        let cfg = HealthConfig {
            units: vec!["x.service".into()],
            ..HealthConfig::default()
        };
        let units: Vec<String> = checks(Role::Gpu, &cfg, &root)
            .unwrap()
            .into_iter()
            .filter(|c| c.kind == "systemd")
            .map(|c| c.name)
            .collect();
        assert_eq!(units, ["unit:x.service", "failed-units"]);
        let disk = checks(Role::Db, &HealthConfig::default(), &root)
            .unwrap()
            .into_iter()
            .find(|c| c.name == "disk:/var/lib/owui")
            .unwrap();
        assert!(
            matches!(disk.probe, Probe::Disk { ref path, .. } if path == Path::new("/mnt/n/var/lib/owui"))
        );
    }

    /// The `[health]` example in docs/status.md is a valid config.
    #[test]
    fn the_documented_config_parses() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/status.md"),
        )
        .unwrap();
        let start = doc.find("```toml\n[health]\n").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let table: toml::Table = toml::from_str(&doc[start..end]).unwrap();
        let cfg: HealthConfig = table["health"].clone().try_into().unwrap();
        assert_eq!(cfg.nginx_url, HealthConfig::default().nginx_url);
        assert!(cfg.tls_client.is_some());
    }

    #[test]
    fn tls_and_time_checks_follow_the_config() {
        let root = Root::new(Path::new("/mnt/n"));
        let cfg: HealthConfig = toml::from_str(
            "nginx_url = \"https://127.0.0.1:8443/health\"\n\
             nginx_server_name = \"chat.example.org\"\n\
             tls_client = { cert = \"/etc/owui/tls/node.pem\", key = \"/etc/owui/secrets/tls/node.key\" }\n\
             cert_files = [\"/etc/nginx/certs/fullchain.pem\"]\n\
             cert_warn_days = 20\ncert_fail_days = 5\ntime_sync = \"failed\"\n",
        )
        .unwrap();
        let all = checks(Role::Allinone, &cfg, &root).unwrap();
        let find = |name: &str| all.iter().find(|c| c.name == name).unwrap();
        let expiry = Expiry {
            warn_days: 20,
            fail_days: 5,
        };
        assert_eq!(find("nginx-tls").kind, "tls");
        let Probe::Https(ref p) = find("nginx-tls").probe else {
            panic!("nginx-tls is not an HTTPS probe");
        };
        assert_eq!(p.url, "https://127.0.0.1:8443/health");
        assert_eq!(p.server_name.as_deref(), Some("chat.example.org"));
        assert_eq!(p.ca_file, Path::new("/mnt/n/etc/owui/tls/ca.pem"));
        let client = p.client.as_ref().unwrap();
        assert_eq!(
            client.key,
            Path::new("/mnt/n/etc/owui/secrets/tls/node.key")
        );
        assert_eq!(p.expiry, expiry);
        assert!(matches!(
            find("cert:/etc/nginx/certs/fullchain.pem").probe,
            Probe::CertFile { ref path, expiry: e }
                if path == Path::new("/mnt/n/etc/nginx/certs/fullchain.pem") && e == expiry
        ));
        assert!(matches!(
            find("time-sync").probe,
            Probe::TimeSync(timesync::Policy {
                unsynced: TimeSyncMode::Failed,
                ..
            })
        ));
        // Nodes without nginx never probe it; "" and "off" turn checks off.
        for role in [Role::Db, Role::Gpu] {
            assert!(!checks(role, &cfg, &root)
                .unwrap()
                .iter()
                .any(|c| c.kind == "tls"));
        }
        let off: HealthConfig = toml::from_str("nginx_url = \"\"\ntime_sync = \"off\"\n").unwrap();
        let names: Vec<String> = checks(Role::Allinone, &off, &root)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n == "nginx-tls" || n == "time-sync" || n.starts_with("cert:")),
            "{names:?}"
        );
    }
}
