//! The `owui-builder` command line. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub use owui_bundle::outcome::Output;

/// Build signed, air-gappable images and offline bundles for owui-appliance.
///
/// Exit codes: 0 ok, 1 I/O or internal error, 2 usage, 3 invalid input,
/// 4 signature or digest failure, 5 refused by policy, 6 not enough space,
/// 7 an external tool failed (docs/exit-codes.md).
#[derive(Debug, Parser)]
#[command(name = "owui-builder", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Signing keys: generate, rotate.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Offline bundles of models and container images.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Node seeds: who each node is, signed for its first boot.
    #[command(subcommand)]
    Seed(SeedCommand),
    /// The cluster: the site (CA, token key, site file), then a seed per node.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Container images from OCI registries: pull into the cache, lock tags
    /// to digests.
    #[command(subcommand)]
    Oci(OciCommand),
    /// Build a signed, reproducible disk image for one node role.
    ///
    /// Writes DIR/<role>-<version>.img, its signed manifest
    /// (.manifest.json + .minisig) and an SPDX SBOM (.spdx.json). Stages:
    /// content, rootfs (mmdebstrap; cached), UKI, ESP, disk, manifest.
    /// Needs root (mmdebstrap, chroot). docs/images.md has the spec format.
    Build(BuildArgs),
    /// Check an image against its signed manifest.
    ///
    /// Signature (by a key no given rotation revoked), the version floor,
    /// every partition's digest, the UKI on the ESP and its command line,
    /// and the dm-verity tree over the root.
    VerifyImage(VerifyImageArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// A role spec file (images/allinone.toml), or a role name (app, db,
    /// gpu, allinone) for the spec built into this binary.
    pub spec: PathBuf,
    /// Secret key to sign with (mode 0600); its public half goes into the
    /// image's trust store.
    #[arg(long)]
    pub key: PathBuf,
    /// Output directory; files appear only when complete.
    #[arg(long)]
    pub out: PathBuf,
    /// The owui-agent binary to install [default: owui-agent next to this
    /// program].
    #[arg(long)]
    pub agent: Option<PathBuf>,
    /// Where the spec's units and Quadlet files are [default: ../units
    /// from the spec's directory, as in the repository].
    #[arg(long)]
    pub units: Option<PathBuf>,
    /// Stage outputs and downloaded Debian packages, kept between builds.
    #[arg(long, default_value = "/var/cache/owui-builder")]
    pub cache: PathBuf,
    /// Debian mirror URL, overriding the spec's for this build only (e.g. a
    /// site's own mirror, file:///srv/debian); the image's sources.list
    /// still names the spec's. Its signed indices are checked as usual.
    #[arg(long)]
    pub mirror: Option<String>,
    /// Use no network: install from the package cache (.deb files and
    /// signed indices kept by an earlier online build with this --cache).
    /// Gives the same image as the online build.
    #[arg(long, conflicts_with = "mirror")]
    pub offline: bool,
    /// Timestamp for every file and record in the image [default:
    /// $SOURCE_DATE_EPOCH, else the spec file's modification time].
    #[arg(long)]
    pub source_date_epoch: Option<u64>,
    /// Rebuild every stage instead of reusing cached ones.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// UNSAFE: pull [[oci]] references that name only a tag, getting
    /// whatever the registry serves under it today. Prefer `oci lock`.
    #[arg(long)]
    pub allow_tag_references: bool,
    #[command(flatten)]
    pub output: Output,
}

/// The cache pulled images go to, and how registries are reached.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The builder's cache directory (pulled images are kept there).
    #[arg(long, default_value = "/var/cache/owui-builder")]
    pub cache: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// UNSAFE: pull references that name only a tag, getting whatever the
    /// registry serves under it today. Prefer `oci lock`.
    #[arg(long)]
    pub allow_tag_references: bool,
}

