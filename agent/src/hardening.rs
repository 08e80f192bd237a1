//! Hardening audit: the node checks itself against the security checklist and
//! secure defaults of the seed deployment and reports every deviation
//! ("drift") for `owui-agent status`.
//!
//! What is checked, and where the expectation comes from (the reference
//! deployment's production guide, "the guide"):
//!
//! - **Open WebUI environment** (the env files and the Quadlet unit the
//!   container runs with): `ENABLE_SIGNUP=False`, `DEFAULT_USER_ROLE=pending`,
//!   `ENABLE_ADMIN_CHAT_ACCESS=False`, `ENABLE_ADMIN_EXPORT=False`,
//!   `BYPASS_MODEL_ACCESS_CONTROL=False`, `BYPASS_ADMIN_ACCESS_CONTROL=False`,
//!   `ENABLE_COMMUNITY_SHARING=False`, `USER_PERMISSIONS_CHAT_DELETE=False`,
//!   `USER_PERMISSIONS_CHAT_TEMPORARY=False`: the compose file's "Security
//!   defaults" and "User permissions" blocks, the environment reference
//!   tables and the hardening checklist. `WEBUI_AUTH` must not be turned off (it disables login
//!   altogether, and Open WebUI then forces `ENABLE_SIGNUP` off, which would
//!   otherwise hide it). `OPENAI_API_BASE_URL`, `OLLAMA_BASE_URL` and
//!   `WEBUI_AUTH` must keep the value the configured env files (the image's
//!   own settings, on the read-only root) give them: a later source (the
//!   node's secrets env file, a unit's `Environment=`) that changes one
//!   would send prompts elsewhere or drop the login.
//! - **Secret file modes**: `chmod 600 .env`, applied to the
//!   environment files (they hold `WEBUI_SECRET_KEY`) and to
//!   everything under the configured secret paths.
//! - **Pinned images**: tags pinned, never `:main` or `:latest`; the appliance goes further and addresses everything by sha256
//!   (DESIGN.md, "Signed content"), so a reference without `@sha256:` is drift.
//! - **Redis**: `maxclients` 10000 or more and `timeout 1800`.
//! - **Listening sockets**: only 443 faces users, with 80 kept
//!   for the HTTPS redirect; everything else must be bound
//!   to loopback. Quadlet `PublishPort=` lines are checked by the same rule,
//!   since ports published through netavark's DNAT have no listening socket
//!   on the host.
//!
//! How Open WebUI reads its settings (its environment variable reference,
//! docs.openwebui.com "Environment Variable Configuration", and
//! `backend/open_webui/config.py`): a boolean is true only when the value,
//! lower-cased, is exactly `true` (`os.environ.get(NAME, default).lower() ==
//! "true"`), so `1`, `yes` or `on` mean false. Defaults when unset:
//! `ENABLE_SIGNUP` True, `DEFAULT_USER_ROLE` pending, `ENABLE_ADMIN_CHAT_ACCESS`
//! True, `ENABLE_ADMIN_EXPORT` True, `BYPASS_MODEL_ACCESS_CONTROL` False,
//! `BYPASS_ADMIN_ACCESS_CONTROL` True (falling back to the deprecated
//! `ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS`), `ENABLE_COMMUNITY_SHARING` True,
//! `USER_PERMISSIONS_CHAT_DELETE` True, `USER_PERMISSIONS_CHAT_TEMPORARY` True,
//! `WEBUI_AUTH` True. An unset variable is therefore drift whenever its
//! default is the insecure value.
//!
//! Nothing here panics on input: a file that cannot be read is an entry in
//! [`Audit::errors`] (the audit does not know), never a finding, and every
//! read is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::Root;

/// Largest configuration file read (env files, units, redis.conf).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest `/proc/net/tcp*` read (about 400 000 sockets).
const MAX_PROC_BYTES: u64 = 64 * 1024 * 1024;
/// Entries visited under all the secret paths together.
const MAX_SECRET_ENTRIES: usize = 10_000;
/// Directory depth under one secret path.
const MAX_SECRET_DEPTH: usize = 16;
/// Nesting of redis `include` directives.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Drop-in files read for one Quadlet unit.
const MAX_DROPINS: usize = 64;
/// Longest value quoted back in a finding.
const MAX_SHOWN_CHARS: usize = 96;
/// Redis's own `maxclients` when the directive is absent.
const REDIS_DEFAULT_MAXCLIENTS: u64 = 10_000;

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

/// Audits the node whose root directory is `root` ("/" on a real node).
pub fn audit(root: &Path, cfg: &HardeningConfig) -> Audit {
    let mut a = Audit::default();
    let mut mode_checked = BTreeSet::new();
    let (units, units_complete) = read_quadlet_units(root, cfg, &mut a);
    audit_environment(root, cfg, &units, units_complete, &mut mode_checked, &mut a);
    audit_secret_paths(root, cfg, &mut mode_checked, &mut a);
    audit_images(root, cfg, &units, &mut a);
    audit_published_ports(cfg, &units, &mut a);
    audit_redis(root, cfg, &mut a);
    audit_sockets(root, cfg, &mut a);
    a
}

// ---------------------------------------------------------------------------
// Paths and bounded reads
// ---------------------------------------------------------------------------

/// A path of the node's namespace resolved inside `root` as every agent
/// path is (symlinks followed, never out of the root: [`Root::resolve`]);
/// Err(reason) when it cannot be.
fn under_root(root: &Path, path: &Path) -> Result<PathBuf, String> {
    Root::new(root)
        .resolve(path)
        .map_err(|e| format!("{e}: cannot audit"))
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not found: cannot audit".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied: cannot audit".to_string(),
        _ => format!("{e}: cannot audit"),
    }
}

/// Opens a regular file without blocking on a FIFO; the error is a reason.
fn open_regular(host: &Path) -> Result<(File, u32), String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(host)
        .map_err(|e| io_reason(&e))?;
    let meta = file.metadata().map_err(|e| io_reason(&e))?;
    if !meta.is_file() {
        return Err("not a regular file: cannot audit".to_string());
    }
    Ok((file, meta.permissions().mode()))
}

/// Reads a text file of at most [`MAX_FILE_BYTES`]; also returns its mode.
fn read_text(root: &Path, path: &Path) -> Result<(String, u32), String> {
    let (file, mode) = open_regular(&under_root(root, path)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_reason(&e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes: cannot audit"));
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), mode))
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

fn port_list(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "none".to_string();
    }
    let set: BTreeSet<u16> = ports.iter().copied().collect();
    set.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// File modes
// ---------------------------------------------------------------------------

/// Permission bits allowed on a secret: 0600 and anything stricter.
const SECRET_MODE_MAX: u32 = 0o600;

fn check_secret_mode(a: &mut Audit, path: &Path, mode: u32) {
    a.checked.push(format!("mode of {}", path.display()));
    let perm = mode & 0o7777;
    if perm & !SECRET_MODE_MAX == 0 {
        return;
    }
    // Any group/other access is an open door; an owner execute bit or a
    // set-id bit is only untidy.
    let severity = if perm & 0o077 != 0 {
        Severity::Fail
    } else {
        Severity::Warn
    };
    a.finding(
        severity,
        "secret file mode",
        "0600 or stricter",
        format!("{perm:04o}"),
        path.display().to_string(),
    );
}

fn audit_secret_paths(
    root: &Path,
    cfg: &HardeningConfig,
    mode_checked: &mut BTreeSet<PathBuf>,
    a: &mut Audit,
) {
    let mut budget = MAX_SECRET_ENTRIES;
    for path in &cfg.secret_files {
        let host = match under_root(root, path) {
            Ok(host) => host,
            Err(reason) => {
                a.errors
                    .push(format!("secret path {}: {reason}", path.display()));
                continue;
            }
        };
        // The configured path itself may be a link (to a data partition).
        match fs::metadata(&host) {
            Err(e) => a
                .errors
                .push(format!("secret path {}: {}", path.display(), io_reason(&e))),
            Ok(meta) if meta.is_dir() => {
                walk_secret_dir(&host, path, 0, &mut budget, mode_checked, a)
            }
            Ok(meta) if meta.is_file() => {
                if mode_checked.insert(host) {
                    check_secret_mode(a, path, meta.permissions().mode());
                }
            }
            Ok(_) => a.errors.push(format!(
                "secret path {}: neither a file nor a directory: cannot audit",
                path.display()
            )),
        }
    }
}

fn walk_secret_dir(
    host: &Path,
    path: &Path,
    depth: usize,
    budget: &mut usize,
    mode_checked: &mut BTreeSet<PathBuf>,
    a: &mut Audit,
) {
    if depth >= MAX_SECRET_DEPTH {
        a.errors.push(format!(
            "secret directory {}: deeper than {MAX_SECRET_DEPTH} levels: not audited",
            path.display()
        ));
        return;
    }
    let entries = match fs::read_dir(host) {
        Ok(entries) => entries,
        Err(e) => {
            a.errors.push(format!(
                "secret directory {}: {}",
                path.display(),
                io_reason(&e)
            ));
            return;
        }
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name()),
            Err(e) => a.errors.push(format!(
                "secret directory {}: {}",
                path.display(),
                io_reason(&e)
            )),
        }
        if names.len() > *budget {
            break;
        }
    }
    names.sort();
    for name in names {
        let child_path = path.join(&name);
        if *budget == 0 {
            a.errors.push(format!(
                "secret path {}: more than {MAX_SECRET_ENTRIES} entries: rest not audited",
                child_path.display()
            ));
            return;
        }
        *budget -= 1;
        let child_host = host.join(&name);
        match fs::symlink_metadata(&child_host) {
            Err(e) => a.errors.push(format!(
                "secret path {}: {}",
                child_path.display(),
                io_reason(&e)
            )),
            Ok(meta) if meta.file_type().is_symlink() => a.errors.push(format!(
                "secret path {}: symbolic link, not followed: cannot audit",
                child_path.display()
            )),
            Ok(meta) if meta.is_dir() => {
                walk_secret_dir(&child_host, &child_path, depth + 1, budget, mode_checked, a)
            }
            Ok(meta) if meta.is_file() => {
                if mode_checked.insert(child_host) {
                    check_secret_mode(a, &child_path, meta.permissions().mode());
                }
            }
            // Sockets, FIFOs, devices: not secrets at rest.
            Ok(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Environment files (systemd EnvironmentFile= syntax)
// ---------------------------------------------------------------------------

/// One `KEY=VALUE` of an environment file, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnvLine {
    key: String,
    value: String,
    line: usize,
}

/// Parses an environment file the way systemd's `EnvironmentFile=` does:
/// blank lines and lines starting with `#` or `;` are skipped, an `export `
/// prefix is tolerated, a value may be single- or double-quoted (and then span
/// lines), a backslash escapes the next character and continues an unquoted
/// value on the next line, trailing blanks of an unquoted value are dropped.
/// A `#` inside a value is part of the value (as in systemd). Returns the
/// assignments in file order and the problems found, each with its line.
fn parse_env_text(text: &str) -> (Vec<EnvLine>, Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let line_no = next + 1;
        let line = lines[next].trim_start_matches([' ', '\t']);
        next += 1;
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start_matches([' ', '\t']),
            _ => line,
        };
        let Some((key, rest)) = line.split_once('=') else {
            problems.push(format!("line {line_no}: not KEY=VALUE, ignored"));
            continue;
        };
        let key = key.trim_end_matches([' ', '\t']);
        if !valid_env_key(key) {
            problems.push(format!(
                "line {line_no}: invalid variable name {}, ignored",
                shown(key)
            ));
            continue;
        }
        let first = rest.trim_start_matches([' ', '\t']);
        match parse_env_value(first, &lines, &mut next) {
            Ok(value) => out.push(EnvLine {
                key: key.to_string(),
                value,
                line: line_no,
            }),
            Err(e) => problems.push(format!("line {line_no}: {e}, ignored")),
        }
    }
    (out, problems)
}

fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The value of one assignment, starting at `first` (the text after `=`);
/// pulls further lines from `lines[*next..]` for quoted values spanning lines
/// and for backslash continuations.
fn parse_env_value(first: &str, lines: &[&str], next: &mut usize) -> Result<String, String> {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Single,
        Double,
    }
    let mut state = State::Plain;
    let mut out = String::new();
    // Unquoted blanks at the end of `out`, dropped at the end of the value.
    let mut trailing_blanks = 0usize;
    let mut chars: Vec<char> = first.chars().collect();
    let mut pos = 0;
    let mut at_start = true;
    loop {
        let Some(&c) = chars.get(pos) else {
            if state == State::Plain {
                break;
            }
            // A quoted value goes on over the line break.
            let Some(line) = lines.get(*next) else {
                return Err("unterminated quoted value".to_string());
            };
            *next += 1;
            out.push('\n');
            chars = line.chars().collect();
            pos = 0;
            continue;
        };
        pos += 1;
        match state {
            State::Plain => {
                if at_start && (c == '"' || c == '\'') {
                    state = if c == '"' {
                        State::Double
                    } else {
                        State::Single
                    };
                } else if c == '\\' {
                    if let Some(&escaped) = chars.get(pos) {
                        out.push(escaped);
                        pos += 1;
                        trailing_blanks = 0;
                    } else if let Some(line) = lines.get(*next) {
                        // Backslash at the end of the line: continued.
                        *next += 1;
                        chars = line.chars().collect();
                        pos = 0;
                    }
                } else {
                    out.push(c);
                    if c == ' ' || c == '\t' {
                        trailing_blanks += 1;
                    } else {
                        trailing_blanks = 0;
                    }
                }
                at_start = false;
            }
            State::Single => {
                if c == '\'' {
                    state = State::Plain;
                } else {
                    out.push(c);
                }
                trailing_blanks = 0;
            }
            State::Double => {
                if c == '"' {
                    state = State::Plain;
                } else if c == '\\' {
                    match chars.get(pos) {
                        Some(&escaped) if matches!(escaped, '"' | '\\' | '`' | '$') => {
                            out.push(escaped);
                            pos += 1;
                        }
                        Some(_) => out.push('\\'),
                        None => {
                            // Backslash-newline inside quotes joins the lines.
                            let Some(line) = lines.get(*next) else {
                                return Err("unterminated quoted value".to_string());
                            };
                            *next += 1;
                            chars = line.chars().collect();
                            pos = 0;
                        }
                    }
                } else {
                    out.push(c);
                }
                trailing_blanks = 0;
            }
        }
    }
    // Blanks are one byte each.
    out.truncate(out.len().saturating_sub(trailing_blanks));
    Ok(out)
}

// ---------------------------------------------------------------------------
// Quadlet units (systemd unit-file syntax)
// ---------------------------------------------------------------------------

/// One `Key=Value` of a unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnitLine {
    line: usize,
    section: String,
    key: String,
    value: String,
}

/// Parses systemd unit-file syntax: `[Section]` headers, `Key=Value` lines
/// (both sides trimmed), `#`/`;` comments, backslash line continuations.
fn parse_unit_text(text: &str) -> Vec<UnitLine> {
    let mut out = Vec::new();
    let mut section = String::new();
    // (first line number, text so far) of a continued line.
    let mut pending: Option<(usize, String)> = None;
    fn push(line: usize, section: &str, text: &str, out: &mut Vec<UnitLine>) {
        if let Some((key, value)) = text.split_once('=') {
            out.push(UnitLine {
                line,
                section: section.to_string(),
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            });
        }
    }
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if let Some((start, mut joined)) = pending.take() {
            if line.starts_with('#') || line.starts_with(';') {
                pending = Some((start, joined));
                continue;
            }
            joined.push(' ');
            if let Some(body) = line.strip_suffix('\\') {
                joined.push_str(body);
                pending = Some((start, joined));
            } else {
                joined.push_str(line);
                push(start, &section, &joined, &mut out);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            pending = Some((line_no, body.to_string()));
        } else {
            push(line_no, &section, line, &mut out);
        }
    }
    if let Some((start, joined)) = pending {
        push(start, &section, &joined, &mut out);
    }
    out
}

/// Splits a unit-file value into words the way systemd (and Quadlet) do for
/// `Environment=`: blanks separate words, single or double quotes group, a
/// backslash escapes (`\n`, `\t`, `\r` are control characters).
fn split_words(value: &str) -> Result<Vec<String>, String> {
    fn unescape(c: char) -> char {
        match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            other => other,
        }
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == '\\' => match chars.next() {
                Some(escaped) => word.push(unescape(escaped)),
                None => return Err("backslash at the end".to_string()),
            },
            Some(_) => word.push(c),
            None if c == ' ' || c == '\t' || c == '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == '\\' {
                    match chars.next() {
                        Some(escaped) => word.push(unescape(escaped)),
                        None => return Err("backslash at the end".to_string()),
                    }
                } else {
                    word.push(c);
                }
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// An environment file named by a unit (`EnvironmentFile=`).
#[derive(Debug, Clone)]
struct UnitEnvFile {
    path: PathBuf,
    /// `-` prefix: a missing file is not an error.
    optional: bool,
}

/// What the audit needs from one Quadlet `.container` unit and its drop-ins.
#[derive(Debug, Clone)]
struct QuadletUnit {
    path: PathBuf,
    /// Effective `Image=` and the file that set it.
    image: Option<(String, PathBuf)>,
    /// `Environment=` assignments in order: key, value, file.
    env: Vec<(String, String, PathBuf)>,
    env_files: Vec<UnitEnvFile>,
    /// `PublishPort=` values and the file of each.
    publish: Vec<(String, PathBuf)>,
}

/// Reads every configured unit; the flag is false when one could not be read.
fn read_quadlet_units(
    root: &Path,
    cfg: &HardeningConfig,
    a: &mut Audit,
) -> (Vec<QuadletUnit>, bool) {
    let mut units = Vec::new();
    let mut complete = true;
    for path in &cfg.quadlet_units {
        match read_quadlet(root, path, a) {
            Some(unit) => units.push(unit),
            None => complete = false,
        }
    }
    (units, complete)
}

fn read_quadlet(root: &Path, path: &Path, a: &mut Audit) -> Option<QuadletUnit> {
    let text = match read_text(root, path) {
        Ok((text, _)) => text,
        Err(reason) => {
            a.errors
                .push(format!("quadlet unit {}: {reason}", path.display()));
            return None;
        }
    };
    let mut unit = QuadletUnit {
        path: path.to_path_buf(),
        image: None,
        env: Vec::new(),
        env_files: Vec::new(),
        publish: Vec::new(),
    };
    apply_unit_text(&text, path, &mut unit, a);

    // Drop-ins: <unit>.d/*.conf in name order, applied after the unit.
    let mut dropin_dir = path.as_os_str().to_owned();
    dropin_dir.push(".d");
    let dropin_dir = PathBuf::from(dropin_dir);
    let listing = under_root(root, &dropin_dir).and_then(|dir| match fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_reason(&e)),
    });
    match listing {
        Ok(None) => {}
        Ok(Some(entries)) => {
            let mut names: Vec<OsString> = entries
                .filter_map(|entry| entry.ok().map(|e| e.file_name()))
                .filter(|name| Path::new(name).extension().is_some_and(|ext| ext == "conf"))
                .collect();
            names.sort();
            if names.len() > MAX_DROPINS {
                a.errors.push(format!(
                    "quadlet drop-ins {}: more than {MAX_DROPINS}: the rest not audited",
                    dropin_dir.display()
                ));
                names.truncate(MAX_DROPINS);
            }
            for name in names {
                let dropin = dropin_dir.join(name);
                match read_text(root, &dropin) {
                    Ok((text, _)) => apply_unit_text(&text, &dropin, &mut unit, a),
                    Err(reason) => a
                        .errors
                        .push(format!("quadlet drop-in {}: {reason}", dropin.display())),
                }
            }
        }
        Err(reason) => a.errors.push(format!(
            "quadlet drop-ins {}: {reason}",
            dropin_dir.display()
        )),
    }
    Some(unit)
}

