//! How both binaries end a command: a human line or a JSON document on
//! stdout, the error on stderr, and the documented exit code
//! (docs/exit-codes.md).

use std::process::ExitCode;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::{self, Progress};

/// The output options of every command that reports progress.
#[derive(Debug, clap::Args)]
pub struct Output {
    /// Print the outcome as one JSON document on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Output {
    /// Progress on stderr, silent with `--quiet` or `--json`.
    pub fn progress(&self) -> Box<dyn Progress> {
        progress::for_stderr(self.quiet || self.json)
    }
}

#[derive(Serialize)]
struct Failure<'a> {
    ok: bool,
    error: ErrorDoc<'a>,
}

#[derive(Serialize)]
struct ErrorDoc<'a> {
    kind: &'a str,
    exit_code: u8,
    message: String,
}

/// Prints the outcome of a command and returns its exit code.
pub fn finish<T: Serialize>(result: Result<T>, json: bool, human: impl FnOnce(&T)) -> ExitCode {
    match result {
        Ok(value) => {
            if json {
                match serde_json::to_string_pretty(&value) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: rendering JSON: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                human(&value);
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err, json),
    }
}

pub fn fail(err: &Error, json: bool) -> ExitCode {
    let code = err.exit_code();
    eprintln!("error: {err}");
    if json {
        let doc = Failure {
            ok: false,
            error: ErrorDoc {
                kind: err.kind(),
                exit_code: code,
                message: err.to_string(),
            },
        };
        if let Ok(text) = serde_json::to_string_pretty(&doc) {
            println!("{text}");
        }
    }
    ExitCode::from(code)
}

/// Sets up logging to stderr (`RUST_LOG` overrides the level).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