/// How `[[oci]]` images without a `source` are pulled from registries.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// A docker config.json with registry credentials [default:
    /// $REGISTRY_AUTH_FILE, else $DOCKER_CONFIG/config.json, else
    /// ~/.docker/config.json].
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Certificate authorities per registry, DIR/<host[:port]>/*.crt as
    /// podman and skopeo read them; the system's are trusted too.
    #[arg(long, value_name = "DIR", default_value = "/etc/containers/certs.d")]
    pub registry_certs: PathBuf,
    /// Seconds to wait for a registry to connect, and for each read.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub registry_timeout: u64,
    /// Pull REGISTRY's images from MIRROR (host[:port]) instead, e.g. a
    /// site's pull-through cache; digests are checked as for REGISTRY.
    /// Repeatable.
    #[arg(long, value_name = "REGISTRY=MIRROR", value_parser = parse_mirror)]
    pub registry_mirror: Vec<(String, String)>,
}

fn parse_mirror(text: &str) -> Result<(String, String), String> {
    let hostish = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
    };
    match text.split_once('=') {
        Some((from, to)) if hostish(from) && hostish(to) => Ok((from.into(), to.into())),
        _ => Err("expected REGISTRY=MIRROR, each host[:port]".into()),
    }
}

#[derive(Debug, Subcommand)]
pub enum OciCommand {
    /// Pull one image by digest into the cache.
    ///
    /// Fetches the manifest (a multi-platform index resolves to
    /// linux/amd64) and every blob the cache lacks, each checked against its
    /// digest as it streams and renamed into CACHE/oci/blobs/sha256/ only
    /// then. What `build` and `bundle create` pull the same way.
    Pull {
        /// The image: registry/name:tag@sha256:DIGEST.
        reference: String,
        /// Fetch nothing: succeed only if the cache holds the whole image.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        pull: PullArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Pin a spec's [[oci]] tags to digests, in place.
    ///
    /// Every [[oci]] entry without `source` whose `ref` names no digest gets
    /// the digest its tag points to now (`name:tag@sha256:…`); comments and
    /// layout stay. The file is replaced only when all tags resolved.
    Lock {
        /// An image spec or bundle spec (TOML).
        spec: PathBuf,
        /// The builder's cache directory (the manifests go there).
        #[arg(long, default_value = "/var/cache/owui-builder")]
        cache: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Args)]
pub struct VerifyImageArgs {
    /// The disk image (.img) to check.
    pub image: PathBuf,
    /// The signed manifest [default: IMAGE with .manifest.json].
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Public key (minisign format) to accept; repeatable.
    #[arg(long = "pub", required_unless_present = "trust")]
    pub public_keys: Vec<PathBuf>,
    /// A trust store directory (as on a node: etc/owui/trust).
    #[arg(long, conflicts_with = "public_keys")]
    pub trust: Option<PathBuf>,
    /// A node's trust state (as on a node: var/lib/owui/trust): the
    /// rotations it applied are replayed over the keys, so a key they
    /// revoked is refused.
    #[arg(long, value_name = "DIR")]
    pub trust_state: Option<PathBuf>,
    /// A signed key-rotation statement (FILE and FILE.minisig) to honour
    /// over the keys: a key it revokes is refused. Repeatable, in sequence
    /// order.
    #[arg(long = "rotation", value_name = "FILE")]
    pub rotations: Vec<PathBuf>,
    /// Refuse an image whose signed version is older than this (exit 5).
    /// Versions compare as dot-separated numbers (0.10.0 > 0.9.2).
    #[arg(long, value_name = "VERSION")]
    pub min_version: Option<String>,
    /// Accept an image older than --min-version anyway; logged and shown in
    /// the result.
    #[arg(long, requires = "min_version")]
    pub allow_downgrade: bool,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new Ed25519 key pair.
    ///
    /// DIR/owui.key (secret, mode 0600) and DIR/owui.pub (minisign format:
    /// `minisign -V -p owui.pub` checks our signatures).
    Generate {
        /// Directory to write the key pair into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing key pair in DIR.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Write a signed key-rotation statement.
    ///
    /// Writes FILE and FILE.minisig; nodes apply it with
    /// `owui-agent trust apply FILE`.
    Rotate {
        /// A key the nodes trust now, to sign the statement.
        #[arg(long)]
        key: PathBuf,
        /// Must be higher than the last rotation the nodes applied.
        #[arg(long)]
        sequence: u64,
        /// Public key file (minisign format) to add; repeatable.
        #[arg(long)]
        add: Vec<PathBuf>,
        /// Key id to revoke (16 hex digits, as `trust list` shows); repeatable.
        #[arg(long)]
        revoke: Vec<String>,
        /// Where to write the statement.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum SeedCommand {
    /// Write one node's seed and its signature.
    ///
    /// Writes FILE (mode 0600) and FILE.minisig, signed with KEY; checks the
    /// name (an RFC 1123 host name in lower case), the role and every SSH
    /// key first and writes nothing if any is wrong. Put both on a FAT volume labelled
    /// OWUI-SEED as seed.toml and seed.toml.minisig (or in owui/ on the
    /// image's ESP); the node refuses a seed its trust store cannot verify.
    /// `minisign -Vm FILE -p owui.pub` checks it too.
    Create {
        /// The node's name (its hostname).
        #[arg(long)]
        node: String,
        /// The node's role: app, db, gpu or allinone (the image's).
        #[arg(long)]
        role: String,
        /// An SSH public key file (ssh-keygen's .pub, or one key a line)
        /// whose keys may log in as owui-admin; repeatable. Types:
        /// ssh-ed25519, ecdsa-sha2-nistp256/384/521, their sk- variants,
        /// ssh-rsa of 3072 bits or more; no options prefix. None: nobody
        /// can log in over SSH.
        #[arg(long, value_name = "FILE")]
        ssh_key: Vec<PathBuf>,
        #[command(flatten)]
        settings: SeedSettings,
        /// Secret key to sign with (mode 0600): the one the image trusts.
        #[arg(long)]
        key: PathBuf,
        /// The seed file to write (seed.toml).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Make a site: its cluster CA, join-token key and site file.
    ///
    /// Writes DIR/site.toml and DIR/ca.crt (public), DIR/ca.key and
    /// DIR/token.key (0600: keep them with the signing key). Refuses a DIR
    /// that holds anything: a site is made once (docs/cluster.md).
    Init {
        /// The site's name (lower case, as a host name).
        #[arg(long)]
        name: String,
        /// The cluster network, e.g. 10.20.0.0/24: every node address is in
        /// it and services listen on it only.
        #[arg(long, value_name = "CIDR")]
        network: String,
        /// A control node as NAME=ADDRESS (it runs etcd and the CA's agent
        /// API); give 1, 3 or 5.
        #[arg(long, value_name = "NAME=ADDRESS", required = true)]
        control: Vec<String>,
        /// The address clients reach Open WebUI at (held by an app node).
        #[arg(long, value_name = "IP")]
        front_door: Option<String>,
        /// The site directory to make.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        output: Output,
    },
    /// Write one node's seed for the site, signed.
    ///
    /// A control node's seed (a name in the site's control list) carries
    /// the cluster CA and token key; any other node's carries the CA pin
    /// and a single-use join token bound to its name and role, which
    /// expires after --token-ttl. Writes FILE (0600) and FILE.minisig, as
    /// `seed create` does.
    Seed {
        /// The site directory `cluster init` made.
        #[arg(long)]
        site: PathBuf,
        /// The node's name (its hostname).
        #[arg(long)]
        node: String,
        /// The node's role: app, db or gpu (the image's).
        #[arg(long)]
        role: String,
        /// An SSH public key file for owui-admin; repeatable (as `seed create`).
        #[arg(long, value_name = "FILE")]
        ssh_key: Vec<PathBuf>,
        #[command(flatten)]
        settings: SeedSettings,
        /// How long the join token is valid (at most 30 days): the node must
        /// enrol before then.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        token_ttl: std::time::Duration,
        /// Secret key to sign with (mode 0600): the one the image trusts.
        #[arg(long)]
        key: PathBuf,
        /// The seed file to write (seed.toml).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        output: Output,
    },
}

/// The seed's optional sections (docs/seeds.md), each checked as the node
/// checks it.
#[derive(Debug, Clone, Default, Args)]
pub struct SeedSettings {
    /// Open WebUI's first administrator's sign-in address (seed
    /// `[admin] email`); default admin@NODE. Its password is made on the
    /// node and shown once on the console.
    #[arg(long, value_name = "EMAIL")]
    pub admin_email: Option<String>,
    /// The administrator's display name (needs --admin-email); default
    /// "Administrator".
    #[arg(long, value_name = "NAME", requires = "admin_email")]
    pub admin_name: Option<String>,
    /// A fixed address with its prefix (seed `[network] address`), e.g.
    /// 10.20.0.7/24; none: DHCP on every wired port.
    #[arg(long, value_name = "CIDR")]
    pub address: Option<String>,
    /// The default gateway, on the address's network (needs --address).
    #[arg(long, value_name = "IP", requires = "address")]
    pub gateway: Option<String>,
    /// A DNS server; repeatable.
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// The MAC address of the wired port the settings are for; none: every
    /// wired port (nodes with one).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// LAB ONLY: let the node run on a disk that leaves MIB MiB (256 or
    /// more) for data, below the image's partitions.data.
    #[arg(long, value_name = "MIB")]
    pub lab_data_min_mib: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Pack a bundle spec (TOML) into one signed .owb file.
    Create {
        /// The bundle spec; relative paths in it resolve against its directory.
        spec: PathBuf,
        /// Secret key to sign with (mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// The bundle file to write; it appears only when complete.
        #[arg(long)]
        out: PathBuf,
        /// A site's `owui-agent bundle have` export: blobs it holds are left
        /// out, making a delta bundle.
        #[arg(long)]
        have: Option<PathBuf>,
        #[command(flatten)]
        pull: PullArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Print a bundle's manifest, without trusting it.
    ///
    /// With --extract, writes the manifest and its signature out, e.g. for
    /// `minisign -V`.
    Inspect {
        /// The bundle file (.owb) to show.
        file: PathBuf,
        /// Write manifest.json and manifest.json.minisig into this directory.
        #[arg(long)]
        extract: Option<PathBuf>,
        #[command(flatten)]
        output: Output,
    },
}
