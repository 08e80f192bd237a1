//! Hardening audit: the node checks itself against the security checklist and
//! secure defaults of the seed deployment and reports every deviation
//! ("drift") for `owui-agent status`.
//!
//! What is checked comes from the reference deployment's production guide
//! ("the guide"). Each family of rules is one module, and each rule is
//! registered in [`RULES`] with a name and a description:
//!
//! - `webui_env`: the Open WebUI environment (the secure defaults, and the
//!   settings the image's env files give).
//! - `secret_modes`: secret file modes (`chmod 600 .env` and the secret
//!   paths).
//! - `images`: every image pinned by digest.
//! - `redis`: Redis `maxclients` and `timeout`.
//! - `sockets`: published ports and listening sockets (only 443, and 80
//!   for the redirect, face users).
//! - `secure_boot`: Secure Boot on, as the firmware reports it.
//!
//! The rules read the node through `files` (every read confined to the
//! root and bounded) and `read` (Quadlet units with their drop-ins); the
//! text is parsed by `owui_bundle::unit_file`, as the builder's checks do.
//!
//! Nothing here panics on input: a file that cannot be read is an entry in
//! [`Audit::errors`] (the audit does not know), never a finding, and every
//! read is bounded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use read::QuadletUnit;

mod files;
#[cfg(test)]
mod fixture;
mod images;
mod read;
mod redis;
mod secret_modes;
mod secure_boot;
mod sockets;
mod webui_env;

/// Longest value quoted back in a finding.
const MAX_SHOWN_CHARS: usize = 96;

/// One deviation from the secure defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// What is checked: an environment variable name, "secret file mode",
    /// "image pinned by digest", "redis timeout", "listening port 5432/tcp", …
    pub item: String,
    /// The secure value.
    pub expected: String,
    /// What the node has.
    pub found: String,
    pub severity: Severity,
    /// The file (a path in the node's namespace) the value comes from, or
    /// "listening sockets".
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Weaker than the secure default but not an open door (a version tag
    /// instead of a digest, an over-long Redis timeout, a non-canonical
    /// boolean that still reads as the secure value, …).
    Warn,
    /// The secure default is not in force.
    Fail,
}

/// What to audit; every path is absolute in the node's namespace and is read
/// under the audit's root. Defaults are the appliance's standard paths and the
/// seed's values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HardeningConfig {
    /// Open WebUI environment files (systemd `EnvironmentFile=` syntax): the
    /// image's own settings. A later source (a unit's `EnvironmentFile=` or
    /// `Environment=`) must not change the `OPENAI_API_BASE_URL`,
    /// `OLLAMA_BASE_URL` or `WEBUI_AUTH` they give (or leave unset).
    /// Empty: none besides those the Quadlet units name, and no such rule.
    pub env_files: Vec<PathBuf>,
    /// Quadlet `.container` units of Open WebUI: their `[Container]`
    /// `Environment=`, `EnvironmentFile=`, `Image=` and `PublishPort=` lines,
    /// drop-ins (`<unit>.d/*.conf`) included.
    pub quadlet_units: Vec<PathBuf>,
    /// Secret files or directories: every regular file under them must be
    /// mode 0600 or stricter.
    pub secret_files: Vec<PathBuf>,
    /// Further image references that must be pinned by digest.
    pub images: Vec<String>,
    /// Redis configuration; an empty path skips the Redis audit (nodes
    /// without Redis).
    pub redis_conf: PathBuf,
    /// Largest acceptable Redis `timeout` in seconds (must also be > 0).
    pub redis_max_timeout: u64,
    /// Smallest acceptable Redis `maxclients` (the guide: "10000+").
    pub redis_min_maxclients: u64,
    /// Ports that may listen on non-loopback addresses.
    pub allowed_ports: Vec<u16>,
}

impl Default for HardeningConfig {
    fn default() -> Self {
        HardeningConfig {
            env_files: vec![PathBuf::from("/etc/owui/open-webui.env")],
            quadlet_units: vec![PathBuf::from(
                "/etc/containers/systemd/open-webui.container",
            )],
            secret_files: vec![PathBuf::from("/etc/owui/secrets")],
            images: Vec::new(),
            redis_conf: PathBuf::from("/etc/redis/redis.conf"),
            // The guide's value.
            redis_max_timeout: 1800,
            // The guide's "10000+".
            redis_min_maxclients: 10_000,
            // 80 and 443 from the guide; 22 is the
            // appliance's own choice (operator SSH on a bare-metal node).
            allowed_ports: vec![22, 80, 443],
        }
    }
}

/// The result of one audit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// Every item audited (one entry per variable, file, image, setting, port).
    pub checked: Vec<String>,
    /// What could not be audited and why (missing or unreadable files, lines
    /// that could not be parsed): unknowns, not findings.
    pub errors: Vec<String>,
}

impl Audit {
    fn finding(
        &mut self,
        severity: Severity,
        item: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
        source: impl Into<String>,
    ) {
        self.findings.push(Finding {
            item: item.into(),
            expected: expected.into(),
            found: found.into(),
            severity,
            source: source.into(),
        });
    }
}

