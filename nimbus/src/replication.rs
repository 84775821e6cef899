//! Blob replication between Nimbuses and the campaign for leadership
//! (Storm's `BlobStore` replication and `LeaderListenerCallback`): every
//! Nimbus copies the binary of each live topology it lacks from the
//! others, announces the binaries it holds under `/blobstore`, and only
//! campaigns for leadership once it holds them all, so a new leader can
//! always serve the binaries its supervisors ask for.

use crate::service::Nimbus;
use squall_cluster::{StateError, StateStorage};
use std::collections::BTreeSet;

/// What a Nimbus may do about leadership this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// Take the leader node if it is free.
    Run,
    /// Stay a standby: binaries of live topologies are missing here.
    Wait {
        /// The missing binaries (sha256).
        missing: Vec<String>,
    },
}

/// Whether a Nimbus missing `missing` binaries campaigns, given how long
/// the cluster has had no leader. Pure. A Nimbus with every binary always
/// campaigns; one missing some waits, unless no leader has been seen for
/// `leaderless_grace_ms` (every Nimbus may have lost a binary: a leader
/// that cannot serve one topology is better than none).
pub fn campaign(
    missing: Vec<String>,
    leaderless_for_ms: u64,
    leaderless_grace_ms: u64,
) -> Campaign {
    if missing.is_empty() || leaderless_for_ms >= leaderless_grace_ms {
        Campaign::Run
    } else {
        Campaign::Wait { missing }
    }
}

impl<S: StateStorage> Nimbus<S> {
    /// Copies the binaries of live topologies this Nimbus lacks from the
    /// other Nimbuses in `nimbus.seeds` and announces those it holds.
    /// Returns the binaries still missing.
    ///
    /// # Errors
    /// When the cluster state cannot be read.
    pub fn replicate_blobs(&self) -> Result<Vec<String>, StateError> {
        let wanted: BTreeSet<String> = self
            .state
            .topologies()?
            .into_iter()
            .filter_map(|t| t.binary_hash)
            .collect();
        let mut missing = Vec::new();
        for hash in wanted {
            if !self.blobs.contains(&hash) {
                let mut replica = self.blobs.replica(&hash);
                match self.peers.fetch(&hash, &mut replica) {
                    Ok(bytes) => match replica.finish() {
                        Ok(()) => {
                            tracing::info!(binary = %hash, bytes, "copied topology binary from another Nimbus");
                        }
                        Err(e) => {
                            tracing::error!(binary = %hash, "cannot store a copied binary: {e}")
                        }
                    },
                    Err(e) => tracing::warn!(binary = %hash, "binary missing here: {e}"),
                }
            }
            if self.blobs.contains(&hash) {
                self.state.announce_blob(&hash, &self.id)?;
            } else {
                missing.push(hash);
            }
        }
        Ok(missing)
    }

    /// One round of the leadership loop: replicate binaries, then take the
    /// leader node if it is free and this Nimbus may lead. Returns whether
    /// this Nimbus leads after the round.
    pub fn campaign_round(&self) -> bool {
        let missing = match self.replicate_blobs() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot replicate binaries: {e}");
                return false;
            }
        };
        let now = self.now_ms();
        let leader = match self.state.leader() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot read the leader: {e}");
                return false;
            }
        };
        let mut leaderless_since = self.leaderless_since();
        if leader.is_some() {
            *leaderless_since = None;
            drop(leaderless_since);
            // Ours only if made by this session (else it goes when the
            // earlier session expires, and the campaign resumes).
            return self.state.holds_leadership(&self.id).unwrap_or(false);
        }
        let since = *leaderless_since.get_or_insert(now);
        drop(leaderless_since);
        let grace = self.config.zookeeper_session_timeout_ms * 3;
        match campaign(missing, now.saturating_sub(since), grace) {
            Campaign::Run => self.state.try_lead(&self.id).unwrap_or_else(|e| {
                tracing::warn!("cannot campaign for leadership: {e}");
                false
            }),
            Campaign::Wait { missing } => {
                tracing::warn!(
                    ?missing,
                    "not campaigning for leadership: binaries of live topologies are missing here"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nimbus_missing_binaries_waits_unless_leaderless_too_long() {
        let m = || vec!["ab".to_owned()];
        assert_eq!(campaign(vec![], 0, 60_000), Campaign::Run);
        assert_eq!(
            campaign(m(), 59_999, 60_000),
            Campaign::Wait { missing: m() }
        );
        assert_eq!(campaign(m(), 60_000, 60_000), Campaign::Run);
    }
}
