//! A node's record kept alive under its lease ([`ClusterState::register`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    conditional_put, stored_record, ClusterState, Expect, Members, NodeRecord, Result, StateError,
};

/// A node's published record and the lease that keeps it alive.
pub struct Registration {
    pub(super) state: ClusterState,
    pub(super) key: String,
    pub(super) node: String,
    pub(super) lease: i64,
    /// The revision of our last write: the fence for the next one.
    pub(super) revision: i64,
    pub(super) incarnation: String,
    pub(super) expired: Arc<AtomicBool>,
    pub(super) keep_alive: tokio::task::JoinHandle<()>,
}

impl Registration {
    /// Replaces the record with `record` (new health, last_seen), if the
    /// stored record is still the one this registration wrote last: a newer
    /// start of the node that re-registered is never overwritten by this
    /// older one ([`StateError::Conflict`]); a record that aged out gives
    /// [`StateError::LeaseExpired`].
    pub async fn publish(&mut self, record: &NodeRecord) -> Result<()> {
        // register() checked this node is the connection's own.
        if record.node.as_str() != self.node {
            return Err(StateError::Invalid {
                what: format!("node record for {}", record.node),
                detail: format!("this registration is node {}'s", self.node),
            });
        }
        if self.expired.load(Ordering::Relaxed) {
            return Err(StateError::LeaseExpired {
                node: self.node.clone(),
            });
        }
        let value = stored_record(record, &self.incarnation)?;
        let written = conditional_put(
            &self.state,
            "updating the node record",
            &self.key,
            &value,
            Expect::Revision(self.revision),
            Some(self.lease),
        )
        .await;
        match written {
            Ok(revision) => {
                self.revision = revision;
                Ok(())
            }
            Err(StateError::Conflict { found: None, .. }) => Err(StateError::LeaseExpired {
                node: self.node.clone(),
            }),
            Err(e) if lease_gone(&e) => Err(StateError::LeaseExpired {
                node: self.node.clone(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Leaves the cluster's view at once: revokes the lease, which deletes
    /// the record (a clean shutdown; a crash lets it age out instead).
    pub async fn leave(self) -> Result<()> {
        self.keep_alive.abort();
        let lease = self.lease;
        let revoked = self
            .state
            .request("revoking the node's lease", |mut client| async move {
                client.lease_revoke(lease).await
            })
            .await;
        match revoked {
            // Already gone: expired, or revoked by an attempt whose answer
            // was lost.
            Err(e) if lease_gone(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// etcd's answer for a lease it does not know ("requested lease not found").
fn lease_gone(error: &StateError) -> bool {
    matches!(error, StateError::Refused { detail, .. } if detail.contains("lease not found"))
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

/// Renews `lease` every `every` on whichever member answers, until the
/// task is aborted or etcd says the lease is gone (then `expired` is set).
pub(super) async fn keep_alive(
    members: Arc<Members>,
    lease: i64,
    every: Duration,
    expired: Arc<AtomicBool>,
) {
    let every = every.max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let renewed = members
            .request("renewing the node's lease", |mut client| async move {
                let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
                keeper.keep_alive().await?;
                answers.message().await
            })
            .await;
        match renewed {
            // TTL 0: etcd no longer knows the lease; the record is gone.
            Ok(Some(answer)) if answer.ttl() <= 0 => {
                expired.store(true, Ordering::Relaxed);
                return;
            }
            Ok(_) => {}
            // Nothing answered this time; the lease outlives a few misses.
            Err(e) => tracing::warn!(lease, error = %e, "could not renew the node's lease"),
        }
    }
}
