//! `owui-agent run` as systemd runs it: READY=1 after the first pass,
//! watchdog pings and STATUS= lines on NOTIFY_SOCKET, `status` answered over
//! the local socket, a real Redis killed and restarted while it watches,
//! one JSON event per state change, and a clean stop on SIGTERM.

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use owui_tests::redis::{free_port, RedisServer};
use owui_tests::site::{bin, Site};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_state(site: &Site) -> (String, serde_json::Value) {
    let doc = site.agent(&["status", "--json"]).json();
    let redis = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .unwrap()
        .clone();
    (redis["state"].as_str().unwrap().to_string(), doc)
}

fn wait_for(site: &Site, state: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (now, doc) = redis_state(site);
        if now == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "redis not {state} within {within:?}: {doc}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes the node's agent.toml (one-second health loop, PostgreSQL on a
/// closed port, the root's disk, `health` lines added) and a memory file;
/// returns the metrics port it chose.
fn configure(site: &Site, health: &str) -> u16 {
    let metrics_port = free_port();
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        format!(
            "[health]\ninterval_s = 1\ntimeout_s = 1\n{health}\
             postgres = \"host=127.0.0.1 port=1 user=postgres\"\ndisks = [\"/\"]\n\
             [daemon]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n"
        ),
    )
    .unwrap();
    fs::create_dir_all(site.root.join("proc")).unwrap();
    fs::write(
        site.root.join("proc/meminfo"),
        "MemTotal: 1000 kB\nMemAvailable: 900 kB\n",
    )
    .unwrap();
    metrics_port
}

#[test]
fn daemon_notifies_systemd_watches_redis_and_stops_on_sigterm() {
    let site = Site::new("db");
    let port = free_port();
    let metrics_port = configure(
        &site,
        &format!("failure_threshold = 2\nsuccess_threshold = 2\nredis = \"127.0.0.1:{port}\"\n"),
    );
    let redis_dir = site.work.join("redis");
    fs::create_dir_all(&redis_dir).unwrap();
    let mut redis = RedisServer::start(port, &redis_dir);

    let notify_path = site.work.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let started = Instant::now();
    let mut agent = Agent(
        // systemd sets WATCHDOG_PID to the service's pid: exec keeps the shell's.
        Command::new("sh")
            .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" --root \"$1\" run"])
            .arg(bin("owui-agent"))
            .arg(&site.root)
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // systemd reads every notification; so must we, or the daemon's sends block.
    let (tx, messages) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = notify.recv(&mut buf) {
            if tx
                .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                .is_err()
            {
                break;
            }
        }
    });

    // READY=1 (with a STATUS= line) after the first pass, then watchdog pings.
    let mut ready = None;
    let mut watchdog_pings = 0;
    while watchdog_pings < 2 {
        let msg = messages
            .recv_timeout(Duration::from_secs(30))
            .expect("a notification within 30 s");
        if msg.contains("READY=1") {
            assert!(msg.contains("STATUS="), "{msg}");
            ready = Some(started.elapsed());
        }
        if msg.contains("WATCHDOG=1") {
            assert!(ready.is_some(), "watchdog before READY");
            watchdog_pings += 1;
        }
    }
    assert!(ready.unwrap() < Duration::from_secs(10));

    // status asks the daemon over its socket.
    let (state, doc) = redis_state(&site);
    assert_eq!(doc["daemon"]["running"], true, "{doc}");
    assert_eq!(state, "healthy", "{doc}");
    let socket = site.root.join("run/owui-agent/agent.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o660
    );

    // Redis dies: failed within two failed runs of a 1 s interval (plus slack).
    redis.kill();
    let took = wait_for(&site, "failed", Duration::from_secs(15));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // It comes back on the same port: healthy again after two good runs.
    let _redis = RedisServer::start(port, &redis_dir);
    wait_for(&site, "healthy", Duration::from_secs(15));

    // Prometheus text on the metrics address.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    std::io::Write::write_all(&mut conn, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut metrics = String::new();
    conn.read_to_string(&mut metrics).unwrap();
    assert!(
        metrics.contains("owui_check_state{check=\"redis\",kind=\"redis\",state=\"healthy\"} 1"),
        "{metrics}"
    );

    // SIGTERM: STOPPING=1, exit 0, socket gone.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
    let stopping = messages.try_iter().any(|m| m.contains("STOPPING=1"));
    assert!(stopping);

    // One JSON event per state change, including redis going down and up.
    let mut log = String::new();
    agent
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let redis_changes: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["event"] == "health.state_changed" && e["check"] == "redis")
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        redis_changes,
        [
            ("unknown", "healthy"),
            ("healthy", "failed"),
            ("failed", "healthy")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(events.iter().any(|e| e["event"] == "agent.ready"));
    assert!(events.iter().any(|e| e["event"] == "agent.stopped"));
}

