//! Join tokens: what a non-control node's seed carries to enrol, bound to
//! one site, node and role, with an expiry and a random id that a control
//! node lets through once (the claim is an etcd transaction, not here).
//!
//! Text form: `owuijoin1:<site>:<node>:<role>:<expires>:<id>:<mac>`, where
//! `expires` is seconds since the epoch, `id` 128 random bits in hex and
//! `mac` HMAC-SHA256 over the other fields under the site's token key (256
//! bits, held only by control nodes). So a control node checks a token
//! with no list of issued tokens, nobody without the key can make one, and
//! changing any bound field (another node, another role, a later expiry)
//! breaks the mac. Colons cannot occur in a node, role or site name.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::role::Role;
use crate::seed::{parse_role, NodeName};

const PREFIX: &str = "owuijoin1";
/// The longest a token may live when made (`--ttl`).
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// The site's token key: 32 random bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenKey([u8; 32]);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<secret>)")
    }
}

impl TokenKey {
    pub fn generate() -> TokenKey {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        TokenKey(key)
    }

    /// 64 hex digits: how the key is written (0600 files, control seeds).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(what: &str, text: &str) -> Result<TokenKey> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key)
            .map_err(|_| Error::invalid(what, "a token key is 64 hex digits"))?;
        Ok(TokenKey(key))
    }

    fn mac(&self, fields: &Fields) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(fields.signed_text().as_bytes());
        mac
    }

    /// A token for `node` as `role` in `site`, valid until `now + ttl`.
    pub fn issue(
        &self,
        site: &str,
        node: &NodeName,
        role: Role,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<JoinToken> {
        if ttl.is_zero() || ttl > TOKEN_TTL_MAX {
            return Err(Error::invalid(
                "token lifetime",
                format!(
                    "{} is not between 1 s and {}",
                    humanize(ttl),
                    humanize(TOKEN_TTL_MAX)
                ),
            ));
        }
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let fields = Fields {
            site: site.to_string(),
            node: node.clone(),
            role,
            expires: super::ca::unix_secs(now + ttl),
            id: hex::encode(id),
        };
        let mac = hex::encode(self.mac(&fields).finalize().into_bytes());
        Ok(JoinToken { fields, mac })
    }

    /// Checks that `token` was made with this key for `site` and is not
    /// expired at `now`. Which node presents it, and whether it was used
    /// already, the caller checks.
    pub fn check(&self, token: &JoinToken, site: &str, now: SystemTime) -> Result<()> {
        if token.fields.site != site {
            return Err(Error::untrusted(
                "join token",
                format!(
                    "is for site {:?}, this is site {site:?}: the node's seed was made for another site",
                    token.fields.site
                ),
            ));
        }
        let mac = hex::decode(&token.mac).unwrap_or_default();
        self.mac(&token.fields).verify_slice(&mac).map_err(|_| {
            Error::untrusted(
                "join token",
                "was not made with this site's token key (forged or altered)",
            )
        })?;
        let now_secs = super::ca::unix_secs(now);
        if now_secs >= token.fields.expires {
            return Err(Error::refused(
                "join token",
                format!(
                    "expired at {} (now {}): make a new one with `owui-agent cluster token create` on a control node",
                    utc(token.fields.expires),
                    utc(now_secs)
                ),
            ));
        }
        Ok(())
    }
}

/// `seconds` since the epoch as RFC 3339 UTC, for messages.
pub fn utc(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

fn humanize(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The bound fields of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    site: String,
    node: NodeName,
    role: Role,
    expires: u64,
    id: String,
}

impl Fields {
    fn signed_text(&self) -> String {
        format!(
            "{PREFIX}:{}:{}:{}:{}:{}",
            self.site, self.node, self.role, self.expires, self.id
        )
    }
}

/// A join token as read from a seed or a command line. Debug leaves the
/// mac out: the mac is the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    fields: Fields,
    mac: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}, <secret>)", self.fields.signed_text())
    }
}

impl JoinToken {
    pub fn site(&self) -> &str {
        &self.fields.site
    }
    pub fn node(&self) -> &NodeName {
        &self.fields.node
    }
    pub fn role(&self) -> Role {
        self.fields.role
    }
    /// Seconds since the epoch.
    pub fn expires(&self) -> u64 {
        self.fields.expires
    }
    /// The id a control node claims once.
    pub fn id(&self) -> &str {
        &self.fields.id
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.fields.signed_text(), self.mac)
    }
}

impl FromStr for JoinToken {
    type Err = Error;

