//! A test site: a temporary node root with a seed, a trust store holding a
//! freshly generated key, and helpers to run the real binaries against it.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// A built binary of the workspace. `cargo test --workspace` builds them
/// because each binary crate has integration tests of its own
/// (`agent/tests/`, `builder/tests/`); keep at least one there.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

pub struct Site {
    pub tmp: tempfile::TempDir,
    /// The node's root (`--root`).
    pub root: PathBuf,
    /// Holds owui.key and owui.pub.
    pub keys: PathBuf,
    /// Scratch space for specs, sources and bundles.
    pub work: PathBuf,
}

/// What a command printed and how it exited.
pub struct Run {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(out: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: out.status.code().unwrap_or(-1),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the output unless the command exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

pub fn run(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::of(cmd.output().expect("running a workspace binary"))
}

impl Site {
    /// A node of `role` whose trust store holds the site's key.
    pub fn new(role: &str) -> Site {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("node");
        let keys = tmp.path().join("keys");
        let work = tmp.path().join("work");
        fs::create_dir_all(root.join("etc/owui/trust")).expect("mkdir");
        fs::create_dir_all(&work).expect("mkdir");
        let site = Site {
            tmp,
            root,
            keys,
            work,
        };
        site.builder(&[
            "key",
            "generate",
            "--out",
            site.keys.to_str().expect("utf-8"),
        ])
        .ok();
        let id = key_id(&site.keys.join("owui.pub"));
        fs::copy(
            site.keys.join("owui.pub"),
            site.root.join(format!("etc/owui/trust/{id}.pub")),
        )
        .expect("copy key");
        site.write_seed(role);
        fs::write(
            site.root.join("etc/owui/agent.toml"),
            "[bundles.podman]\ndriver = \"vfs\"\ngraph_root = \"/var/lib/containers/storage\"\nrun_root = \"/run/containers/storage\"\n",
        )
        .expect("write agent.toml");
        site
    }

    pub fn write_seed(&self, role: &str) {
        fs::write(
            self.root.join("etc/owui/seed.toml"),
            format!("node = \"node-1\"\nrole = \"{role}\"\n"),
        )
        .expect("write seed");
    }

    pub fn key(&self) -> String {
        self.keys.join("owui.key").display().to_string()
    }

    pub fn builder(&self, args: &[&str]) -> Run {
        run(
            &bin("owui-builder"),
            args,
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
    }

    pub fn agent(&self, args: &[&str]) -> Run {
        self.agent_env(args, &[])
    }

    pub fn agent_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec!["--root", self.root.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        run(&bin("owui-agent"), &all, env)
    }

    /// Writes `spec` (TOML) as work/NAME.toml and packs it into work/NAME.owb.
    pub fn pack(&self, name: &str, spec: &str) -> PathBuf {
        self.pack_signed_by(name, spec, Path::new(&self.key()))
    }

    /// Like [`Site::pack`], signed with the secret key file `key`.
    pub fn pack_signed_by(&self, name: &str, spec: &str, key: &Path) -> PathBuf {
        let spec_path = self.work.join(format!("{name}.toml"));
        fs::write(&spec_path, spec).expect("write spec");
        let out = self.work.join(format!("{name}.owb"));
        self.builder(&[
            "bundle",
            "create",
            spec_path.to_str().expect("utf-8"),
            "--key",
            key.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--quiet",
        ])
        .ok();
        out
    }

    /// A fingerprint of everything under the node root: paths, types,
    /// modes, symlink targets and file contents.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        snapshot(&self.root)
    }

    /// Runs the agent with `args` and `--json`: it must exit `code`, say
    /// `needle` on stderr (and in its JSON error), and leave every file
    /// under the node root as it was.
    pub fn refused(&self, args: &[&str], code: i32, needle: &str) -> Run {
        let before = self.snapshot();
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.agent(&all);
        assert_eq!(out.code, code, "{args:?}: stderr: {}", out.stderr);
        assert!(
            out.stderr.contains(needle),
            "{args:?}: expected {needle:?} in: {}",
            out.stderr
        );
        assert_eq!(out.json()["error"]["exit_code"], code);
        assert_unchanged(&before, &self.snapshot(), &format!("{args:?}"));
        out
    }
}

/// Panics naming every path that differs between two snapshots.
pub fn assert_unchanged(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    what: &str,
) {
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .chain(after.iter().filter(|(k, _)| !before.contains_key(*k)))
        .collect();
    assert!(
        changed.is_empty(),
        "{what} changed the node's disk: {changed:?}"
    );
}

/// The arguments of `owui-builder seed create`.
pub fn seed_create_args<'a>(
    node: &'a str,
    role: &'a str,
    key: &'a str,
    out: &'a str,
) -> [&'a str; 10] {
    [
        "seed", "create", "--node", node, "--role", role, "--key", key, "--out", out,
    ]
}

/// The key id from a minisign public key file's comment line.
pub fn key_id(pub_file: &Path) -> String {
    let text = fs::read_to_string(pub_file).expect("read public key");
    text.lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .expect("key id in comment")
        .to_string()
}

pub fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path
            .strip_prefix(base)
            .expect("under base")
            .display()
            .to_string();
        let meta = fs::symlink_metadata(&path).expect("metadata");
        let desc = if meta.file_type().is_symlink() {
            format!("link {}", fs::read_link(&path).expect("readlink").display())
        } else if meta.is_dir() {
            walk(base, &path, out);
            format!("dir {:o}", meta.mode() & 0o7777)
        } else {
            let data = fs::read(&path).expect("read");
            format!(
                "file {:o} {}",
                meta.mode() & 0o7777,
                hex::encode(Sha256::digest(&data))
            )
        };
        out.insert(rel, desc);
    }
}

