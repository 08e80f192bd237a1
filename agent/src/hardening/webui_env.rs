//! **Open WebUI environment** (the env files and the Quadlet unit the
//! container runs with): `ENABLE_SIGNUP=False`, `DEFAULT_USER_ROLE=pending`,
//! `ENABLE_ADMIN_CHAT_ACCESS=False`, `ENABLE_ADMIN_EXPORT=False`,
//! `BYPASS_MODEL_ACCESS_CONTROL=False`, `BYPASS_ADMIN_ACCESS_CONTROL=False`,
//! `ENABLE_COMMUNITY_SHARING=False`, `USER_PERMISSIONS_CHAT_DELETE=False`,
//! `USER_PERMISSIONS_CHAT_TEMPORARY=False`: the compose file's "Security
//! defaults" and "User permissions" blocks, the environment reference
//! tables and the hardening checklist. `WEBUI_AUTH` must not be turned off (it disables login
//! altogether, and Open WebUI then forces `ENABLE_SIGNUP` off, which would
//! otherwise hide it). `OPENAI_API_BASE_URL`, `OLLAMA_BASE_URL` and
//! `WEBUI_AUTH` must keep the value the configured env files (the image's
//! own settings, on the read-only root) give them: a later source (the
//! node's secrets env file, a unit's `Environment=`) that changes one
//! would send prompts elsewhere or drop the login.
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use owui_bundle::unit_file::parse_env;

use super::files::{read_text, under_root};
use super::secret_modes::check_secret_mode;
use super::{shown, Audit, Scope, Severity};

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

pub(super) fn audit_environment(s: &mut Scope<'_>, a: &mut Audit) {
    let (root, cfg, units, units_complete) = (s.root, s.cfg, &s.units, s.units_complete);
    let mode_checked = &mut s.mode_checked;
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
                let (lines, problems) = parse_env(&text);
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::hardening::files::MAX_FILE_BYTES;
    use crate::hardening::fixture::*;

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

    /// A compliant node whose env file does not set `key`.
    fn compliant_without(key: &str) -> Node {
        let n = Node::compliant();
        n.edit(ENV, |text| {
            text.lines()
                .filter(|l| !l.starts_with(&format!("{key}=")))
                .collect::<Vec<_>>()
                .join("\n")
        });
        n
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
            let a = compliant_without(key).audit();
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
            let a = compliant_without(key).audit();
            assert!(a.findings.is_empty(), "{key}: {a:#?}");
        }
    }

    #[test]
    fn bypass_admin_access_control_falls_back_to_the_deprecated_name() {
        let n = Node::compliant();
        n.replace(
            ENV,
            "BYPASS_ADMIN_ACCESS_CONTROL=False\n",
            "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=false\n",
        );
        assert!(n.audit().findings.is_empty());
        n.replace(
            ENV,
            "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=false",
            "ENABLE_ADMIN_WORKSPACE_CONTENT_ACCESS=True",
        );
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
        n.replace(ENV, "ENABLE_SIGNUP=False\n", "WEBUI_AUTH=False\n");
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
        n.replace(
            UNIT,
            "Environment=PORT=8080",
            "Environment=ENABLE_SIGNUP=true PORT=8080",
        );
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
        n.replace(
            UNIT,
            &format!("EnvironmentFile={ENV}\n"),
            &format!("EnvironmentFile={ENV}\nEnvironmentFile={NODE_ENV}\n"),
        );
        // What a node name with newlines put there through `secrets init`.
        n.write(
            NODE_ENV,
            "WEBUI_SECRET_KEY=x\nWEBUI_URL=https://ai-1\nWEBUI_AUTH=False\nOPENAI_API_BASE_URL=http://evil.example\n",
            0o600,
        );
        let a = n.audit();
        assert_findings(
            &a,
            &[
                ("WEBUI_AUTH", "True", "False", Severity::Fail, NODE_ENV),
                (
                    "OPENAI_API_BASE_URL",
                    &format!("http://127.0.0.1:8000/v1 (as the image sets it in {ENV})"),
                    "http://evil.example",
                    Severity::Fail,
                    NODE_ENV,
                ),
            ],
        );

        // A unit line pointing Ollama elsewhere, and auth set where the image
        // left it to the default; the same URL again is no drift.
        n.write(
            NODE_ENV,
            "WEBUI_SECRET_KEY=x\nOPENAI_API_BASE_URL=http://127.0.0.1:8000/v1\nWEBUI_AUTH=true\n",
            0o600,
        );
        n.replace(
            UNIT,
            "Environment=PORT=8080",
            "Environment=OLLAMA_BASE_URL=http://10.9.9.9:11434 PORT=8080",
        );
        let a = n.audit();
        assert_findings(
            &a,
            &[
                (
                    "OLLAMA_BASE_URL",
                    &format!("http://127.0.0.1:11434 (as the image sets it in {ENV})"),
                    "http://10.9.9.9:11434",
                    Severity::Fail,
                    UNIT,
                ),
                (
                    "WEBUI_AUTH",
                    "unset (the image does not set it)",
                    "true",
                    Severity::Fail,
                    NODE_ENV,
                ),
            ],
        );
        for item in ["OPENAI_API_BASE_URL", "OLLAMA_BASE_URL", "WEBUI_AUTH"] {
            assert_eq!(a.checked.iter().filter(|c| *c == item).count(), 1, "{item}");
        }
    }

    #[test]
    fn quadlet_environment_overrides_env_files() {
        let n = Node::compliant();
        n.replace(UNIT, "Environment=PORT=8080 \"WEBUI_NAME=AI Assistant\"", "Environment=PORT=8080 \"WEBUI_NAME=AI Assistant\" ENABLE_COMMUNITY_SHARING=\"True\" \\\n  'DEFAULT_USER_ROLE=admin'");
        let a = n.audit();
        assert_findings(
            &a,
            &[
                (
                    "DEFAULT_USER_ROLE",
                    "pending",
                    "admin",
                    Severity::Fail,
                    UNIT,
                ),
                (
                    "ENABLE_COMMUNITY_SHARING",
                    "False",
                    "True",
                    Severity::Fail,
                    UNIT,
                ),
            ],
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
}
