//! **Redis**: `maxclients` 10000 or more and `timeout 1800`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::files::read_text;
use super::{shown, Audit, Scope, Severity};

/// Nesting of redis `include` directives.
const MAX_INCLUDE_DEPTH: usize = 8;
/// Redis's own `maxclients` when the directive is absent.
const REDIS_DEFAULT_MAXCLIENTS: u64 = 10_000;

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

pub(super) fn audit_redis(s: &mut Scope<'_>, a: &mut Audit) {
    let (root, cfg) = (s.root, s.cfg);
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::hardening::fixture::*;
    use crate::hardening::{audit, HardeningConfig};

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
            n.replace(REDIS, from, to);
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
}
