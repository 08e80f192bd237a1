//! `owui-agent secrets init`: the per-node secrets and TLS files that a role
//! image never carries (every node boots the same bytes), made on the node at
//! first boot. Each secret is made once and kept: a second run, or a file the
//! operator put there first (a site certificate, a shared cluster key), is
//! never overwritten. Values are written to 0600 files and never printed or
//! logged; the report names files only.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::first_admin::FirstAdmin;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::{Error, Result, Role};
use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{self, Seed};
use crate::layout::Root;

/// Where the read-only root links /etc/owui/secrets and /etc/owui/tls to
/// (the data partition), so the files survive reboots and upgrades.
const SECRETS_DIR: &str = "/etc/owui/secrets";
const TLS_DIR: &str = "/etc/owui/tls";

/// How long the node's own certificate lasts. The nginx-tls check warns 30
/// days before the end; a site certificate put in its place replaces it.
const LEAF_DAYS: i64 = 825;
const CA_DAYS: i64 = 3650;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub node: String,
    pub role: String,
    /// Files this run made.
    pub created: Vec<PathBuf>,
    /// Files that were there already and were left as they were.
    pub kept: Vec<PathBuf>,
    /// sha256 of the CA certificate nginx's chain ends in (DER, hex), for a
    /// browser or a client to pin; None when the TLS files were not ours.
    pub tls_ca_sha256: Option<String>,
}

/// The random values the env files are made from, each in its own file so
/// that every env file that needs one agrees on it. Files are named by
/// their path on the node (what the report shows) and reached through the
/// root, so a link on a mounted disk cannot lead outside it.
struct Secrets<'a> {
    root: &'a Root,
    report: Report,
}

impl Secrets<'_> {
    /// The value in `/etc/owui/secrets/<name>`, made (48 hex digits, 192
    /// bits) if absent.
    fn value(&mut self, name: &str) -> Result<String> {
        let node_path = Path::new(SECRETS_DIR).join(name);
        let path = self.root.host(&node_path)?;
        if let Some(value) = read_value(&path)? {
            self.report.kept.push(node_path);
            return Ok(value);
        }
        let mut bytes = [0u8; 24];
        OsRng.fill_bytes(&mut bytes);
        let value = hex::encode(bytes);
        write_atomic(&path, format!("{value}\n").as_bytes(), 0o600)?;
        self.report.created.push(node_path);
        Ok(value)
    }

    /// Writes the env file `/etc/owui/secrets/<name>` from `render` (its
    /// comment lines and variables) unless it exists.
    fn env_file(
        &mut self,
        name: &str,
        render: impl FnOnce(&mut Self) -> Result<EnvFile>,
    ) -> Result<()> {
        let node_path = Path::new(SECRETS_DIR).join(name);
        let path = self.root.host(&node_path)?;
        if read_private(&path)?.is_some() {
            self.report.kept.push(node_path);
            return Ok(());
        }
        let text = render(self)?.text(&path)?;
        write_atomic(&path, text.as_bytes(), 0o600)?;
        self.report.created.push(node_path);
        Ok(())
    }
}

/// An env file as podman's `--env-file` reads it: `KEY=VALUE` lines, no
/// quoting, a value runs to the end of its line.
struct EnvFile {
    /// Comment lines, without the `# `.
    comment: &'static [&'static str],
    vars: Vec<(&'static str, String)>,
}

impl EnvFile {
    fn vars(vars: Vec<(&'static str, String)>) -> Self {
        EnvFile { comment: &[], vars }
    }

    /// The file's text: the one place env files are written. A value with a
    /// line break, NUL or other control character would end its line and
    /// start a variable of its own (`WEBUI_AUTH=False` from a node name), so
    /// it is refused, naming the file and key, and nothing is written.
    fn text(&self, path: &Path) -> Result<String> {
        let mut text = String::new();
        for line in self.comment {
            text.push_str(&format!("# {line}\n"));
        }
        for (key, value) in &self.vars {
            let key_ok = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !key_ok {
                return Err(Error::invalid(
                    path.display().to_string(),
                    format!("{key:?} is not an environment variable name"),
                ));
            }
            if let Some(c) = value.chars().find(|c| c.is_control()) {
                return Err(Error::invalid(
                    format!("{}: {key}", path.display()),
                    format!(
                        "the value holds control character {c:?}, which would end the line in an env file"
                    ),
                ));
            }
            text.push_str(&format!("{key}={value}\n"));
        }
        Ok(text)
    }
}

/// The one value in a secret file, or None when it does not exist. Values
/// go into URLs and SQL literals unquoted, so only URL-safe characters are
/// taken (what `init` makes is hex).
pub fn read_value(path: &Path) -> Result<Option<String>> {
    let Some(text) = read_private(path)? else {
        return Ok(None);
    };
    let value = text.trim();
    let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if value.is_empty() || !value.chars().all(url_safe) {
        return Err(Error::invalid(
            path.display().to_string(),
            "must hold one value on one line, of letters, digits and - . _ ~ only",
        ));
    }
    Ok(Some(value.to_string()))
}

/// A secret file's text, or None when it does not exist. One that others
/// can read is refused rather than trusted: it may have leaked.
fn read_private(path: &Path) -> Result<Option<String>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("reading", path),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::refused(
            path.display().to_string(),
            format!("has mode {mode:04o}; secrets must be 0600 (chmod 600 it, or remove it to make a new one)"),
        ));
    }
    fs::read_to_string(path).at("reading", path).map(Some)
}

