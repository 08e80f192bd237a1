//! llama-server in router mode (units/llama-server.container): `/health`
//! says the router answers; `/models` says, per model, whether its last
//! load failed. llama.cpp keeps only the exit code there: the reason is
//! what the model's instance printed, which the router forwards to its own
//! log prefixed with the instance's port. A failed model makes the check
//! degraded, with those error lines read from the container's log
//! (`podman logs`, whichever log driver the container has).

use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use super::outcome::{CheckResult, Observation};
use super::probes::{self, Expect};

/// The container's log lines read (the newest).
const LOG_TAIL: &str = "2000";
/// `/models` lists every model file with its arguments: more than a health
/// answer, still small.
const MODELS_MAX: usize = 4 << 20;
/// Error lines quoted per failed model (the first is the cause; the rest
/// repeat it in other words).
const QUOTED_LINES: usize = 2;
/// A line longer than this is cut (a path in it can be long, not endless).
const LINE_MAX: usize = 400;

/// Where llama-server answers and the container whose log holds its
/// instances' output.
#[derive(Debug, Clone)]
pub struct LlamaProbe {
    pub url: String,
    pub container: String,
}

#[derive(Debug, Deserialize)]
struct Models {
    data: Vec<Model>,
}

#[derive(Debug, Deserialize)]
struct Model {
    id: String,
    /// Present in router mode only.
    status: Option<ModelStatus>,
}

#[derive(Debug, Deserialize)]
struct ModelStatus {
    #[serde(default)]
    failed: bool,
    exit_code: Option<i64>,
    /// The instance's command line, `--port P` in it.
    #[serde(default)]
    args: Vec<String>,
}

/// A model whose last load failed.
#[derive(Debug, PartialEq)]
struct Failed {
    id: String,
    exit_code: Option<i64>,
    port: Option<u16>,
}

pub async fn check(client: &reqwest::Client, p: &LlamaProbe) -> CheckResult {
    let base = p.url.trim_end_matches('/');
    match probes::http(client, &format!("{base}/health"), Expect::Success).await? {
        Observation::Ok(_) => {}
        not_ok => return Ok(not_ok),
    }
    let url = format!("{base}/models");
    let answer = match probes::get(client, &url).await {
        Ok(a) => a,
        Err(concluded) => return concluded,
    };
    if !answer.status.is_success() {
        return Ok(Observation::Fail(format!("{url}: HTTP {}", answer.status)));
    }
    let (count, failed) = match failed_models(&answer.body) {
        Ok(found) => found,
        Err(e) => return Ok(Observation::Fail(format!("{url}: {e}"))),
    };
    if failed.is_empty() {
        return Ok(Observation::Ok(format!(
            "{count} model(s), none failed to load"
        )));
    }
    let log = container_log(&p.container).await;
    let reports: Vec<String> = failed
        .iter()
        .map(|f| {
            let code = f
                .exit_code
                .map_or(String::new(), |c| format!(" (exit code {c})"));
            let why = match &log {
                Ok(text) => {
                    let lines = f.port.map(|p| error_lines(text, p)).unwrap_or_default();
                    if lines.is_empty() {
                        format!("no error lines for it in `podman logs {}`", p.container)
                    } else {
                        lines.join("; ")
                    }
                }
                Err(e) => e.clone(),
            };
            format!("model {} failed to load{code}: {why}", f.id)
        })
        .collect();
    Ok(Observation::Warn(reports.join("; ")))
}

/// How many models `/models` lists, and those whose last load failed.
fn failed_models(body: &[u8]) -> Result<(usize, Vec<Failed>), String> {
    if body.len() > MODELS_MAX {
        return Err(format!("answer of {} bytes is too long", body.len()));
    }
    let models: Models =
        serde_json::from_slice(body).map_err(|e| format!("not a model list ({e})"))?;
    let failed = models
        .data
        .iter()
        .filter_map(|m| {
            let s = m.status.as_ref().filter(|s| s.failed)?;
            let port = s
                .args
                .iter()
                .position(|a| a == "--port")
                .and_then(|i| s.args.get(i + 1))
                .and_then(|p| p.parse().ok());
            Some(Failed {
                id: m.id.clone(),
                exit_code: s.exit_code,
                port,
            })
        })
        .collect();
    Ok((models.data.len(), failed))
}