#[test]
fn daemon_refuses_to_start_on_a_bad_config() {
    let site = Site::new("db");
    fs::write(
        site.root.join("etc/owui/agent.toml"),
        "[daemon]\nsocket = \"/run/x.sock\"\nmetrics = 1\n",
    )
    .unwrap();
    let run = site.agent(&["run"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("agent.toml")
            && run.stderr.contains("line 3")
            && run.stderr.contains("metrics"),
        "{}",
        run.stderr
    );
}

/// Opened by user nobody: idle connections to the metrics port, held open
/// (with the old daemon, 1100 of them made `status` queries fail).
const IDLE_FLOOD: &str = "for i in $(seq 1 1100); do exec {fd}<>/dev/tcp/127.0.0.1/$0 || exit 1; done; echo open; exec sleep 120";

#[test]
fn idle_connections_past_the_cap_leave_status_answering() {
    let site = Site::new("db");
    let metrics_port = configure(&site, "redis = \"127.0.0.1:1\"\n");
    // Few file descriptors: a flood the caps did not stop would use them up.
    let _agent = Agent(
        Command::new("sh")
            .args(["-c", "ulimit -n 256 && exec \"$0\" --root \"$1\" run"])
            .arg(bin("owui-agent"))
            .arg(&site.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while site.agent(&["status", "--json"]).json()["daemon"]["running"] != true {
        assert!(started.elapsed() < Duration::from_secs(30), "no daemon");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Root lifts the limit, then the flood runs as nobody.
    let mut flood = Agent(
        Command::new("sh")
            .args([
                "-c",
                "ulimit -n 4096 && exec setpriv --reuid=nobody --regid=nogroup --clear-groups bash -c \"$0\" \"$1\"",
                IDLE_FLOOD,
                &metrics_port.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut open = [0u8; 5];
    flood
        .0
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut open)
        .expect("the flood's connections open");
    assert_eq!(&open, b"open\n");

    // Answered by the daemon, not by the command's own fallback run, and at
    // once (the old daemon, out of descriptors, answered, if at all, only
    // when its idle clients timed out).
    for _ in 0..3 {
        let asked = Instant::now();
        let doc = site.agent(&["status", "--json"]).json();
        let took = asked.elapsed();
        assert_eq!(doc["daemon"]["running"], true, "{doc}");
        assert!(took < Duration::from_secs(2), "status took {took:?}");
        std::thread::sleep(Duration::from_secs(1));
    }

    // The flood over, the metrics endpoint answers again.
    drop(flood);
    let started = Instant::now();
    let metrics = loop {
        let mut text = String::new();
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", metrics_port)) {
            let _ = std::io::Write::write_all(&mut conn, b"GET /metrics HTTP/1.0\r\n\r\n");
            let _ = conn.read_to_string(&mut text);
        }
        if text.contains("owui_node_info") || started.elapsed() > Duration::from_secs(15) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metrics.contains("owui_node_info"), "{metrics}");
}
