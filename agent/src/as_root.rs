//! `owui-agent as-root`: the one program the operator account `owui-admin`
//! may run through sudo (the image's /etc/sudoers.d/owui-admin). It refuses
//! a command without a reason, writes who, what and why to the journal
//! (identifier [`IDENTIFIER`]), and only once journald took the entry
//! replaces itself with the command, as root.
//!
//! What it does not do (docs/operator-access.md): it records the start of
//! a command, not what a shell started with it does afterwards; and the
//! reason is whatever the operator typed.

use std::ffi::{OsStr, OsString};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};

use crate::layout::Root;

/// The journal's `SYSLOG_IDENTIFIER`: `journalctl -t owui-as-root`.
pub const IDENTIFIER: &str = "owui-as-root";
/// Fewest characters a reason has (trimmed): a ticket number and a word.
pub const REASON_MIN: usize = 12;
/// Most characters a reason has.
const REASON_MAX: usize = 500;
/// journald's native socket. Fixed, not under `--root`: a directory the
/// caller chose would let them take the entry themselves and run unlogged.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";
/// `LOG_AUTHPRIV`: where syslog readers and SIEMs look for privilege use.
const FACILITY_AUTHPRIV: &str = "10";
/// `LOG_NOTICE`.
const PRIORITY_NOTICE: &str = "5";

/// Who asked, as sudo and the kernel tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `SUDO_USER`, set by sudo (not by the caller); None when root ran
    /// this directly.
    pub sudo_user: Option<String>,
    /// The audit login UID (`/proc/self/loginuid`), which a login sets
    /// once and no later `su` or `sudo` changes; None when unset.
    pub login_uid: Option<u32>,
}

impl Caller {
    /// The caller of this process.
    pub fn this_process() -> Caller {
        let login_uid = std::fs::read_to_string("/proc/self/loginuid")
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            // (uid_t)-1: no login recorded it.
            .filter(|&uid| uid != u32::MAX);
        Caller {
            sudo_user: std::env::var("SUDO_USER").ok(),
            login_uid,
        }
    }

    fn describe(&self) -> String {
        let login = self
            .login_uid
            .map(|uid| format!(" (login uid {uid})"))
            .unwrap_or_default();
        match &self.sudo_user {
            Some(user) => format!("{user}{login}"),
            None => format!("root, not through sudo{login}"),
        }
    }
}

/// The reason, trimmed, when it is one: [`REASON_MIN`] to [`REASON_MAX`]
/// characters, one line, no control characters.
pub fn check_reason(reason: &str) -> Result<&str> {
    let trimmed = reason.trim();
    let count = trimmed.chars().count();
    let problem = if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        Some(format!(
            "holds the control character {c:?}; give it on one line"
        ))
    } else if count < REASON_MIN {
        Some(format!(
            "is {count} characters; give at least {REASON_MIN}: why this runs as root (a ticket, what is broken)"
        ))
    } else if count > REASON_MAX {
        Some(format!(
            "is {count} characters, over the {REASON_MAX} allowed"
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::invalid("--reason", p)),
        None => Ok(trimmed),
    }
}

/// One argument as the journal's message shows it: plain when it is plain,
/// else quoted with its control characters escaped.
fn shown_arg(arg: &OsStr) -> String {
    let text = arg.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("{text:?}")
    }
}

/// The journal entry for `command` run by `caller` for `reason`, in
/// journald's native protocol: each field as `NAME\n`, its length (64-bit
/// little endian), its bytes and `\n`, which carries any byte.
pub fn journal_entry(caller: &Caller, reason: &str, command: &[OsString]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let shown: Vec<String> = command.iter().map(|a| shown_arg(a)).collect();
    let shown = shown.join(" ");
    let message = format!(
        "{} runs as root: {shown}; reason: {reason}",
        caller.describe()
    );
    let mut fields: Vec<(&str, Vec<u8>)> = vec![
        ("SYSLOG_IDENTIFIER", IDENTIFIER.into()),
        ("SYSLOG_FACILITY", FACILITY_AUTHPRIV.into()),
        ("PRIORITY", PRIORITY_NOTICE.into()),
        ("MESSAGE", message.into_bytes()),
        ("OWUI_REASON", reason.into()),
        ("OWUI_COMMAND", shown.into_bytes()),
    ];
    if let Some(user) = &caller.sudo_user {
        fields.push(("OWUI_SUDO_USER", user.clone().into_bytes()));
    }
    if let Some(uid) = caller.login_uid {
        fields.push(("OWUI_LOGIN_UID", uid.to_string().into_bytes()));
    }
    // One field per argument, as given: the exact bytes for an audit.
    for arg in command {
        fields.push(("OWUI_ARGV", arg.as_bytes().to_vec()));
    }
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        out.extend_from_slice(&value);
        out.push(b'\n');
    }
    out
}

/// Sends `entry` to journald's socket at `socket`; an error when journald
/// did not take it.
pub fn send_to_journal(socket: &Path, entry: &[u8]) -> Result<()> {
    let sock = UnixDatagram::unbound().at("opening a socket for", socket)?;
    sock.send_to(entry, socket)
        .at("writing the entry to the journal at", socket)?;
    Ok(())
}

