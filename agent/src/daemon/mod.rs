//! `owui-agent run`: the node daemon under systemd (`Type=notify`).
//!
//! Each check runs in its own loop at its own interval, bounded by its own
//! timeout, so one slow check never delays another. After the first full
//! pass the daemon tells systemd READY=1; it pings the watchdog when
//! systemd asks for it, keeps a STATUS= line current, logs one JSON event
//! per state change, answers `owui-agent status` on a local socket, serves
//! Prometheus metrics, and stops cleanly on SIGTERM.

mod events;
pub mod metrics;
mod socket;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use owui_bundle::apply::Node;
use owui_bundle::{Error, Result};
use sd_notify::NotifyState;
use tokio::sync::Notify;

use crate::config::{self, AgentConfig, Seed};
use crate::hardening::Audit;
use crate::health::audit;
use crate::health::catalog::{self, CheckDef, Probes};
use crate::health::engine::{overall, run_bounded, CheckStatus, Policy, State};
use crate::health::outcome::CheckResult;
use crate::layout::Root;
use crate::status::{self, Daemon, StatusDoc};

/// What the loops know, shared with the socket and metrics servers.
struct Shared {
    checks: Vec<CheckStatus>,
    audit: Audit,
    /// Which checks (and the audit, last) have finished a first run.
    reported: Vec<bool>,
    first_pass_left: usize,
    started: SystemTime,
}

#[derive(Clone)]
struct Context {
    seed: Arc<Seed>,
    node: Arc<Node>,
    shared: Arc<Mutex<Shared>>,
    first_pass: Arc<Notify>,
}

impl Context {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a result for check `index`; logs a transition; signals the end
    /// of the first pass.
    fn record(&self, index: usize, policy: &Policy, result: CheckResult, took: Duration) {
        let mut s = self.lock();
        let fresh = !std::mem::replace(&mut s.reported[index], true);
        let transition = s.checks[index].record(result, policy, took, SystemTime::now());
        if let Some(t) = transition {
            events::state_changed(&self.seed, &s.checks[index], &t);
        }
        if fresh && s.first_pass_left > 0 {
            s.first_pass_left -= 1;
            if s.first_pass_left == 0 {
                self.first_pass.notify_one();
            }
        }
    }

    fn doc(&self) -> Result<StatusDoc> {
        let (checks, audit, started) = {
            let s = self.lock();
            (s.checks.clone(), s.audit.clone(), s.started)
        };
        let daemon = Daemon {
            running: true,
            detail: format!(
                "pid {}, running since {}",
                std::process::id(),
                humantime::format_rfc3339_seconds(started)
            ),
        };
        status::assemble(&self.seed, &self.node, checks, audit, daemon)
    }

    /// One line for systemd's STATUS=: counts per state and what is wrong.
    fn status_line(&self) -> String {
        let s = self.lock();
        let overall = overall(s.checks.iter().map(|c| &c.state));
        let bad: Vec<&str> = s
            .checks
            .iter()
            .filter(|c| c.state != State::Healthy)
            .map(|c| c.name.as_str())
            .collect();
        if bad.is_empty() {
            format!(
                "{}: all {} checks healthy",
                overall.as_str(),
                s.checks.len()
            )
        } else {
            format!("{}: not healthy: {}", overall.as_str(), bad.join(", "))
        }
    }
}

fn notify(states: &[NotifyState]) {
    // Outside systemd there is no NOTIFY_SOCKET and this does nothing.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("telling systemd: {e}");
    }
}

async fn check_loop(ctx: Context, index: usize, def: CheckDef, probes: Arc<Probes>) {
    loop {
        let (result, took) = run_bounded(def.run(&probes), def.policy.timeout).await;
        ctx.record(index, &def.policy, result, took);
        tokio::time::sleep(def.policy.interval).await;
    }
}

