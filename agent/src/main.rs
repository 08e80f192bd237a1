//! owui-agent: the node agent of owui-appliance.

use std::process::ExitCode;

use clap::Parser;
use owui_agent::{
    as_root, bundles, cluster, daemon, db_setup, firstboot, gpu, node_secrets, seed_cmd, status,
    trust_cmd,
};
use owui_bundle::outcome::{finish, init_logging};

use owui_agent::cli::{
    BundleCommand, Cli, ClusterCommand, Command, DbCommand, FirstBootCommand, GpuCommand,
    SecretsCommand, SeedCommand, TokenCommand, TrustCommand,
};
use owui_agent::layout::Root;

/// `status` has its own exit codes: the node's overall state.
fn status_command(root: &Root, json: bool) -> ExitCode {
    use std::io::IsTerminal;
    // A node the first-boot gate holds has no services to check: say what
    // it waits for, in the console's words.
    if let Some(waiting) = status::waiting(root) {
        return match status::print_waiting(&waiting, json) {
            Ok(()) => ExitCode::from(status::exit_code(waiting.overall)),
            Err(e) => {
                eprintln!("error: writing status: {e}");
                ExitCode::from(1)
            }
        };
    }
    let doc = match status::collect(root) {
        Ok(doc) => doc,
        Err(e) => return owui_bundle::outcome::fail(&e, json),
    };
    let written = if json {
        serde_json::to_string_pretty(&doc)
            .map(|text| println!("{text}"))
            .map_err(std::io::Error::from)
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        status::render(&doc, &mut std::io::stdout().lock(), colour)
    };
    match written {
        Ok(()) => ExitCode::from(status::exit_code(doc.overall)),
        Err(e) => {
            eprintln!("error: writing status: {e}");
            ExitCode::from(1)
        }
    }
}

/// `gpu status` exits with the GPU state, like `status` does for the node.
fn gpu_status_command(root: &Root, json: bool) -> ExitCode {
    match gpu::status::collect(root) {
        Ok(s) => {
            if json {
                match serde_json::to_string_pretty(&s) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: rendering JSON: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                gpu::status::print(&s);
            }
            ExitCode::from(status::exit_code(s.state))
        }
        Err(e) => owui_bundle::outcome::fail(&e, json),
    }
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let root = Root::new(&cli.root);
    match cli.command {
        Command::Status { json } => status_command(&root, json),
        Command::Run => finish(daemon::run(&root), false, |_| {}),
        Command::Bundle(BundleCommand::Verify(a)) => finish(
            bundles::verify(&root, &a),
            a.output.json,
            bundles::print_verified,
        ),
        Command::Bundle(BundleCommand::Apply(a)) => finish(
            bundles::apply(&root, &a),
            a.output.json,
            bundles::print_applied,
        ),
        Command::Bundle(BundleCommand::List { json }) => {
            finish(bundles::list(&root), json, bundles::print_listing)
        }
        Command::Bundle(BundleCommand::Have) => finish(bundles::have(&root), true, |_| {}),
        Command::Bundle(BundleCommand::Gc { keep, json }) => {
            finish(bundles::gc(&root, keep), json, bundles::print_gc)
        }
        Command::Bundle(BundleCommand::Check { output }) => finish(
            bundles::check(&root, output.progress().as_ref()),
            output.json,
            |_| println!("content store and generations are consistent"),
        ),
        Command::Gpu(GpuCommand::Setup { json }) => {
            finish(gpu::setup::setup(&root), json, gpu::setup::print)
        }
        Command::Gpu(GpuCommand::Status { json }) => gpu_status_command(&root, json),
        Command::Gpu(GpuCommand::Undrain { json }) => {
            finish(gpu::health::undrain(&root), json, |was| match was {
                Some(d) => println!("undrained (was drained since {}: {})", d.since, d.reason),
                None => println!("the node was not drained"),
            })
        }
        Command::Gpu(GpuCommand::CdiHook { folder, .. }) => {
            finish(gpu::hook::update_ldcache(&folder), false, |_| {})
        }
        Command::Seed(SeedCommand::Import {
            from,
            no_medium,
            no_hostname,
            insecure_seed,
            json,
        }) => finish(
            seed_cmd::import(&root, &from, !no_medium, !no_hostname, insecure_seed),
            json,
            seed_cmd::print_imported,
        ),
        Command::FirstBoot(FirstBootCommand::Gate { json }) => {
            finish(firstboot::gate(&root), json, firstboot::print)
        }
        Command::FirstBoot(FirstBootCommand::DiskFits) => {
            match firstboot::disk_fits(&root) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("the disk is too small for the data partition; the first-boot gate says more");
                    ExitCode::from(1)
                }
                Err(e) => owui_bundle::outcome::fail(&e, false),
            }
        }
        Command::Seed(SeedCommand::Banner) => {
            finish(seed_cmd::banner(&root), false, |line| println!("{line}"))
        }
        Command::Db(DbCommand::Setup { json }) => {
            finish(db_setup::setup(&root), json, db_setup::print)
        }
        Command::Cluster(ClusterCommand::Join {
            token,
            patience,
            if_seeded,
            output,
        }) => finish(
            cluster::cmd::join(&root, token.as_deref(), patience, if_seeded),
            output.json,
            cluster::cmd::print_joined,
        ),
        Command::Cluster(ClusterCommand::Renew {
            force,
            patience,
            output,
        }) => finish(
            cluster::cmd::renew(&root, force, patience),
            output.json,
            cluster::cmd::print_joined,
        ),
        Command::Cluster(ClusterCommand::Serve { cert_lifetime }) => {
            finish(cluster::cmd::serve(&root, cert_lifetime), false, |_| {})
        }
        Command::Cluster(ClusterCommand::Remove { node, output }) => finish(
            cluster::cmd::remove(&root, &node),
            output.json,
            cluster::cmd::print_removed,
        ),
        Command::Cluster(ClusterCommand::Nodes { output }) => finish(
            cluster::cmd::nodes(&root),
            output.json,
            cluster::cmd::print_nodes,
        ),
        Command::Cluster(ClusterCommand::Token(TokenCommand::Create {
            node,
            role,
            ttl,
            output,
        })) => finish(
            cluster::cmd::token_create(&root, &node, &role, ttl),
            output.json,
            cluster::cmd::print_token,
        ),
        Command::Secrets(SecretsCommand::Init { json }) => {
            finish(node_secrets::init(&root), json, node_secrets::print)
        }
        Command::AsRoot { reason, command } => {
            owui_bundle::outcome::fail(&as_root::run(&root, &reason, &command), false)
        }
        Command::Trust(TrustCommand::List { json }) => {
            finish(trust_cmd::list(&root), json, trust_cmd::print)
        }
        Command::Trust(TrustCommand::Apply { statement, json }) => {
            finish(trust_cmd::apply(&root, &statement), json, trust_cmd::print)
        }
    }
}
