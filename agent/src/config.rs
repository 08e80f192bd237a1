//! The node seed (`etc/owui/seed.toml`: who this node is) and the agent
//! config (`etc/owui/agent.toml`: where things live). Unknown keys are
//! errors naming file, line and key.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::apply::Node;
use owui_bundle::error::IoContext;
use owui_bundle::fsutil::read_regular_capped;
use owui_bundle::items::Owner;
use owui_bundle::oci::PodmanStore;
use owui_bundle::seed::SEED_MAX;
use owui_bundle::{Error, Result};
use serde::Deserialize;

use crate::hardening::HardeningConfig;
use crate::health::catalog::HealthConfig;
use crate::layout::Root;

/// The seed's model and checks are shared with the builder, which makes
/// and signs seeds (owui_bundle::seed).
pub use owui_bundle::seed::Seed;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(default)]
    pub bundles: BundlesConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub hardening: HardeningConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
    #[serde(default)]
    pub gpu: crate::gpu::GpuConfig,
}

/// `owui-agent run`: where it answers and how often it audits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// The local API socket `owui-agent status` asks (mode 0660).
    pub socket: PathBuf,
    /// Group allowed to use the socket besides root (if it exists).
    pub admin_group: String,
    /// Address of the Prometheus endpoint (`GET /metrics`); empty turns it off.
    pub metrics_listen: String,
    /// Seconds between hardening audits.
    pub audit_interval_s: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: "/run/owui-agent/agent.sock".into(),
            admin_group: "owui-admin".into(),
            metrics_listen: "127.0.0.1:9464".into(),
            audit_interval_s: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BundlesConfig {
    pub content_dir: PathBuf,
    pub bundles_dir: PathBuf,
    /// Ollama's OLLAMA_MODELS directory.
    pub ollama_models: PathBuf,
    /// The Hugging Face hub cache (HF_HUB_CACHE) vLLM reads.
    pub huggingface_cache: PathBuf,
    /// llama-server's models directory: the Ollama models as `<name>.gguf`
    /// (unset: not made).
    pub gguf_models: Option<PathBuf>,
    /// User (name from the node's /etc/passwd, or "uid:gid") that owns the
    /// model trees.
    pub owner: Option<String>,
    pub podman: Option<PodmanStore>,
}

impl Default for BundlesConfig {
    fn default() -> Self {
        BundlesConfig {
            content_dir: "/var/lib/owui/content".into(),
            bundles_dir: "/var/lib/owui/bundles".into(),
            ollama_models: "/var/lib/ollama/models".into(),
            huggingface_cache: "/var/lib/owui/huggingface/hub".into(),
            gguf_models: None,
            owner: None,
            podman: Some(PodmanStore {
                driver: "overlay".into(),
                graph_root: "/var/lib/containers/storage".into(),
                run_root: "/run/containers/storage".into(),
            }),
        }
    }
}

pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).at("reading", path)?;
    owui_bundle::toml_loc::parse(&path.display().to_string(), &text)
}

pub fn load_seed(root: &Root) -> Result<Seed> {
    let path = root.seed()?;
    if !path.exists() {
        return Err(Error::invalid(
            path.display().to_string(),
            "missing: the node seed names this node and its role",
        ));
    }
    let bytes = read_regular_capped(&path, SEED_MAX, "the node seed")?;
    Seed::parse(&path.display().to_string(), &bytes)
}

pub fn load_agent_config(root: &Root) -> Result<AgentConfig> {
    let path = root.agent_config()?;
    if path.exists() {
        load_toml(&path)
    } else {
        Ok(AgentConfig::default())
    }
}

/// Resolves "uid:gid" or a user name from the node's passwd file.
fn resolve_owner(root: &Root, spec: &str) -> Result<Owner> {
    let config = root.agent_config()?;
    let bad =
        |detail: String| Error::invalid(format!("{}: bundles.owner", config.display()), detail);
    if let Some((u, g)) = spec.split_once(':') {
        let uid = u.parse().map_err(|_| bad(format!("{u:?} is not a uid")))?;
        let gid = g.parse().map_err(|_| bad(format!("{g:?} is not a gid")))?;
        return Ok(Owner { uid, gid });
    }
    let passwd = root.passwd()?;
    let text = fs::read_to_string(&passwd).at("reading", &passwd)?;
    text.lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && f[0] == spec).then(|| {
                Some(Owner {
                    uid: f[2].parse().ok()?,
                    gid: f[3].parse().ok()?,
                })
            })
        })
        .flatten()
        .ok_or_else(|| bad(format!("user {spec:?} is not in {}", passwd.display())))
}

/// The node as bundle apply sees it: role and every path under the root.
pub fn node(root: &Root) -> Result<(Seed, Node)> {
    let seed = load_seed(root)?;
    let cfg = load_agent_config(root)?.bundles;
    let owner = cfg
        .owner
        .as_deref()
        .map(|o| resolve_owner(root, o))
        .transpose()?;
    let podman = cfg
        .podman
        .map(|p| -> Result<PodmanStore> {
            Ok(PodmanStore {
                driver: p.driver,
                graph_root: root.host(&p.graph_root)?,
                run_root: root.host(&p.run_root)?,
            })
        })
        .transpose()?;
    let node = Node {
        role: seed.role,
        content_dir: root.host(&cfg.content_dir)?,
        bundles_dir: root.host(&cfg.bundles_dir)?,
        // Bundle apply makes these symlinks into `current` itself.
        ollama_dir: root.resolve_entry(&cfg.ollama_models)?,
        huggingface_dir: root.resolve_entry(&cfg.huggingface_cache)?,
        gguf_dir: cfg
            .gguf_models
            .as_deref()
            .map(|p| root.resolve_entry(p))
            .transpose()?,
        podman,
        owner,
        applied_at: None,
    };
    Ok((seed, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(root.etc().unwrap()).unwrap();
        let err = load_seed(&root).unwrap_err().to_string();
        assert!(
            err.contains("seed.toml") && err.contains("missing"),
            "{err}"
        );
        fs::write(
            root.seed().unwrap(),
            "node = \"n1\"\nrole = \"gpu\"\nrack = 4\n",
        )
        .unwrap();
        let err = load_seed(&root).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("rack"), "{err}");
        fs::write(root.seed().unwrap(), "node = \"n1\"\nrole = \"printer\"\n").unwrap();
        let err = load_seed(&root).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("printer"), "{err}");
        // The name that once put WEBUI_AUTH=False into Open WebUI's env file.
        fs::write(
            root.seed().unwrap(),
            "node = \"ai-1\\nWEBUI_AUTH=False\"\nrole = \"app\"\n",
        )
        .unwrap();
        let err = load_seed(&root).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let err = err.to_string();
        assert!(
            err.contains("seed.toml") && err.contains("line 1") && err.contains("node name"),
            "{err}"
        );
    }

    #[test]
    fn owner_from_passwd_or_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        fs::create_dir_all(root.etc().unwrap()).unwrap();
        fs::write(
            root.passwd().unwrap(),
            "root:x:0:0::/root:/bin/sh\nollama:x:998:997::/usr/share/ollama:/bin/false\n",
        )
        .unwrap();
        assert_eq!(
            resolve_owner(&root, "ollama").unwrap(),
            Owner { uid: 998, gid: 997 }
        );
        assert_eq!(
            resolve_owner(&root, "5:6").unwrap(),
            Owner { uid: 5, gid: 6 }
        );
        assert!(resolve_owner(&root, "nobody").is_err());
    }
}
