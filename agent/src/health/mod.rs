//! Node health: the checks each role runs, the state machine that turns
//! results into `healthy | degraded | failed | unknown`, and the probes.

pub mod audit;
pub mod catalog;
pub mod dbus;
pub mod engine;
pub mod llama;
pub mod outcome;
pub mod postgres;
pub mod probes;
pub mod redis;
pub mod space;
pub mod systemd;
pub mod timesync;
pub mod tls;

/// The async runtime the daemon and `status` run their checks on: two
/// workers are plenty for I/O-bound probes.
pub fn runtime() -> owui_bundle::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| owui_bundle::Error::internal("starting the async runtime", e.to_string()))
}
