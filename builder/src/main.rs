//! owui-builder: signed images and offline bundles for owui-appliance.

use std::process::ExitCode;

use clap::Parser;
use owui_builder::{bundles, cluster, images, keys, oci, seeds};
use owui_bundle::outcome::{finish, init_logging};

use owui_builder::cli::{
    BundleCommand, Cli, ClusterCommand, Command, KeyCommand, OciCommand, SeedCommand,
};

fn main() -> ExitCode {
    init_logging();
    match Cli::parse().command {
        Command::Key(KeyCommand::Generate { out, force, output }) => finish(
            keys::generate(&out, force),
            output.json,
            keys::print_generated,
        ),
        Command::Key(KeyCommand::Rotate {
            key,
            sequence,
            add,
            revoke,
            out,
            output,
        }) => finish(
            keys::rotate(&key, sequence, &add, &revoke, &out),
            output.json,
            |s| keys::print_rotation(&out, s),
        ),
        Command::Bundle(BundleCommand::Create {
            spec,
            key,
            out,
            have,
            pull,
            output,
        }) => finish(
            bundles::run_create(
                &spec,
                &key,
                &out,
                have.as_deref(),
                &oci::pull_options(&pull, false),
                output.progress().as_ref(),
            ),
            output.json,
            bundles::print_created,
        ),
        Command::Seed(SeedCommand::Create {
            node,
            role,
            ssh_key,
            settings,
            key,
            out,
            output,
        }) => finish(
            seeds::create(&node, &role, &ssh_key, &settings, &key, &out),
            output.json,
            seeds::print_created,
        ),
        Command::Cluster(ClusterCommand::Init {
            name,
            network,
            control,
            front_door,
            out,
            output,
        }) => finish(
            cluster::init(&name, &network, &control, front_door.as_deref(), &out),
            output.json,
            cluster::print_initialised,
        ),
        Command::Cluster(ClusterCommand::Seed {
            site,
            node,
            role,
            ssh_key,
            settings,
            token_ttl,
            key,
            out,
            output,
        }) => finish(
            cluster::seed(&cluster::SeedRequest {
                site_dir: &site,
                node: &node,
                role: &role,
                ssh_keys: &ssh_key,
                settings: &settings,
                token_ttl,
                key: &key,
                out: &out,
            }),
            output.json,
            cluster::print_seed,
        ),
        Command::Oci(OciCommand::Pull {
            reference,
            offline,
            pull,
            output,
        }) => finish(
            oci::run_pull(&reference, &oci::pull_options(&pull, offline)),
            output.json,
            oci::print_pulled,
        ),
        Command::Oci(OciCommand::Lock {
            spec,
            cache,
            registry,
            output,
        }) => finish(
            oci::run_lock(
                &spec,
                &oci::registry_options(&registry, &cache, false, false),
            ),
            output.json,
            oci::print_locked,
        ),
        Command::Build(args) => finish(
            images::run_build(&args, args.output.progress().as_ref()),
            args.output.json,
            images::print_built,
        ),
        Command::VerifyImage(args) => finish(
            images::run_verify(&args),
            args.output.json,
            images::print_verified,
        ),
        Command::Bundle(BundleCommand::Inspect {
            file,
            extract,
            output,
        }) => finish(
            bundles::run_inspect(&file, extract.as_deref()),
            output.json,
            bundles::print_inspected,
        ),
    }
}