async fn audit_loop(
    ctx: Context,
    root: Root,
    cfg: crate::hardening::HardeningConfig,
    index: usize,
    every: Duration,
) {
    loop {
        let role = ctx.seed.role;
        let (root2, cfg2) = (root.clone(), cfg.clone());
        let started = std::time::Instant::now();
        let outcome = tokio::task::spawn_blocking(move || audit::run(&root2, role, &cfg2)).await;
        let result = match outcome {
            Ok((found, result)) => {
                ctx.lock().audit = found;
                result
            }
            Err(e) => Err(format!("the audit task failed: {e}")),
        };
        ctx.record(index, &audit::POLICY, result, started.elapsed());
        tokio::time::sleep(every).await;
    }
}

/// Starts the daemon; returns when SIGTERM or SIGINT arrives.
pub fn run(root: &Root) -> Result<()> {
    // A malformed seed or config stops the start here, naming file, line and key.
    let (seed, node) = config::node(root)?;
    let cfg = config::load_agent_config(root)?;
    let runtime = crate::health::runtime()?;
    runtime.block_on(serve(root.clone(), seed, node, cfg))
}

async fn serve(root: Root, seed: Seed, node: Node, cfg: AgentConfig) -> Result<()> {
    let defs = catalog::checks(seed.role, &cfg.health, &root)?;
    let now = SystemTime::now();
    let mut checks: Vec<CheckStatus> = defs
        .iter()
        .map(|d| CheckStatus::new(&d.name, d.kind, now))
        .collect();
    checks.push(CheckStatus::new(audit::NAME, audit::KIND, now));
    let ctx = Context {
        seed: Arc::new(seed),
        node: Arc::new(node),
        shared: Arc::new(Mutex::new(Shared {
            first_pass_left: checks.len(),
            reported: vec![false; checks.len()],
            checks,
            audit: Audit::default(),
            started: now,
        })),
        first_pass: Arc::new(Notify::new()),
    };

    let listener = socket::bind(&root, &cfg.daemon)?;
    tokio::spawn(socket::serve(listener, ctx.clone()));
    if !cfg.daemon.metrics_listen.is_empty() {
        let config_file = root.agent_config()?;
        let metrics = tokio::net::TcpListener::bind(&cfg.daemon.metrics_listen)
            .await
            .map_err(|e| {
                Error::invalid(
                    format!("{}: daemon.metrics_listen", config_file.display()),
                    format!("cannot listen on {}: {e}", cfg.daemon.metrics_listen),
                )
            })?;
        tokio::spawn(socket::serve_metrics(metrics, ctx.clone()));
    }

    let probes = Arc::new(Probes::new(&cfg.health));
    let audit_index = defs.len();
    for (i, def) in defs.into_iter().enumerate() {
        tokio::spawn(check_loop(ctx.clone(), i, def, probes.clone()));
    }
    tokio::spawn(audit_loop(
        ctx.clone(),
        root.clone(),
        cfg.hardening.clone(),
        audit_index,
        Duration::from_secs(cfg.daemon.audit_interval_s.max(1)),
    ));

    ctx.first_pass.notified().await;
    if let Some(presence) = crate::cluster::presence::for_node(&root, &ctx.seed) {
        let health_ctx = ctx.clone();
        tokio::spawn(presence.run(move || {
            let s = health_ctx.lock();
            crate::cluster::presence::summary(s.checks.iter().map(|c| (c.name.as_str(), &c.state)))
        }));
    }
    let line = ctx.status_line();
    notify(&[NotifyState::Ready, NotifyState::Status(&line)]);
    events::ready(&ctx.seed, &line);

    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let ping_every = Duration::from_micros(
        if watchdog {
            watchdog_usec / 2
        } else {
            10_000_000
        }
        .max(100_000),
    );
    let mut ticker = tokio::time::interval(ping_every);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::internal("signals", format!("cannot watch SIGTERM: {e}")))?;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let line = ctx.status_line();
                if watchdog {
                    notify(&[NotifyState::Watchdog, NotifyState::Status(&line)]);
                } else {
                    notify(&[NotifyState::Status(&line)]);
                }
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    socket::remove(&root, &cfg.daemon);
    events::stopped(&ctx.seed);
    Ok(())
}
