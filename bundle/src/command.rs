//! The one door to external programs: every tool this crate runs goes
//! through [`Cmd`], which logs the full command line and puts the tail of
//! stderr into the error.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// How much of a failing program's stderr goes into the error.
const STDERR_TAIL: usize = 2000;

pub struct Cmd {
    program: String,
    inner: Command,
    /// Fed to stdin (secrets go here, never on the command line, which
    /// every user can read in /proc).
    input: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        let mut inner = Command::new(program);
        inner.stdin(Stdio::null());
        Cmd {
            program: program.to_string(),
            inner,
            input: None,
        }
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.inner.stdin(Stdio::piped());
        self.input = Some(data.into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.inner.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.inner.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    fn describe(&self) -> String {
        let args: Vec<String> = self
            .inner
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        format!("{} {}", self.program, args.join(" "))
    }

    /// Runs to completion; returns stdout on success.
    pub fn output(self) -> Result<Vec<u8>> {
        self.output_reporting(|_| {})
    }

    /// [`Cmd::output`], handing each line of stderr to `on_line` as it
    /// comes (for progress from programs that run for minutes).
    pub fn output_reporting(mut self, mut on_line: impl FnMut(&str)) -> Result<Vec<u8>> {
        let line = self.describe();
        tracing::debug!(command = %line, "running");
        let started = |e: std::io::Error| {
            Error::tool(&self.program, format!("could not start `{line}`: {e}"))
        };
        let mut child = self
            .inner
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(started)?;
        // Written from a thread, so a program that answers before it has read
        // everything cannot deadlock on full pipes. One that exits without
        // reading it all fails below with its own message, which says more
        // than the broken pipe would.
        let writer = match (self.input.take(), child.stdin.take()) {
            (Some(data), Some(mut stdin)) => Some(std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut stdin, &data);
            })),
            _ => None,
        };
        // stdout is drained beside stderr for the same reason.
        let reader = child.stdout.take().map(|mut stdout| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
                out
            })
        });
        let mut stderr = Vec::new();
        if let Some(pipe) = child.stderr.take() {
            let mut pipe = std::io::BufReader::new(pipe);
            let mut raw = Vec::new();
            while std::io::BufRead::read_until(&mut pipe, b'\n', &mut raw).unwrap_or(0) > 0 {
                on_line(String::from_utf8_lossy(&raw).trim_end());
                stderr.append(&mut raw);
            }
        }
        let status = child.wait().map_err(started)?;
        let stdout = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
        if status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&stderr);
        let tail_start = stderr.len().saturating_sub(STDERR_TAIL);
        let tail = stderr.get(tail_start..).unwrap_or(&stderr).trim();
        Err(Error::tool(
            &self.program,
            format!("`{line}` exited with {status}: {tail}"),
        ))
    }

    /// Runs to completion and parses stdout as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let program = self.program.clone();
        let out = self.output()?;
        serde_json::from_slice(&out).map_err(|e| {
            Error::tool(
                program,
                format!("unexpected output (not the JSON expected): {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_are_reported_as_they_come_and_stdout_is_kept() {
        let mut seen = Vec::new();
        let out = Cmd::new("sh")
            .args(["-c", "echo one >&2; echo out; printf 'two' >&2"])
            .output_reporting(|l| seen.push(l.to_string()))
            .unwrap();
        assert_eq!(out, b"out\n");
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn failure_carries_stderr_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .output()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("boom") && text.contains("exit status: 3"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 7);
    }

    #[test]
    fn stdin_reaches_the_program() {
        let out = Cmd::new("cat").stdin("fed on stdin").output().unwrap();
        assert_eq!(out, b"fed on stdin");
    }

    #[test]
    fn missing_program_is_a_tool_error() {
        let err = Cmd::new("owui-no-such-program").output().unwrap_err();
        assert!(err.to_string().contains("could not start"));
    }
}
