//! owui-builder: signed images and offline bundles for owui-appliance.

use std::process::ExitCode;

use clap::Parser;
use owui_builder::{bundles, images, keys, oci, seeds};
use owui_bundle::outcome::{finish, init_logging};
use owui_bundle::progress;

use owui_builder::cli::{BundleCommand, Cli, Command, KeyCommand, OciCommand, SeedCommand};
use owui_builder::images::print_built;

fn main() -> ExitCode {
    init_logging();
    match Cli::parse().command {
        Command::Key(KeyCommand::Generate { out, force, output }) => {
            finish(keys::generate(&out, force), output.json, |g| {
                println!(
                    "key {} written: {} (secret, 0600), {}",
                    g.key_id,
                    g.secret_key.display(),
                    g.public_key.display()
                )
            })
        }
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
            |s| {
                println!(
                    "rotation statement {} (sequence {}) written: adds {}, revokes {}",
                    out.display(),
                    s.sequence,
                    s.add.len(),
                    s.revoke.len()
                )
            },
        ),
        Command::Bundle(BundleCommand::Create {
            spec,
            key,
            out,
            have,
            pull,
            output,
        }) => {
            let progress = progress::for_stderr(output.quiet || output.json);
            let pulls = oci::pull_options(&pull, false);
            finish(
                bundles::run_create(
                    &spec,
                    &key,
                    &out,
                    have.as_deref(),
                    &pulls,
                    progress.as_ref(),
                ),
                output.json,
                |c| {
                    println!(
                    "{}: bundle {} channel {} sequence {}: {} blobs ({} compressed, {} left out as held by the site), {} bytes",
                    c.file.display(), c.bundle, c.channel, c.sequence, c.blobs, c.blobs_compressed, c.blobs_omitted, c.file_bytes
                )
                },
            )
        }
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
        Command::Oci(OciCommand::Pull {
            reference,
            offline,
            pull,
            output,
        }) => {
            let pulls = oci::pull_options(&pull, offline);
            finish(
                oci::run_pull(&reference, &pulls),
                output.json,
                oci::print_pulled,
            )
        }
        Command::Oci(OciCommand::Lock {
            spec,
            cache,
            registry,
            output,
        }) => {
            let pulls = oci::registry_options(&registry, &cache, false, false);
            finish(oci::run_lock(&spec, &pulls), output.json, |l| {
                oci::print_locked(l)
            })
        }
        Command::Build(args) => {
            let progress = progress::for_stderr(args.output.quiet || args.output.json);
            let json = args.output.json;
            finish(
                images::run_build(&args, progress.as_ref()),
                json,
                print_built,
            )
        }
        Command::VerifyImage(args) => finish(images::run_verify(&args), args.output.json, |v| {
            for check in &v.checks {
                println!("ok: {check}");
            }
            println!(
                "{}: {} image {} verified (root hash {})",
                v.image.display(),
                v.role,
                v.version,
                v.root_hash
            )
        }),
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
