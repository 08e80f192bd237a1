//! The seed's `[admin]` section: who Open WebUI's first administrator is.
//! Sign-up is closed on every image, so this account is the only way in
//! until it adds others; its password is made on the node and shown once
//! on the console (docs/seeds.md). A seed without the section gets
//! `admin@<node>`, named "Administrator".
//!
//! Both values reach an env file, so each is checked where the seed is
//! parsed: nothing in them can start a line of its own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest address (RFC 5321's path limit, less the brackets).
const EMAIL_MAX: usize = 254;
/// Longest display name Open WebUI's own sign-up form takes here.
const NAME_MAX: usize = 64;
/// What an administrator without a seed `[admin]` is called.
const DEFAULT_NAME: &str = "Administrator";

/// The seed's `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstAdmin {
    pub email: AdminEmail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<AdminName>,
}

impl FirstAdmin {
    /// The address the administrator signs in with: the seed's, else
    /// `admin@<node>`.
    pub fn email_for(admin: Option<&FirstAdmin>, node: &str) -> String {
        admin.map_or_else(|| format!("admin@{node}"), |a| a.email.0.clone())
    }

    /// The name Open WebUI shows for the administrator.
    pub fn name_for(admin: Option<&FirstAdmin>) -> String {
        admin
            .and_then(|a| a.name.as_ref())
            .map_or_else(|| DEFAULT_NAME.to_string(), |n| n.0.clone())
    }
}

/// An e-mail address as Open WebUI takes it for sign-in: `local@domain`,
/// the local part of letters, digits and `. _ % + -`, the domain a host
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminEmail(String);

impl FromStr for AdminEmail {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("admin email {text:?}"), why.to_string());
        if text.len() > EMAIL_MAX {
            return Err(bad(&format!("is over {EMAIL_MAX} bytes")));
        }
        let (local, domain) = text
            .split_once('@')
            .ok_or_else(|| bad("is not an address: it has no '@'"))?;
        let local_ok = !local.is_empty()
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c));
        if !local_ok {
            return Err(bad(
                "has a part before '@' that is empty or holds other than letters, digits and . _ % + -",
            ));
        }
        let domain_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if !domain_ok {
            return Err(bad("has a part after '@' that is not a host name"));
        }
        Ok(AdminEmail(text.to_string()))
    }
}

/// The administrator's display name: 1-64 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminName(String);

impl FromStr for AdminName {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("admin name {text:?}"), why.to_string());
        let count = text.chars().count();
        if text.trim().is_empty() || count > NAME_MAX {
            return Err(bad(&format!(
                "must have 1 to {NAME_MAX} characters, not only spaces"
            )));
        }
        if text.chars().any(char::is_control) {
            return Err(bad("holds a control character"));
        }
        Ok(AdminName(text.to_string()))
    }
}

impl fmt::Display for AdminEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for AdminName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

crate::string_serde!(AdminEmail);
crate::string_serde!(AdminName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_section_the_node_names_its_administrator() {
        assert_eq!(FirstAdmin::email_for(None, "rack1-n07"), "admin@rack1-n07");
        assert_eq!(FirstAdmin::name_for(None), "Administrator");
        let admin: FirstAdmin =
            toml::from_str("email = \"ops.lead+owui@site.example\"\nname = \"Åsa Lind\"").unwrap();
        assert_eq!(
            FirstAdmin::email_for(Some(&admin), "n"),
            "ops.lead+owui@site.example"
        );
        assert_eq!(FirstAdmin::name_for(Some(&admin)), "Åsa Lind");
    }

    #[test]
    fn addresses_and_names_that_could_break_an_env_file_are_refused() {
        for (text, says) in [
            ("email = \"ops\"", "no '@'"),
            ("email = \"@site.example\"", "before '@'"),
            ("email = \"o ps@site.example\"", "before '@'"),
            (
                "email = \"ops@site.example\\nWEBUI_AUTH=False\"",
                "after '@'",
            ),
            ("email = \"ops@-site.example\"", "after '@'"),
            ("email = \"ops@site..example\"", "after '@'"),
            ("email = \"ops@site.example\"\nname = \"\"", "1 to 64"),
            (
                "email = \"ops@site.example\"\nname = \"a\\nb\"",
                "control character",
            ),
            (
                "email = \"ops@site.example\"\npassword = \"x\"",
                "unknown field",
            ),
            ("name = \"x\"", "missing field `email`"),
        ] {
            let err = toml::from_str::<FirstAdmin>(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