/// The newest lines of the container's log, or why they cannot be read.
async fn container_log(container: &str) -> Result<String, String> {
    let what = format!("`podman logs {container}`");
    let out = Command::new("podman")
        .args(["logs", "--tail", LOG_TAIL, container])
        .kill_on_drop(true)
        .output();
    // The check's own timeout bounds this too; this keeps a stuck podman
    // from taking all of it.
    let out = match tokio::time::timeout(Duration::from_secs(10), out).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("its log could not be read: {what}: {e}")),
        Err(_) => return Err(format!("its log could not be read: {what} took over 10 s")),
    };
    // The container's stdout and stderr come back on podman's own.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        let last = text.lines().last().unwrap_or("").trim();
        return Err(format!("its log could not be read: {what}: {last}"));
    }
    Ok(text)
}

/// The distinct error messages (level `E`) the instance on `port` printed,
/// first ones first: the router writes each of its lines as
/// `[PORT] [TIME] LEVEL MESSAGE`.
fn error_lines(log: &str, port: u16) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in log.lines() {
        let Some((tag, rest)) = line
            .trim_start()
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
        else {
            continue;
        };
        if tag.trim().parse::<u16>() != Ok(port) {
            continue;
        }
        let mut rest = rest.trim_start();
        if let Some((first, after)) = rest.split_once(' ') {
            if first.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                rest = after.trim_start();
            }
        }
        let Some(message) = rest.strip_prefix("E ") else {
            continue;
        };
        let message: String = message
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(LINE_MAX)
            .collect();
        if !message.is_empty() && !found.contains(&message) {
            found.push(message);
            if found.len() == QUOTED_LINES {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What llama-server 0.7.0 (Debian) wrote when a truncated GGUF was
    /// asked for; trimmed.
    const LOG: &str = "\
0.04.645.852 I srv          load: spawning server instance with name=broken on port 54407
[54407] 0.00.029.456 I srv    load_model: loading model '/models/broken.gguf'
[54407] 0.00.029.865 E llama_model_load: error loading model: tensor 'token_embd.weight' data is not within the file bounds, model is corrupted or incomplete
[54407] 0.00.029.871 E llama_model_load_from_file_impl: failed to load model
[54407] 0.00.029.959 E llama_model_load: error loading model: tensor 'token_embd.weight' data is not within the file bounds, model is corrupted or incomplete
[ 8001] 0.00.010.000 E some other instance's trouble
0.02.173.217 I srv           run: instance name=broken exited with status 1
";

    #[test]
    fn the_instances_own_error_lines_are_quoted_once_each() {
        assert_eq!(
            error_lines(LOG, 54407),
            [
                "llama_model_load: error loading model: tensor 'token_embd.weight' data is \
                 not within the file bounds, model is corrupted or incomplete",
                "llama_model_load_from_file_impl: failed to load model",
            ]
        );
        assert_eq!(error_lines(LOG, 8001), ["some other instance's trouble"]);
        assert!(error_lines(LOG, 1).is_empty());
        // Without timestamps, and with a control character in the text.
        assert_eq!(
            error_lines("[9] E bad \u{1b}[31mthing\n[9] I fine\n", 9),
            ["bad [31mthing"]
        );
    }

    #[test]
    fn failed_models_and_their_ports_from_the_router_list() {
        let body = br#"{"data":[
            {"id":"broken","status":{"value":"unloaded","exit_code":1,"failed":true,
             "args":["/usr/bin/llama-server","--port","54407","--model","/models/broken.gguf"]}},
            {"id":"good","status":{"value":"loaded","args":["--port","40000"]}},
            {"id":"single-mode model, no status"}
        ],"object":"list"}"#;
        let (count, failed) = failed_models(body).unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            failed,
            [Failed {
                id: "broken".into(),
                exit_code: Some(1),
                port: Some(54407),
            }]
        );
        assert!(failed_models(b"<html>").is_err());
        assert!(failed_models(br#"{"data":[{"status":{}}]}"#).is_err());
    }

    #[test]
    fn the_default_container_is_the_units() {
        let unit = include_str!("../../../units/llama-server.container");
        let name = super::super::catalog::HealthConfig::default().llama_server_container;
        assert!(unit.lines().any(|l| l == format!("ContainerName={name}")));
    }
}
