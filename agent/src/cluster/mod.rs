//! The cluster: etcd on the control nodes and the agent as its client.

pub mod etcd_config;
pub mod state;
