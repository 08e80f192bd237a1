//! Redis check: optional `AUTH`, `PING`, then `INFO replication` for the
//! role. A tiny RESP2 client of its own: commands go out as arrays of bulk
//! strings; the replies read back are simple strings, errors, integers and
//! bulk strings, each bounded by [`MAX_REPLY`] bytes.
//!
//! The check has no timeout of its own: the engine bounds every check.
//! The password never appears in a detail or an error.

use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::outcome::{CheckResult, Observation};

/// The largest reply accepted, framing included (`INFO replication` is a
/// few hundred bytes).
const MAX_REPLY: usize = 1 << 20;

/// Longest digit run accepted in a length or integer line (i64 needs 19).
const MAX_DIGITS: usize = 20;

/// Over TCP (`addr` `"127.0.0.1:6379"`, `"[::1]:6379"`, `"name:6379"`) or a
/// unix socket (`addr` starting with `/`): optional `AUTH`, `PING` (expects
/// `+PONG`), `INFO replication` → role.
///
/// `Ok("master")`, `Ok("replica of HOST:PORT, link up")`;
/// `Warn("replica of HOST:PORT, link down…")` when a replica has lost its
/// master; `Fail` when the connection is refused or lost, on `-ERR`/`NOAUTH`
/// replies and on replies that are not RESP; `Err` only for an address that
/// is not one (or a socket the agent may not open).
pub async fn check(addr: &str, password: Option<&str>) -> CheckResult {
    let observation = if addr.starts_with('/') {
        match UnixStream::connect(addr).await {
            Ok(stream) => converse(stream, password).await,
            Err(e) => return connect_failure(&e, addr),
        }
    } else {
        validate_tcp(addr)?;
        match TcpStream::connect(addr).await {
            Ok(stream) => converse(stream, password).await,
            Err(e) => return connect_failure(&e, addr),
        }
    };
    Ok(observation)
}

/// `host:port` with a non-empty host and a port in 1..=65535.
fn validate_tcp(addr: &str) -> Result<(), String> {
    let bad = || format!("invalid Redis address {addr:?}: expected HOST:PORT or /path/to/socket");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match port.parse::<u16>() {
        Ok(p) if p != 0 && !host.is_empty() && !host.contains(char::is_whitespace) => Ok(()),
        _ => Err(bad()),
    }
}

fn connect_failure(e: &io::Error, addr: &str) -> CheckResult {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            Ok(Observation::Fail(format!("connection refused at {addr}")))
        }
        io::ErrorKind::NotFound if Path::new(addr).is_absolute() => Ok(Observation::Fail(format!(
            "connection refused: no server socket at {addr}"
        ))),
        _ if e.raw_os_error() == Some(libc::EACCES) => Err(format!(
            "permission denied connecting to {addr}: the agent may not open that socket"
        )),
        _ => Ok(Observation::Fail(format!("cannot connect to {addr}: {e}"))),
    }
}

/// The conversation on an open connection.
async fn converse<S>(stream: S, password: Option<&str>) -> Observation
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    // Server texts go through `hide`: cut short, and with the password
    // masked in case a server ever echoes it back.
    let hide = |text: &str| {
        let text = match password {
            Some(p) if !p.is_empty() => text.replace(p, "***"),
            _ => text.to_owned(),
        };
        truncate(&text, 200)
    };

    if let Some(password) = password {
        match conn.call(&[b"AUTH", password.as_bytes()]).await {
            Ok(Reply::Simple(s)) if s == "OK" => {}
            Ok(Reply::Error(e)) => {
                return Observation::Fail(format!("authentication failed: {}", hide(&e)))
            }
            Ok(other) => {
                return Observation::Fail(format!(
                    "unexpected reply to AUTH: {}",
                    hide(&other.summary())
                ))
            }
            Err(e) => return Observation::Fail(e.to_string()),
        }
    }

    match conn.call(&[b"PING"]).await {
        Ok(Reply::Simple(s)) if s == "PONG" => {}
        Ok(Reply::Error(e)) if e.starts_with("NOAUTH") => {
            return Observation::Fail(format!("authentication required: {}", hide(&e)))
        }
        Ok(Reply::Error(e)) => return Observation::Fail(format!("PING refused: {}", hide(&e))),
        Ok(other) => {
            return Observation::Fail(format!(
                "unexpected reply to PING: {}",
                hide(&other.summary())
            ))
        }
        Err(e) => return Observation::Fail(e.to_string()),
    }

    match conn.call(&[b"INFO", b"replication"]).await {
        Ok(Reply::Bulk(Some(info))) => replication_state(&String::from_utf8_lossy(&info)),
        Ok(Reply::Error(e)) => Observation::Fail(format!("INFO replication refused: {}", hide(&e))),
        Ok(other) => Observation::Fail(format!(
            "unexpected reply to INFO replication: {}",
            hide(&other.summary())
        )),
        Err(e) => Observation::Fail(e.to_string()),
    }
}

