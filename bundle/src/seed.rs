//! The node seed: who a node is (`node = "<name>"`, `role = "<role>"`),
//! who may log in to it (`ssh_authorized_keys`), who Open WebUI's first
//! administrator is (`[admin]`) and its address (`[network]`; the last
//! three optional), the one per-host
//! input a role image takes. Made and signed on the build side
//! (`owui-builder seed create`), checked on the node (`owui-agent seed
//! import`) against the image's trust store before any field is trusted.
//!
//! A node name reaches the hostname, certificates, env files and (later)
//! etcd keys, so it is checked when the seed is parsed, and only a
//! [`NodeName`] that passed the check exists: RFC 1123 host names, lower
//! case only (docs/seeds.md).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cluster::SeedCluster;
use crate::error::{Error, Result};
use crate::first_admin::FirstAdmin;
use crate::node_network::NodeNetwork;
use crate::role::Role;
use crate::sign::SecretKey;
use crate::ssh_key::SshPublicKey;
use crate::toml_loc::Loc;
use crate::trust::{Signer, TrustStore};

/// Largest seed file read; a seed is a few short lines and its SSH keys.
pub const SEED_MAX: u64 = 64 * 1024;
/// Longest host name (RFC 1123 section 2.1, as DNS allows).
const NAME_MAX: usize = 253;
/// Longest label between dots.
const LABEL_MAX: usize = 63;

/// A node name that is a valid RFC 1123 host name in lower case: labels of
/// 1-63 characters `a-z 0-9 -`, not starting or ending with `-`, joined by
/// dots, 253 characters at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NodeName(String);

