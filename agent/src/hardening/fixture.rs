//! The test node every rule's tests audit: a temporary root holding a
//! compliant appliance, with helpers to edit it and to compare findings.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::files::under_root;
use super::{audit, Audit, Finding, HardeningConfig, Severity};

pub(super) const DIGEST: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub(super) const ENV: &str = "/etc/owui/open-webui.env";
pub(super) const UNIT: &str = "/etc/containers/systemd/open-webui.container";
pub(super) const SECRETS: &str = "/etc/owui/secrets";
pub(super) const REDIS: &str = "/etc/redis/redis.conf";

pub(super) const COMPLIANT_ENV: &str = "\
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
pub(super) fn proc_line(slot: usize, addr: SocketAddr, state: &str) -> String {
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

pub(super) fn proc_file(entries: &[(&str, &str)]) -> String {
    let mut text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n".to_string();
    for (i, (addr, state)) in entries.iter().enumerate() {
        let addr: SocketAddr = addr.parse().unwrap();
        text.push_str(&proc_line(i, addr, state));
    }
    text
}

pub(super) struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    pub(super) fn empty() -> Node {
        Node {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A node matching every secure default.
    pub(super) fn compliant() -> Node {
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
        // Secure Boot on: attributes, then 1.
        n.write(
            super::secure_boot::SECURE_BOOT_VAR,
            "\u{6}\0\0\0\u{1}",
            0o644,
        );
        n
    }

    pub(super) fn root(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn host(&self, ns: &str) -> PathBuf {
        under_root(self.root(), Path::new(ns)).unwrap()
    }

    pub(super) fn write(&self, ns: &str, text: &str, mode: u32) {
        let path = self.host(ns);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A new file, not a rewrite: the old one may be read-only,
        // which stops a test that is not root.
        let _ = fs::remove_file(&path);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub(super) fn read(&self, ns: &str) -> String {
        fs::read_to_string(self.host(ns)).unwrap()
    }

    /// Rewrites a file keeping its mode.
    pub(super) fn edit(&self, ns: &str, f: impl FnOnce(String) -> String) {
        let mode = fs::metadata(self.host(ns)).unwrap().permissions().mode();
        let text = f(self.read(ns));
        self.write(ns, &text, mode & 0o7777);
    }

    /// Replaces `from` with `to` in a file, keeping its mode.
    pub(super) fn replace(&self, ns: &str, from: &str, to: &str) {
        self.edit(ns, |text| text.replace(from, to));
    }

    pub(super) fn audit(&self) -> Audit {
        audit(self.root(), &HardeningConfig::default())
    }
}

/// The one finding of `audit`, failing with the whole audit otherwise.
pub(super) fn only(audit: &Audit) -> &Finding {
    assert_eq!(audit.findings.len(), 1, "expected one finding: {audit:#?}");
    &audit.findings[0]
}

pub(super) fn assert_finding(
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

/// The findings of `audit`, in order: (item, expected, found, severity, source).
pub(super) fn assert_findings(audit: &Audit, want: &[(&str, &str, &str, Severity, &str)]) {
    assert_eq!(audit.findings.len(), want.len(), "{audit:#?}");
    for (f, &(item, expected, found, severity, source)) in audit.findings.iter().zip(want) {
        assert_finding(f, item, expected, found, severity, source);
    }
}