/// One rule of the audit, registered in [`RULES`] (the way bootc registers
/// its lints): a stable name, what it checks, and the check.
pub struct Rule {
    /// Unique among [`RULES`], in kebab-case.
    pub name: &'static str,
    /// What the rule checks, in one line.
    pub description: &'static str,
    check: fn(&mut Scope<'_>, &mut Audit),
}

/// Every rule, in the order the audit runs them (and reports their
/// findings).
pub static RULES: &[Rule] = &[
    Rule {
        name: "webui-env",
        description: "Open WebUI: its secure defaults, and the endpoints and login the image set",
        check: webui_env::audit_environment,
    },
    Rule {
        name: "secret-modes",
        description: "env files and every file under the secret paths: mode 0600 or stricter",
        check: secret_modes::audit_secret_paths,
    },
    Rule {
        name: "images-pinned",
        description: "every image the units run or the configuration lists: pinned by digest",
        check: images::audit_images,
    },
    Rule {
        name: "published-ports",
        description: "Quadlet PublishPort= lines: loopback only, but for the allowed ports",
        check: sockets::audit_published_ports,
    },
    Rule {
        name: "redis",
        description: "Redis: idle clients closed (timeout), enough of them allowed (maxclients)",
        check: redis::audit_redis,
    },
    Rule {
        name: "listening-sockets",
        description: "TCP listeners: loopback only, but for the allowed ports",
        check: sockets::audit_sockets,
    },
    Rule {
        name: "secure-boot",
        description: "Secure Boot on (the firmware's SecureBoot variable): off, the console can boot anything",
        check: secure_boot::audit_secure_boot,
    },
];

/// What the rules of one audit share.
struct Scope<'a> {
    /// The node's root directory ("/" on a real node).
    root: &'a Path,
    cfg: &'a HardeningConfig,
    /// The configured Quadlet units, read once for every rule.
    units: Vec<QuadletUnit>,
    /// False when one of the units could not be read.
    units_complete: bool,
    /// Host paths whose mode is already checked as a secret's (an env file
    /// under the secret paths is checked once).
    mode_checked: BTreeSet<PathBuf>,
}

/// Audits the node whose root directory is `root` ("/" on a real node).
pub fn audit(root: &Path, cfg: &HardeningConfig) -> Audit {
    let mut a = Audit::default();
    let (units, units_complete) = read::read_quadlet_units(root, cfg, &mut a);
    let mut scope = Scope {
        root,
        cfg,
        units,
        units_complete,
        mode_checked: BTreeSet::new(),
    };
    for rule in RULES {
        (rule.check)(&mut scope, &mut a);
    }
    a
}

/// A value as quoted back in a finding: control characters escaped, long
/// values cut.
fn shown(value: &str) -> String {
    if value.is_empty() {
        return "(empty)".to_string();
    }
    let mut out = String::new();
    for (n, c) in value.chars().enumerate() {
        if n == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::fixture::*;

    #[test]
    fn compliant_node_has_no_findings() {
        let n = Node::compliant();
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(a.errors.is_empty(), "{a:#?}");
        for item in [
            "ENABLE_SIGNUP",
            "DEFAULT_USER_ROLE",
            "USER_PERMISSIONS_CHAT_TEMPORARY",
            "WEBUI_AUTH",
            "mode of /etc/owui/open-webui.env",
            "mode of /etc/owui/secrets/postgres-password",
            "mode of /etc/owui/secrets/tls/privkey.pem",
            "redis timeout",
            "redis maxclients",
            "published port 127.0.0.1:8080:8080",
            "listening port 443/tcp",
            "listening port 5432/tcp",
            "listening port 11434/tcp",
            "secure boot",
        ] {
            assert!(
                a.checked.iter().any(|c| c == item),
                "{item} not in {:#?}",
                a.checked
            );
        }
        assert!(a
            .checked
            .iter()
            .any(|c| c.starts_with("image ghcr.io/open-webui/open-webui:0.6@sha256:")));
        let json = serde_json::to_value(&a).unwrap();
        assert!(json["findings"].as_array().unwrap().is_empty());
    }

    #[test]
    fn configuration_from_toml() {
        let cfg: HardeningConfig =
            toml::from_str("allowed_ports = [443]\nredis_conf = \"\"\n").unwrap();
        assert_eq!(cfg.allowed_ports, vec![443]);
        assert!(cfg.redis_conf.as_os_str().is_empty());
        assert_eq!(cfg.env_files, vec![PathBuf::from(ENV)]);
        assert_eq!(cfg.quadlet_units, vec![PathBuf::from(UNIT)]);
        assert_eq!(cfg.secret_files, vec![PathBuf::from(SECRETS)]);
        assert!(cfg.images.is_empty());
        assert_eq!(
            (cfg.redis_max_timeout, cfg.redis_min_maxclients),
            (1800, 10_000)
        );
        assert!(toml::from_str::<HardeningConfig>("redis_max_clients = 5\n").is_err());

        let json = serde_json::to_value(Finding {
            item: "i".into(),
            expected: "e".into(),
            found: "f".into(),
            severity: Severity::Warn,
            source: "s".into(),
        })
        .unwrap();
        assert_eq!(json["severity"], "warn");
        assert_eq!(serde_json::to_value(Severity::Fail).unwrap(), "fail");
    }

    #[test]
    fn rules_are_named_once_and_described() {
        let mut names = BTreeSet::new();
        for rule in RULES {
            assert!(names.insert(rule.name), "{} registered twice", rule.name);
            assert!(!rule.description.is_empty(), "{}", rule.name);
        }
    }

    #[test]
    fn shown_values_are_bounded() {
        assert_eq!(shown(""), "(empty)");
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(500)).chars().count(), MAX_SHOWN_CHARS + 1);
    }
}
