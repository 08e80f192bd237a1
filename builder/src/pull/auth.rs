//! Registry credentials from a docker-style `config.json` (`auths`, each a
//! base64 `user:password` or `username` and `password`): the file the
//! `--registry-config` flag names, else `$REGISTRY_AUTH_FILE` (skopeo's and
//! podman's variable), else `$DOCKER_CONFIG/config.json`, else
//! `$HOME/.docker/config.json`. Credential helpers are not run.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::Deserialize;

/// A user name and password for one registry, and the file they came from.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub file: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.user, self.file.display())
    }
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The credentials file in use: the flag's, else the environment's
/// conventions; `None` when no file is named and none of the defaults
/// exists.
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        return Some(PathBuf::from(p));
    }
    let default = match (env("DOCKER_CONFIG"), env("HOME")) {
        (Some(dir), _) => PathBuf::from(dir).join("config.json"),
        (None, Some(home)) => PathBuf::from(home).join(".docker/config.json"),
        (None, None) => return None,
    };
    default.exists().then_some(default)
}

/// The credentials `file` holds for `registry` (`host[:port]`); Docker Hub
/// is also found under its historical keys.
pub fn lookup(file: &Path, registry: &str) -> Result<Option<Credentials>> {
    let text = fs::read(file).at("reading registry credentials", file)?;
    let config: ConfigFile = serde_json::from_slice(&text)
        .map_err(|e| Error::invalid(file.display().to_string(), e.to_string()))?;
    let hub = [
        "docker.io",
        "index.docker.io",
        "https://index.docker.io/v1/",
    ];
    let keys: Vec<&str> = if hub.contains(&registry) {
        hub.to_vec()
    } else {
        vec![registry]
    };
    let found = config.auths.iter().find(|(k, _)| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        keys.contains(&k.as_str()) || keys.contains(&host)
    });
    let Some((key, entry)) = found else {
        return Ok(None);
    };
    let bad =
        |why: &str| Error::invalid(format!("{} auths.{key:?}", file.display()), why.to_string());
    let (user, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad("auth is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8"))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad("auth is not base64 of user:password"))?;
            (u.to_string(), p.to_string())
        }
        (None, Some(u), Some(p)) => (u.clone(), p.clone()),
        _ => return Err(bad("has neither auth nor username and password")),
    };
    Ok(Some(Credentials {
        user,
        password,
        file: file.to_path_buf(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn finds_auth_and_username_forms() {
        let auth = base64::engine::general_purpose::STANDARD.encode("ann:s3:cret");
        let (_d, p) = config(&format!(
            r#"{{"auths": {{"reg.example:5000": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}}}}}}"#
        ));
        let c = lookup(&p, "reg.example:5000").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("ann", "s3:cret"));
        let c = lookup(&p, "docker.io").unwrap().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("bob", "pw"));
        assert!(lookup(&p, "other.example").unwrap().is_none());
    }

    #[test]
    fn malformed_entries_name_the_file_and_key() {
        let (_d, p) = config(r#"{"auths": {"reg.example": {"auth": "%%"}}}"#);
        let err = lookup(&p, "reg.example").unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("config.json") && text.contains("reg.example") && text.contains("base64"),
            "{text}"
        );
        let (_d, p) = config("{");
        assert_eq!(lookup(&p, "x").unwrap_err().exit_code(), 3);
    }
}
