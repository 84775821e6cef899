//! The cluster-state store: a tree of versioned nodes, some ephemeral (Storm's
//! `IStateStorage`). ZooKeeper in a cluster, memory in `LocalCluster`.

/// A node's version, bumped by every write (ZooKeeper's `stat.version`).
pub type Version = i32;

/// How long a node lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// Until deleted.
    Persistent,
    /// Until the session that created it ends (a daemon's liveness).
    Ephemeral,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The node does not exist.
    #[error("no node {0}")]
    NoNode(String),
    /// The node already exists.
    #[error("node {0} already exists")]
    NodeExists(String),
    /// A versioned write lost a race: someone wrote the node since it was
    /// read (how a stale Nimbus is kept from overwriting newer state).
    #[error("node {path} is not at version {expected}: it was changed by someone else")]
    BadVersion {
        /// The node.
        path: String,
        /// The version the writer expected.
        expected: Version,
    },
    /// A path that is not absolute, ends in `/` or has empty segments.
    #[error("invalid path {0:?}: paths are absolute, like /a/b")]
    BadPath(String),
    /// The store could not be reached or the session ended.
    #[error("cluster state store unavailable: {0}")]
    Unavailable(String),
    /// A stored value did not decode.
    #[error("node {path} holds data that does not decode: {reason}")]
    Corrupt {
        /// The node.
        path: String,
        /// The decoder's message.
        reason: String,
    },
}

/// A session on the cluster-state store. Every method is synchronous and
/// may be called from any thread. Parents of a created node are created as
/// persistent nodes with no data.
pub trait StateStorage: Send + Sync {
    /// Creates `path` holding `data`; fails with `NodeExists` if present.
    fn create(&self, path: &str, data: &[u8], mode: NodeMode) -> Result<(), StateError>;
    /// The data and version of `path`, or `None` if absent.
    fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Version)>, StateError>;
    /// Replaces the data of existing node `path`, only if it is at version
    /// `expected` when given. Returns the new version.
    fn set(
        &self,
        path: &str,
        data: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, StateError>;
    /// The names of `path`'s children, sorted; empty if `path` is absent.
    fn children(&self, path: &str) -> Result<Vec<String>, StateError>;
    /// Deletes `path` and everything below it; absent is fine.
    fn delete_all(&self, path: &str) -> Result<(), StateError>;

    /// The id of the current session (0 when unknown): ephemeral nodes
    /// created now belong to it and go with it.
    fn session_id(&self) -> u64 {
        0
    }

    /// Creates `path` or overwrites it (unversioned). Returns its version.
    fn put(&self, path: &str, data: &[u8]) -> Result<Version, StateError> {
        match self.create(path, data, NodeMode::Persistent) {
            Ok(()) => Ok(0),
            Err(StateError::NodeExists(_)) => self.set(path, data, None),
            Err(e) => Err(e),
        }
    }
}

/// Forwards a smart pointer's `StateStorage` to its target.
macro_rules! forward_storage {
    ($($ptr:ident)::+) => {
    impl<T: StateStorage + ?Sized> StateStorage for $($ptr)::+<T> {
        fn create(&self, path: &str, data: &[u8], mode: NodeMode) -> Result<(), StateError> {
            (**self).create(path, data, mode)
        }
        fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Version)>, StateError> {
            (**self).get(path)
        }
        fn set(
            &self,
            path: &str,
            data: &[u8],
            expected: Option<Version>,
        ) -> Result<Version, StateError> {
            (**self).set(path, data, expected)
        }
        fn children(&self, path: &str) -> Result<Vec<String>, StateError> {
            (**self).children(path)
        }
        fn delete_all(&self, path: &str) -> Result<(), StateError> {
            (**self).delete_all(path)
        }
        fn session_id(&self) -> u64 {
            (**self).session_id()
        }
    }
    };
}

forward_storage!(Box);
forward_storage!(std::sync::Arc);

/// Checks that `path` is absolute with non-empty segments (`/` alone is
/// the root).
pub fn check_path(path: &str) -> Result<(), StateError> {
    let ok = path == "/" || (path.starts_with('/') && !path.ends_with('/') && !path.contains("//"));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadPath(path.to_owned()))
    }
}

/// The parent of `path` (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(check_path("/a/b").is_ok());
        assert!(check_path("/").is_ok());
        for bad in ["a", "/a/", "//a", "/a//b", ""] {
            assert_eq!(check_path(bad), Err(StateError::BadPath(bad.to_owned())));
        }
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
    }
}
