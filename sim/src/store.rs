//! A daemon's link to the simulated ZooKeeper: a [`StateStorage`] over a
//! [`MemoryCluster`] session that the world can cut off and expire, and
//! that re-creates its session after an expiry the way `ZkStorage` does
//! (the call that finds the session expired fails, the next one opens a
//! new session). Nimbus writes are audited against the leader node.

use squall_cluster::{MemoryCluster, MemoryStorage, NodeMode, StateError, StateStorage, Version};
use std::sync::{Arc, Mutex, MutexGuard};

/// Who owns a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A Nimbus with this id (its writes are audited).
    Nimbus(String),
    /// A supervisor or a worker.
    Other(String),
}

#[derive(Debug)]
struct LinkState {
    session: Option<MemoryStorage>,
    /// The session ended without its owner knowing yet.
    expired: bool,
    /// Whether the owner can reach the store.
    reachable: bool,
    /// Whether the owner runs (a crashed or paused owner sends no pings).
    running: bool,
    /// Never open a new session after an expiry (the old behaviour).
    sticky_expiry: bool,
    /// While reads lag: the replica the owner reads from (a copy of the
    /// store when the lag began, plus the owner's own writes since, as a
    /// ZooKeeper follower serves a session: old, but never older than its
    /// own writes).
    lagging: Option<(MemoryCluster, MemoryStorage)>,
    /// When the store last heard from the owner (world time, ms).
    last_ping_ms: u64,
}

/// One owner's connection; clones share it.
#[derive(Debug, Clone)]
pub struct Link {
    role: Role,
    cluster: MemoryCluster,
    state: Arc<Mutex<LinkState>>,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Link {
    /// A link of `role` on `cluster`; breaches of the single-writer rule go
    /// to `violations`.
    pub fn new(role: Role, cluster: &MemoryCluster, violations: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            role,
            cluster: cluster.clone(),
            state: Arc::new(Mutex::new(LinkState {
                session: None,
                expired: false,
                reachable: true,
                running: true,
                sticky_expiry: false,
                lagging: None,
                last_ping_ms: 0,
            })),
            violations,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes an expired session stay expired: every later call fails, as
    /// a client that never re-creates its session.
    pub fn never_recreate_sessions(&self) {
        self.lock().sticky_expiry = true;
    }

    /// Makes the owner's reads lag (served from a copy of the store as it
    /// is now) or catch up.
    pub fn set_lagging(&self, lag: bool) {
        let mut s = self.lock();
        s.lagging = lag.then(|| {
            let replica = self.cluster.snapshot();
            let session = replica.connect();
            (replica, session)
        });
    }

    /// Cuts the owner off the store, or heals it.
    pub fn set_reachable(&self, reachable: bool) {
        self.lock().reachable = reachable;
    }

    /// Marks the owner stopped (crashed, paused) or running.
    pub fn set_running(&self, running: bool) {
        self.lock().running = running;
    }

    /// The store's side of a tick at `now_ms`: a running, reachable owner
    /// pings; a session not pinged for `session_ms` expires (its ephemeral
    /// nodes go at once, the owner learns on its next call). Returns
    /// whether it expired now.
    pub fn tick(&self, now_ms: u64, session_ms: u64) -> bool {
        let mut s = self.lock();
        if s.running && s.reachable {
            s.last_ping_ms = now_ms;
            return false;
        }
        if s.session.is_some() && now_ms.saturating_sub(s.last_ping_ms) > session_ms {
            s.session = None;
            s.expired = true;
            // A new session reads from an up-to-date server.
            s.lagging = None;
            return true;
        }
        false
    }

    fn call<T>(
        &self,
        path: &str,
        f: impl FnOnce(&MemoryStorage, Option<&MemoryStorage>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut s = self.lock();
        if !s.reachable {
            return Err(StateError::Unavailable(format!(
                "disconnected from ZooKeeper (at {path})"
            )));
        }
        if s.expired {
            s.expired = s.sticky_expiry;
            return Err(StateError::Unavailable(format!(
                "session expired (at {path})"
            )));
        }
        if s.session.is_none() {
            s.session = Some(self.cluster.connect());
        }
        let replica = s.lagging.as_ref().map(|(_, r)| r);
        f(s.session.as_ref().expect("a session"), replica)
    }

    /// Checks that a Nimbus writing `path` holds the leader node.
    fn audit(&self, path: &str) {
        let Role::Nimbus(id) = &self.role else {
            return;
        };
        if !(path.starts_with("/topologies") || path.starts_with("/assignments")) {
            return;
        }
        let leader = squall_cluster::ClusterState::new(self.cluster.connect())
            .leader()
            .ok()
            .flatten();
        if leader.as_deref() != Some(id.as_str()) {
            self.violations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!(
                    "Nimbus {id} wrote {path} while the leader is {leader:?}"
                ));
        }
    }
}

impl StateStorage for Link {
    fn create(&self, path: &str, data: &[u8], mode: NodeMode) -> Result<(), StateError> {
        self.call(path, |s, replica| {
            self.audit(path);
            s.create(path, data, mode)?;
            if let Some(r) = replica {
                let _ = r.create(path, data, NodeMode::Persistent);
            }
            Ok(())
        })
    }

    fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Version)>, StateError> {
        self.call(path, |s, replica| replica.unwrap_or(s).get(path))
    }

    fn set(
        &self,
        path: &str,
        data: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, StateError> {
        self.call(path, |s, replica| {
            self.audit(path);
            let v = s.set(path, data, expected)?;
            if let Some(r) = replica {
                let _ = r.put(path, data);
            }
            Ok(v)
        })
    }

    fn children(&self, path: &str) -> Result<Vec<String>, StateError> {
        self.call(path, |s, replica| replica.unwrap_or(s).children(path))
    }

    fn session_id(&self) -> u64 {
        self.lock().session.as_ref().map_or(0, |s| s.session_id())
    }

    fn delete_all(&self, path: &str) -> Result<(), StateError> {
        self.call(path, |s, replica| {
            self.audit(path);
            s.delete_all(path)?;
            if let Some(r) = replica {
                let _ = r.delete_all(path);
            }
            Ok(())
        })
    }
}