    /// Parses the text form; the error never repeats the text (it holds
    /// the secret).
    fn from_str(text: &str) -> Result<JoinToken> {
        let bad = |why: &str| Error::invalid("join token", why.to_string());
        let parts: Vec<&str> = text.split(':').collect();
        let [prefix, site, node, role, expires, id, mac] = parts[..] else {
            return Err(bad("is not owuijoin1:SITE:NODE:ROLE:EXPIRES:ID:MAC"));
        };
        if prefix != PREFIX {
            return Err(bad("does not start with owuijoin1:"));
        }
        site.parse::<NodeName>()
            .map_err(|_| bad("names a site that is not a valid name"))?;
        let node = node
            .parse::<NodeName>()
            .map_err(|_| bad("names a node that is not a valid node name"))?;
        let role = parse_role(role).map_err(|_| bad("names an unknown role"))?;
        let expires = expires
            .parse::<u64>()
            .map_err(|_| bad("has an expiry that is not a number of seconds"))?;
        let hex_of = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        };
        if !hex_of(id, 32) || !hex_of(mac, 64) {
            return Err(bad(
                "has an id or mac that is not lower-case hex of the right length",
            ));
        }
        Ok(JoinToken {
            fields: Fields {
                site: site.to_string(),
                node,
                role,
                expires,
                id: id.to_string(),
            },
            mac: mac.to_string(),
        })
    }
}

crate::string_serde!(JoinToken);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeName {
        name.parse().unwrap()
    }

    #[test]
    fn a_token_round_trips_and_checks() {
        let key = TokenKey::generate();
        let now = SystemTime::now();
        let token = key
            .issue(
                "rome",
                &node("gpu-1"),
                Role::Gpu,
                now,
                Duration::from_secs(3600),
            )
            .unwrap();
        let text = token.to_string();
        let back: JoinToken = text.parse().unwrap();
        assert_eq!(back, token);
        key.check(&back, "rome", now).unwrap();
        assert!(!format!("{back:?}").contains(&back.mac));
        // 256-bit mac plus a 128-bit id: far over the 128 bits asked for.
        assert_eq!(back.mac.len(), 64);
    }

    /// Every bound field changed, the key another site's, or the time past
    /// the expiry: refused, each with its own reason.
    #[test]
    fn altered_forged_expired_and_foreign_tokens_are_refused() {
        let key = TokenKey::generate();
        let now = SystemTime::now();
        let token = key
            .issue(
                "rome",
                &node("gpu-1"),
                Role::Gpu,
                now,
                Duration::from_secs(60),
            )
            .unwrap();
        let text = token.to_string();
        for altered in [
            text.replace(":gpu-1:", ":gpu-2:"),
            text.replace(":gpu:", ":db:"),
            text.replace(
                &format!(":{}:", token.expires()),
                &format!(":{}:", token.expires() + 86400),
            ),
        ] {
            let t: JoinToken = altered.parse().unwrap();
            let err = key.check(&t, "rome", now).unwrap_err();
            assert_eq!(err.exit_code(), 4, "{err}");
            assert!(err.to_string().contains("forged or altered"), "{err}");
        }
        let err = TokenKey::generate().check(&token, "rome", now).unwrap_err();
        assert!(err.to_string().contains("forged"), "{err}");
        let err = key.check(&token, "paris", now).unwrap_err();
        assert!(err.to_string().contains("another site"), "{err}");
        let err = key
            .check(&token, "rome", now + Duration::from_secs(61))
            .unwrap_err();
        assert_eq!(err.exit_code(), 5, "{err}");
        assert!(err.to_string().contains("expired at"), "{err}");
    }

    #[test]
    fn malformed_tokens_are_named_without_echoing_the_secret() {
        let key = TokenKey::generate();
        let token = key
            .issue(
                "rome",
                &node("n1"),
                Role::App,
                SystemTime::now(),
                Duration::from_secs(60),
            )
            .unwrap()
            .to_string();
        for bad in [
            "",
            "owuijoin2:rome:n1:app:1:00:00",
            &token.replace(":app:", ":printer:"),
            &token[..token.len() - 1],
            &token.to_uppercase(),
            &format!("{token}:extra"),
        ] {
            let err = bad.parse::<JoinToken>().unwrap_err();
            assert_eq!(err.exit_code(), 3);
            let mac = token.rsplit(':').next().unwrap();
            assert!(!err.to_string().contains(mac), "{err}");
        }
        assert!(key
            .issue(
                "rome",
                &node("n1"),
                Role::App,
                SystemTime::now(),
                Duration::ZERO
            )
            .is_err());
    }
}
