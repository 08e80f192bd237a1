//! The `owui-agent` command line. Doc comments here are the `--help` text.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
pub use owui_bundle::outcome::Output;

/// The owui-appliance node agent.
///
/// Exit codes: 0 ok, 1 I/O or internal error, 2 usage, 3 invalid input,
/// 4 signature or digest failure, 5 refused by policy (role, downgrade),
/// 6 not enough space, 7 an external tool failed (docs/exit-codes.md).
#[derive(Debug, Parser)]
#[command(name = "owui-agent", version, max_term_width = 100)]
pub struct Cli {
    /// Take every host path (config, state, models) under DIR.
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node daemon (under systemd, Type=notify).
    ///
    /// Runs every check of the node's role in its own loop, tells systemd
    /// READY=1 after the first full pass, pings the watchdog, answers
    /// `owui-agent status` on a local socket and serves Prometheus metrics.
    Run,
    /// What this node is and what is healthy, since when and why.
    ///
    /// Asks the running daemon; without one, runs the role's checks
    /// (services, databases, inference servers, disk, memory) and the
    /// hardening audit itself. Exit code 0 only when overall is healthy;
    /// 8 degraded, 9 failed, 10 unknown.
    Status {
        /// Print one JSON document (schema in docs/status.md).
        #[arg(long)]
        json: bool,
    },
    /// Offline bundles: verify, apply, list, have, gc, check.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// The keys this node trusts.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// NVIDIA GPUs: driver set, device nodes, CDI spec, health.
    #[command(subcommand)]
    Gpu(GpuCommand),
    /// The node seed on first boot: import it, print the READY banner.
    #[command(subcommand)]
    Seed(SeedCommand),
    /// This node's secrets and TLS files (made on the node, never in the image).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The gate every boot passes: seed, disk and clock before the services.
    #[command(subcommand)]
    FirstBoot(FirstBootCommand),
    /// This node's PostgreSQL cluster and Open WebUI's database.
    #[command(subcommand)]
    Db(DbCommand),
    /// The site: enrol, the agent API of control nodes, tokens, removal.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run one command as root, for a reason that goes to the journal.
    ///
    /// The one program the operator account owui-admin may run through
    /// sudo: `sudo owui-agent as-root --reason "INC-4711: nginx hangs" --
    /// systemctl restart nginx`. Refuses a reason under 12 characters or
    /// with a control character (exit 3), writes who (SUDO_USER, the login
    /// UID), what (every argument) and why to the journal
    /// (`journalctl -t owui-as-root`), and only then runs the command in
    /// its place. Nothing runs if the journal does not take the entry
    /// (exit 5). It logs the start of a command, not what a shell started
    /// with it does afterwards (docs/operator-access.md).
    AsRoot {
        /// Why this runs as root: a ticket, what is broken (12 characters or more).
        #[arg(long)]
        reason: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Enrol this node into the site its seed names, with no typing.
    ///
    /// A control node certifies itself with the CA its seed carries. Any
    /// other node makes its key here and sends a CSR with its seed's join
    /// token to a control node whose certificate chains to the seed's CA
    /// pin; unreachable control nodes are retried with growing waits for
    /// --patience. Writes /var/lib/owui/cluster/{ca.crt,node.crt,node.key}
    /// (the key 0600). Does nothing on a node that is enrolled already.
    Join {
        /// A join token to use instead of the seed's (`cluster token
        /// create` on a control node makes one).
        #[arg(long)]
        token: Option<String>,
        /// How long to wait for a control node to answer.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        patience: std::time::Duration,
        /// Exit 0 with a note when the seed names no site (the boot unit
        /// runs join on every node; a node alone has nothing to do).
        #[arg(long)]
        if_seeded: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Renew this node's certificate once two thirds of its life are gone.
    ///
    /// Over mutual TLS with the current certificate, for a new key made
    /// here. A removed node is refused (exit 5).
    Renew {
        /// Renew now, however long the certificate has left.
        #[arg(long)]
        force: bool,
        /// How long to wait for a control node to answer.
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        patience: std::time::Duration,
        #[command(flatten)]
        output: Output,
    },
    /// Run the agent API (control nodes): enrolment and renewal, on port
    /// 7443 of the node's cluster address.
    Serve {
        /// How long the certificates it issues last.
        #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
        cert_lifetime: std::time::Duration,
    },
    /// Join tokens, made on a control node.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Remove a node from the site: its certificate is refused from now on.
    Remove {
        /// The node's name.
        node: String,
        #[command(flatten)]
        output: Output,
    },
    /// Every node of the site, from etcd.
    Nodes {
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a single-use join token for one node and role (control nodes).
    ///
    /// Prints the token: give it to the node as `owui-agent cluster join
    /// --token TOKEN`. It holds a secret; it is not logged.
    Create {
        /// The node the token is for (its seed's name).
        #[arg(long)]
        node: String,
        /// The node's role: app, db or gpu.
        #[arg(long)]
        role: String,
        /// How long the token is valid (at most 30 days).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Make and start the cluster, then Open WebUI's user and database.
    ///
    /// Run at boot by owui-postgresql-setup.service on db and allinone
    /// nodes (other roles: nothing to do). First boot creates the cluster
    /// with Debian's pg_createcluster (UTF-8, page checksums, the image's
    /// createcluster.d settings) on the data partition; every boot starts
    /// it and makes sure user `openwebui` (password from
    /// /etc/owui/secrets/postgres-openwebui-password), database `openwebui`
    /// and the pgvector extension exist. Runs on the node itself only.
    Setup {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Make whatever of the role's secrets and TLS files is missing.
    ///
    /// Run at boot by owui-secrets.service, before the services that read
    /// them. Makes random keys and passwords (0600 files in
    /// /etc/owui/secrets, a 0700 directory), the env files Open WebUI, Open
    /// Terminal and vLLM read, and for web roles nginx's certificate: a
    /// node-local CA and a server certificate for the node's name,
    /// localhost and 127.0.0.1 (/etc/owui/tls). Never overwrites a file:
    /// put a site certificate or a cluster-wide key there first and it is
    /// used. Prints file names only, never values. A secret file others can
    /// read is refused (exit 5).
    Init {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FirstBootCommand {
    /// Check this node's preconditions; start its services or say what is missing.
    ///
    /// Run at every boot by owui-seed.service, and again when a seed medium
    /// appears while the node waits. Imports the seed as `seed import` does
    /// (medium, then /efi/owui/seed.toml; signature, then role), checks that
    /// the disk leaves the data partition the image's least size (or the
    /// lab seed's lab_data_min_mib) and that the clock is not behind the
    /// image's build. All hold: writes /run/owui/gate-open, the condition of
    /// every unit that needs the seed, the data partition or the secrets,
    /// and, if the node was waiting, starts the rest of the boot. One does
    /// not: prints what is wrong, what was seen and what to do, puts the
    /// same text above the login prompt (/run/issue.d) and exits 0, so a
    /// waiting node has no failed unit; `owui-agent status` shows it too.
    Gate {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when the disk leaves the data partition its least size, else 1.
    ///
    /// systemd-repart's ExecCondition in the image: on a disk too small it
    /// does not run (and so does not fail); the gate says why.
    DiskFits,
}

#[derive(Debug, Subcommand)]
pub enum SeedCommand {
    /// Find this node's seed, check it, and put it in place.
    ///
    /// Looks on a FAT volume labelled OWUI-SEED (waiting up to 10 s for it),
    /// then at each --from file; checks its signature (seed.toml.minisig
    /// next to it, made by `owui-builder seed create`) against the trust
    /// store before anything else (exit 4 if it does not verify), then the
    /// seed (and that its role is this image's role), writes it to
    /// /run/owui/seed.toml (mode 0600; the read-only root links
    /// /etc/owui/seed.toml there) and sets the hostname.
    Import {
        /// Seed files to try after the medium, in order.
        #[arg(long, default_value = "/efi/owui/seed.toml")]
        from: Vec<PathBuf>,
        /// Do not look for an OWUI-SEED volume.
        #[arg(long)]
        no_medium: bool,
        /// Leave the hostname alone.
        #[arg(long)]
        no_hostname: bool,
        /// LAB ONLY: take a seed without checking its signature. Logged, and
        /// recorded in /run/owui/seed-origin.json for `status` to show.
        #[arg(long)]
        insecure_seed: bool,
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print `OWUI-AGENT READY role=<role> node=<name>` from the seed.
    Banner,
}

#[derive(Debug, Subcommand)]
pub enum GpuCommand {
    /// Set the GPUs up for containers (idempotent; run at boot on GPU roles).
    ///
    /// Finds NVIDIA GPUs on the PCI bus, picks the pinned driver set from
    /// the firmware table, loads its kernel modules, checks through NVML that
    /// the running driver is the set's and sees every GPU, makes the device
    /// nodes and /dev/char links, writes the CDI spec (/etc/cdi/nvidia.yaml)
    /// and points podman (and Docker/containerd where present) at it. With no
    /// NVIDIA GPU it says so and exits 0. Test builds use
    /// <root>/etc/owui/gpu-fixture.toml instead of NVML (docs/gpu.md).
    Setup {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Driver, devices, health, drain and CDI state.
    ///
    /// Exit code as for `status`: 0 healthy, 8 degraded, 9 failed, 10 unknown.
    Status {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Clear the drain a critical XID set, once the GPU has been serviced.
    Undrain {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The CDI spec's createContainer hook (called by the container runtime).
    #[command(hide = true, name = "cdi-hook")]
    CdiHook {
        /// What the hook does (only `update-ldcache`).
        #[arg(value_parser = ["update-ldcache"])]
        action: String,
        /// Library folders to add to the container's loader cache.
        #[arg(long, required = true)]
        folder: Vec<PathBuf>,
    },
}

// No doc comment: each subcommand's own is its help.
#[derive(Debug, Args)]
pub struct BundleFile {
    /// The bundle file (.owb), e.g. on a mounted USB drive.
    pub file: PathBuf,
    #[command(flatten)]
    pub forces: ForceArgs,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Check a bundle without changing anything.
    ///
    /// Checks the signature against the trust store, the node's role, the
    /// channel sequence, and every blob's size and digest.
    Verify(BundleFile),
    /// Verify and apply a bundle.
    ///
    /// Blobs go into the content store, then one atomic switch makes the new
    /// generation current. Safe to re-run after a crash: it resumes.
    Apply(BundleFile),
    /// Generations on this node and what each holds.
    List {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the digests this node holds (JSON).
    ///
    /// Carry the output to the build side: `owui-builder bundle create
    /// --have` then leaves those blobs out (a delta bundle).
    Have,
    /// Drop old generations and every blob no kept generation uses.
    Gc {
        /// Generations to keep, the current one included.
        #[arg(long, default_value_t = 2)]
        keep: usize,
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash the content store and check every generation's blobs.
    Check {
        #[command(flatten)]
        output: Output,
    },
}

/// The unsafe paths `bundle verify` and `bundle apply` take only when told;
/// apply logs each and records it in the generation (`bundle list`).
#[derive(Debug, Clone, Copy, Args)]
pub struct ForceArgs {
    /// Accept a sequence not newer than the channel's floor (a rollback).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Let the bundle replace or remove items another channel installed.
    #[arg(long)]
    pub allow_takeover: bool,
}

impl From<ForceArgs> for owui_bundle::apply::Forces {
    fn from(f: ForceArgs) -> Self {
        owui_bundle::apply::Forces {
            allow_downgrade: f.allow_downgrade,
            allow_takeover: f.allow_takeover,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trusted and revoked keys: the image's (/etc/owui/trust) and those
    /// the rotations applied on this node (/var/lib/owui/trust) added or
    /// revoked.
    List {
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Apply a signed key-rotation statement (FILE and FILE.minisig).
    ///
    /// It must be signed by a key trusted now and have a higher sequence
    /// than the last applied. It is kept, with its signature, in
    /// /var/lib/owui/trust and replayed over the image's keys on every
    /// load; the image's trust store is never written.
    Apply {
        /// The rotation statement (JSON); its signature is STATEMENT.minisig.
        statement: PathBuf,
        /// Print the outcome as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}
