//! `owui-agent db setup`: the node's PostgreSQL cluster and Open WebUI's
//! database, made on the node. The image carries no cluster: one made at
//! build time would give every node the same system identifier, would differ
//! between two builds, and would predate the image's own `createcluster.d`
//! settings. `/etc/postgresql` links to the data partition, so Debian's
//! `pg_createcluster` makes the cluster there on first boot; every boot then
//! starts it and makes sure the `openwebui` user (with the password in the
//! node's secrets), its database and the pgvector extension exist, and that
//! the agent's health check may log in (as `owui_agent`, monitoring rights
//! only, from the root account over the local socket).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::unistd::{chown, Gid, Uid};
use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::{Error, Result, Role};
use serde::Serialize;

use crate::config;
use crate::layout::Root;
use crate::node_secrets;

const CLUSTER: &str = "main";
const DB_USER: &str = "openwebui";
const DB_NAME: &str = "openwebui";
/// The health check's role (agent.toml `health.postgres` names it).
const AGENT_ROLE: &str = "owui_agent";
/// A first start includes crash recovery after a power cut.
const START_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Serialize)]
pub struct Report {
    pub role: String,
    /// None on roles without a database.
    pub version: Option<u32>,
    pub cluster_created: bool,
    pub database: Option<String>,
}

/// The newest PostgreSQL major version installed (`/usr/lib/postgresql/N`).
fn installed_version(root: &Root) -> Result<u32> {
    let lib = Path::new("/usr/lib/postgresql");
    let dir = root.host(lib)?;
    let entries = fs::read_dir(&dir).at("looking for PostgreSQL in", &dir)?;
    let mut newest = None;
    for entry in entries {
        let entry = entry.at("reading", &dir)?;
        let Some(version) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if root
            .host(&lib.join(entry.file_name()).join("bin/postgres"))?
            .is_file()
        {
            newest = newest.max(Some(version));
        }
    }
    newest.ok_or_else(|| {
        Error::invalid(
            dir.display().to_string(),
            "holds no PostgreSQL server (bin/postgres): is this a db or allinone image?",
        )
    })
}

/// The cluster's port from its postgresql.conf (pg_createcluster gives the
/// first cluster 5432).
fn cluster_port(conf: &Path) -> Result<u16> {
    let text = fs::read_to_string(conf).at("reading", conf)?;
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "port" {
            return value.trim().parse().map_err(|_| {
                Error::invalid(
                    format!("{}: line {}", conf.display(), n + 1),
                    format!("port {:?} is not a port number", value.trim()),
                )
            });
        }
    }
    Ok(5432)
}

/// Creates the role, database and extension if missing and sets the
/// password from the secrets file (so a password put there by the operator
/// takes effect). Fed on stdin: the password is never on a command line,
/// and the session turns statement logging off before it is sent.
fn database_script(password: &str) -> String {
    format!(
        "\\set ON_ERROR_STOP on\n\
         SET log_statement = 'none';\n\
         SET log_min_duration_statement = -1;\n\
         SELECT 'CREATE ROLE {DB_USER}' WHERE NOT EXISTS \
         (SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}') \\gexec\n\
         ALTER ROLE {DB_USER} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '{password}';\n\
         SELECT 'CREATE DATABASE {DB_NAME} OWNER {DB_USER} ENCODING ''UTF8'' TEMPLATE template0' \
         WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}') \\gexec\n\
         SELECT 'CREATE ROLE {AGENT_ROLE} LOGIN' WHERE NOT EXISTS \
         (SELECT 1 FROM pg_roles WHERE rolname = '{AGENT_ROLE}') \\gexec\n\
         GRANT pg_monitor TO {AGENT_ROLE};\n\
         \\connect {DB_NAME}\n\
         CREATE EXTENSION IF NOT EXISTS vector;\n"
    )
}

/// Lets the root account (the agent) log in as `owui_agent` over the local
/// socket: a peer-authentication line ahead of Debian's `local all all
/// peer` (the first matching line wins), and the user map it names. Each
/// file is changed only when its line is missing, and keeps its owner and
/// mode (the server reads them as `postgres`).
fn allow_agent(conf_dir: &Path) -> Result<()> {
    let hba = format!("local all {AGENT_ROLE} peer map={AGENT_ROLE}\n");
    let ident = format!("{AGENT_ROLE} root {AGENT_ROLE}\n");
    let note = "# owui-agent's health check (owui-agent db setup)\n";
    for (file, line, first) in [
        ("pg_hba.conf", &hba, true),
        ("pg_ident.conf", &ident, false),
    ] {
        let path = conf_dir.join(file);
        let text = fs::read_to_string(&path).at("reading", &path)?;
        if text.lines().any(|l| l.trim() == line.trim()) {
            continue;
        }
        let meta = fs::metadata(&path).at("reading", &path)?;
        let new = if first {
            format!("{note}{line}{text}")
        } else {
            format!("{text}{note}{line}")
        };
        write_atomic(&path, new.as_bytes(), meta.permissions().mode() & 0o7777)?;
        chown(
            &path,
            Some(Uid::from_raw(meta.uid())),
            Some(Gid::from_raw(meta.gid())),
        )
        .map_err(std::io::Error::from)
        .at("setting the owner of", &path)?;
    }
    Ok(())
}