/// Deterministic bytes that do not compress (xorshift), like model weights.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A minimal GGUF v3 file: header, `general.architecture`, `general.file_type`,
/// then `payload` standing in for tensor data.
pub fn gguf(arch: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // tensors
    b.extend_from_slice(&2u64.to_le_bytes()); // metadata entries
    let key = |b: &mut Vec<u8>, k: &str| {
        b.extend_from_slice(&(k.len() as u64).to_le_bytes());
        b.extend_from_slice(k.as_bytes());
    };
    key(&mut b, "general.architecture");
    b.extend_from_slice(&8u32.to_le_bytes()); // string
    b.extend_from_slice(&(arch.len() as u64).to_le_bytes());
    b.extend_from_slice(arch.as_bytes());
    key(&mut b, "general.file_type");
    b.extend_from_slice(&4u32.to_le_bytes()); // uint32
    b.extend_from_slice(&2u32.to_le_bytes()); // Q4_0
    b.extend_from_slice(payload);
    b
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Sources for a small models bundle under `dir`: an Ollama model (GGUF of
/// incompressible bytes plus template, params, system prompt, licence) and a
/// Hugging Face snapshot of `hf_files` files. Returns the spec's TOML tables.
pub fn model_sources(dir: &Path, tag: &str, weights: usize, hf_files: usize) -> String {
    let m = dir.join(format!("src-{tag}"));
    fs::create_dir_all(m.join("hf/onnx")).expect("mkdir");
    let ollama = ollama_source(dir, tag, &format!("tiny-{tag}:1b"), weights);
    for i in 0..hf_files {
        let name = if i == 0 {
            "onnx/model.onnx".to_string()
        } else {
            format!("file-{i}.json")
        };
        let data = if i == 0 {
            noise(i as u64 + 99, 200_000)
        } else {
            format!("{{\"tag\":\"{tag}\",\"i\":{i}}}\n")
                .repeat(50)
                .into_bytes()
        };
        fs::write(m.join("hf").join(name), data).expect("write");
    }
    format!(
        r#"{ollama}
[[huggingface]]
repo = "acme/embed-{tag}"
revision = "{rev}"
path = "src-{tag}/hf"
"#,
        rev = &sha256_hex(tag.as_bytes())[..40]
    )
}

/// Sources under `dir/src-TAG` for one Ollama model named `name` (GGUF of
/// incompressible bytes seeded by `weights`, template, params, system
/// prompt, licence); returns its `[[ollama]]` table. The model file is
/// `src-TAG/model.gguf`.
pub fn ollama_source(dir: &Path, tag: &str, name: &str, weights: usize) -> String {
    let m = dir.join(format!("src-{tag}"));
    fs::create_dir_all(&m).expect("mkdir");
    fs::write(
        m.join("model.gguf"),
        gguf("llama", &noise(weights as u64 + 7, weights)),
    )
    .expect("write");
    fs::write(
        m.join("template.tmpl"),
        format!("{{{{ .System }}}} {tag} {{{{ .Prompt }}}}\n").repeat(40),
    )
    .expect("write");
    fs::write(
        m.join("params.json"),
        "{\"stop\":[\"<|eot_id|>\"],\"temperature\":0.2}",
    )
    .expect("write");
    fs::write(
        m.join("system.txt"),
        format!("You are the {tag} assistant."),
    )
    .expect("write");
    fs::write(m.join("LICENSE"), "Test licence text.\n".repeat(100)).expect("write");
    format!(
        r#"
[[ollama]]
name = "{name}"
gguf = "src-{tag}/model.gguf"
template = "src-{tag}/template.tmpl"
params = "src-{tag}/params.json"
system = "src-{tag}/system.txt"
license = "src-{tag}/LICENSE"
"#
    )
}

/// The spec header for `channel` at `sequence` for `roles`.
pub fn spec_head(channel: &str, sequence: u64, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
    format!(
        "channel = \"{channel}\"\nsequence = {sequence}\nroles = [{}]\n",
        roles.join(", ")
    )
}