/// Reads the role out of an `INFO replication` text.
fn replication_state(info: &str) -> Observation {
    let field = |name: &str| {
        info.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == name).then(|| value.trim())
        })
    };
    match field("role") {
        Some("master") => Observation::Ok("master".into()),
        Some("slave") | Some("replica") => {
            let host = field("master_host").unwrap_or("?");
            let port = field("master_port").unwrap_or("?");
            let master = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            match field("master_link_status") {
                Some("up") => Observation::Ok(format!("replica of {master}, link up")),
                status => {
                    let mut detail = format!("replica of {master}, link {}", status.unwrap_or("?"));
                    if field("master_sync_in_progress") == Some("1") {
                        detail.push_str(", initial sync in progress");
                    }
                    if let Some(secs) = field("master_link_down_since_seconds") {
                        if secs.parse::<i64>().is_ok_and(|s| s >= 0) {
                            detail.push_str(&format!(", down for {secs} s"));
                        }
                    }
                    Observation::Warn(detail)
                }
            }
        }
        Some(other) => Observation::Fail(format!(
            "unexpected replication role {:?}",
            truncate(other, 40)
        )),
        None => Observation::Fail("INFO replication has no role line".into()),
    }
}

/// One reply, RESP2.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc` (`None`: the null bulk string `$-1`)
    Bulk(Option<Vec<u8>>),
}

impl Reply {
    /// A short description for details ("bulk string of 12 bytes").
    fn summary(&self) -> String {
        match self {
            Reply::Simple(s) => format!("+{}", truncate(s, 60)),
            Reply::Error(s) => format!("-{}", truncate(s, 60)),
            Reply::Integer(n) => format!(":{n}"),
            Reply::Bulk(None) => "null".into(),
            Reply::Bulk(Some(b)) => format!("bulk string of {} bytes", b.len()),
        }
    }
}

/// Why a reply could not be read.
#[derive(Debug)]
enum CallError {
    Io(io::Error),
    /// The server closed the connection before a whole reply arrived.
    Closed,
    Protocol(ProtocolError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Io(e) => write!(f, "connection lost: {e}"),
            CallError::Closed => f.write_str("connection closed by the server"),
            CallError::Protocol(e) => write!(f, "bad reply from the server: {e}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ProtocolError {
    /// A reply (or a declared bulk length) beyond [`MAX_REPLY`].
    TooLarge,
    /// Not RESP, or a RESP type these commands never get.
    Malformed(String),
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolError::TooLarge => write!(f, "reply larger than {MAX_REPLY} bytes"),
            ProtocolError::Malformed(why) => f.write_str(why),
        }
    }
}

struct Conn<S> {
    stream: S,
    /// Bytes read but not yet consumed by a reply.
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, CallError> {
        self.stream
            .write_all(&encode(args))
            .await
            .map_err(CallError::Io)?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, CallError> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf).map_err(CallError::Protocol)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let n = self.stream.read(&mut chunk).await.map_err(CallError::Io)?;
            if n == 0 {
                return Err(CallError::Closed);
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the front of `buf`: `Ok(Some((reply, bytes used)))`,
/// `Ok(None)` when more bytes are needed, `Err` when the bytes cannot become
/// a valid reply (or one within [`MAX_REPLY`]).
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$') {
        return Err(ProtocolError::Malformed(match kind {
            b'*' | b'_' | b',' | b'#' | b'(' | b'=' | b'%' | b'~' | b'>' | b'|' | b'!' => {
                format!("unexpected reply type {:?}", char::from(kind))
            }
            _ => format!("not a RESP reply (starts with byte 0x{kind:02x})"),
        }));
    }
    let Some((line, after_line)) = header_line(buf, kind)? else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()), after_line))),
        b'-' => Ok(Some((Reply::Error(text()), after_line))),
        b':' => Ok(Some((Reply::Integer(parse_int(line)?), after_line))),
        _ => {
            let len = parse_int(line)?;
            if len == -1 {
                return Ok(Some((Reply::Bulk(None), after_line)));
            }
            let len = usize::try_from(len).map_err(|_| {
                ProtocolError::Malformed(format!("negative bulk string length {len}"))
            })?;
            if len > MAX_REPLY {
                return Err(ProtocolError::TooLarge);
            }
            let end = after_line + len;
            let Some(rest) = buf.get(after_line..) else {
                return Ok(None);
            };
            if rest.len() < len + 2 {
                return Ok(None);
            }
            if rest.get(len..len + 2) != Some(b"\r\n".as_slice()) {
                return Err(ProtocolError::Malformed(
                    "bulk string not followed by CRLF".into(),
                ));
            }
            let body = rest.get(..len).unwrap_or_default().to_vec();
            Ok(Some((Reply::Bulk(Some(body)), end + 2)))
        }
    }
}