/// A 0700 directory, made if missing; an existing one open to others is
/// refused.
fn private_dir(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => Err(Error::refused(
            path.display().to_string(),
            format!(
                "has mode {:04o}; a secrets directory must be 0700",
                meta.permissions().mode() & 0o777
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .at("creating", path),
        Err(e) => Err(e).at("reading", path),
    }
}

fn serves_web(role: Role) -> bool {
    matches!(role, Role::App | Role::Allinone)
}

fn serves_inference(role: Role) -> bool {
    matches!(role, Role::Gpu | Role::Allinone)
}

fn serves_database(role: Role) -> bool {
    matches!(role, Role::Db | Role::Allinone)
}

/// Refuses, before anything is written, a secrets directory or file others
/// can read, and half a TLS key pair.
fn precheck(root: &Root, role: Role) -> Result<()> {
    for node_dir in [SECRETS_DIR, TLS_DIR] {
        let dir = root.host(Path::new(node_dir))?;
        if !dir.exists() {
            continue;
        }
        private_dir(&dir)?;
        for entry in fs::read_dir(&dir).at("reading", &dir)? {
            let name = entry.at("reading", &dir)?.file_name();
            let path = root.host(&Path::new(node_dir).join(name))?;
            if path.is_file() {
                read_private(&path)?;
            }
        }
    }
    if serves_web(role) {
        let dir = root.host(Path::new(TLS_DIR))?;
        let chain = root.host(&Path::new(TLS_DIR).join("fullchain.pem"))?;
        let key = root.host(&Path::new(TLS_DIR).join("privkey.pem"))?;
        if chain.exists() != key.exists() {
            return Err(Error::invalid(
                dir.display().to_string(),
                "holds only one of fullchain.pem and privkey.pem: put both there, or remove the other to make new ones",
            ));
        }
    }
    Ok(())
}

/// Makes whatever of this role's secrets and TLS files is missing.
pub fn init(root: &Root) -> Result<Report> {
    let seed = config::load_seed(root)?;
    precheck(root, seed.role)?;
    private_dir(&root.host(Path::new(SECRETS_DIR))?)?;
    let mut s = Secrets {
        root,
        report: Report {
            node: seed.node.to_string(),
            role: seed.role.as_str().to_string(),
            ..Report::default()
        },
    };
    let role = seed.role;
    if serves_database(role) || serves_web(role) {
        s.value("postgres-openwebui-password")?;
    }
    if serves_inference(role) {
        s.env_file("vllm.env", |s| {
            Ok(EnvFile::vars(vec![(
                "VLLM_API_KEY",
                s.value("vllm-api-key")?,
            )]))
        })?;
    }
    if serves_web(role) {
        s.env_file("open-terminal.env", |s| {
            Ok(EnvFile::vars(vec![(
                "OPEN_TERMINAL_API_KEY",
                s.value("open-terminal-api-key")?,
            )]))
        })?;
        let node = seed.node.clone();
        let admin = seed.admin.clone();
        s.env_file("open-webui.env", |s| {
            open_webui_env(s, &node, admin.as_ref())
        })?;
        tls(&mut s, &node)?;
    }
    Ok(s.report)
}

/// Open WebUI's secrets and per-node values (docs/images.md lists them). The
/// endpoints are the node's own loopback services: right for the all-in-one;
/// an app node of a cluster gets its db and gpu nodes' with enrolment.
fn open_webui_env(s: &mut Secrets<'_>, node: &str, admin: Option<&FirstAdmin>) -> Result<EnvFile> {
    let db_password = s.value("postgres-openwebui-password")?;
    let database = format!("postgresql://openwebui:{db_password}@127.0.0.1:5432/openwebui");
    let terminals = serde_json::json!([{
        "url": "http://127.0.0.1:8001",
        "key": s.value("open-terminal-api-key")?,
    }]);
    Ok(EnvFile {
        comment: &[
            "Made on this node by `owui-agent secrets init`; edit WEBUI_URL to the",
            "name users type. Values here win over /etc/owui/open-webui.env.",
        ],
        vars: vec![
            ("WEBUI_SECRET_KEY", s.value("webui-secret-key")?),
            ("WEBUI_URL", format!("https://{node}")),
            ("DATABASE_URL", database.clone()),
            ("PGVECTOR_DB_URL", database),
            ("OPENAI_API_KEY", s.value("vllm-api-key")?),
            ("TERMINAL_SERVER_CONNECTIONS", terminals.to_string()),
            ("WEBUI_ADMIN_EMAIL", FirstAdmin::email_for(admin, node)),
            ("WEBUI_ADMIN_PASSWORD", s.value("admin-password")?),
            ("WEBUI_ADMIN_NAME", FirstAdmin::name_for(admin)),
        ],
    })
}

/// Open WebUI's first administrator (the one `secrets init` names in
/// `WEBUI_ADMIN_*`, from the seed's `[admin]`): its address and password, the first time this is
/// asked and never again (a marker file beside the password records it).
/// The READY banner prints them on the console, the one way to them
/// before an operator can log in; the journal never sees them. None when
/// they were shown already or the node has no such password.
pub fn first_admin_login(root: &Root, seed: &Seed) -> Result<Option<(String, String)>> {
    let password_path = root.host(&Path::new(SECRETS_DIR).join("admin-password"))?;
    let shown = root.host(&Path::new(SECRETS_DIR).join("admin-password.shown"))?;
    if shown.exists() {
        return Ok(None);
    }
    let Some(password) = read_value(&password_path)? else {
        return Ok(None);
    };
    write_atomic(&shown, b"", 0o600)?;
    let email = FirstAdmin::email_for(seed.admin.as_ref(), &seed.node);
    Ok(Some((email, password)))
}

/// nginx's certificate: kept when the site put its own there, else a
/// node-local CA (its key is thrown away once it has signed) and a server
/// certificate for the node's name and loopback.
fn tls(s: &mut Secrets<'_>, node: &str) -> Result<()> {
    private_dir(&s.root.host(Path::new(TLS_DIR))?)?;
    let node_path = |file: &str| Path::new(TLS_DIR).join(file);
    let (chain, key, ca) = (
        node_path("fullchain.pem"),
        node_path("privkey.pem"),
        node_path("ca.pem"),
    );
    let (chain_at, key_at, ca_at) = (s.root.host(&chain)?, s.root.host(&key)?, s.root.host(&ca)?);
    // precheck() refused half a pair.
    if chain_at.exists() {
        s.report.kept.extend([chain, key]);
        return Ok(());
    }
    let made =
        issue(node).map_err(|e| Error::internal("making the TLS certificate", e.to_string()))?;
    // The key first: a chain without its key would be taken for a site's.
    write_atomic(&ca_at, made.ca_pem.as_bytes(), 0o600)?;
    write_atomic(&key_at, made.key_pem.as_bytes(), 0o600)?;
    write_atomic(&chain_at, made.chain_pem.as_bytes(), 0o600)?;
    s.report.created.extend([ca, key, chain]);
    s.report.tls_ca_sha256 = Some(made.ca_sha256);
    Ok(())
}

struct Issued {
    ca_pem: String,
    ca_sha256: String,
    key_pem: String,
    chain_pem: String,
}

fn issue(node: &str) -> std::result::Result<Issued, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    // A day back: the clock of a node with no time source may lag the
    // browser's.
    let from = now - time::Duration::days(1);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("owui node CA {node}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = from;
    ca.not_after = now + time::Duration::days(CA_DAYS);
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_sha256 = hex::encode(Sha256::digest(ca_cert.der()));
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec![node.to_string(), "localhost".to_string()])?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.distinguished_name.push(DnType::CommonName, node);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.not_before = from;
    leaf.not_after = now + time::Duration::days(LEAF_DAYS);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Issued {
        chain_pem: format!("{}{}", cert.pem(), ca_pem),
        ca_pem,
        ca_sha256,
        key_pem: key.serialize_pem(),
    })
}

