//! **Listening sockets**: only 443 faces users, with 80 kept
//! for the HTTPS redirect; everything else must be bound
//! to loopback. Quadlet `PublishPort=` lines are checked by the same rule,
//! since ports published through netavark's DNAT have no listening socket
//! on the host.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::files::{io_reason, open_regular, under_root};
use super::{shown, Audit, Scope, Severity};

/// Largest `/proc/net/tcp*` read (about 400 000 sockets).
const MAX_PROC_BYTES: u64 = 64 * 1024 * 1024;

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

pub(super) fn audit_published_ports(s: &mut Scope<'_>, a: &mut Audit) {
    let (cfg, units) = (s.cfg, &s.units);
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

pub(super) fn audit_sockets(s: &mut Scope<'_>, a: &mut Audit) {
    let (root, cfg) = (s.root, s.cfg);
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::hardening::fixture::*;

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
            n.replace(
                UNIT,
                "PublishPort=127.0.0.1:8080:8080",
                &format!("PublishPort={spec}"),
            );
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
    fn port_lists() {
        assert_eq!(port_list(&[]), "none");
        assert_eq!(port_list(&[443, 22, 443]), "22, 443");
    }
}
