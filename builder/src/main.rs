//! owui-builder: signed images and offline bundles for owui-appliance.

use std::process::ExitCode;

use clap::Parser;
use owui_builder::{bundles, images, keys, seeds};
use owui_bundle::outcome::{finish, init_logging};

use owui_builder::cli::{BundleCommand, Cli, Command, KeyCommand, SeedCommand};

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
            output,
        }) => finish(
            bundles::run_create(
                &spec,
                &key,
                &out,
                have.as_deref(),
                output.progress().as_ref(),
            ),
            output.json,
            bundles::print_created,
        ),
        Command::Seed(SeedCommand::Create {
            node,
            role,
            key,
            out,
            output,
        }) => finish(
            seeds::create(&node, &role, &key, &out),
            output.json,
            seeds::print_created,
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