/// The socket directory's socket for `port` appears once the server is up.
fn wait_for_socket(root: &Root, port: u16) -> Result<()> {
    let socket = root.host(&PathBuf::from(format!("/run/postgresql/.s.PGSQL.{port}")))?;
    let start = Instant::now();
    while !socket.exists() {
        if start.elapsed() > START_WAIT {
            return Err(Error::tool(
                "postgresql",
                format!(
                    "{} did not appear within {} s; see journalctl -u postgresql@*",
                    socket.display(),
                    START_WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

pub fn setup(root: &Root) -> Result<Report> {
    let seed = config::load_seed(root)?;
    if !matches!(seed.role, Role::Db | Role::Allinone) {
        return Ok(Report {
            role: seed.role.as_str().to_string(),
            version: None,
            cluster_created: false,
            database: None,
        });
    }
    if root.path() != Path::new("/") {
        return Err(Error::refused(
            root.path().display().to_string(),
            "db setup starts PostgreSQL through systemd: run it on the node itself, without --root",
        ));
    }
    let password_file = root.host(Path::new("/etc/owui/secrets/postgres-openwebui-password"))?;
    let password = node_secrets::read_value(&password_file)?.ok_or_else(|| {
        Error::invalid(
            password_file.display().to_string(),
            "is missing: owui-secrets.service (owui-agent secrets init) makes it",
        )
    })?;

    let version = installed_version(root)?;
    let conf = root.host(&PathBuf::from(format!(
        "/etc/postgresql/{version}/{CLUSTER}/postgresql.conf"
    )))?;
    let cluster_created = !conf.exists();
    if cluster_created {
        // UTF-8 whatever the boot's locale is (the image has C.UTF-8 only),
        // and page checksums, so silent disk corruption is caught.
        Cmd::new("pg_createcluster")
            .args(["--locale=C.UTF-8", "--encoding=UTF8"])
            .arg(version.to_string())
            .arg(CLUSTER)
            .args(["--", "--data-checksums"])
            .output()?;
    }
    allow_agent(conf.parent().unwrap_or(Path::new("/")))?;
    Cmd::new("systemctl")
        .arg("start")
        .arg(format!("postgresql@{version}-{CLUSTER}.service"))
        .output()?;
    wait_for_socket(root, cluster_port(&conf)?)?;
    Cmd::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-X", "-q", "-d", "postgres"])
        .arg("-p")
        .arg(cluster_port(&conf)?.to_string())
        .stdin(database_script(&password))
        .output()
        .map_err(|e| Error::tool("psql", e.to_string().replace(&password, "<password>")))?;
    Ok(Report {
        role: seed.role.as_str().to_string(),
        version: Some(version),
        cluster_created,
        database: Some(DB_NAME.to_string()),
    })
}

pub fn print(r: &Report) {
    match r.version {
        None => println!("no database on a {} node", r.role),
        Some(v) => {
            println!(
            "PostgreSQL {v} cluster {CLUSTER} {} and running; database {} ready for user {DB_USER}",
            if r.cluster_created { "created" } else { "found" },
            r.database.as_deref().unwrap_or(DB_NAME),
        )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn newest_installed_server_wins_and_none_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path());
        let err = installed_version(&root).unwrap_err();
        assert!(err.to_string().contains("usr/lib/postgresql"), "{err}");
        for v in ["15", "17"] {
            let bin = tmp.path().join(format!("usr/lib/postgresql/{v}/bin"));
            fs::create_dir_all(&bin).unwrap();
            fs::write(bin.join("postgres"), "").unwrap();
        }
        // A client-only version has no server binary.
        fs::create_dir_all(tmp.path().join("usr/lib/postgresql/18/bin")).unwrap();
        assert_eq!(installed_version(&root).unwrap(), 17);
    }

    #[test]
    fn port_comes_from_the_cluster_config() {
        let tmp = tempfile::tempdir().unwrap();
        let conf = tmp.path().join("postgresql.conf");
        fs::write(
            &conf,
            "# port = 1\nport = 5433\t\t# (change requires restart)\n",
        )
        .unwrap();
        assert_eq!(cluster_port(&conf).unwrap(), 5433);
        fs::write(&conf, "listen_addresses = 'localhost'\n").unwrap();
        assert_eq!(cluster_port(&conf).unwrap(), 5432);
        fs::write(&conf, "port = many\n").unwrap();
        let err = cluster_port(&conf).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn the_agent_is_let_in_once_ahead_of_debians_peer_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let debian_hba = "local all postgres peer\nlocal all all peer\n";
        fs::write(dir.join("pg_hba.conf"), debian_hba).unwrap();
        fs::write(
            dir.join("pg_ident.conf"),
            "# MAPNAME SYSTEM-USERNAME PG-USERNAME\n",
        )
        .unwrap();
        fs::set_permissions(dir.join("pg_hba.conf"), fs::Permissions::from_mode(0o640)).unwrap();
        allow_agent(dir).unwrap();
        allow_agent(dir).unwrap();
        let hba = fs::read_to_string(dir.join("pg_hba.conf")).unwrap();
        let rules: Vec<&str> = hba.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            rules,
            [
                "local all owui_agent peer map=owui_agent",
                "local all postgres peer",
                "local all all peer"
            ]
        );
        let ident = fs::read_to_string(dir.join("pg_ident.conf")).unwrap();
        assert_eq!(ident.matches("owui_agent root owui_agent").count(), 1);
        let mode = fs::metadata(dir.join("pg_hba.conf"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
    }

    #[test]
    fn roles_without_a_database_have_nothing_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc/owui");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("seed.toml"), "node = \"g1\"\nrole = \"gpu\"\n").unwrap();
        let r = setup(&Root::new(tmp.path())).unwrap();
        assert_eq!(r.version, None);
    }
}