/// The first line after the type byte, without its CRLF, and the offset
/// just past the CRLF; `None` while incomplete.
fn header_line(buf: &[u8], kind: u8) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let numeric = matches!(kind, b':' | b'$');
    for (i, &b) in buf.iter().enumerate().skip(1) {
        match b {
            b'\n' => {
                return match buf.get(1..i - 1) {
                    Some(line) if buf.get(i - 1) == Some(&b'\r') && i >= 2 => {
                        Ok(Some((line, i + 1)))
                    }
                    _ => Err(ProtocolError::Malformed(
                        "line ends in LF without CR".into(),
                    )),
                };
            }
            b'\r' if buf.get(i + 1).is_some_and(|&next| next != b'\n') => {
                return Err(ProtocolError::Malformed("CR inside a line".into()));
            }
            _ => {}
        }
        if i > MAX_REPLY {
            return Err(ProtocolError::TooLarge);
        }
        if numeric && i > MAX_DIGITS + 2 {
            return Err(ProtocolError::Malformed(
                "length or integer line too long".into(),
            ));
        }
    }
    Ok(None)
}

/// A RESP integer: an optional `-` and 1..=19 ASCII digits.
fn parse_int(line: &[u8]) -> Result<i64, ProtocolError> {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ProtocolError::Malformed(format!(
            "bad integer {:?}",
            truncate(&String::from_utf8_lossy(line), 24)
        )));
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError::Malformed("integer out of range".into()))
}

