//! The systemd formats the rules read: environment files
//! (`EnvironmentFile=` syntax), unit files, and Quadlet `.container` units
//! with their drop-ins.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::files::{io_reason, read_text, under_root};
use super::{shown, Audit, HardeningConfig};

/// Drop-in files read for one Quadlet unit.
const MAX_DROPINS: usize = 64;

// ---------------------------------------------------------------------------
// Environment files (systemd EnvironmentFile= syntax)
// ---------------------------------------------------------------------------

/// One `KEY=VALUE` of an environment file, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EnvLine {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) line: usize,
}

/// Parses an environment file the way systemd's `EnvironmentFile=` does:
/// blank lines and lines starting with `#` or `;` are skipped, an `export `
/// prefix is tolerated, a value may be single- or double-quoted (and then span
/// lines), a backslash escapes the next character and continues an unquoted
/// value on the next line, trailing blanks of an unquoted value are dropped.
/// A `#` inside a value is part of the value (as in systemd). Returns the
/// assignments in file order and the problems found, each with its line.
pub(super) fn parse_env_text(text: &str) -> (Vec<EnvLine>, Vec<String>) {
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
pub(super) struct UnitLine {
    pub(super) line: usize,
    pub(super) section: String,
    pub(super) key: String,
    pub(super) value: String,
}

/// Parses systemd unit-file syntax: `[Section]` headers, `Key=Value` lines
/// (both sides trimmed), `#`/`;` comments, backslash line continuations.
pub(super) fn parse_unit_text(text: &str) -> Vec<UnitLine> {
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
pub(super) struct UnitEnvFile {
    pub(super) path: PathBuf,
    /// `-` prefix: a missing file is not an error.
    pub(super) optional: bool,
}

/// What the audit needs from one Quadlet `.container` unit and its drop-ins.
#[derive(Debug, Clone)]
pub(super) struct QuadletUnit {
    pub(super) path: PathBuf,
    /// Effective `Image=` and the file that set it.
    pub(super) image: Option<(String, PathBuf)>,
    /// `Environment=` assignments in order: key, value, file.
    pub(super) env: Vec<(String, String, PathBuf)>,
    pub(super) env_files: Vec<UnitEnvFile>,
    /// `PublishPort=` values and the file of each.
    pub(super) publish: Vec<(String, PathBuf)>,
}

/// Reads every configured unit; the flag is false when one could not be read.
pub(super) fn read_quadlet_units(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::fixture::*;
    use crate::hardening::Severity;

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
}
