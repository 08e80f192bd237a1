//! The probes that need no service library: memory and HTTP endpoints (Open WebUI, Ollama, vLLM; nginx over TLS builds on [`get`]).

use std::fs;
use std::path::Path;

use super::outcome::{CheckResult, Observation};

/// Percentage thresholds for a resource that fills up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warn_percent: f64,
    pub fail_percent: f64,
}

impl Thresholds {
    fn judge(&self, used_percent: f64, detail: String) -> Observation {
        if used_percent >= self.fail_percent {
            Observation::Fail(detail)
        } else if used_percent >= self.warn_percent {
            Observation::Warn(detail)
        } else {
            Observation::Ok(detail)
        }
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// Memory in use, from `MemTotal` and `MemAvailable` in a meminfo file.
pub fn memory(meminfo: &Path, t: Thresholds) -> CheckResult {
    let text =
        fs::read_to_string(meminfo).map_err(|e| format!("reading {}: {e}", meminfo.display()))?;
    let field = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib * 1024.0)
    };
    let (Some(total), Some(available)) = (field("MemTotal"), field("MemAvailable")) else {
        return Err(format!("{}: no MemTotal/MemAvailable", meminfo.display()));
    };
    if total <= 0.0 {
        return Err(format!("{}: MemTotal is zero", meminfo.display()));
    }
    let pct = 100.0 * (total - available) / total;
    Ok(t.judge(
        pct,
        format!("{pct:.0} % used, {:.1} GiB available", available / GIB),
    ))
}

/// What an HTTP endpoint must answer to count as healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any 2xx (vLLM `/health`).
    Success,
    /// 2xx with a JSON body `{"status": true}` (Open WebUI `/health`, `/health/db`).
    StatusTrue,
    /// 2xx with a JSON body carrying `version` (Ollama `/api/version`).
    Version,
    /// Open WebUI's `/api/config` without `"onboarding": true`: it has a
    /// user, so the page offers nobody the first-administrator sign-up.
    AdminExists,
}

/// Bodies above this are not a health answer.
const BODY_MAX: usize = 64 << 10;

pub async fn http(client: &reqwest::Client, url: &str, expect: Expect) -> CheckResult {
    match get(client, url).await {
        Ok(answer) => Ok(judge(url, &answer, expect)),
        Err(concluded) => concluded,
    }
}

/// What an endpoint answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub body: Vec<u8>,
    /// The certificate the server presented (DER), over HTTPS with a
    /// client built with `tls_info(true)`.
    pub peer_certificate: Option<Vec<u8>>,
}

/// One `GET url`. `Err` is what the check concludes without an answer: a
/// bad URL cannot be checked (`Err`), a refused connection, a TLS failure
/// or a broken answer has failed.
pub async fn get(client: &reqwest::Client, url: &str) -> Result<Answer, CheckResult> {
    let resp = match client.get(url).send().await {
        Ok(r) => r,
        Err(e) if e.is_builder() => return Err(Err(format!("bad URL {url}: {e}"))),
        Err(e) => return Err(Ok(Observation::Fail(format!("{url}: {}", root_cause(&e))))),
    };
    let status = resp.status();
    let peer_certificate = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec);
    match resp.bytes().await {
        Ok(body) => Ok(Answer {
            status,
            body: body.to_vec(),
            peer_certificate,
        }),
        Err(e) => Err(Ok(Observation::Fail(format!(
            "{url}: reading the answer: {}",
            root_cause(&e)
        )))),
    }
}

/// Whether `answer` from `url` is what `expect` asks for.
pub fn judge(url: &str, answer: &Answer, expect: Expect) -> Observation {
    let status = answer.status;
    let body = &answer.body;
    if !status.is_success() {
        return Observation::Fail(format!("{url}: HTTP {status}"));
    }
    if expect == Expect::Success {
        return Observation::Ok(format!("HTTP {}", status.as_u16()));
    }
    if body.len() > BODY_MAX {
        return Observation::Fail(format!(
            "{url}: answer of {} bytes is not a health answer",
            body.len()
        ));
    }
    let json: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Observation::Fail(format!("{url}: answer is not JSON ({e})")),
    };
    match expect {
        Expect::StatusTrue if json.get("status") == Some(&serde_json::Value::Bool(true)) => {
            Observation::Ok("status true".into())
        }
        Expect::StatusTrue => {
            Observation::Fail(format!("{url}: answered {json}, not {{\"status\": true}}"))
        }
        Expect::Version => match json.get("version").and_then(|v| v.as_str()) {
            Some(v) => Observation::Ok(format!("version {v}")),
            None => Observation::Fail(format!("{url}: answered {json} without a version")),
        },
        Expect::AdminExists if json.get("onboarding") == Some(&serde_json::Value::Bool(true)) => {
            Observation::Fail(
                "no administrator yet: whoever opens the page first becomes one".into(),
            )
        }
        Expect::AdminExists => Observation::Ok("an administrator exists".into()),
        Expect::Success => Observation::Ok(format!("HTTP {}", status.as_u16())),
    }
}

/// The innermost error, which names what went wrong ("connection refused").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(body: &str) -> Answer {
        Answer {
            status: reqwest::StatusCode::OK,
            body: body.as_bytes().to_vec(),
            peer_certificate: None,
        }
    }

    #[test]
    fn open_webui_onboarding_means_no_administrator() {
        let url = "http://127.0.0.1:8080/api/config";
        let judged = |body| judge(url, &answered(body), Expect::AdminExists);
        assert!(matches!(
            judged(r#"{"name":"Open WebUI","onboarding":true}"#),
            Observation::Fail(d) if d.contains("whoever opens the page first")
        ));
        assert_eq!(
            judged(r#"{"name":"Open WebUI","features":{}}"#),
            Observation::Ok("an administrator exists".into())
        );
        assert!(matches!(judged("<html>"), Observation::Fail(_)));
    }

    const T: Thresholds = Thresholds {
        warn_percent: 80.0,
        fail_percent: 95.0,
    };

    #[test]
    fn memory_from_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meminfo");
        fs::write(
            &p,
            "MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    100 kB\n",
        )
        .unwrap();
        assert!(matches!(memory(&p, T), Ok(Observation::Warn(d)) if d.starts_with("90 %")));
        fs::write(&p, "MemTotal: 1000 kB\nMemAvailable: 900 kB\n").unwrap();
        assert!(matches!(memory(&p, T), Ok(Observation::Ok(_))));
        fs::write(&p, "MemTotal: 1000 kB\n").unwrap();
        assert!(memory(&p, T).is_err());
        assert!(memory(&dir.path().join("absent"), T).is_err());
    }
}