/// Applies the `[Container]` lines of one unit file (or drop-in) at `source`.
fn apply_unit_text(text: &str, source: &Path, unit: &mut QuadletUnit, a: &mut Audit) {
    let unit_dir = unit
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for entry in parse_unit_text(text) {
        if entry.section != "Container" {
            continue;
        }
        let here = || format!("{} line {}", source.display(), entry.line);
        match entry.key.as_str() {
            "Image" => {
                unit.image = if entry.value.is_empty() {
                    None
                } else {
                    Some((entry.value.clone(), source.to_path_buf()))
                };
            }
            "Environment" => {
                if entry.value.is_empty() {
                    // An empty assignment resets the list.
                    unit.env.clear();
                    continue;
                }
                match split_words(&entry.value) {
                    Ok(words) => {
                        for word in words {
                            match word.split_once('=') {
                                Some((key, value)) if valid_env_key(key) => unit.env.push((
                                    key.to_string(),
                                    value.to_string(),
                                    source.to_path_buf(),
                                )),
                                _ => a.errors.push(format!(
                                    "{}: Environment= word {} is not KEY=VALUE, ignored",
                                    here(),
                                    shown(&word)
                                )),
                            }
                        }
                    }
                    Err(e) => a
                        .errors
                        .push(format!("{}: Environment= {e}, line ignored", here())),
                }
            }
            "EnvironmentFile" => {
                if entry.value.is_empty() {
                    unit.env_files.clear();
                    continue;
                }
                let (optional, name) = match entry.value.strip_prefix('-') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, entry.value.as_str()),
                };
                if name.contains('%') {
                    a.errors.push(format!(
                        "{}: EnvironmentFile={} uses a specifier: cannot audit",
                        here(),
                        shown(name)
                    ));
                    continue;
                }
                let name = Path::new(name);
                // Quadlet resolves a relative path against the unit's directory.
                let path = if name.is_absolute() {
                    name.to_path_buf()
                } else {
                    unit_dir.join(name)
                };
                unit.env_files.push(UnitEnvFile { path, optional });
            }
            "PublishPort" => {
                for spec in entry.value.split_whitespace() {
                    unit.publish.push((spec.to_string(), source.to_path_buf()));
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Open WebUI environment
// ---------------------------------------------------------------------------

/// An effective variable and the file it comes from.
#[derive(Debug, Clone)]
struct EnvValue {
    value: String,
    source: PathBuf,
}

/// What a secure-default variable must be.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Must read as false; `default_true`: Open WebUI's default when unset.
    False { default_true: bool },
    /// Must be exactly this string (Open WebUI compares it as is).
    Exactly {
        value: &'static str,
        default: &'static str,
    },
    /// Must not read as false (default true).
    NotFalse,
}

/// The seed's secure defaults, in the guide's order, then
/// `WEBUI_AUTH`.
const SECURE_ENV: &[(&str, Want)] = &[
    ("ENABLE_SIGNUP", Want::False { default_true: true }),
    (
        "DEFAULT_USER_ROLE",
        Want::Exactly {
            value: "pending",
            default: "pending",
        },
    ),
    (
        "ENABLE_ADMIN_CHAT_ACCESS",
        Want::False { default_true: true },
    ),
    ("ENABLE_ADMIN_EXPORT", Want::False { default_true: true }),
    (
        "BYPASS_MODEL_ACCESS_CONTROL",
        Want::False {
            default_true: false,
        },
    ),
    (
        "BYPASS_ADMIN_ACCESS_CONTROL",
        Want::False { default_true: true },
    ),
    (
        "ENABLE_COMMUNITY_SHARING",
        Want::False { default_true: true },
    ),
    (
        "USER_PERMISSIONS_CHAT_DELETE",
        Want::False { default_true: true },
    ),
    (
        "USER_PERMISSIONS_CHAT_TEMPORARY",
        Want::False { default_true: true },
    ),
    ("WEBUI_AUTH", Want::NotFalse),
];

/// Deprecated name `BYPASS_ADMIN_ACCESS_CONTROL` falls back to when unset.
const ADMIN_WORKSPACE_FALLBACK: &str = "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS";

/// Open WebUI's boolean parsing: true only for "true" in any case.
fn reads_true(value: &str) -> bool {
    value.to_lowercase() == "true"
}

fn audit_environment(
    root: &Path,
    cfg: &HardeningConfig,
    units: &[QuadletUnit],
    units_complete: bool,
    mode_checked: &mut BTreeSet<PathBuf>,
    a: &mut Audit,
) {
    if cfg.env_files.is_empty() && cfg.quadlet_units.is_empty() {
        return;
    }
    let mut env: BTreeMap<String, EnvValue> = BTreeMap::new();
    let mut complete = units_complete;
    let mut read: BTreeSet<PathBuf> = BTreeSet::new();

    let mut read_env_file = |path: &Path,
                             optional: bool,
                             env: &mut BTreeMap<String, EnvValue>,
                             a: &mut Audit|
     -> bool {
        if !read.insert(path.to_path_buf()) {
            return true;
        }
        match read_text(root, path) {
            Ok((text, mode)) => {
                // The guide's `chmod 600 .env`.
                if under_root(root, path).is_ok_and(|host| mode_checked.insert(host)) {
                    check_secret_mode(a, path, mode);
                }
                let (lines, problems) = parse_env_text(&text);
                for problem in problems {
                    a.errors
                        .push(format!("env file {} {problem}", path.display()));
                }
                for line in lines {
                    env.insert(
                        line.key,
                        EnvValue {
                            value: line.value,
                            source: path.to_path_buf(),
                        },
                    );
                }
                true
            }
            Err(reason) if optional && reason.starts_with("not found") => true,
            Err(reason) => {
                a.errors
                    .push(format!("env file {}: {reason}", path.display()));
                false
            }
        }
    };

    // Later sources override earlier ones: the configured files, then per
    // unit its EnvironmentFile= (podman --env-file) and its Environment=
    // (podman --env, which wins over --env-file).
    for path in &cfg.env_files {
        complete &= read_env_file(path, false, &mut env, a);
    }
    // What the configured files (the image's own settings) set, before the
    // node's files and the units' lines can change it.
    let image = env.clone();
    for unit in units {
        for file in &unit.env_files {
            complete &= read_env_file(&file.path, file.optional, &mut env, a);
        }
        for (key, value, source) in &unit.env {
            env.insert(
                key.clone(),
                EnvValue {
                    value: value.clone(),
                    source: source.clone(),
                },
            );
        }
    }

    // Where an unset variable should be added.
    let primary = cfg
        .env_files
        .first()
        .or_else(|| cfg.quadlet_units.first())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let auth_off = env.get("WEBUI_AUTH").is_some_and(|v| !reads_true(&v.value));

    for &(key, want) in SECURE_ENV {
        let explicit = env.get(key);
        // Not set where we could read, and some source unreadable: unknown.
        if explicit.is_none() && !complete {
            continue;
        }
        a.checked.push(key.to_string());
        match want {
            Want::False { default_true } => {
                // With WEBUI_AUTH off Open WebUI forces signup off; the
                // WEBUI_AUTH finding covers that node.
                if key == "ENABLE_SIGNUP" && auth_off {
                    continue;
                }
                check_false(a, key, explicit, default_true, &env, &primary);
            }
            Want::Exactly { value, default } => match explicit {
                Some(v) if v.value != value => a.finding(
                    Severity::Fail,
                    key,
                    value,
                    shown(&v.value),
                    v.source.display().to_string(),
                ),
                Some(_) => {}
                None if default != value => a.finding(
                    Severity::Fail,
                    key,
                    value,
                    format!("unset (Open WebUI default: {default})"),
                    primary.clone(),
                ),
                None => {}
            },
            Want::NotFalse => {
                if let Some(v) = explicit {
                    if !reads_true(&v.value) {
                        a.finding(
                            Severity::Fail,
                            key,
                            "True",
                            shown(&v.value),
                            v.source.display().to_string(),
                        );
                    }
                }
            }
        }
    }
    if !cfg.env_files.is_empty() {
        check_image_set(a, &image, &env);
    }
}

/// Variables whose value must stay what the image's env files set (or
/// leave unset): where Open WebUI sends prompts and whether it asks for a
/// login. A node's own env file (written on the node, on a writable
/// partition) or a unit line that changes one is drift, whatever the value.
const IMAGE_SET_ENV: &[&str] = &["OPENAI_API_BASE_URL", "OLLAMA_BASE_URL", "WEBUI_AUTH"];

fn check_image_set(
    a: &mut Audit,
    image: &BTreeMap<String, EnvValue>,
    env: &BTreeMap<String, EnvValue>,
) {
    for &key in IMAGE_SET_ENV {
        if !a.checked.iter().any(|c| c == key) {
            a.checked.push(key.to_string());
        }
        let (Some(now), was) = (env.get(key), image.get(key)) else {
            continue;
        };
        if was.is_some_and(|w| w.value == now.value) {
            continue;
        }
        // The secure-default rule already reported this variable.
        if a.findings.iter().any(|f| f.item == key) {
            continue;
        }
        let expected = match was {
            Some(w) => format!(
                "{} (as the image sets it in {})",
                shown(&w.value),
                w.source.display()
            ),
            None => "unset (the image does not set it)".to_string(),
        };
        a.finding(
            Severity::Fail,
            key,
            expected,
            shown(&now.value),
            now.source.display().to_string(),
        );
    }
}

fn check_false(
    a: &mut Audit,
    key: &str,
    explicit: Option<&EnvValue>,
    default_true: bool,
    env: &BTreeMap<String, EnvValue>,
    primary: &str,
) {
    match explicit {
        Some(v) if reads_true(&v.value) => a.finding(
            Severity::Fail,
            key,
            "False",
            shown(&v.value),
            v.source.display().to_string(),
        ),
        // Secure in effect, but not what it looks like ("0", "no", "1"…).
        Some(v) if v.value.to_lowercase() != "false" => a.finding(
            Severity::Warn,
            key,
            "False",
            format!("{} (Open WebUI reads it as False)", shown(&v.value)),
            v.source.display().to_string(),
        ),
        Some(_) => {}
        None => {
            if key == "BYPASS_ADMIN_ACCESS_CONTROL" {
                if let Some(old) = env.get(ADMIN_WORKSPACE_FALLBACK) {
                    if reads_true(&old.value) {
                        a.finding(
                            Severity::Fail,
                            key,
                            "False",
                            format!(
                                "unset; {ADMIN_WORKSPACE_FALLBACK}={} applies",
                                shown(&old.value)
                            ),
                            old.source.display().to_string(),
                        );
                    }
                    return;
                }
            }
            if default_true {
                a.finding(
                    Severity::Fail,
                    key,
                    "False",
                    "unset (Open WebUI default: True)",
                    primary.to_string(),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

const IMAGE_ITEM: &str = "image pinned by digest";
const IMAGE_EXPECTED: &str = "NAME@sha256:<64 hex digits>";

fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// None when `reference` is pinned by a sha256 digest; otherwise the severity:
/// a floating tag (`latest`, `main`, none) fails, a version tag only warns
/// (the guide accepts version tags; the appliance wants digests).
fn image_drift(reference: &str) -> Option<Severity> {
    let reference = reference
        .strip_prefix("docker://")
        .or_else(|| reference.strip_prefix("containers-storage:"))
        .unwrap_or(reference);
    if let Some((_, digest)) = reference.split_once('@') {
        return if is_sha256_digest(digest) {
            None
        } else {
            Some(Severity::Fail)
        };
    }
    // The tag is after a ':' in the last path element (a ':' before the
    // last '/' is a registry port).
    let last = reference.rsplit('/').next().unwrap_or(reference);
    match last.split_once(':').map(|(_, tag)| tag) {
        None | Some("") | Some("latest") | Some("main") => Some(Severity::Fail),
        Some(_) => Some(Severity::Warn),
    }
}

fn check_image(a: &mut Audit, reference: &str, found: String, source: &str) {
    a.checked.push(format!("image {}", shown(reference)));
    if let Some(severity) = image_drift(reference) {
        a.finding(severity, IMAGE_ITEM, IMAGE_EXPECTED, found, source);
    }
}

fn audit_images(root: &Path, cfg: &HardeningConfig, units: &[QuadletUnit], a: &mut Audit) {
    for unit in units {
        let Some((image, source)) = &unit.image else {
            a.errors.push(format!(
                "quadlet unit {}: no Image= in [Container]: cannot audit its image",
                unit.path.display()
            ));
            continue;
        };
        let dir = unit
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if image.ends_with(".image") {
            // A Quadlet .image unit next to this one names the reference.
            let image_unit = dir.join(image);
            let text = match read_text(root, &image_unit) {
                Ok((text, _)) => text,
                Err(reason) => {
                    a.errors.push(format!(
                        "quadlet image unit {}: {reason}",
                        image_unit.display()
                    ));
                    continue;
                }
            };
            let reference = parse_unit_text(&text)
                .into_iter()
                .filter(|l| l.section == "Image" && l.key == "Image")
                .map(|l| l.value)
                .next_back();
            match reference {
                Some(reference) if !reference.is_empty() => {
                    let found = shown(&reference);
                    check_image(a, &reference, found, &image_unit.display().to_string());
                }
                _ => a.errors.push(format!(
                    "quadlet image unit {}: no Image= in [Image]: cannot audit",
                    image_unit.display()
                )),
            }
        } else if image.ends_with(".build") {
            a.checked.push(format!("image {}", shown(image)));
            a.finding(
                Severity::Warn,
                IMAGE_ITEM,
                IMAGE_EXPECTED,
                format!("{} (built on the node, no digest to pin)", shown(image)),
                source.display().to_string(),
            );
        } else {
            check_image(a, image, shown(image), &source.display().to_string());
        }
    }
    for image in &cfg.images {
        check_image(
            a,
            image,
            shown(image),
            "hardening.images (agent configuration)",
        );
    }
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// Splits a redis.conf line into arguments (plain words, "double quoted" with
/// backslash escapes, 'single quoted').
fn redis_args(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(args);
        };
        let mut arg = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unbalanced quotes".to_string()),
                    Some(c) if c == first => break,
                    Some('\\') if first == '"' => match chars.next() {
                        Some('n') => arg.push('\n'),
                        Some('t') => arg.push('\t'),
                        Some('r') => arg.push('\r'),
                        Some(other) => arg.push(other),
                        None => return Err("unbalanced quotes".to_string()),
                    },
                    Some(c) => arg.push(c),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("closing quote must be followed by a space".to_string());
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                arg.push(c);
            }
        }
        args.push(arg);
    }
}

/// Reads `path` (and its includes, in place) into `directives` (last one
/// wins); false when something could not be read.
fn read_redis_conf(
    root: &Path,
    path: &Path,
    depth: usize,
    directives: &mut BTreeMap<String, (String, PathBuf)>,
    a: &mut Audit,
) -> bool {
    let text = match read_text(root, path) {
        Ok((text, _)) => text,
        Err(reason) => {
            a.errors
                .push(format!("redis configuration {}: {reason}", path.display()));
            return false;
        }
    };
    let mut complete = true;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args = match redis_args(line) {
            Ok(args) => args,
            Err(e) => {
                a.errors.push(format!(
                    "redis configuration {} line {}: {e}, ignored",
                    path.display(),
                    index + 1
                ));
                continue;
            }
        };
        let Some((name, rest)) = args.split_first() else {
            continue;
        };
        let name = name.to_lowercase();
        if name == "include" {
            for target in rest {
                if depth + 1 >= MAX_INCLUDE_DEPTH {
                    a.errors.push(format!(
                        "redis configuration {}: includes nested deeper than {MAX_INCLUDE_DEPTH}: cannot audit",
                        path.display()
                    ));
                    complete = false;
                } else if target.contains(['*', '?', '[']) {
                    a.errors.push(format!(
                        "redis configuration {}: include {} has wildcards, not followed: cannot audit",
                        path.display(),
                        shown(target)
                    ));
                    complete = false;
                } else {
                    let target = Path::new(target);
                    let target = if target.is_absolute() {
                        target.to_path_buf()
                    } else {
                        path.parent().unwrap_or(Path::new("/")).join(target)
                    };
                    complete &= read_redis_conf(root, &target, depth + 1, directives, a);
                }
            }
        } else {
            directives.insert(name, (rest.join(" "), path.to_path_buf()));
        }
    }
    complete
}

fn audit_redis(root: &Path, cfg: &HardeningConfig, a: &mut Audit) {
    if cfg.redis_conf.as_os_str().is_empty() {
        return;
    }
    let mut directives = BTreeMap::new();
    let complete = read_redis_conf(root, &cfg.redis_conf, 0, &mut directives, a);
    if !complete && directives.is_empty() {
        return;
    }
    let conf = cfg.redis_conf.display().to_string();

    let max = cfg.redis_max_timeout;
    let expected = format!("between 1 and {max} seconds");
    match directives.get("timeout") {
        Some((value, source)) => {
            a.checked.push("redis timeout".to_string());
            let source = source.display().to_string();
            match value.parse::<u64>() {
                Err(_) => a.finding(
                    Severity::Fail,
                    "redis timeout",
                    expected,
                    format!("{} (not a number)", shown(value)),
                    source,
                ),
                Ok(0) => a.finding(
                    Severity::Fail,
                    "redis timeout",
                    expected,
                    "0 (idle clients are never closed)",
                    source,
                ),
                Ok(t) if t > max => a.finding(
                    Severity::Warn,
                    "redis timeout",
                    expected,
                    t.to_string(),
                    source,
                ),
                Ok(_) => {}
            }
        }
        None if complete => {
            a.checked.push("redis timeout".to_string());
            a.finding(
                Severity::Fail,
                "redis timeout",
                expected,
                "unset (Redis default 0: idle clients are never closed)",
                conf.clone(),
            );
        }
        None => {}
    }

    let min = cfg.redis_min_maxclients;
    let expected = format!("at least {min}");
    match directives.get("maxclients") {
        Some((value, source)) => {
            a.checked.push("redis maxclients".to_string());
            let source = source.display().to_string();
            match value.parse::<u64>() {
                Err(_) => a.finding(
                    Severity::Fail,
                    "redis maxclients",
                    expected,
                    format!("{} (not a number)", shown(value)),
                    source,
                ),
                Ok(n) if n < min => a.finding(
                    Severity::Fail,
                    "redis maxclients",
                    expected,
                    n.to_string(),
                    source,
                ),
                Ok(_) => {}
            }
        }
        None if complete => {
            a.checked.push("redis maxclients".to_string());
            // The checklist wants it set explicitly; Redis's own
            // default may still be enough.
            let severity = if REDIS_DEFAULT_MAXCLIENTS >= min {
                Severity::Warn
            } else {
                Severity::Fail
            };
            a.finding(
                severity,
                "redis maxclients",
                expected,
                format!("unset (Redis default {REDIS_DEFAULT_MAXCLIENTS})"),
                conf,
            );
        }
        None => {}
    }
}

// ---------------------------------------------------------------------------
// Published ports and listening sockets
// ---------------------------------------------------------------------------

fn is_loopback(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A `PublishPort=` value: `[[IP:][HOST]:]CONTAINER[/PROTO]`, IPv6 in
/// brackets, ports possibly ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Publish {
    ip: Option<String>,
    /// Host port range; None: a random host port.
    host: Option<(u16, u16)>,
    proto: String,
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("bad port {}", shown(text));
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let lo: u16 = lo.parse().map_err(|_| bad())?;
    let hi: u16 = hi.parse().map_err(|_| bad())?;
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn parse_publish(spec: &str) -> Result<Publish, String> {
    let (main, proto) = match spec.rsplit_once('/') {
        Some((main, proto)) => (main, proto.to_string()),
        None => (spec, "tcp".to_string()),
    };
    let (bracketed, rest) = match main.strip_prefix('[') {
        Some(after) => {
            let (ip, rest) = after.split_once(']').ok_or("unterminated '['")?;
            let rest = rest.strip_prefix(':').ok_or("expected ':' after ']'")?;
            (Some(ip.to_string()), rest)
        }
        None => (None, main),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host) = match (bracketed, parts.as_slice()) {
        (None, [_container]) => (None, ""),
        (None, [host, _container]) => (None, *host),
        (None, [ip, host, _container]) => (Some((*ip).to_string()), *host),
        (Some(ip), [host, _container]) => (Some(ip), *host),
        _ => return Err("not [[IP:][HOST_PORT]:]CONTAINER_PORT[/PROTOCOL]".to_string()),
    };
    let host = if host.is_empty() {
        None
    } else {
        Some(parse_port_range(host)?)
    };
    Ok(Publish {
        ip: ip.filter(|ip| !ip.is_empty()),
        host,
        proto,
    })
}

fn audit_published_ports(cfg: &HardeningConfig, units: &[QuadletUnit], a: &mut Audit) {
    let allowed: BTreeSet<u16> = cfg.allowed_ports.iter().copied().collect();
    let expected = format!(
        "bound to 127.0.0.1 or ::1 (any address only for ports {})",
        port_list(&cfg.allowed_ports)
    );
    for unit in units {
        for (spec, source) in &unit.publish {
            let publish = match parse_publish(spec) {
                Ok(p) => p,
                Err(e) => {
                    a.errors.push(format!(
                        "{}: PublishPort={}: {e}: cannot audit",
                        source.display(),
                        shown(spec)
                    ));
                    continue;
                }
            };
            a.checked.push(format!("published port {}", shown(spec)));
            let loopback = publish
                .ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| is_loopback(&ip));
            if loopback {
                continue;
            }
            let item = match publish.host {
                None => format!("published port (random)/{}", publish.proto),
                Some((lo, hi)) if (lo..=hi).all(|p| allowed.contains(&p)) => continue,
                Some((lo, hi)) if lo == hi => format!("published port {lo}/{}", publish.proto),
                Some((lo, hi)) => format!("published ports {lo}-{hi}/{}", publish.proto),
            };
            a.finding(
                Severity::Fail,
                item,
                expected.clone(),
                shown(spec),
                source.display().to_string(),
            );
        }
    }
}

/// State `0A` of `/proc/net/tcp*`: TCP_LISTEN.
const TCP_LISTEN: &str = "0A";

/// Parses the address of a `/proc/net/tcp*` line in LISTEN state. The kernel
/// prints each 32-bit word of the address as a host-order integer, so the
/// bytes in network order are the word's native-endian bytes.
fn parse_listener(line: &str, v6: bool) -> Result<Option<SocketAddr>, ()> {
    let mut fields = line.split_whitespace();
    let (Some(slot), Some(local), Some(_remote), Some(state)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(());
    };
    if !slot.ends_with(':') {
        return Err(());
    }
    if !state.eq_ignore_ascii_case(TCP_LISTEN) {
        return Ok(None);
    }
    let (addr, port) = local.split_once(':').ok_or(())?;
    let port = u16::from_str_radix(port, 16).map_err(|_| ())?;
    let word = |i: usize| -> Result<[u8; 4], ()> {
        let hex = addr.get(i * 8..i * 8 + 8).ok_or(())?;
        Ok(u32::from_str_radix(hex, 16).map_err(|_| ())?.to_ne_bytes())
    };
    let ip = if v6 {
        if addr.len() != 32 {
            return Err(());
        }
        let mut octets = [0u8; 16];
        for i in 0..4 {
            octets[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        if addr.len() != 8 {
            return Err(());
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Reads the listeners of one `/proc/net/tcp*` file into `listeners`;
/// Err(reason) when the file cannot be read at all.
fn read_listeners(
    root: &Path,
    path: &Path,
    v6: bool,
    listeners: &mut BTreeMap<u16, BTreeSet<SocketAddr>>,
    a: &mut Audit,
) -> Result<(), String> {
    let (file, _) = open_regular(&under_root(root, path)?)?;
    let mut reader = BufReader::new(file.take(MAX_PROC_BYTES));
    let mut line = String::new();
    let mut total = 0u64;
    let mut malformed = 0usize;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| io_reason(&e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if line.split_whitespace().next() == Some("sl") {
            continue;
        }
        match parse_listener(&line, v6) {
            Ok(Some(addr)) => {
                listeners.entry(addr.port()).or_default().insert(addr);
            }
            Ok(None) => {}
            Err(()) if line.trim().is_empty() => {}
            Err(()) => malformed += 1,
        }
    }
    if total >= MAX_PROC_BYTES {
        a.errors.push(format!(
            "{}: larger than {MAX_PROC_BYTES} bytes: the rest not audited",
            path.display()
        ));
    }
    if malformed > 0 {
        a.errors.push(format!(
            "{}: {malformed} unreadable lines ignored",
            path.display()
        ));
    }
    Ok(())
}

fn audit_sockets(root: &Path, cfg: &HardeningConfig, a: &mut Audit) {
    let mut listeners: BTreeMap<u16, BTreeSet<SocketAddr>> = BTreeMap::new();
    let tcp = Path::new("/proc/net/tcp");
    if let Err(reason) = read_listeners(root, tcp, false, &mut listeners, a) {
        a.errors
            .push(format!("listening sockets {}: {reason}", tcp.display()));
        return;
    }
    let tcp6 = Path::new("/proc/net/tcp6");
    match read_listeners(root, tcp6, true, &mut listeners, a) {
        Ok(()) => {}
        // No tcp6: the kernel has IPv6 off, nothing listens there.
        Err(reason) if reason.starts_with("not found") => {}
        Err(reason) => a
            .errors
            .push(format!("listening sockets {}: {reason}", tcp6.display())),
    }
    let expected = format!(
        "bound to loopback only (any address only for ports {})",
        port_list(&cfg.allowed_ports)
    );
    for (port, addrs) in &listeners {
        a.checked.push(format!("listening port {port}/tcp"));
        if cfg.allowed_ports.contains(port) {
            continue;
        }
        let exposed: Vec<String> = addrs
            .iter()
            .filter(|addr| !is_loopback(&addr.ip()))
            .map(SocketAddr::to_string)
            .collect();
        if exposed.is_empty() {
            continue;
        }
        a.finding(
            Severity::Fail,
            format!("listening port {port}/tcp"),
            expected.clone(),
            format!("listening on {}", exposed.join(", ")),
            "listening sockets",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const ENV: &str = "/etc/owui/open-webui.env";
    const UNIT: &str = "/etc/containers/systemd/open-webui.container";
    const SECRETS: &str = "/etc/owui/secrets";
    const REDIS: &str = "/etc/redis/redis.conf";

    const COMPLIANT_ENV: &str = "\
# Open WebUI environment (seed: compose, Security defaults)
WEBUI_SECRET_KEY=not-a-real-secret
ENABLE_SIGNUP=False
DEFAULT_USER_ROLE=pending
ENABLE_ADMIN_CHAT_ACCESS=False
ENABLE_ADMIN_EXPORT=False
BYPASS_MODEL_ACCESS_CONTROL=False
BYPASS_ADMIN_ACCESS_CONTROL=False
ENABLE_COMMUNITY_SHARING=False
USER_PERMISSIONS_CHAT_DELETE=False
USER_PERMISSIONS_CHAT_TEMPORARY=False
ENABLE_PERSISTENT_CONFIG=True
";

    /// A proc/net/tcp line for `addr` in `state`, encoded the way this
    /// host's kernel would print it.
    fn proc_line(slot: usize, addr: SocketAddr, state: &str) -> String {
        let hex = match addr.ip() {
            IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                (0..4)
                    .map(|i| {
                        let w = [o[i * 4], o[i * 4 + 1], o[i * 4 + 2], o[i * 4 + 3]];
                        format!("{:08X}", u32::from_ne_bytes(w))
                    })
                    .collect()
            }
        };
        let zero = if addr.is_ipv4() {
            "00000000"
        } else {
            "00000000000000000000000000000000"
        };
        format!(
            "{slot:4}: {hex}:{:04X} {zero}:0000 {state} 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0\n",
            addr.port()
        )
    }

    fn proc_file(entries: &[(&str, &str)]) -> String {
        let mut text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string();
        for (i, (addr, state)) in entries.iter().enumerate() {
            let addr: SocketAddr = addr.parse().unwrap();
            text.push_str(&proc_line(i, addr, state));
        }
        text
    }

    struct Node {
        dir: tempfile::TempDir,
    }

    impl Node {
        fn empty() -> Node {
            Node {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        /// A node matching every secure default.
        fn compliant() -> Node {
            let n = Node::empty();
            n.write(ENV, COMPLIANT_ENV, 0o600);
            n.write(
                UNIT,
                &format!(
                    "[Unit]\nDescription=Open WebUI\n\n[Container]\n\
                     Image=ghcr.io/open-webui/open-webui:0.6@{DIGEST}\n\
                     EnvironmentFile={ENV}\n\
                     Environment=PORT=8080 \"WEBUI_NAME=AI Assistant\"\n\
                     PublishPort=127.0.0.1:8080:8080\n\n[Install]\nWantedBy=default.target\n"
                ),
                0o644,
            );
            n.write(&format!("{SECRETS}/postgres-password"), "x\n", 0o600);
            n.write(&format!("{SECRETS}/tls/privkey.pem"), "x\n", 0o400);
            n.write(
                REDIS,
                "# redis\nbind 127.0.0.1 -::1\nmaxclients 10000\ntimeout 1800\nappendonly yes\n",
                0o640,
            );
            n.write(
                "/proc/net/tcp",
                &proc_file(&[
                    ("0.0.0.0:22", "0A"),
                    ("0.0.0.0:80", "0A"),
                    ("0.0.0.0:443", "0A"),
                    ("127.0.0.1:5432", "0A"),
                    ("127.0.0.1:6379", "0A"),
                    ("127.0.0.1:8080", "0A"),
                    // Connections, not listeners: ignored whatever the port.
                    ("10.0.0.5:443", "01"),
                    ("10.0.0.5:5432", "01"),
                ]),
                0o444,
            );
            n.write(
                "/proc/net/tcp6",
                &proc_file(&[
                    ("[::]:443", "0A"),
                    ("[::1]:11434", "0A"),
                    ("[::ffff:127.0.0.1]:8000", "0A"),
                ]),
                0o444,
            );
            n
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn host(&self, ns: &str) -> PathBuf {
            under_root(self.root(), Path::new(ns)).unwrap()
        }

        fn write(&self, ns: &str, text: &str, mode: u32) {
            let path = self.host(ns);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            // A new file, not a rewrite: the old one may be read-only,
            // which stops a test that is not root.
            let _ = fs::remove_file(&path);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }

        fn read(&self, ns: &str) -> String {
            fs::read_to_string(self.host(ns)).unwrap()
        }

        /// Rewrites a file keeping its mode.
        fn edit(&self, ns: &str, f: impl FnOnce(String) -> String) {
            let mode = fs::metadata(self.host(ns)).unwrap().permissions().mode();
            let text = f(self.read(ns));
            self.write(ns, &text, mode & 0o7777);
        }

        fn audit(&self) -> Audit {
            audit(self.root(), &HardeningConfig::default())
        }
    }

    /// The one finding of `audit`, failing with the whole audit otherwise.
    fn only(audit: &Audit) -> &Finding {
        assert_eq!(audit.findings.len(), 1, "expected one finding: {audit:#?}");
        &audit.findings[0]
    }

    fn assert_finding(
        f: &Finding,
        item: &str,
        expected: &str,
        found: &str,
        severity: Severity,
        source: &str,
    ) {
        assert_eq!(
            (
                f.item.as_str(),
                f.expected.as_str(),
                f.found.as_str(),
                f.severity,
                f.source.as_str()
            ),
            (item, expected, found, severity, source),
            "{f:#?}"
        );
    }

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
    fn each_insecure_environment_value_is_one_finding() {
        let cases: &[(&str, &str, &str, &str, Severity)] = &[
            (
                "ENABLE_SIGNUP",
                "ENABLE_SIGNUP=True",
                "False",
                "True",
                Severity::Fail,
            ),
            (
                "DEFAULT_USER_ROLE",
                "DEFAULT_USER_ROLE=user",
                "pending",
                "user",
                Severity::Fail,
            ),
            (
                "DEFAULT_USER_ROLE",
                "DEFAULT_USER_ROLE=Pending",
                "pending",
                "Pending",
                Severity::Fail,
            ),
            (
                "ENABLE_ADMIN_CHAT_ACCESS",
                "ENABLE_ADMIN_CHAT_ACCESS=true",
                "False",
                "true",
                Severity::Fail,
            ),
            (
                "ENABLE_ADMIN_EXPORT",
                "ENABLE_ADMIN_EXPORT=TRUE",
                "False",
                "TRUE",
                Severity::Fail,
            ),
            (
                "BYPASS_MODEL_ACCESS_CONTROL",
                "BYPASS_MODEL_ACCESS_CONTROL=True",
                "False",
                "True",
                Severity::Fail,
            ),
            (
                "BYPASS_ADMIN_ACCESS_CONTROL",
                "BYPASS_ADMIN_ACCESS_CONTROL=True",
                "False",
                "True",
                Severity::Fail,
            ),
            (
                "ENABLE_COMMUNITY_SHARING",
                "ENABLE_COMMUNITY_SHARING=True",
                "False",
                "True",
                Severity::Fail,
            ),
            (
                "USER_PERMISSIONS_CHAT_DELETE",
                "USER_PERMISSIONS_CHAT_DELETE=True",
                "False",
                "True",
                Severity::Fail,
            ),
            (
                "USER_PERMISSIONS_CHAT_TEMPORARY",
                "USER_PERMISSIONS_CHAT_TEMPORARY=True",
                "False",
                "True",
                Severity::Fail,
            ),
            // Open WebUI reads only "true" as true: "1" is False, but says otherwise.
            (
                "ENABLE_SIGNUP",
                "ENABLE_SIGNUP=1",
                "False",
                "1 (Open WebUI reads it as False)",
                Severity::Warn,
            ),
            (
                "ENABLE_ADMIN_EXPORT",
                "ENABLE_ADMIN_EXPORT=no",
                "False",
                "no (Open WebUI reads it as False)",
                Severity::Warn,
            ),
        ];
        for &(key, line, expected, found, severity) in cases {
            let n = Node::compliant();
            n.edit(ENV, |text| {
                text.lines()
                    .map(|l| {
                        if l.starts_with(&format!("{key}=")) {
                            line
                        } else {
                            l
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            let a = n.audit();
            assert_finding(only(&a), key, expected, found, severity, ENV);
        }
    }

    #[test]
    fn unset_variables_take_open_webui_defaults() {
        // Insecure defaults: True for these.
        for key in [
            "ENABLE_SIGNUP",
            "ENABLE_ADMIN_CHAT_ACCESS",
            "ENABLE_ADMIN_EXPORT",
            "BYPASS_ADMIN_ACCESS_CONTROL",
            "ENABLE_COMMUNITY_SHARING",
            "USER_PERMISSIONS_CHAT_DELETE",
            "USER_PERMISSIONS_CHAT_TEMPORARY",
        ] {
            let n = Node::compliant();
            n.edit(ENV, |text| {
                text.lines()
                    .filter(|l| !l.starts_with(&format!("{key}=")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            let a = n.audit();
            assert_finding(
                only(&a),
                key,
                "False",
                "unset (Open WebUI default: True)",
                Severity::Fail,
                ENV,
            );
        }
        // Secure defaults: nothing to report.
        for key in ["DEFAULT_USER_ROLE", "BYPASS_MODEL_ACCESS_CONTROL"] {
            let n = Node::compliant();
            n.edit(ENV, |text| {
                text.lines()
                    .filter(|l| !l.starts_with(&format!("{key}=")))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            let a = n.audit();
            assert!(a.findings.is_empty(), "{key}: {a:#?}");
        }
    }

    #[test]
    fn bypass_admin_access_control_falls_back_to_the_deprecated_name() {
        let n = Node::compliant();
        n.edit(ENV, |text| {
            text.replace(
                "BYPASS_ADMIN_ACCESS_CONTROL=False\n",
                "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=false\n",
            )
        });
        assert!(n.audit().findings.is_empty());
        n.edit(ENV, |text| {
            text.replace(
                "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=false",
                "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=True",
            )
        });
        assert_finding(
            only(&n.audit()),
            "BYPASS_ADMIN_ACCESS_CONTROL",
            "False",
            "unset; ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=True applies",
            Severity::Fail,
            ENV,
        );
    }

    #[test]
    fn webui_auth_off_is_a_finding_and_hides_no_signup() {
        let n = Node::compliant();
        n.edit(ENV, |text| {
            text.replace("ENABLE_SIGNUP=False\n", "WEBUI_AUTH=False\n")
        });
        assert_finding(
            only(&n.audit()),
            "WEBUI_AUTH",
            "True",
            "False",
            Severity::Fail,
            ENV,
        );
    }

    #[test]
    fn env_file_syntax_variants() {
        let n = Node::compliant();
        n.write(
            ENV,
            "\
# comment
; also a comment

   # indented comment
export ENABLE_SIGNUP=\"false\"
DEFAULT_USER_ROLE='pending'\r
ENABLE_ADMIN_CHAT_ACCESS = False   
\tENABLE_ADMIN_EXPORT=\"False\"  
export\tBYPASS_MODEL_ACCESS_CONTROL=false
BYPASS_ADMIN_ACCESS_CONTROL=fal\\
se
ENABLE_COMMUNITY_SHARING=\"fa\\\"lse\"
ENABLE_COMMUNITY_SHARING=False
USER_PERMISSIONS_CHAT_DELETE='False'
WEBUI_SECRET_KEY=\"multi
line # not a comment\"
USER_PERMISSIONS_CHAT_TEMPORARY=False
",
            0o600,
        );
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(a.errors.is_empty(), "{a:#?}");

        let (lines, problems) = parse_env_text(&n.read(ENV));
        assert!(problems.is_empty());
        let get = |k: &str| {
            lines
                .iter()
                .rev()
                .find(|l| l.key == k)
                .map(|l| l.value.as_str())
        };
        assert_eq!(get("ENABLE_SIGNUP"), Some("false"));
        assert_eq!(get("DEFAULT_USER_ROLE"), Some("pending"));
        assert_eq!(get("ENABLE_ADMIN_CHAT_ACCESS"), Some("False"));
        assert_eq!(get("BYPASS_ADMIN_ACCESS_CONTROL"), Some("false"));
        assert_eq!(get("WEBUI_SECRET_KEY"), Some("multi\nline # not a comment"));
        assert_eq!(
            lines
                .iter()
                .find(|l| l.key == "ENABLE_COMMUNITY_SHARING")
                .map(|l| l.value.as_str()),
            Some("fa\"lse")
        );
        assert_eq!(
            lines
                .iter()
                .find(|l| l.key == "WEBUI_SECRET_KEY")
                .map(|l| l.line),
            Some(15)
        );

        // A quoted insecure value is still insecure.
        n.edit(ENV, |text| {
            text.replace(
                "export ENABLE_SIGNUP=\"false\"",
                "export ENABLE_SIGNUP=\"True\"",
            )
        });
        assert_finding(
            only(&n.audit()),
            "ENABLE_SIGNUP",
            "False",
            "True",
            Severity::Fail,
            ENV,
        );

        // An inline '#' is part of the value, as in systemd.
        n.edit(ENV, |text| {
            text.replace("export ENABLE_SIGNUP=\"True\"", "ENABLE_SIGNUP=False")
                .replace(
                    "DEFAULT_USER_ROLE='pending'",
                    "DEFAULT_USER_ROLE=pending # approval",
                )
        });
        assert_finding(
            only(&n.audit()),
            "DEFAULT_USER_ROLE",
            "pending",
            "pending # approval",
            Severity::Fail,
            ENV,
        );
    }

    #[test]
    fn env_file_problems_are_errors_not_findings() {
        let (lines, problems) =
            parse_env_text("GOOD=1\nno equals sign\n9BAD=1\nOPEN=\"unterminated\n");
        assert_eq!(
            lines,
            vec![EnvLine {
                key: "GOOD".into(),
                value: "1".into(),
                line: 1
            }]
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2:"));
        assert!(problems[1].starts_with("line 3:"));
        assert!(problems[2].starts_with("line 4: unterminated"));

        let n = Node::compliant();
        n.edit(ENV, |text| format!("{text}garbage line\n"));
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            a.errors,
            vec![format!("env file {ENV} line 13: not KEY=VALUE, ignored")]
        );
    }

    #[test]
    fn missing_env_file_is_an_error_and_unset_values_stay_unknown() {
        let n = Node::compliant();
        fs::remove_file(n.host(ENV)).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            a.errors,
            vec![format!("env file {ENV}: not found: cannot audit")]
        );
        assert!(!a.checked.iter().any(|c| c == "ENABLE_SIGNUP"));

        // A value that is known to be insecure is still reported.
        n.edit(UNIT, |text| {
            text.replace(
                "Environment=PORT=8080",
                "Environment=ENABLE_SIGNUP=true PORT=8080",
            )
        });
        let a = n.audit();
        assert_finding(
            only(&a),
            "ENABLE_SIGNUP",
            "False",
            "true",
            Severity::Fail,
            UNIT,
        );
        assert_eq!(a.errors.len(), 1);

        // The unit missing too: two errors, no panic, no findings.
        fs::remove_file(n.host(UNIT)).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            a.errors,
            vec![
                format!("quadlet unit {UNIT}: not found: cannot audit"),
                format!("env file {ENV}: not found: cannot audit"),
            ]
        );
    }

    #[test]
    fn unreadable_env_file_is_an_error() {
        let n = Node::compliant();
        // A directory where the file should be (works as root too).
        fs::remove_file(n.host(ENV)).unwrap();
        fs::create_dir(n.host(ENV)).unwrap();
        let a = n.audit();
        assert_eq!(
            a.errors,
            vec![format!("env file {ENV}: not a regular file: cannot audit")]
        );
        assert!(a.findings.is_empty());

        if !nix::unistd::geteuid().is_root() {
            fs::remove_dir(n.host(ENV)).unwrap();
            n.write(ENV, COMPLIANT_ENV, 0o000);
            let a = n.audit();
            assert_eq!(
                a.errors,
                vec![format!("env file {ENV}: permission denied: cannot audit")]
            );
        }

        // Bounded: a huge file is refused, not read.
        let n = Node::compliant();
        n.write(ENV, &"#".repeat(MAX_FILE_BYTES as usize + 1), 0o600);
        let a = n.audit();
        assert_eq!(
            a.errors,
            vec![format!(
                "env file {ENV}: larger than {MAX_FILE_BYTES} bytes: cannot audit"
            )]
        );
    }

    #[test]
    fn a_node_env_file_that_changes_what_the_image_set_is_drift() {
        // The image's settings, then the node's env file, as the appliance's
        // open-webui.container reads them.
        const NODE_ENV: &str = "/etc/owui/secrets/open-webui.env";
        let n = Node::compliant();
        n.edit(ENV, |text| {
            format!(
                "{text}OLLAMA_BASE_URL=http://127.0.0.1:11434\nOPENAI_API_BASE_URL=http://127.0.0.1:8000/v1\n"
            )
        });
        n.edit(UNIT, |text| {
            text.replace(
                &format!("EnvironmentFile={ENV}\n"),
                &format!("EnvironmentFile={ENV}\nEnvironmentFile={NODE_ENV}\n"),
            )
        });
        // What a node name with newlines put there through `secrets init`.
        n.write(
            NODE_ENV,
            "WEBUI_SECRET_KEY=x\nWEBUI_URL=https://ai-1\nWEBUI_AUTH=False\nOPENAI_API_BASE_URL=http://evil.example\n",
            0o600,
        );
        let a = n.audit();
        assert_eq!(a.findings.len(), 2, "{a:#?}");
        assert_finding(
            &a.findings[0],
            "WEBUI_AUTH",
            "True",
            "False",
            Severity::Fail,
            NODE_ENV,
        );
        assert_finding(
            &a.findings[1],
            "OPENAI_API_BASE_URL",
            &format!("http://127.0.0.1:8000/v1 (as the image sets it in {ENV})"),
            "http://evil.example",
            Severity::Fail,
            NODE_ENV,
        );

        // A unit line pointing Ollama elsewhere, and auth set where the image
        // left it to the default; the same URL again is no drift.
        n.write(
            NODE_ENV,
            "WEBUI_SECRET_KEY=x\nOPENAI_API_BASE_URL=http://127.0.0.1:8000/v1\nWEBUI_AUTH=true\n",
            0o600,
        );
        n.edit(UNIT, |text| {
            text.replace(
                "Environment=PORT=8080",
                "Environment=OLLAMA_BASE_URL=http://10.9.9.9:11434 PORT=8080",
            )
        });
        let a = n.audit();
        assert_eq!(a.findings.len(), 2, "{a:#?}");
        assert_finding(
            &a.findings[0],
            "OLLAMA_BASE_URL",
            &format!("http://127.0.0.1:11434 (as the image sets it in {ENV})"),
            "http://10.9.9.9:11434",
            Severity::Fail,
            UNIT,
        );
        assert_finding(
            &a.findings[1],
            "WEBUI_AUTH",
            "unset (the image does not set it)",
            "true",
            Severity::Fail,
            NODE_ENV,
        );
        for item in ["OPENAI_API_BASE_URL", "OLLAMA_BASE_URL", "WEBUI_AUTH"] {
            assert_eq!(a.checked.iter().filter(|c| *c == item).count(), 1, "{item}");
        }
    }

    #[test]
    fn quadlet_environment_overrides_env_files() {
        let n = Node::compliant();
        n.edit(UNIT, |text| {
            text.replace(
                "Environment=PORT=8080 \"WEBUI_NAME=AI Assistant\"",
                "Environment=PORT=8080 \"WEBUI_NAME=AI Assistant\" ENABLE_COMMUNITY_SHARING=\"True\" \\\n  'DEFAULT_USER_ROLE=admin'",
            )
        });
        let a = n.audit();
        assert_eq!(a.findings.len(), 2, "{a:#?}");
        assert_finding(
            &a.findings[0],
            "DEFAULT_USER_ROLE",
            "pending",
            "admin",
            Severity::Fail,
            UNIT,
        );
        assert_finding(
            &a.findings[1],
            "ENABLE_COMMUNITY_SHARING",
            "False",
            "True",
            Severity::Fail,
            UNIT,
        );

        // A drop-in wins over the unit.
        n.write(
            &format!("{UNIT}.d/50-fix.conf"),
            "[Container]\nEnvironment=ENABLE_COMMUNITY_SHARING=False DEFAULT_USER_ROLE=pending\n",
            0o644,
        );
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
    }

    #[test]
    fn unit_environment_file_relative_and_optional() {
        let n = Node::compliant();
        n.write(
            "/etc/containers/systemd/extra.env",
            "ENABLE_ADMIN_EXPORT=True\n",
            0o600,
        );
        n.edit(UNIT, |text| {
            text.replace(
                &format!("EnvironmentFile={ENV}\n"),
                &format!("EnvironmentFile={ENV}\nEnvironmentFile=extra.env\nEnvironmentFile=-/etc/owui/absent.env\n"),
            )
        });
        let a = n.audit();
        assert_finding(
            only(&a),
            "ENABLE_ADMIN_EXPORT",
            "False",
            "True",
            Severity::Fail,
            "/etc/containers/systemd/extra.env",
        );
        assert!(a.errors.is_empty(), "{a:#?}");
    }

    #[test]
    fn secret_modes() {
        let n = Node::compliant();
        n.write(&format!("{SECRETS}/vllm-api-key"), "x\n", 0o644);
        let a = n.audit();
        assert_finding(
            only(&a),
            "secret file mode",
            "0600 or stricter",
            "0644",
            Severity::Fail,
            "/etc/owui/secrets/vllm-api-key",
        );

        for (mode, severity) in [
            (0o640, Severity::Fail),
            (0o602, Severity::Fail),
            (0o700, Severity::Warn),
            (0o4600, Severity::Warn),
        ] {
            let n = Node::compliant();
            n.write(&format!("{SECRETS}/tls/privkey.pem"), "x\n", mode);
            assert_finding(
                only(&n.audit()),
                "secret file mode",
                "0600 or stricter",
                &format!("{mode:04o}"),
                severity,
                "/etc/owui/secrets/tls/privkey.pem",
            );
        }

        // The env file is a secret too (the guide's chmod 600 .env).
        let n = Node::compliant();
        fs::set_permissions(n.host(ENV), fs::Permissions::from_mode(0o644)).unwrap();
        assert_finding(
            only(&n.audit()),
            "secret file mode",
            "0600 or stricter",
            "0644",
            Severity::Fail,
            ENV,
        );

        // A link inside the secrets is not followed; a missing path is unknown.
        let n = Node::compliant();
        std::os::unix::fs::symlink("/etc/passwd", n.host(&format!("{SECRETS}/link"))).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty());
        assert_eq!(
            a.errors,
            vec![format!(
                "secret path {SECRETS}/link: symbolic link, not followed: cannot audit"
            )]
        );
        fs::remove_dir_all(n.host(SECRETS)).unwrap();
        assert_eq!(
            n.audit().errors,
            vec![format!("secret path {SECRETS}: not found: cannot audit")]
        );

        // A single secret file may be named directly.
        let n = Node::compliant();
        let cfg = HardeningConfig {
            secret_files: vec![PathBuf::from("/etc/owui/secrets/postgres-password")],
            ..HardeningConfig::default()
        };
        fs::set_permissions(
            n.host("/etc/owui/secrets/postgres-password"),
            fs::Permissions::from_mode(0o664),
        )
        .unwrap();
        let a = audit(n.root(), &cfg);
        assert_finding(
            only(&a),
            "secret file mode",
            "0600 or stricter",
            "0664",
            Severity::Fail,
            "/etc/owui/secrets/postgres-password",
        );
    }

    #[test]
    fn images_must_be_pinned_by_digest() {
        let cases: &[(&str, Option<Severity>)] = &[
            ("ghcr.io/open-webui/open-webui:0.6", Some(Severity::Warn)),
            ("ghcr.io/open-webui/open-webui:latest", Some(Severity::Fail)),
            ("ghcr.io/open-webui/open-webui:main", Some(Severity::Fail)),
            ("ghcr.io/open-webui/open-terminal", Some(Severity::Fail)),
            ("localhost:5000/open-webui", Some(Severity::Fail)),
            ("localhost:5000/open-webui:1.2", Some(Severity::Warn)),
            (
                "ghcr.io/open-webui/open-webui@sha256:abc",
                Some(Severity::Fail),
            ),
            (
                "ghcr.io/open-webui/open-webui@sha512:0123",
                Some(Severity::Fail),
            ),
        ];
        for &(image, severity) in cases {
            assert_eq!(image_drift(image), severity, "{image}");
            let n = Node::compliant();
            n.edit(UNIT, |text| {
                text.replace(
                    &format!("Image=ghcr.io/open-webui/open-webui:0.6@{DIGEST}"),
                    &format!("Image={image}"),
                )
            });
            if let Some(severity) = severity {
                assert_finding(
                    only(&n.audit()),
                    IMAGE_ITEM,
                    IMAGE_EXPECTED,
                    image,
                    severity,
                    UNIT,
                );
            }
        }
        let upper = format!("x@{}", DIGEST.to_uppercase().replace("SHA256", "sha256"));
        assert_eq!(image_drift(&upper), Some(Severity::Fail));
        for pinned in [
            format!("ghcr.io/open-webui/open-webui@{DIGEST}"),
            format!("docker://ghcr.io/open-webui/open-webui:0.6@{DIGEST}"),
            format!("localhost:5000/x:1@{DIGEST}"),
        ] {
            assert_eq!(image_drift(&pinned), None, "{pinned}");
        }

        // The extra list in the configuration.
        let n = Node::compliant();
        let cfg = HardeningConfig {
            images: vec![
                format!("docker.io/ollama/ollama@{DIGEST}"),
                "docker.io/vllm/vllm-openai:latest".into(),
            ],
            ..HardeningConfig::default()
        };
        let a = audit(n.root(), &cfg);
        assert_finding(
            only(&a),
            IMAGE_ITEM,
            IMAGE_EXPECTED,
            "docker.io/vllm/vllm-openai:latest",
            Severity::Fail,
            "hardening.images (agent configuration)",
        );
    }

    #[test]
    fn image_units_and_drop_ins_are_followed() {
        let n = Node::compliant();
        n.edit(UNIT, |text| {
            text.replace(
                &format!("Image=ghcr.io/open-webui/open-webui:0.6@{DIGEST}"),
                "Image=open-webui.image",
            )
        });
        n.write(
            "/etc/containers/systemd/open-webui.image",
            "[Image]\nImage=ghcr.io/open-webui/open-webui:0.6\n",
            0o644,
        );
        assert_finding(
            only(&n.audit()),
            IMAGE_ITEM,
            IMAGE_EXPECTED,
            "ghcr.io/open-webui/open-webui:0.6",
            Severity::Warn,
            "/etc/containers/systemd/open-webui.image",
        );
        n.write(
            &format!("{UNIT}.d/10-image.conf"),
            &format!("[Container]\nImage=ghcr.io/open-webui/open-webui@{DIGEST}\n"),
            0o644,
        );
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");

        n.write(
            &format!("{UNIT}.d/20-image.conf"),
            "[Container]\nImage=open-webui.build\n",
            0o644,
        );
        assert_finding(
            only(&n.audit()),
            IMAGE_ITEM,
            IMAGE_EXPECTED,
            "open-webui.build (built on the node, no digest to pin)",
            Severity::Warn,
            &format!("{UNIT}.d/20-image.conf"),
        );
    }

    #[test]
    fn redis_settings() {
        let cases: &[(&str, &str, &str, &str, Severity)] = &[
            (
                "timeout 1800",
                "timeout 0",
                "redis timeout",
                "0 (idle clients are never closed)",
                Severity::Fail,
            ),
            (
                "timeout 1800",
                "timeout 3600",
                "redis timeout",
                "3600",
                Severity::Warn,
            ),
            (
                "timeout 1800",
                "timeout soon",
                "redis timeout",
                "soon (not a number)",
                Severity::Fail,
            ),
            (
                "timeout 1800",
                "",
                "redis timeout",
                "unset (Redis default 0: idle clients are never closed)",
                Severity::Fail,
            ),
            (
                "maxclients 10000",
                "maxclients 128",
                "redis maxclients",
                "128",
                Severity::Fail,
            ),
            (
                "maxclients 10000",
                "",
                "redis maxclients",
                "unset (Redis default 10000)",
                Severity::Warn,
            ),
        ];
        for &(from, to, item, found, severity) in cases {
            let n = Node::compliant();
            n.edit(REDIS, |text| text.replace(from, to));
            let expected = if item == "redis timeout" {
                "between 1 and 1800 seconds"
            } else {
                "at least 10000"
            };
            assert_finding(only(&n.audit()), item, expected, found, severity, REDIS);
        }

        // Includes are read in place; later lines win.
        let n = Node::compliant();
        n.write("/etc/redis/local.conf", "timeout 0\n", 0o640);
        n.edit(REDIS, |text| {
            format!("{text}include /etc/redis/local.conf\n")
        });
        assert_finding(
            only(&n.audit()),
            "redis timeout",
            "between 1 and 1800 seconds",
            "0 (idle clients are never closed)",
            Severity::Fail,
            "/etc/redis/local.conf",
        );
        n.edit(REDIS, |text| format!("{text}\"timeout\" '300'\n"));
        assert!(n.audit().findings.is_empty());

        // Missing file: unknown. Empty path: not audited.
        let n = Node::compliant();
        fs::remove_file(n.host(REDIS)).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty());
        assert_eq!(
            a.errors,
            vec![format!(
                "redis configuration {REDIS}: not found: cannot audit"
            )]
        );
        let cfg = HardeningConfig {
            redis_conf: PathBuf::new(),
            ..HardeningConfig::default()
        };
        let a = audit(n.root(), &cfg);
        assert!(a.errors.is_empty() && a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            redis_args("a \"b c\" 'd'"),
            Ok(vec!["a".to_string(), "b c".to_string(), "d".to_string()])
        );
        assert!(redis_args("a \"b").is_err());
    }

    #[test]
    fn listeners_outside_the_allowed_ports() {
        let n = Node::compliant();
        n.write(
            "/proc/net/tcp",
            &proc_file(&[
                ("0.0.0.0:443", "0A"),
                ("0.0.0.0:5432", "0A"),
                ("127.0.0.1:6379", "0A"),
                ("10.1.2.3:9100", "0A"),
            ]),
            0o444,
        );
        let a = n.audit();
        assert_eq!(a.findings.len(), 2, "{a:#?}");
        let expected = "bound to loopback only (any address only for ports 22, 80, 443)";
        assert_finding(
            &a.findings[0],
            "listening port 5432/tcp",
            expected,
            "listening on 0.0.0.0:5432",
            Severity::Fail,
            "listening sockets",
        );
        assert_finding(
            &a.findings[1],
            "listening port 9100/tcp",
            expected,
            "listening on 10.1.2.3:9100",
            Severity::Fail,
            "listening sockets",
        );

        // Loopback only: fine.
        n.write(
            "/proc/net/tcp",
            &proc_file(&[("127.0.0.1:5432", "0A"), ("127.0.0.53:53", "0A")]),
            0o444,
        );
        assert!(n.audit().findings.is_empty());
    }

    #[test]
    fn ipv6_listeners() {
        let n = Node::compliant();
        n.write(
            "/proc/net/tcp6",
            &proc_file(&[
                ("[::]:5432", "0A"),
                ("[::1]:6379", "0A"),
                ("[::ffff:127.0.0.1]:8000", "0A"),
                ("[fe80::1]:6379", "0A"),
                ("[::]:443", "0A"),
            ]),
            0o444,
        );
        let a = n.audit();
        assert_eq!(a.findings.len(), 2, "{a:#?}");
        assert_eq!(a.findings[0].item, "listening port 5432/tcp");
        assert_eq!(a.findings[0].found, "listening on [::]:5432");
        assert_eq!(a.findings[1].item, "listening port 6379/tcp");
        assert_eq!(a.findings[1].found, "listening on [fe80::1]:6379");

        // Same port on both families: one finding naming both.
        n.write(
            "/proc/net/tcp",
            &proc_file(&[("0.0.0.0:5432", "0A")]),
            0o444,
        );
        n.write("/proc/net/tcp6", &proc_file(&[("[::]:5432", "0A")]), 0o444);
        assert_eq!(
            only(&n.audit()).found,
            "listening on 0.0.0.0:5432, [::]:5432"
        );

        // No tcp6 (IPv6 off): not an error. No tcp: unknown.
        fs::remove_file(n.host("/proc/net/tcp6")).unwrap();
        assert!(n.audit().errors.is_empty());
        fs::remove_file(n.host("/proc/net/tcp")).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty());
        assert_eq!(
            a.errors,
            vec!["listening sockets /proc/net/tcp: not found: cannot audit".to_string()]
        );
    }

    #[test]
    fn proc_net_parsing() {
        // Literal kernel text of a little-endian host.
        if cfg!(target_endian = "little") {
            let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1";
            assert_eq!(
                parse_listener(line, false),
                Ok(Some("127.0.0.1:8080".parse().unwrap()))
            );
            let line6 = "   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 0";
            assert_eq!(
                parse_listener(line6, true),
                Ok(Some("[::1]:5432".parse().unwrap()))
            );
        }
        assert_eq!(
            parse_listener("   1: 0100007F:1F90 0100007F:A000 01 0", false),
            Ok(None)
        );
        assert_eq!(parse_listener("   1: XYZ:1F90 0 0A", false), Err(()));
        assert_eq!(parse_listener("short", false), Err(()));

        let n = Node::compliant();
        n.edit("/proc/net/tcp", |text| {
            format!("{text}garbage here and there\n")
        });
        let a = n.audit();
        assert!(a.findings.is_empty());
        assert_eq!(
            a.errors,
            vec!["/proc/net/tcp: 1 unreadable lines ignored".to_string()]
        );
    }

    #[test]
    fn published_ports() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1:8080:8080", None),
            ("[::1]:8080:8080", None),
            ("443:8443", None),
            ("0.0.0.0:443:8443/tcp", None),
            ("8080:8080", Some("published port 8080/tcp")),
            ("0.0.0.0:5432:5432", Some("published port 5432/tcp")),
            ("[::]:6379:6379", Some("published port 6379/tcp")),
            ("8080", Some("published port (random)/tcp")),
            ("10.0.0.1::53/udp", Some("published port (random)/udp")),
            ("8000-8002:8000-8002", Some("published ports 8000-8002/tcp")),
        ];
        for &(spec, item) in cases {
            let n = Node::compliant();
            n.edit(UNIT, |text| {
                text.replace(
                    "PublishPort=127.0.0.1:8080:8080",
                    &format!("PublishPort={spec}"),
                )
            });
            let a = n.audit();
            match item {
                None => assert!(a.findings.is_empty(), "{spec}: {a:#?}"),
                Some(item) => assert_finding(
                    only(&a),
                    item,
                    "bound to 127.0.0.1 or ::1 (any address only for ports 22, 80, 443)",
                    spec,
                    Severity::Fail,
                    UNIT,
                ),
            }
        }
        assert_eq!(
            parse_publish("[::1]:80:8080/udp"),
            Ok(Publish {
                ip: Some("::1".into()),
                host: Some((80, 80)),
                proto: "udp".into()
            })
        );
        assert!(parse_publish("a:b:c:d").is_err());
        assert!(parse_publish("99999:80").is_err());
    }

    #[test]
    fn unit_parsing() {
        let lines = parse_unit_text(
            "[Container]\n# c\nEnvironment=A=1 \\\n  B=2\n; c\nImage = x \n[Service]\nImage=y\n",
        );
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0].line, lines[0].key.as_str()), (3, "Environment"));
        assert_eq!(
            split_words(&lines[0].value),
            Ok(vec!["A=1".to_string(), "B=2".to_string()])
        );
        assert_eq!(lines[1].value, "x");
        assert_eq!(lines[2].section, "Service");
        assert_eq!(
            split_words(r#"A="x y" 'B=z w' C=a\ b D=1\n"#),
            Ok(vec![
                "A=x y".to_string(),
                "B=z w".to_string(),
                "C=a b".to_string(),
                "D=1\n".to_string()
            ])
        );
        assert!(split_words("A=\"open").is_err());

        let n = Node::compliant();
        n.edit(UNIT, |text| {
            text.replace("Environment=PORT=8080", "Environment=\"ENABLE_SIGNUP=true")
        });
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            a.errors,
            vec![format!(
                "{UNIT} line 7: Environment= unterminated quote, line ignored"
            )]
        );
    }

    #[test]
    fn a_link_to_the_hosts_etc_reads_the_nodes_file() {
        let n = Node::compliant();
        // The node's env file is a link to /etc/passwd: the node's own
        // (holding the compliant settings), never the host's.
        n.write("/etc/passwd", COMPLIANT_ENV, 0o600);
        fs::remove_file(n.host(ENV)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", n.host(ENV)).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(a.errors.is_empty(), "{a:#?}");
    }

    #[test]
    fn paths_stay_under_the_root() {
        assert_eq!(
            under_root(Path::new("/r"), Path::new("/etc/owui/x.env")).unwrap(),
            Path::new("/r/etc/owui/x.env")
        );
        assert_eq!(
            under_root(Path::new("/r"), Path::new("/etc/../../x")).unwrap(),
            Path::new("/r/x")
        );
        assert_eq!(
            under_root(Path::new("/r"), Path::new("relative")).unwrap(),
            Path::new("/r/relative")
        );
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
    fn shown_values_are_bounded() {
        assert_eq!(shown(""), "(empty)");
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(500)).chars().count(), MAX_SHOWN_CHARS + 1);
        assert_eq!(port_list(&[]), "none");
        assert_eq!(port_list(&[443, 22, 443]), "22, 443");
    }
}
