//! Structured log events, one JSON object per line on stdout (the journal),
//! for a SIEM: one per state change, and the daemon's start and stop.

use serde_json::json;

use crate::config::Seed;
use crate::health::engine::{CheckStatus, Transition};

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn emit(event: serde_json::Value) {
    println!("{event}");
}

pub fn state_changed(seed: &Seed, check: &CheckStatus, t: &Transition) {
    emit(json!({
        "timestamp": now(),
        "event": "health.state_changed",
        "node": seed.node,
        "role": seed.role,
        "check": t.name,
        "kind": check.kind,
        "from": t.from,
        "to": t.to,
        "detail": t.detail,
    }));
}

pub fn ready(seed: &Seed, status: &str) {
    emit(
        json!({"timestamp": now(), "event": "agent.ready", "node": seed.node, "role": seed.role, "status": status}),
    );
}

pub fn stopped(seed: &Seed) {
    emit(
        json!({"timestamp": now(), "event": "agent.stopped", "node": seed.node, "role": seed.role}),
    );
}
