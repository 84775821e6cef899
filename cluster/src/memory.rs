//! An in-memory [`StateStorage`] for `LocalCluster` and unit tests.

use crate::storage::{check_path, parent, NodeMode, StateError, StateStorage, Version};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone)]
struct Node {
    data: Vec<u8>,
    version: Version,
    /// The session owning an ephemeral node.
    owner: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// One in-memory store; [`MemoryCluster::connect`] opens sessions on it, as
/// several daemons would connect to one ZooKeeper.
///
/// ```
/// use squall_cluster::{MemoryCluster, NodeMode, StateStorage};
/// let cluster = MemoryCluster::new();
/// let (a, b) = (cluster.connect(), cluster.connect());
/// a.create("/supervisors/s1", b"slots", NodeMode::Ephemeral).unwrap();
/// assert_eq!(b.children("/supervisors").unwrap(), vec!["s1"]);
/// drop(a); // the session ends, its ephemeral nodes go
/// assert!(b.children("/supervisors").unwrap().is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryCluster {
    tree: Arc<Mutex<Tree>>,
    next_session: Arc<AtomicU64>,
}

impl MemoryCluster {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new session. Its ephemeral nodes vanish when it is dropped.
    pub fn connect(&self) -> MemoryStorage {
        MemoryStorage {
            cluster: self.clone(),
            session: self.next_session.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// A separate store holding a copy of this one's nodes now (a lagging
    /// replica's view, for simulations).
    pub fn snapshot(&self) -> MemoryCluster {
        let tree = self.lock().clone();
        MemoryCluster {
            tree: Arc::new(Mutex::new(tree)),
            next_session: Arc::new(AtomicU64::new(
                self.next_session.load(Ordering::Relaxed) + 1_000_000,
            )),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session on a [`MemoryCluster`].
#[derive(Debug)]
pub struct MemoryStorage {
    cluster: MemoryCluster,
    session: u64,
}

fn is_below(path: &str, root: &str) -> bool {
    path == root
        || root == "/"
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with('/'))
}

impl StateStorage for MemoryStorage {
    fn create(&self, path: &str, data: &[u8], mode: NodeMode) -> Result<(), StateError> {
        check_path(path)?;
        let mut tree = self.cluster.lock();
        if tree.nodes.contains_key(path) {
            return Err(StateError::NodeExists(path.to_owned()));
        }
        let mut p = parent(path);
        while let Some(dir) = p.filter(|d| *d != "/") {
            tree.nodes.entry(dir.to_owned()).or_insert(Node {
                data: Vec::new(),
                version: 0,
                owner: None,
            });
            p = parent(dir);
        }
        let owner = (mode == NodeMode::Ephemeral).then_some(self.session);
        tree.nodes.insert(
            path.to_owned(),
            Node {
                data: data.to_vec(),
                version: 0,
                owner,
            },
        );
        Ok(())
    }

    fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Version)>, StateError> {
        check_path(path)?;
        Ok(self
            .cluster
            .lock()
            .nodes
            .get(path)
            .map(|n| (n.data.clone(), n.version)))
    }

    fn set(
        &self,
        path: &str,
        data: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, StateError> {
        check_path(path)?;
        let mut tree = self.cluster.lock();
        let node = tree
            .nodes
            .get_mut(path)
            .ok_or_else(|| StateError::NoNode(path.to_owned()))?;
        if let Some(v) = expected.filter(|v| *v != node.version) {
            return Err(StateError::BadVersion {
                path: path.to_owned(),
                expected: v,
            });
        }
        node.data = data.to_vec();
        node.version += 1;
        Ok(node.version)
    }

    fn children(&self, path: &str) -> Result<Vec<String>, StateError> {
        check_path(path)?;
        let tree = self.cluster.lock();
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        Ok(tree
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_owned())
            })
            .collect())
    }

    fn delete_all(&self, path: &str) -> Result<(), StateError> {
        check_path(path)?;
        self.cluster.lock().nodes.retain(|k, _| !is_below(k, path));
        Ok(())
    }

    fn session_id(&self) -> u64 {
        self.session
    }
}

impl Drop for MemoryStorage {
    fn drop(&mut self) {
        let session = self.session;
        self.cluster
            .lock()
            .nodes
            .retain(|_, n| n.owner != Some(session));
    }
}