pub fn print(r: &Report) {
    println!("secrets of {} node {}:", r.role, r.node);
    for p in &r.created {
        println!("  made {}", p.display());
    }
    for p in &r.kept {
        println!("  kept {}", p.display());
    }
    if let Some(fp) = &r.tls_ca_sha256 {
        println!("TLS CA sha256 (give it to browsers and clients to check): {fp}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(role: &str) -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc/owui");
        fs::create_dir_all(&etc).unwrap();
        fs::write(
            etc.join("seed.toml"),
            format!("node = \"ai-1\"\nrole = \"{role}\"\n"),
        )
        .unwrap();
        let root = Root::new(tmp.path());
        (tmp, root)
    }

    fn env(root: &Root, file: &str) -> Vec<(String, String)> {
        fs::read_to_string(root.host(&Path::new(SECRETS_DIR).join(file)).unwrap())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get(vars: &[(String, String)], key: &str) -> String {
        vars.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} missing"))
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        let mut v: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn allinone_gets_every_file_private_and_consistent() {
        let (_tmp, root) = node("allinone");
        let r = init(&root).unwrap();
        assert_eq!(
            names(&r.created),
            [
                "admin-password",
                "ca.pem",
                "fullchain.pem",
                "open-terminal-api-key",
                "open-terminal.env",
                "open-webui.env",
                "postgres-openwebui-password",
                "privkey.pem",
                "vllm-api-key",
                "vllm.env",
                "webui-secret-key",
            ]
        );
        for dir in [SECRETS_DIR, TLS_DIR] {
            let dir = root.host(Path::new(dir)).unwrap();
            assert_eq!(
                fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
            for entry in fs::read_dir(&dir).unwrap() {
                let mode = entry.unwrap().metadata().unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        let webui = env(&root, "open-webui.env");
        let vllm_key = get(&env(&root, "vllm.env"), "VLLM_API_KEY");
        assert_eq!(get(&webui, "OPENAI_API_KEY"), vllm_key);
        let terminal_key = get(&env(&root, "open-terminal.env"), "OPEN_TERMINAL_API_KEY");
        let connections: serde_json::Value =
            serde_json::from_str(&get(&webui, "TERMINAL_SERVER_CONNECTIONS")).unwrap();
        assert_eq!(connections[0]["key"], terminal_key.as_str());
        let password = fs::read_to_string(
            root.host(Path::new("/etc/owui/secrets/postgres-openwebui-password"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            get(&webui, "DATABASE_URL"),
            format!(
                "postgresql://openwebui:{}@127.0.0.1:5432/openwebui",
                password.trim()
            )
        );
        assert_eq!(get(&webui, "WEBUI_URL"), "https://ai-1");
        // No [admin] in the seed: the node names its administrator.
        assert_eq!(get(&webui, "WEBUI_ADMIN_EMAIL"), "admin@ai-1");
        assert_eq!(get(&webui, "WEBUI_ADMIN_NAME"), "Administrator");
        assert_eq!(get(&webui, "WEBUI_SECRET_KEY").len(), 48);
        assert_ne!(get(&webui, "WEBUI_SECRET_KEY"), vllm_key);
        assert!(r.tls_ca_sha256.is_some());
    }

    #[test]
    fn the_seeds_administrator_is_open_webuis_first() {
        let (_tmp, root) = node("allinone");
        fs::write(
            root.seed().unwrap(),
            "node = \"ai-1\"\nrole = \"allinone\"\n[admin]\nemail = \"ops@site.example\"\nname = \"Site Ops\"\n",
        )
        .unwrap();
        init(&root).unwrap();
        let webui = env(&root, "open-webui.env");
        assert_eq!(get(&webui, "WEBUI_ADMIN_EMAIL"), "ops@site.example");
        assert_eq!(get(&webui, "WEBUI_ADMIN_NAME"), "Site Ops");
        assert_eq!(get(&webui, "WEBUI_ADMIN_PASSWORD").len(), 48);
    }

    #[test]
    fn a_second_run_keeps_every_byte_and_an_operators_file_wins() {
        let (_tmp, root) = node("allinone");
        let secrets = root.host(Path::new(SECRETS_DIR)).unwrap();
        private_dir(&secrets).unwrap();
        write_atomic(&secrets.join("vllm-api-key"), b"site-wide-key\n", 0o600).unwrap();
        init(&root).unwrap();
        let before: Vec<(PathBuf, Vec<u8>)> = [SECRETS_DIR, TLS_DIR]
            .iter()
            .flat_map(|d| fs::read_dir(root.host(Path::new(d)).unwrap()).unwrap())
            .map(|e| {
                let p = e.unwrap().path();
                let bytes = fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        assert_eq!(
            get(&env(&root, "vllm.env"), "VLLM_API_KEY"),
            "site-wide-key"
        );
        let again = init(&root).unwrap();
        assert!(again.created.is_empty(), "{:?}", again.created);
        assert_eq!(again.tls_ca_sha256, None);
        for (path, bytes) in before {
            assert_eq!(fs::read(&path).unwrap(), bytes, "{}", path.display());
        }
    }

    #[test]
    fn each_role_gets_only_its_own_secrets() {
        let made = |role: &str| {
            let (_tmp, root) = node(role);
            names(&init(&root).unwrap().created)
        };
        assert_eq!(made("db"), ["postgres-openwebui-password"]);
        assert_eq!(made("gpu"), ["vllm-api-key", "vllm.env"]);
        assert!(made("app").contains(&"fullchain.pem".to_string()));
    }

    #[test]
    fn readable_secrets_and_half_a_key_pair_are_refused_and_nothing_is_made() {
        let (_tmp, root) = node("allinone");
        let secrets = root.host(Path::new(SECRETS_DIR)).unwrap();
        private_dir(&secrets).unwrap();
        let leaked = secrets.join("webui-secret-key");
        fs::write(&leaked, "x\n").unwrap();
        fs::set_permissions(&leaked, fs::Permissions::from_mode(0o644)).unwrap();
        let err = init(&root).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(err.to_string().contains("webui-secret-key"), "{err}");
        assert!(err.to_string().contains("0644"), "{err}");
        assert_eq!(fs::read_dir(&secrets).unwrap().count(), 1);
        assert!(!root.host(Path::new(TLS_DIR)).unwrap().exists());

        let (_tmp, root) = node("app");
        let tls = root.host(Path::new(TLS_DIR)).unwrap();
        private_dir(&tls).unwrap();
        write_atomic(&tls.join("fullchain.pem"), b"site chain", 0o600).unwrap();
        let err = init(&root).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("privkey.pem"), "{err}");
        assert_eq!(fs::read(tls.join("fullchain.pem")).unwrap(), b"site chain");
        assert!(!tls.join("privkey.pem").exists());
        assert!(!root.host(Path::new(SECRETS_DIR)).unwrap().exists());
    }

    #[test]
    fn a_value_that_would_break_a_url_is_refused() {
        let (_tmp, root) = node("db");
        let secrets = root.host(Path::new(SECRETS_DIR)).unwrap();
        private_dir(&secrets).unwrap();
        let file = secrets.join("postgres-openwebui-password");
        write_atomic(&file, b"pa'ss@word\n", 0o600).unwrap();
        let err = init(&root).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(
            err.to_string().contains("postgres-openwebui-password"),
            "{err}"
        );
    }

    #[test]
    fn the_env_writer_refuses_a_value_that_would_end_its_line() {
        let path = Path::new("/etc/owui/secrets/open-webui.env");
        for bad in [
            "ai-1\nWEBUI_AUTH=False",
            "x\rOPENAI_API_BASE_URL=http://evil.example",
            "x\0y",
            "x\u{1b}[2J",
        ] {
            let file = EnvFile::vars(vec![("WEBUI_URL", format!("https://{bad}"))]);
            let err = file.text(path).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{err}");
            let text = err.to_string();
            assert!(text.contains("open-webui.env: WEBUI_URL"), "{text}");
            assert!(!text.contains('\n') && !text.contains('\0'), "{text:?}");
        }
        let err = EnvFile::vars(vec![("A=B", "x".into())])
            .text(path)
            .unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let ok = EnvFile {
            comment: &["made here"],
            vars: vec![("A_1", "{\"k\": \"v w\"}".into())],
        };
        assert_eq!(
            ok.text(path).unwrap(),
            "# made here\nA_1={\"k\": \"v w\"}\n"
        );
    }

    #[test]
    fn a_node_name_with_a_newline_writes_no_env_file() {
        // The seed that put WEBUI_AUTH=False and an attacker's endpoint into
        // Open WebUI's env file.
        let (_tmp, root) = node("app");
        fs::write(
            root.seed().unwrap(),
            "node = \"ai-1\\nWEBUI_AUTH=False\\nOPENAI_API_BASE_URL=http://evil.example\"\nrole = \"app\"\n",
        )
        .unwrap();
        let err = init(&root).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("node name"), "{err}");
        assert!(!root.host(Path::new(SECRETS_DIR)).unwrap().exists());
        assert!(!root.host(Path::new(TLS_DIR)).unwrap().exists());
    }

    #[test]
    fn no_seed_names_the_seed_file() {
        let tmp = tempfile::tempdir().unwrap();
        let err = init(&Root::new(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("seed.toml"), "{err}");
    }
}
