//! Node health: the checks each role runs, the state machine that turns
//! results into `healthy | degraded | failed | unknown`, and the probes.

pub mod catalog;
pub mod engine;
pub mod outcome;
pub mod postgres;
pub mod probes;
pub mod redis;