impl NodeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why `name` is not a node name, or None when it is one.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > NAME_MAX {
        return Some(format!(
            "is {} bytes long, over the {NAME_MAX} a host name may have",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        let hint = if c.is_ascii_uppercase() {
            " (node names are lower case)"
        } else {
            ""
        };
        return Some(format!(
            "holds {c:?}: only a-z, 0-9, '-' and '.' are allowed{hint}"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some("has an empty label (a leading, trailing or doubled '.')".into());
        }
        if label.len() > LABEL_MAX {
            return Some(format!(
                "has a label of {} characters, over the {LABEL_MAX} allowed",
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("has label {label:?} starting or ending with '-'"));
        }
    }
    None
}

impl FromStr for NodeName {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name_problem(name) {
            // {:?} quotes the name with control characters escaped: what is
            // printed cannot move the cursor or start a line of its own.
            Some(problem) => Err(Error::invalid(
                format!("node name {name:?}"),
                format!("{problem}; a node name is an RFC 1123 host name in lower case"),
            )),
            None => Ok(NodeName(name.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // The TOML error around this names the file, line and key.
        text.parse().map_err(|e: Error| serde::de::Error::custom(e))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Callers that only read the name use it as a `&str`.
impl std::ops::Deref for NodeName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// A role by its name (`app`, `db`, `gpu`, `allinone`).
pub fn parse_role(name: &str) -> Result<Role> {
    Role::ALL
        .into_iter()
        .find(|r| r.as_str() == name)
        .ok_or_else(|| {
            Error::invalid(
                format!("role {name:?}"),
                "is not one of app, db, gpu, allinone",
            )
        })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seed {
    /// The node's name (its hostname in the cluster).
    pub node: NodeName,
    /// The node's role: the image's.
    pub role: Role,
    /// The operator's SSH public keys for `owui-admin` (docs/seeds.md); none
    /// lets nobody in over SSH.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<SshPublicKey>,
    /// LAB ONLY: lowers the image's least data partition size
    /// (partitions.data) to this many MiB, so a lab VM or a small test disk
    /// can run a role image; never below LAB_DATA_MIN_FLOOR_MIB. None: the
    /// image's minimum. A plain value, so before the sections (TOML writes
    /// a table's keys before its sub-tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_data_min_mib: Option<u64>,
    /// Open WebUI's first administrator; none: `admin@<node>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<FirstAdmin>,
    /// The node's address; none: DHCP on every wired port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NodeNetwork>,
    /// The site the node enrols into; none: a node alone (docs/cluster.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<SeedCluster>,
}

/// The least `lab_data_min_mib` a seed may give: the least `partitions.data`
/// an image spec may have (docs/images.md).
pub const LAB_DATA_MIN_FLOOR_MIB: u64 = 256;

/// A seed as its file has it, with where each SSH key was written: the
/// TOML parser places an error in a list at the list, and an operator
/// needs the entry's own line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedFile {
    node: NodeName,
    role: Role,
    #[serde(default)]
    ssh_authorized_keys: Vec<toml::Spanned<String>>,
    // See Seed::lab_data_min_mib.
    #[serde(default)]
    lab_data_min_mib: Option<toml::Spanned<u64>>,
    admin: Option<FirstAdmin>,
    network: Option<NodeNetwork>,
    cluster: Option<SeedCluster>,
}

impl Seed {
    /// Parses a seed's bytes; `what` (the file) starts every error, which
    /// names the line and key.
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Seed> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| Error::invalid(what, format!("not UTF-8: {e}")))?;
        let file: SeedFile = crate::toml_loc::parse(what, text)?;
        let ssh_authorized_keys = file
            .ssh_authorized_keys
            .iter()
            .map(|entry| {
                entry.get_ref().parse::<SshPublicKey>().map_err(|e| {
                    Loc::at(Path::new(what), text, entry.span().start)
                        .err("ssh_authorized_keys", e.to_string())
                })
            })
            .collect::<Result<_>>()?;
        if let Some(network) = &file.network {
            network.check(what)?;
        }
        if let Some(cluster) = &file.cluster {
            cluster.check(what, &file.node, file.role)?;
        }
        let lab_data_min_mib = match file.lab_data_min_mib {
            Some(min) if *min.get_ref() < LAB_DATA_MIN_FLOOR_MIB => {
                return Err(Loc::at(Path::new(what), text, min.span().start).err(
                    "lab_data_min_mib",
                    format!(
                        "{} MiB is below the {LAB_DATA_MIN_FLOOR_MIB} MiB a data partition needs at least",
                        min.get_ref()
                    ),
                ))
            }
            min => min.map(toml::Spanned::into_inner),
        };
        Ok(Seed {
            node: file.node,
            role: file.role,
            ssh_authorized_keys,
            admin: file.admin,
            network: file.network,
            cluster: file.cluster,
            lab_data_min_mib,
        })
    }

    /// The seed file's bytes: what is signed and what a node keeps.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        toml::to_string(self)
            .map(String::into_bytes)
            .map_err(|e| Error::internal("serialising the seed", e.to_string()))
    }

    /// The `.minisig` text for `bytes` (this seed's [`Seed::to_bytes`]).
    pub fn sign(&self, key: &SecretKey, bytes: &[u8]) -> String {
        key.sign(
            bytes,
            &format!("owui seed node={} role={}", self.node, self.role),
        )
    }
}

/// A seed whose bytes verified against the trust store: the only way a
/// signed seed comes out of [`verify`].
#[derive(Debug)]
pub struct VerifiedSeed {
    pub seed: Seed,
    pub signer: Signer,
}

/// What an operator does about a seed the node does not trust.
const HOW_TO_SIGN: &str = "make it with `owui-builder seed create --node NAME --role ROLE --key KEY --out seed.toml` and put seed.toml and seed.toml.minisig side by side";

/// Checks `signature` (the `seed.toml.minisig` text, None when there is
/// none) over `bytes` by a key of `store` first, then parses the bytes:
/// nothing in a seed is read before its signature checks out. Every
/// signature problem (none, unreadable, unknown or revoked key, bytes
/// changed) is [`Error::Untrusted`] with one plain message; a well-signed
/// seed that does not parse is [`Error::Invalid`].
pub fn verify(
    store: &TrustStore,
    what: &str,
    bytes: &[u8],
    signature: Option<&[u8]>,
) -> Result<VerifiedSeed> {
    let untrusted = |reason: &str| {
        Error::untrusted(
            what,
            format!("is not signed by a key this image trusts ({reason}); {HOW_TO_SIGN}"),
        )
    };
    let signature = signature.ok_or_else(|| untrusted("no seed.toml.minisig next to it"))?;
    let signature = std::str::from_utf8(signature)
        .map_err(|_| untrusted("its seed.toml.minisig is not a minisign signature"))?;
    let signer = store
        .verify(bytes, signature, "seed.toml.minisig")
        .map_err(|e| untrusted(&e.to_string()))?;
    let seed = Seed::parse(what, bytes)?;
    Ok(VerifiedSeed { seed, signer })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ssh_key::tests::ed25519;

    #[test]
    fn host_names_are_accepted() {
        for name in [
            "n1",
            "rack1-n07",
            "db-3.site.example",
            "0",
            &"a".repeat(63),
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert_eq!(NodeName::from_str(name).unwrap().as_str(), name);
        }
        // 253 characters, the most a name may have.
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long.len(), 253);
        assert!(NodeName::from_str(&long).is_ok());
    }

    mod refused {
        use super::*;

        refused_inputs! {
            NodeName::from_str;
            newline_with_an_env_line: "ai-1\nWEBUI_AUTH=False" => "'\\n'";
            carriage_return: "ai-1\r" => "'\\r'";
            equals_sign: "a=b" => "'='";
            space: "ai 1" => "' '";
            upper_case: "AI-1" => "lower case";
            dot_dot: "a..b" => "empty label";
            leading_dot: ".a" => "empty label";
            trailing_dot: "a." => "empty label";
            label_of_64: "a".repeat(64) => "64 characters";
            name_of_254: ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(62)].join(".") => "254 bytes";
            empty: "" => "is empty";
            leading_hyphen: "-n1" => "starting or ending with '-'";
            trailing_hyphen: "n1-" => "starting or ending with '-'";
            nul: "n1\0" => "'\\0'";
            escape_sequence: "n1\u{1b}[2J" => "'\\u{1b}'";
            unicode_letter: "nöde" => "'ö'";
            unicode_lookalike: "n\u{0430}me" => "'а'";
            slash: "../etc" => "'/'";
            underscore: "n_1" => "'_'";
            quote: "n\"1" => "'\"'";
        }
    }

    #[test]
    fn a_seed_errors_name_the_line_and_key() {
        let err =
            Seed::parse("seed.toml", b"node = \"n1\"\nrole = \"gpu\"\nrack = 4\n").unwrap_err();
        assert!(
            err.to_string().contains("line 3") && err.to_string().contains("rack"),
            "{err}"
        );
        let err = Seed::parse(
            "seed.toml",
            b"role = \"gpu\"\nnode = \"a\\nWEBUI_AUTH=False\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), 3);
        assert!(
            text.starts_with("seed.toml: ") && text.contains("line 2"),
            "{text}"
        );
        assert!(text.contains("node name"), "{text}");
        assert!(Seed::parse("seed.toml", b"\xff").is_err());
        let err = Seed::parse("seed.toml", b"node = \"n1\x1b[2J\"\nrole = \"db\"\n").unwrap_err();
        assert!(!err.to_string().contains('\x1b'), "{err}");
        assert_eq!(parse_role("printer").unwrap_err().exit_code(), 3);
        assert_eq!(parse_role("gpu").unwrap(), Role::Gpu);
    }

    #[test]
    fn a_seed_carries_ssh_keys_and_writes_them_back_as_read() {
        let (a, b) = (ed25519("alice@ops"), ed25519("bob@ops"));
        let text = format!(
            "node = \"n1\"\nrole = \"app\"\nssh_authorized_keys = [\n  \"{a}\",\n  \"{b}\",\n]\n"
        );
        let seed = Seed::parse("seed.toml", text.as_bytes()).unwrap();
        let keys: Vec<&str> = seed
            .ssh_authorized_keys
            .iter()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, [a.as_str(), b.as_str()]);
        let bytes = seed.to_bytes().unwrap();
        assert_eq!(Seed::parse("seed.toml", &bytes).unwrap(), seed);
        // No keys: the key is left out, so older seeds keep their bytes.
        let none = Seed::parse("seed.toml", b"node = \"n1\"\nrole = \"app\"\n").unwrap();
        assert!(none.ssh_authorized_keys.is_empty());
        assert_eq!(none.to_bytes().unwrap(), b"node = \"n1\"\nrole = \"app\"\n");
    }

    #[test]
    fn a_lab_seed_lowers_the_data_minimum_but_not_below_the_floor() {
        let lab = Seed::parse(
            "seed.toml",
            b"node = \"n1\"\nrole = \"app\"\nlab_data_min_mib = 1024\n",
        )
        .unwrap();
        assert_eq!(lab.lab_data_min_mib, Some(1024));
        assert_eq!(
            Seed::parse("seed.toml", &lab.to_bytes().unwrap()).unwrap(),
            lab
        );
        let err = Seed::parse(
            "seed.toml",
            b"node = \"n1\"\nrole = \"app\"\nlab_data_min_mib = 16\n",
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("line 3") && msg.contains("lab_data_min_mib") && msg.contains("256 MiB"),
            "{msg}"
        );
    }

    /// A bad key anywhere in the list is refused with the file, the line
    /// of that entry, the seed key and the SSH key named.
    #[test]
    fn a_bad_ssh_key_in_a_seed_is_named_by_line() {
        let good = ed25519("alice@ops");
        let bad = [
            ("ssh-ed25519 AAAA!!!!", "not base64"),
            ("command=\\\"/bin/sh\\\" ssh-ed25519 AAAA", "options prefix"),
            ("ssh-ed25519 AAAA\\nssh-ed25519 AAAB", "'\\n'"),
        ];
        for (line, reason) in bad {
            let text = format!(
                "node = \"n1\"\nrole = \"app\"\nssh_authorized_keys = [\n  \"{good}\",\n  \"{line}\",\n]\n"
            );
            let err = Seed::parse("seed.toml", text.as_bytes()).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.exit_code(), 3, "{msg}");
            assert!(
                msg.starts_with("seed.toml line 5: ssh_authorized_keys: SSH public key"),
                "{msg}"
            );
            assert!(msg.contains(reason), "{msg}");
        }
    }

    #[test]
    fn a_signed_seed_verifies_and_any_other_is_untrusted() {
        let key = SecretKey::generate();
        let store = TrustStore::with_keys(vec![key.public()], "test keys");
        let seed = Seed {
            node: "db-3".parse().unwrap(),
            role: Role::Db,
            ssh_authorized_keys: Vec::new(),
            admin: None,
            network: None,
            cluster: None,
            lab_data_min_mib: None,
        };
        let bytes = seed.to_bytes().unwrap();
        assert_eq!(bytes, b"node = \"db-3\"\nrole = \"db\"\n");
        let sig = seed.sign(&key, &bytes);
        let ok = verify(&store, "seed.toml", &bytes, Some(sig.as_bytes())).unwrap();
        assert_eq!(ok.seed, seed);
        assert_eq!(ok.signer.key_id, key.id);

        let other = SecretKey::generate();
        let mut tampered = bytes.clone();
        tampered[9] = b'4';
        for (bytes, sig) in [
            (bytes.clone(), Some(seed.sign(&other, &bytes))),
            (tampered.clone(), Some(sig.clone())),
            (bytes.clone(), Some("garbage".into())),
            (bytes.clone(), None),
        ] {
            let err = verify(
                &store,
                "seed.toml",
                &bytes,
                sig.as_deref().map(str::as_bytes),
            )
            .unwrap_err();
            assert_eq!(err.exit_code(), 4, "{err}");
            assert!(
                err.to_string().contains("owui-builder seed create"),
                "{err}"
            );
        }
        // Signed, but not a seed: invalid, not untrusted.
        let junk = b"node = 1\n";
        let err = verify(
            &store,
            "seed.toml",
            junk,
            Some(seed.sign(&key, junk).as_bytes()),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
    }
}
