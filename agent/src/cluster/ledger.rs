//! The agent API's ledger is the site's etcd: token claims, issued and
//! revoked certificates hold across every control node.

use owui_bundle::seed::NodeName;
use owui_bundle::Result;

use super::api::Ledger;
use super::state::{ClusterState, TokenClaim};
use super::state_error;

impl Ledger for ClusterState {
    async fn claim_token(&self, id: &str, node: &NodeName) -> Result<Option<String>> {
        match ClusterState::claim_token(self, id, node)
            .await
            .map_err(state_error)?
        {
            TokenClaim::Claimed => Ok(None),
            TokenClaim::AlreadyUsed { by, at, .. } => {
                Ok(Some(format!("by control node {by} at {at}")))
            }
        }
    }

    async fn record_issued(&self, node: &NodeName, serial: &str) -> Result<()> {
        ClusterState::record_issued(self, node, serial)
            .await
            .map_err(state_error)
    }

    async fn is_revoked(&self, serial: &str) -> Result<bool> {
        Ok(self.revoked().await.map_err(state_error)?.contains(serial))
    }
}