/// Checks the reason, logs, then runs `command` as root in place of this
/// process; returns only with the reason it could not.
pub fn run(root: &Root, reason: &str, command: &[OsString]) -> Error {
    if let Err(e) = prepare_and_log(root, reason, command) {
        return e;
    }
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .exec();
    Error::Io {
        action: "running",
        path: command[0].clone().into(),
        source: err,
    }
}

fn prepare_and_log(root: &Root, reason: &str, command: &[OsString]) -> Result<()> {
    if root.path() != Path::new("/") {
        return Err(Error::refused(
            "as-root",
            "runs on this node only, without --root",
        ));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::refused(
            "as-root",
            "is not running as root; run it through sudo: sudo owui-agent as-root --reason \"…\" -- COMMAND",
        ));
    }
    let reason = check_reason(reason)?;
    if command.is_empty() {
        return Err(Error::invalid(
            "as-root",
            "no command given after the reason",
        ));
    }
    let entry = journal_entry(&Caller::this_process(), reason, command);
    // No entry, no command: journald must have it first.
    send_to_journal(Path::new(JOURNAL_SOCKET), &entry).map_err(|e| {
        Error::refused(
            "as-root",
            format!("the journal did not take the entry, so nothing ran: {e}"),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The fields of a native-protocol entry, in order.
    fn fields(entry: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = entry;
        while !rest.is_empty() {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap();
            let name = String::from_utf8(rest[..nl].to_vec()).unwrap();
            let len = u64::from_le_bytes(rest[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = rest[nl + 9..nl + 9 + len].to_vec();
            assert_eq!(rest[nl + 9 + len], b'\n');
            out.push((name, value));
            rest = &rest[nl + 10 + len..];
        }
        out
    }

    fn field<'a>(f: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a [u8]> {
        f.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    #[test]
    fn a_reason_is_needed_and_must_say_something() {
        for (reason, why) in [
            ("", "is 0 characters"),
            ("fix", "is 3 characters"),
            ("   because     ", "is 7 characters"),
            ("INC-4711 disk\nrm -rf", "'\\n'"),
            ("INC-4711 disk\u{1b}[2J", "'\\u{1b}'"),
        ] {
            let err = check_reason(reason).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{err}");
            assert!(err.to_string().contains(why), "{err}");
            assert!(err.to_string().contains("--reason"), "{err}");
        }
        assert!(check_reason(&"x".repeat(REASON_MAX + 1)).is_err());
        assert_eq!(
            check_reason("  INC-4711: nginx hangs  ").unwrap(),
            "INC-4711: nginx hangs"
        );
    }

    #[test]
    fn the_entry_says_who_what_and_why_with_the_exact_arguments() {
        let caller = Caller {
            sudo_user: Some("owui-admin".into()),
            login_uid: Some(999),
        };
        let command: Vec<OsString> = ["systemctl", "restart", "nginx.service", "a b\nc"]
            .map(OsString::from)
            .to_vec();
        let entry = journal_entry(&caller, "INC-4711: nginx hangs", &command);
        let f = fields(&entry);
        assert_eq!(field(&f, "SYSLOG_IDENTIFIER"), [b"owui-as-root"]);
        assert_eq!(field(&f, "OWUI_REASON"), [b"INC-4711: nginx hangs"]);
        assert_eq!(field(&f, "OWUI_SUDO_USER"), [b"owui-admin"]);
        assert_eq!(field(&f, "OWUI_LOGIN_UID"), [b"999"]);
        assert_eq!(
            field(&f, "OWUI_ARGV"),
            [&b"systemctl"[..], b"restart", b"nginx.service", b"a b\nc"]
        );
        let message = String::from_utf8(field(&f, "MESSAGE")[0].to_vec()).unwrap();
        assert_eq!(
            message,
            "owui-admin (login uid 999) runs as root: systemctl restart nginx.service \"a b\\nc\"; reason: INC-4711: nginx hangs"
        );
        let direct = Caller {
            sudo_user: None,
            login_uid: None,
        };
        let f = fields(&journal_entry(&direct, "console repair", &command[..1]));
        assert!(String::from_utf8_lossy(field(&f, "MESSAGE")[0])
            .starts_with("root, not through sudo runs"));
        assert!(field(&f, "OWUI_SUDO_USER").is_empty());
    }

    #[test]
    fn the_entry_reaches_a_journal_socket_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("socket");
        let journal = UnixDatagram::bind(&socket).unwrap();
        let entry = journal_entry(
            &Caller {
                sudo_user: Some("owui-admin".into()),
                login_uid: None,
            },
            "INC-4711: nginx hangs",
            &[OsString::from("true")],
        );
        send_to_journal(&socket, &entry).unwrap();
        let mut got = vec![0u8; 65536];
        let n = journal.recv(&mut got).unwrap();
        assert_eq!(&got[..n], &entry[..]);
        let err = send_to_journal(&dir.path().join("none"), &entry).unwrap_err();
        assert!(err.to_string().contains("journal"), "{err}");
    }

    #[test]
    fn another_root_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &Root::new(dir.path()),
            "INC-4711: nginx hangs",
            &[OsString::from("true")],
        );
        assert_eq!(err.exit_code(), 5, "{err}");
        assert!(err.to_string().contains("--root"), "{err}");
    }
}
