//! [`ClusterState`]: the typed view of the cluster-state store that Nimbus,
//! supervisors and workers use (Storm's `IStormClusterState`).

use crate::schema::*;
use crate::storage::{NodeMode, StateError, StateStorage, Version};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Typed records over a [`StateStorage`] session, encoded with rmp-serde
/// (named fields, so records can gain fields).
pub struct ClusterState<S> {
    storage: S,
}

fn encode<T: Serialize>(path: &str, value: &T) -> Result<Vec<u8>, StateError> {
    rmp_serde::to_vec_named(value).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(path: &str, bytes: &[u8]) -> Result<T, StateError> {
    rmp_serde::from_slice(bytes).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

impl<S: StateStorage> ClusterState<S> {
    /// The typed view of `storage`.
    pub fn new(storage: S) -> Self {
        Self { storage }
    }

    /// The underlying session.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    fn read<T: DeserializeOwned>(&self, path: &str) -> Result<Option<(T, Version)>, StateError> {
        match self.storage.get(path)? {
            Some((bytes, v)) => Ok(Some((decode(path, &bytes)?, v))),
            None => Ok(None),
        }
    }

    fn read_all<T: DeserializeOwned>(&self, dir: &str) -> Result<Vec<T>, StateError> {
        let mut out = Vec::new();
        for child in self.storage.children(dir)? {
            // A child may vanish between the listing and the read.
            if let Some((v, _)) = self.read(&format!("{dir}/{child}"))? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Stores a topology record (create or overwrite).
    pub fn put_topology(&self, t: &TopologyRecord) -> Result<(), StateError> {
        let path = format!("{TOPOLOGIES}/{}", t.id);
        self.storage.put(&path, &encode(&path, t)?).map(|_| ())
    }

    /// A topology record.
    pub fn topology(&self, id: &str) -> Result<Option<TopologyRecord>, StateError> {
        Ok(self.read(&format!("{TOPOLOGIES}/{id}"))?.map(|(t, _)| t))
    }

    /// Every topology record.
    pub fn topologies(&self) -> Result<Vec<TopologyRecord>, StateError> {
        self.read_all(TOPOLOGIES)
    }

    /// A topology's assignment and its version.
    pub fn assignment(&self, id: &str) -> Result<Option<(Assignment, Version)>, StateError> {
        self.read(&format!("{ASSIGNMENTS}/{id}"))
    }

    /// Writes an assignment: creates it when `expected` is `None` (failing
    /// if one exists), else replaces it only if it is still at version
    /// `expected`, so a stale Nimbus cannot overwrite a newer assignment.
    pub fn set_assignment(
        &self,
        a: &Assignment,
        expected: Option<Version>,
    ) -> Result<Version, StateError> {
        let path = format!("{ASSIGNMENTS}/{}", a.topology_id);
        let bytes = encode(&path, a)?;
        match expected {
            None => self
                .storage
                .create(&path, &bytes, NodeMode::Persistent)
                .map(|()| 0),
            Some(v) => self.storage.set(&path, &bytes, Some(v)),
        }
    }

    /// Creates the folder topology `id`'s workers write in
    /// (`/errors/<id>`) and the coordination root, so
    /// that with security on they carry the ACLs that let those workers,
    /// and no others, write there (see [`crate::zk_acl`]); what exists is
    /// kept. Nimbus calls it at submit, before the record exists (Storm's
    /// `setupErrors`).
    pub fn prepare_topology(&self, id: &str) -> Result<(), StateError> {
        let dirs = [
            crate::coordination::TRANSACTIONAL_ROOT.to_owned(),
            format!("{ERRORS}/{id}"),
        ];
        for dir in dirs {
            match self.storage.create(&dir, &[], NodeMode::Persistent) {
                Ok(()) | Err(StateError::NodeExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Removes everything stored for topology `id`.
    pub fn remove_topology(&self, id: &str) -> Result<(), StateError> {
        for dir in [ASSIGNMENTS, TOPOLOGIES, ERRORS] {
            self.storage.delete_all(&format!("{dir}/{id}"))?;
        }
        Ok(())
    }

    /// Registers this session's supervisor (an ephemeral node: it vanishes
    /// with the session). Called every round; writes only when the node
    /// is missing or differs, so a registered supervisor costs ZooKeeper
    /// one read a round.
    pub fn register_supervisor(&self, s: &SupervisorInfo) -> Result<(), StateError> {
        let path = format!("{SUPERVISORS}/{}", s.id);
        let bytes = encode(&path, s)?;
        match self.storage.get(&path)? {
            Some((current, _)) if current == bytes => Ok(()),
            Some(_) => self.storage.set(&path, &bytes, None).map(|_| ()),
            None => match self.storage.create(&path, &bytes, NodeMode::Ephemeral) {
                Err(StateError::NodeExists(_)) => self.storage.set(&path, &bytes, None).map(|_| ()),
                other => other,
            },
        }
    }

    /// The live supervisors.
    pub fn supervisors(&self) -> Result<Vec<SupervisorInfo>, StateError> {
        self.read_all(SUPERVISORS)
    }

    /// Appends an error to its component's list, keeping the last
    /// [`MAX_ERRORS`].
    pub fn report_error(&self, topology_id: &str, e: &ErrorRecord) -> Result<(), StateError> {
        let path = format!("{ERRORS}/{topology_id}/{}", e.component);
        loop {
            let (mut errors, version) = match self.read::<Vec<ErrorRecord>>(&path)? {
                Some((errors, v)) => (errors, Some(v)),
                None => (Vec::new(), None),
            };
            errors.push(e.clone());
            let skip = errors.len().saturating_sub(MAX_ERRORS);
            errors.drain(..skip);
            let bytes = encode(&path, &errors)?;
            let written = match version {
                None => self
                    .storage
                    .create(&path, &bytes, NodeMode::Persistent)
                    .map(|()| 0),
                Some(v) => self.storage.set(&path, &bytes, Some(v)),
            };
            match written {
                Err(StateError::BadVersion { .. }) | Err(StateError::NodeExists(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    }

    /// A component's last errors, oldest first.
    pub fn errors(
        &self,
        topology_id: &str,
        component: &str,
    ) -> Result<Vec<ErrorRecord>, StateError> {
        Ok(self
            .read(&format!("{ERRORS}/{topology_id}/{component}"))?
            .map(|(e, _)| e)
            .unwrap_or_default())
    }

    /// Records that Nimbus `nimbus_id` holds binary `sha256` (an ephemeral
    /// node: it goes with the session; call again after a new session).
    pub fn announce_blob(&self, sha256: &str, nimbus_id: &str) -> Result<(), StateError> {
        let path = format!("{BLOBSTORE}/{sha256}/{nimbus_id}");
        // Read first: a refused create is a write to ZooKeeper too.
        if self.storage.get(&path)?.is_some() {
            return Ok(());
        }
        match self.storage.create(&path, &[], NodeMode::Ephemeral) {
            Err(StateError::NodeExists(_)) => Ok(()),
            other => other,
        }
    }

    /// The Nimbuses holding binary `sha256` (their ids, sorted).
    pub fn blob_holders(&self, sha256: &str) -> Result<Vec<String>, StateError> {
        self.storage.children(&format!("{BLOBSTORE}/{sha256}"))
    }

    /// Forgets binary `sha256`'s holders (its topology is gone).
    pub fn remove_blob(&self, sha256: &str) -> Result<(), StateError> {
        self.storage.delete_all(&format!("{BLOBSTORE}/{sha256}"))
    }

    /// Tries to become the leading Nimbus: true if this session now holds
    /// the leader node (or already did). The node holds `<id>\n<session>`;
    /// a node naming this Nimbus but made by an earlier session of it (one
    /// that ended, and whose node ZooKeeper removes when it expires) does
    /// not count: a Nimbus never leads on a node that will vanish under it.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub fn try_lead(&self, nimbus_id: &str) -> Result<bool, StateError> {
        let session = self.storage.session_id();
        let data = format!("{nimbus_id}\n{session}");
        let create = || match self
            .storage
            .create(LEADER, data.as_bytes(), NodeMode::Ephemeral)
        {
            Ok(()) => Ok(true),
            Err(StateError::NodeExists(_)) => Ok(false),
            Err(e) => Err(e),
        };
        if create()? {
            return Ok(true);
        }
        // Another Nimbus's, or an earlier session's (wait until it goes),
        // or gone meanwhile (next round).
        Ok(matches!(
            self.leader_node()?,
            Some((id, s)) if id == nimbus_id && s == session && session != 0
        ))
    }

    fn leader_node(&self) -> Result<Option<(String, u64)>, StateError> {
        Ok(self.storage.get(LEADER)?.map(|(b, _)| {
            let text = String::from_utf8_lossy(&b).into_owned();
            let (id, session) = text.split_once('\n').unwrap_or((&text, "0"));
            (id.to_owned(), session.parse().unwrap_or(0))
        }))
    }

    /// Whether Nimbus `nimbus_id` leads through this very session: the
    /// leader node names it and was made by this session (a node left by
    /// an earlier session of it does not count).
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub fn holds_leadership(&self, nimbus_id: &str) -> Result<bool, StateError> {
        let session = self.storage.session_id();
        Ok(matches!(
            self.leader_node()?,
            Some((id, s)) if id == nimbus_id && s == session && session != 0
        ))
    }

    /// The leading Nimbus's id, if any.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub fn leader(&self) -> Result<Option<String>, StateError> {
        Ok(self.leader_node()?.map(|(id, _)| id))
    }
}
