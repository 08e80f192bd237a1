//! owui-agent: the node agent of owui-appliance.

mod bundles;
mod cli;
mod config;
mod layout;
mod trust_cmd;

use std::process::ExitCode;

use clap::Parser;
use owui_bundle::outcome::{finish, init_logging};
use owui_bundle::progress;

use cli::{BundleCommand, Cli, Command, TrustCommand};
use layout::Root;

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let root = Root::new(&cli.root);
    match cli.command {
        Command::Bundle(BundleCommand::Verify {
            file,
            allow_downgrade,
            output,
        }) => {
            let progress = progress::for_stderr(output.quiet || output.json);
            finish(
                bundles::verify(&root, &file, allow_downgrade, progress.as_ref()),
                output.json,
                bundles::print_verified,
            )
        }
        Command::Bundle(BundleCommand::Apply {
            file,
            allow_downgrade,
            output,
        }) => {
            let progress = progress::for_stderr(output.quiet || output.json);
            finish(
                bundles::apply(&root, &file, allow_downgrade, progress.as_ref()),
                output.json,
                bundles::print_applied,
            )
        }
        Command::Bundle(BundleCommand::List { json }) => {
            finish(bundles::list(&root), json, bundles::print_listing)
        }
        Command::Bundle(BundleCommand::Have) => finish(bundles::have(&root), true, |_| {}),
        Command::Bundle(BundleCommand::Gc { keep, json }) => {
            finish(bundles::gc(&root, keep), json, |r| {
                println!(
                    "removed generations {:?}, {} blobs ({} bytes)",
                    r.generations_removed, r.blobs_removed, r.bytes_freed
                )
            })
        }
        Command::Bundle(BundleCommand::Check { output }) => {
            let progress = progress::for_stderr(output.quiet || output.json);
            finish(
                bundles::check(&root, progress.as_ref()),
                output.json,
                |_| println!("content store and generations are consistent"),
            )
        }
        Command::Trust(TrustCommand::List { json }) => {
            finish(trust_cmd::list(&root), json, trust_cmd::print)
        }
        Command::Trust(TrustCommand::Apply { statement, json }) => {
            finish(trust_cmd::apply(&root, &statement), json, trust_cmd::print)
        }
    }
}
