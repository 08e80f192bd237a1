//! `owui-agent status` against endpoints that answer like Open WebUI,
//! including wrong answers and hangs: states, exit codes, the JSON document,
//! and that one hung check does not hold up the others.

use std::fs;
use std::time::{Duration, Instant};

use owui_tests::fake_http::{Answer, FakeHttp};
use owui_tests::site::{model_sources, spec_head, Site};

/// An app node whose Open WebUI is the fake server, with a short timeout.
fn app_node(web: &FakeHttp) -> Site {
    let site = Site::new("app");
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        format!(
            "[health]\nopen_webui_url = \"{}\"\ntimeout_s = 2\ndisks = [\"/\"]\n",
            web.url()
        ),
    )
    .unwrap();
    fs::create_dir_all(site.root.join("proc")).unwrap();
    fs::write(
        site.root.join("proc/meminfo"),
        "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n",
    )
    .unwrap();
    site
}

fn check<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {doc}"))
}

#[test]
fn healthy_services_then_wrong_answers_then_a_hang() {
    let web = FakeHttp::start();
    web.route("/health", Answer::Reply(200, "{\"status\":true}".into()));
    web.route("/health/db", Answer::Reply(200, "{\"status\":true}".into()));
    let site = app_node(&web);

    let run = site.agent(&["status", "--json"]);
    let doc = run.json();
    assert_eq!(doc["schema"], "owui-status/1");
    assert_eq!(doc["node"], "node-1");
    assert_eq!(doc["role"], "app");
    assert_eq!(check(&doc, "open-webui")["state"], "healthy", "{doc}");
    assert_eq!(check(&doc, "open-webui-db")["state"], "healthy");
    assert_eq!(check(&doc, "memory")["state"], "healthy");
    assert_eq!(
        check(&doc, "memory")["detail"],
        "25 % used, 5.7 GiB available"
    );
    assert_eq!(doc["daemon"]["running"], false);
    // Every check reports kind, state, since and detail.
    for c in doc["checks"].as_array().unwrap() {
        for field in ["name", "kind", "state", "since", "detail"] {
            assert!(!c[field].is_null(), "{field} missing in {c}");
        }
    }
    // Overall follows the worst check and sets the exit code.
    let expect_code = match doc["overall"].as_str().unwrap() {
        "healthy" => 0,
        "degraded" => 8,
        "failed" => 9,
        _ => 10,
    };
    assert_eq!(run.code, expect_code, "{doc}");

    // The database behind Open WebUI is down: a wrong answer fails the check.
    web.route(
        "/health/db",
        Answer::Reply(500, "{\"status\":false}".into()),
    );
    web.route("/health", Answer::Reply(200, "{\"status\":false}".into()));
    let run = site.agent(&["status", "--json"]);
    let doc = run.json();
    assert_eq!(check(&doc, "open-webui-db")["state"], "failed");
    assert!(check(&doc, "open-webui-db")["detail"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert_eq!(check(&doc, "open-webui")["state"], "failed");
    assert_eq!(doc["overall"], "failed");
    assert_eq!(run.code, 9);

    // A hung endpoint is bounded by its timeout and does not hold up the rest.
    web.route("/health", Answer::Hang);
    web.route("/health/db", Answer::Reply(200, "{\"status\":true}".into()));
    let started = Instant::now();
    let run = site.agent(&["status", "--json"]);
    let took = started.elapsed();
    let doc = run.json();
    assert_eq!(check(&doc, "open-webui")["state"], "failed");
    assert!(check(&doc, "open-webui")["detail"]
        .as_str()
        .unwrap()
        .contains("no answer within 2 s"));
    assert_eq!(check(&doc, "open-webui-db")["state"], "healthy");
    assert!(
        check(&doc, "open-webui-db")["duration_ms"]
            .as_u64()
            .unwrap()
            < 1000
    );
    assert!(took < Duration::from_secs(30), "status took {took:?}");
}

#[test]
fn table_view_and_nothing_listening() {
    // Nothing listens on the configured port: connection refused, failed.
    let web = FakeHttp::start();
    let site = app_node(&web);
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        "[health]\nopen_webui_url = \"http://127.0.0.1:9\"\ntimeout_s = 2\ndisks = [\"/\"]\n",
    )
    .unwrap();
    let a = site.pack(
        "a",
        &format!(
            "{}{}",
            spec_head("models", 4, &["app"]),
            model_sources(&site.work, "t", 1000, 1)
        ),
    );
    site.agent(&["bundle", "apply", a.to_str().unwrap()]).ok();
    let run = site.agent(&["status"]);
    assert_eq!(run.code, 9, "{}", run.stdout);
    let out = run.stdout;
    assert!(
        out.starts_with("node node-1  role app  overall FAILED\n"),
        "{out}"
    );
    assert!(out.contains("daemon: not running"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("open-webui ") && l.contains("failed") && l.contains("refused")),
        "{out}"
    );
    assert!(
        out.contains("bundles   generation 1; last applied models seq 4"),
        "{out}"
    );
    assert!(
        !out.contains("\x1b["),
        "no colour when stdout is not a terminal"
    );
}

#[test]
fn bad_config_is_refused_naming_file_line_and_key() {
    let web = FakeHttp::start();
    let site = app_node(&web);
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        "[health]\ntimeout_s = 2\nintervall_s = 5\n",
    )
    .unwrap();
    let run = site.agent(&["status", "--json"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("agent.toml")
            && run.stderr.contains("line 3")
            && run.stderr.contains("intervall_s"),
        "{}",
        run.stderr
    );
    site.write_seed("printer");
    let run = site.agent(&["status"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.contains("seed.toml") && run.stderr.contains("printer"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_reply_with_terminal_controls_is_escaped_in_the_table_and_exact_in_json() {
    // Ollama's version string reaches the check's detail as it was sent:
    // ESC (clear screen), CR, BEL and a C1 control (CSI), around UTF-8.
    let web = FakeHttp::start();
    web.route(
        "/api/version",
        Answer::Reply(
            200,
            r#"{"version":"0.9 é\u001b[2J\rfine\u0007\u009b31m"}"#.into(),
        ),
    );
    let site = app_node(&web);
    site.write_seed("gpu");
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        format!(
            "[health]\nollama_url = \"{}\"\ntimeout_s = 2\ndisks = [\"/\"]\n",
            web.url()
        ),
    )
    .unwrap();

    let doc = site.agent(&["status", "--json"]).json();
    assert_eq!(
        check(&doc, "ollama")["detail"],
        "version 0.9 é\u{1b}[2J\rfine\u{7}\u{9b}31m",
        "{doc}"
    );

    let table = site.agent(&["status"]).stdout;
    let row = table
        .lines()
        .find(|l| l.starts_with("ollama "))
        .unwrap_or_else(|| panic!("no ollama row in:\n{table}"));
    assert!(
        row.ends_with("version 0.9 é\\u{1b}[2J\\rfine\\u{7}\\u{9b}31m"),
        "{row}"
    );
    let raw: Vec<char> = table
        .chars()
        .filter(|&c| c != '\n' && c.is_control())
        .collect();
    assert!(raw.is_empty(), "{raw:?} reached the terminal:\n{table}");
}