/// At most `max` characters of `s`, with "…" when cut.
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! Against fake servers on loopback. Against real redis-server
    //! processes (unix socket, passwords, replication):
    //! `tests/tests/health_services.rs`.

    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
        parse_reply(bytes)
    }

    fn malformed(bytes: &[u8]) -> bool {
        matches!(parse(bytes), Err(ProtocolError::Malformed(_)))
    }

    #[test]
    fn check_future_is_send() {
        fn send<T: Send>(_: T) {}
        send(check("127.0.0.1:6379", Some("pw")));
    }

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            encode(&[b"AUTH", b"p w\r\n"]),
            b"*2\r\n$4\r\nAUTH\r\n$5\r\np w\r\n\r\n"
        );
        assert_eq!(encode(&[b"X", b""]), b"*2\r\n$1\r\nX\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_each_reply_type() {
        let cases: [(&[u8], Reply); 7] = [
            (b"+PONG\r\n", Reply::Simple("PONG".into())),
            (b"+\r\n", Reply::Simple(String::new())),
            (b"-ERR unknown\r\n", Reply::Error("ERR unknown".into())),
            (b":-42\r\n", Reply::Integer(-42)),
            (b"$5\r\nhe\r\no\r\n", Reply::Bulk(Some(b"he\r\no".to_vec()))),
            (b"$0\r\n\r\n", Reply::Bulk(Some(Vec::new()))),
            (b"$-1\r\n", Reply::Bulk(None)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                Ok(Some((want.clone(), bytes.len()))),
                "{bytes:?}"
            );
            // Every proper prefix asks for more bytes, never errs or panics.
            for cut in 0..bytes.len() {
                assert_eq!(parse(&bytes[..cut]), Ok(None), "{:?}", &bytes[..cut]);
            }
            // Bytes after the reply are left for the next one.
            let mut more = bytes.to_vec();
            more.extend_from_slice(b"+OK\r\n");
            assert_eq!(parse(&more), Ok(Some((want, bytes.len()))));
        }
    }

    #[test]
    fn rejects_malformed_replies() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"\x00\x00",
            b"*1\r\n$4\r\nPONG\r\n",
            b"%1\r\n",
            b"+PO\nNG\r\n",
            b"+PO\rNG\r\n",
            b"+\n",
            b":12a\r\n",
            b":\r\n",
            b":+5\r\n",
            b":99999999999999999999\r\n",
            b"$-2\r\n",
            b"$abc\r\n",
            b"$3\r\nabcde\r\n",
            b"$3\r\nabc\n\n",
            b"$1234567890123456789012345\r\n",
        ] {
            assert!(malformed(bad), "{bad:?} gave {:?}", parse(bad));
        }
    }

    #[test]
    fn bounds_reply_size() {
        // A declared bulk length past the cap fails before any body arrives.
        let header = format!("${}\r\n", MAX_REPLY + 1);
        assert_eq!(parse(header.as_bytes()), Err(ProtocolError::TooLarge));
        assert_eq!(
            parse(format!("${}\r\n", i64::MAX).as_bytes()),
            Err(ProtocolError::TooLarge)
        );
        // A bulk string of exactly the cap is fine.
        let mut full = format!("${MAX_REPLY}\r\n").into_bytes();
        full.resize(full.len() + MAX_REPLY, b'x');
        full.extend_from_slice(b"\r\n");
        assert!(
            matches!(parse(&full), Ok(Some((Reply::Bulk(Some(b)), _))) if b.len() == MAX_REPLY)
        );
        // A line that never ends.
        let mut endless = vec![b'+'];
        endless.resize(MAX_REPLY + 10, b'a');
        assert_eq!(parse(&endless), Err(ProtocolError::TooLarge));
        // A number that never ends.
        let mut digits = vec![b'$'];
        digits.resize(40, b'1');
        assert!(malformed(&digits));
    }

    #[test]
    fn reads_replication_role() {
        let ok = |d: &str| Observation::Ok(d.into());
        assert_eq!(
            replication_state("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"),
            ok("master")
        );
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.5\r\n\
                       master_port:6380\r\nmaster_link_status:up\r\n";
        assert_eq!(
            replication_state(replica),
            ok("replica of 10.0.0.5:6380, link up")
        );
        let down = "role:slave\r\nmaster_host:::1\r\nmaster_port:6379\r\n\
                    master_link_status:down\r\nmaster_sync_in_progress:1\r\n\
                    master_link_down_since_seconds:7\r\n";
        assert_eq!(
            replication_state(down),
            Observation::Warn(
                "replica of [::1]:6379, link down, initial sync in progress, down for 7 s".into()
            )
        );
        assert!(matches!(
            replication_state("role:sentinel\r\n"),
            Observation::Fail(_)
        ));
        assert!(matches!(
            replication_state("# Replication\r\n"),
            Observation::Fail(_)
        ));
    }

    #[tokio::test]
    async fn bad_addresses_are_errors() {
        for bad in [
            "",
            "localhost",
            "127.0.0.1:",
            "127.0.0.1:0",
            ":6379",
            "h:99999",
            "a b:1",
        ] {
            assert!(check(bad, None).await.is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("redis.sock");
        let addr = path.to_str().unwrap();
        assert_eq!(
            check(addr, None).await,
            Ok(Observation::Fail(format!(
                "connection refused: no server socket at {addr}"
            )))
        );
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert_eq!(
            check(addr, None).await,
            Ok(Observation::Fail(format!("connection refused at {addr}")))
        );
    }

    /// A fake server that answers every connection with `reply` (then
    /// closes), to feed the client bad bytes over a real socket.
    async fn fake_server(reply: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = vec![0u8; 1024];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn bad_servers_are_failures_not_panics() {
        let mut huge = b"$2000000\r\n".to_vec();
        huge.resize(3_000_000, b'x');
        let mut endless = b"+".to_vec();
        endless.resize(3_000_000, b'a');
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
                "not a RESP reply",
            ),
            (b"+PO".to_vec(), "connection closed by the server"),
            (Vec::new(), "connection closed by the server"),
            (b"+HELLO\r\n".to_vec(), "unexpected reply to PING: +HELLO"),
            (
                b"-LOADING Redis is loading\r\n".to_vec(),
                "PING refused: LOADING",
            ),
            (
                b"-NOAUTH Authentication required.\r\n".to_vec(),
                "authentication required",
            ),
            (huge, "larger than"),
            (endless, "larger than"),
        ];
        for (reply, want) in cases {
            let addr = fake_server(reply).await;
            match check(&addr, None).await {
                Ok(Observation::Fail(d)) => assert!(d.contains(want), "{d:?} lacks {want:?}"),
                other => panic!("expected a failure with {want:?}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn echoed_password_is_masked() {
        let addr = fake_server(b"-ERR bad password hunter2hunter2\r\n".to_vec()).await;
        match check(&addr, Some("hunter2hunter2")).await {
            Ok(Observation::Fail(d)) => {
                assert_eq!(d, "authentication failed: ERR bad password ***");
            }
            other => panic!("{other:?}"),
        }
    }
}
