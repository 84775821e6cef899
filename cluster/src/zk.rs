//! The ZooKeeper [`StateStorage`], over the `zookeeper-client` crate.

use crate::storage::{check_path, parent, NodeMode, StateError, StateStorage, Version};
use std::future::Future;
use std::time::Duration;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A ZooKeeper session rooted at a chroot (Storm's `storm.zookeeper.root`,
/// default `/squall`). Each call blocks the calling thread; the client runs
/// on a private one-thread tokio runtime, so do not call from inside an
/// async task (use `spawn_blocking`). Ephemeral nodes vanish when the
/// session is dropped or expires.
pub struct ZkStorage {
    client: Client,
    rt: tokio::runtime::Runtime,
}

fn zk_error(path: &str, e: ZkError) -> StateError {
    match e {
        ZkError::NoNode => StateError::NoNode(path.to_owned()),
        ZkError::NodeExists => StateError::NodeExists(path.to_owned()),
        other => StateError::Unavailable(format!("{other} (at {path})")),
    }
}

impl ZkStorage {
    /// Connects to `servers` (`host:port,host:port`), creating `root` if
    /// missing, with the given session timeout.
    pub fn connect(
        servers: &str,
        root: &str,
        session_timeout: Duration,
    ) -> Result<Self, StateError> {
        check_path(root)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("squall-zookeeper")
            .enable_all()
            .build()
            .map_err(|e| {
                StateError::Unavailable(format!("cannot start the ZooKeeper client runtime: {e}"))
            })?;
        let unavailable =
            |what: String| StateError::Unavailable(format!("ZooKeeper at {servers}: {what}"));
        let client = rt.block_on(async {
            let connect = Client::connector()
                .with_session_timeout(session_timeout)
                .with_connection_timeout(CONNECT_TIMEOUT)
                .connect(servers);
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(unavailable(e.to_string())),
                Err(_) => Err(unavailable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
            }
        })?;
        if root != "/" {
            let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
            rt.block_on(client.mkdir(root, &options))
                .or_else(|e| {
                    if e == ZkError::NodeExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| zk_error(root, e))?;
        }
        let client = client
            .chroot(root.to_owned())
            .map_err(|_| StateError::BadPath(root.to_owned()))?;
        Ok(Self { client, rt })
    }

    fn run<T>(
        &self,
        path: &str,
        f: impl Future<Output = Result<T, ZkError>>,
    ) -> Result<T, StateError> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, f).await })
        {
            Ok(r) => r.map_err(|e| zk_error(path, e)),
            Err(_) => Err(StateError::Unavailable(format!(
                "no answer within {REQUEST_TIMEOUT:?} (at {path})"
            ))),
        }
    }
}

impl StateStorage for ZkStorage {
    fn create(&self, path: &str, data: &[u8], mode: NodeMode) -> Result<(), StateError> {
        check_path(path)?;
        let zk_mode = match mode {
            NodeMode::Persistent => CreateMode::Persistent,
            NodeMode::Ephemeral => CreateMode::Ephemeral,
        };
        let options = zk_mode.with_acls(Acls::anyone_all());
        match self.run(path, self.client.create(path, data, &options)) {
            Err(StateError::NoNode(_)) => {
                if let Some(dir) = parent(path).filter(|d| *d != "/") {
                    let dirs = CreateMode::Persistent.with_acls(Acls::anyone_all());
                    self.run(dir, self.client.mkdir(dir, &dirs))?;
                }
                self.run(path, self.client.create(path, data, &options))
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Version)>, StateError> {
        check_path(path)?;
        match self.run(path, self.client.get_data(path)) {
            Ok((data, stat)) => Ok(Some((data, stat.version))),
            Err(StateError::NoNode(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set(
        &self,
        path: &str,
        data: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, StateError> {
        check_path(path)?;
        let write = self.client.set_data(path, data, expected);
        match self
            .rt
            .block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, write).await })
        {
            Ok(Ok(stat)) => Ok(stat.version),
            Ok(Err(ZkError::BadVersion)) => Err(StateError::BadVersion {
                path: path.to_owned(),
                expected: expected.unwrap_or(-1),
            }),
            Ok(Err(e)) => Err(zk_error(path, e)),
            Err(_) => Err(StateError::Unavailable(format!(
                "no answer within {REQUEST_TIMEOUT:?} (at {path})"
            ))),
        }
    }

    fn children(&self, path: &str) -> Result<Vec<String>, StateError> {
        check_path(path)?;
        match self.run(path, self.client.list_children(path)) {
            Ok(mut c) => {
                c.sort();
                Ok(c)
            }
            Err(StateError::NoNode(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn delete_all(&self, path: &str) -> Result<(), StateError> {
        check_path(path)?;
        for child in self.children(path)? {
            let sub = if path == "/" {
                format!("/{child}")
            } else {
                format!("{path}/{child}")
            };
            self.delete_all(&sub)?;
        }
        if path == "/" {
            return Ok(());
        }
        match self.run(path, self.client.delete(path, None)) {
            Ok(()) | Err(StateError::NoNode(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
