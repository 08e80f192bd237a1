//! systemd's text formats, parsed one way for the builder and the node: an
//! environment file (`EnvironmentFile=` syntax), a unit file (Quadlet files
//! included) and the words of a value such as `Environment=`. Pure parsing:
//! the caller reads the file (the agent confined to its root and size-capped)
//! and passes the text in.

// ---------------------------------------------------------------------------
// Environment files (systemd EnvironmentFile= syntax)
// ---------------------------------------------------------------------------

/// One `KEY=VALUE` of an environment file, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvLine {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A line of an environment file that sets nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}, ignored")]
pub struct EnvProblem {
    pub line: usize,
    pub kind: EnvProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvProblemKind {
    #[error("not KEY=VALUE")]
    NotAssignment,
    #[error("invalid variable name {}", bounded(.0))]
    InvalidName(String),
    #[error("unterminated quoted value")]
    UnterminatedQuote,
}

/// A name from the file, quoted and cut to a length a report can show.
fn bounded(name: &str) -> String {
    const MAX_CHARS: usize = 64;
    let head: String = name.chars().take(MAX_CHARS).collect();
    let cut = if head.len() < name.len() { "…" } else { "" };
    format!("{head:?}{cut}")
}

/// Parses an environment file the way systemd's `EnvironmentFile=` does:
/// blank lines and lines starting with `#` or `;` are skipped, an `export `
/// prefix is tolerated, a value may be single- or double-quoted (and then span
/// lines), a backslash escapes the next character and continues an unquoted
/// value on the next line, trailing blanks of an unquoted value are dropped.
/// A `#` inside a value is part of the value (as in systemd). Returns the
/// assignments in file order and the problems found, each with its line.
pub fn parse_env(text: &str) -> (Vec<EnvLine>, Vec<EnvProblem>) {
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
            problems.push(EnvProblem {
                line: line_no,
                kind: EnvProblemKind::NotAssignment,
            });
            continue;
        };
        let key = key.trim_end_matches([' ', '\t']);
        if !is_env_name(key) {
            problems.push(EnvProblem {
                line: line_no,
                kind: EnvProblemKind::InvalidName(key.to_string()),
            });
            continue;
        }
        let first = rest.trim_start_matches([' ', '\t']);
        match parse_env_value(first, &lines, &mut next) {
            Ok(value) => out.push(EnvLine {
                key: key.to_string(),
                value,
                line: line_no,
            }),
            Err(kind) => problems.push(EnvProblem {
                line: line_no,
                kind,
            }),
        }
    }
    (out, problems)
}

/// A variable name systemd accepts: a letter or `_`, then letters, digits
/// and `_`.
pub fn is_env_name(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The value of one assignment, starting at `first` (the text after `=`);
/// pulls further lines from `lines[*next..]` for quoted values spanning lines
/// and for backslash continuations.
fn parse_env_value(
    first: &str,
    lines: &[&str],
    next: &mut usize,
) -> Result<String, EnvProblemKind> {
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
                return Err(EnvProblemKind::UnterminatedQuote);
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
                                return Err(EnvProblemKind::UnterminatedQuote);
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
// Unit files
// ---------------------------------------------------------------------------

/// One `Key=Value` of a unit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLine {
    pub line: usize,
    pub section: String,
    pub key: String,
    pub value: String,
}

/// Parses systemd unit-file syntax: `[Section]` headers, `Key=Value` lines
/// (both sides trimmed), `#`/`;` comments, backslash line continuations.
pub fn parse_unit(text: &str) -> Vec<UnitLine> {
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

/// Why a value could not be split into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("backslash at the end")]
    TrailingBackslash,
}

/// Splits a unit-file value into words the way systemd (and Quadlet) do for
/// `Environment=`: blanks separate words, single or double quotes group, a
/// backslash escapes (`\n`, `\t`, `\r` are control characters).
pub fn split_words(value: &str) -> Result<Vec<String>, SplitError> {
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
                None => return Err(SplitError::TrailingBackslash),
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
                        None => return Err(SplitError::TrailingBackslash),
                    }
                } else {
                    word.push(c);
                }
            }
        }
    }
    if quote.is_some() {
        return Err(SplitError::UnterminatedQuote);
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_syntax_variants() {
        let (lines, problems) = parse_env(include_str!("../testdata/env-syntax-variants.env"));
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
    }

    #[test]
    fn env_file_problems() {
        let (lines, problems) = parse_env("GOOD=1\nno equals sign\n9BAD=1\nOPEN=\"unterminated\n");
        assert_eq!(
            lines,
            vec![EnvLine {
                key: "GOOD".into(),
                value: "1".into(),
                line: 1
            }]
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].to_string().starts_with("line 2:"));
        assert!(problems[1].to_string().starts_with("line 3:"));
        assert!(problems[2].to_string().starts_with("line 4: unterminated"));
        assert_eq!(
            problems[1].to_string(),
            "line 3: invalid variable name \"9BAD\", ignored"
        );
        // A hostile name is escaped and cut.
        let (_, problems) = parse_env(&format!("\u{1b}{}=1\n", "x".repeat(500)));
        let shown = problems[0].to_string();
        assert!(shown.contains("\\u{1b}xxx") && shown.contains("…") && shown.len() < 120);
    }

    #[test]
    fn unit_parsing() {
        let lines = parse_unit(
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
        assert_eq!(
            split_words("A=\"open").map_err(|e| e.to_string()),
            Err("unterminated quote".to_string())
        );
    }
}
