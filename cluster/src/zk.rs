//! The ZooKeeper [`StateStorage`], over the `zookeeper-client` crate.

use crate::storage::{check_path, parent, NodeMode, StateError, StateStorage, Version};
use crate::zk_acl::ZkCredentials;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use zookeeper_client::{
    Acl, Acls, AuthId, Client, CreateMode, Error as ZkError, Permission, SessionState,
};

/// How long a connection attempt may take at most (less with a shorter
/// session timeout, so a daemon retries soon after ZooKeeper returns).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take at most (less when the session timeout
/// is shorter: a request never outlives the session it was sent on).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A ZooKeeper connection rooted at a chroot (Storm's
/// `storm.zookeeper.root`, default `/squall`) that outlives its sessions:
/// when the session expires (the daemon was paused, cut off or ZooKeeper
/// was down longer than the session timeout) the failing call reports
/// [`StateError::Unavailable`] and the next call opens a new session, as
/// Curator does for Storm. Ephemeral nodes vanish with the session that
/// made them, so owners re-create theirs every round (supervisors register,
/// Nimbus campaigns); [`ZkStorage::sessions`] counts the sessions opened.
///
/// Each call blocks the calling thread; the client runs on a private
/// one-thread tokio runtime, so do not call from inside an async task (use
/// `spawn_blocking`). While the connection is down, calls fail at once
/// rather than wait for it.
pub struct ZkStorage {
    servers: String,
    /// Who the sessions authenticate as, when nodes are protected.
    auth: Option<ZkCredentials>,
    root: String,
    session_timeout: Duration,
    rt: tokio::runtime::Runtime,
    /// The current session; `None` once it ended, until the next call.
    client: Mutex<Option<Client>>,
    sessions: AtomicU64,
}

fn zk_error(path: &str, e: ZkError) -> StateError {
    match e {
        ZkError::NoNode => StateError::NoNode(path.to_owned()),
        ZkError::NodeExists => StateError::NodeExists(path.to_owned()),
        other => StateError::Unavailable(format!("{other} (at {path})")),
    }
}

/// ZooKeeper's permission with bits `bits` (see [`crate::zk_acl::Grant`]).
fn permission(bits: i32) -> Permission {
    [
        Permission::READ,
        Permission::WRITE,
        Permission::CREATE,
        Permission::DELETE,
        Permission::ADMIN,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .fold(Permission::NONE, |all, (_, p)| all | p)
}

/// Whether `e` means the session is over (a new one is needed).
fn session_over(e: &ZkError) -> bool {
    matches!(
        e,
        ZkError::SessionExpired | ZkError::ClientClosed | ZkError::AuthFailed
    )
}

impl ZkStorage {
    /// Connects to `servers` (`host:port,host:port`), creating `root` if
    /// missing, with the given session timeout.
    ///
    /// # Errors
    /// [`StateError::Unavailable`] when no server answers within 10 s.
    pub fn connect(
        servers: &str,
        root: &str,
        session_timeout: Duration,
    ) -> Result<Self, StateError> {
        Self::connect_with(servers, root, session_timeout, None)
    }

    /// [`ZkStorage::connect`] authenticating each session with `auth`
    /// (ZooKeeper's `digest` scheme) when given. Nodes it creates then
    /// carry the ACL [`ZkCredentials::acl_for`] gives their path (the
    /// daemons may do everything; a topology's workers read their record
    /// and write their heartbeats), instead of `world:anyone:cdrwa`.
    ///
    /// # Errors
    /// As [`ZkStorage::connect`]; [`StateError::Unavailable`] naming the
    /// root when the credentials are refused there.
    pub fn connect_with(
        servers: &str,
        root: &str,
        session_timeout: Duration,
        auth: Option<ZkCredentials>,
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
        let storage = Self {
            servers: servers.to_owned(),
            auth,
            root: root.to_owned(),
            session_timeout,
            rt,
            client: Mutex::new(None),
            sessions: AtomicU64::new(0),
        };
        let session = storage.open_session()?;
        *storage.lock() = Some(session);
        Ok(storage)
    }

    /// The ACL of node `path` when this connection creates it.
    fn acl(&self, path: &str) -> Vec<Acl> {
        match &self.auth {
            None => Acls::anyone_all().to_vec(),
            Some(auth) => auth
                .acl_for(path)
                .into_iter()
                .map(|g| Acl::new(permission(g.perms), AuthId::new("digest", &g.id)))
                .collect(),
        }
    }

    /// How many sessions this connection has opened (1 until the first
    /// expiry).
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Client>> {
        self.client.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a new session and chroots it, creating the root if missing.
    fn open_session(&self) -> Result<Client, StateError> {
        let servers = &self.servers;
        let unavailable =
            |what: String| StateError::Unavailable(format!("ZooKeeper at {servers}: {what}"));
        let limit = CONNECT_TIMEOUT.min(self.session_timeout.max(Duration::from_secs(1)));
        let client = self.rt.block_on(async {
            let mut connector = Client::connector()
                .with_session_timeout(self.session_timeout)
                .with_connection_timeout(limit);
            for payload in self.auth.iter().flat_map(ZkCredentials::payloads) {
                connector = connector.with_auth("digest", payload.as_bytes());
            }
            let connect = connector.connect(servers);
            match tokio::time::timeout(limit, connect).await {
                Ok(Ok(c)) => Ok(c),
                Ok(Err(e)) => Err(unavailable(e.to_string())),
                Err(_) => Err(unavailable(format!("no answer within {limit:?}"))),
            }
        })?;
        let root = self.root.as_str();
        if root != "/" {
            let acl = self.acl("/");
            let options = CreateMode::Persistent.with_acls(Acls::new(&acl));
            self.rt
                .block_on(client.mkdir(root, &options))
                .or_else(|e| {
                    if e == ZkError::NodeExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| zk_error(root, e))?;
        }
        let n = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        if n > 1 {
            tracing::info!(%servers, session = n, "ZooKeeper session re-created");
        }
        client
            .chroot(root.to_owned())
            .map_err(|_| StateError::BadPath(root.to_owned()))
    }

    /// The live session, opening a new one if the last ended.
    fn session(&self, path: &str) -> Result<Client, StateError> {
        let mut guard = self.lock();
        if let Some(c) = guard.as_ref() {
            let state = c.state();
            if !state.is_terminated() {
                if state == SessionState::Disconnected {
                    return Err(StateError::Unavailable(format!(
                        "disconnected from ZooKeeper at {}, reconnecting (at {path})",
                        self.servers
                    )));
                }
                return Ok(c.clone());
            }
            tracing::warn!(servers = %self.servers, ?state, "ZooKeeper session ended");
            *guard = None;
        }
        let c = self.open_session()?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets `client`'s session if it is still the current one.
    fn end_session(&self, client: &Client) {
        let mut guard = self.lock();
        if guard
            .as_ref()
            .is_some_and(|c| c.session_id() == client.session_id())
        {
            *guard = None;
        }
    }

    fn request_timeout(&self) -> Duration {
        REQUEST_TIMEOUT.min(self.session_timeout.max(Duration::from_secs(1)))
    }

    /// Waits for one request `f` sent on `client`; forgets the session if
    /// the request found it over.
    fn finish<T>(
        &self,
        client: &Client,
        path: &str,
        f: impl Future<Output = Result<T, ZkError>>,
    ) -> Result<T, ZkFailure> {
        let limit = self.request_timeout();
        match self
            .rt
            .block_on(async { tokio::time::timeout(limit, f).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if session_over(&e) {
                    self.end_session(client);
                }
                Err(ZkFailure::Zk(e))
            }
            Err(_) => Err(ZkFailure::State(StateError::Unavailable(format!(
                "no answer within {limit:?} (at {path})"
            )))),
        }
    }
}

impl ZkStorage {
    /// Creates `dir` and its missing ancestors, each with its own ACL.
    /// Ancestors that exist are not touched: creating one again would be
    /// refused by its parent's ACL before it is found to exist.
    fn make_dirs(&self, client: &Client, dir: &str) -> Result<(), StateError> {
        if dir == "/" {
            return Ok(());
        }
        let acl = self.acl(dir);
        let options = CreateMode::Persistent.with_acls(Acls::new(&acl));
        let mut tried_parent = false;
        loop {
            match self.finish(client, dir, client.create(dir, &[], &options)) {
                Ok(_) | Err(ZkFailure::Zk(ZkError::NodeExists)) => return Ok(()),
                Err(ZkFailure::Zk(ZkError::NoNode)) if !tried_parent => {
                    tried_parent = true;
                    self.make_dirs(client, parent(dir).unwrap_or("/"))?;
                }
                Err(e) => return Err(e.into_state(dir)),
            }
        }
    }
}

/// A request's failure before mapping.
enum ZkFailure {
    State(StateError),
    Zk(ZkError),
}

impl ZkFailure {
    fn into_state(self, path: &str) -> StateError {
        match self {
            Self::State(s) => s,
            Self::Zk(z) => zk_error(path, z),
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
        let acl = self.acl(path);
        let options = zk_mode.with_acls(Acls::new(&acl));
        let client = self.session(path)?;
        match self.finish(&client, path, client.create(path, data, &options)) {
            Err(ZkFailure::Zk(ZkError::NoNode)) => {
                if let Some(dir) = parent(path) {
                    self.make_dirs(&client, dir)?;
                }
                self.finish(&client, path, client.create(path, data, &options))
                    .map(|_| ())
                    .map_err(|e| e.into_state(path))
            }
            other => other.map(|_| ()).map_err(|e| e.into_state(path)),
        }
    }

    fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Version)>, StateError> {
        check_path(path)?;
        let client = self.session(path)?;
        match self.finish(&client, path, client.get_data(path)) {
            Ok((data, stat)) => Ok(Some((data, stat.version))),
            Err(ZkFailure::Zk(ZkError::NoNode)) => Ok(None),
            Err(e) => Err(e.into_state(path)),
        }
    }

    fn set(
        &self,
        path: &str,
        data: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, StateError> {
        check_path(path)?;
        let client = self.session(path)?;
        match self.finish(&client, path, client.set_data(path, data, expected)) {
            Ok(stat) => Ok(stat.version),
            Err(ZkFailure::Zk(ZkError::BadVersion)) => Err(StateError::BadVersion {
                path: path.to_owned(),
                expected: expected.unwrap_or(-1),
            }),
            Err(e) => Err(e.into_state(path)),
        }
    }

    fn children(&self, path: &str) -> Result<Vec<String>, StateError> {
        check_path(path)?;
        let client = self.session(path)?;
        match self.finish(&client, path, client.list_children(path)) {
            Ok(mut c) => {
                c.sort();
                Ok(c)
            }
            Err(ZkFailure::Zk(ZkError::NoNode)) => Ok(Vec::new()),
            Err(e) => Err(e.into_state(path)),
        }
    }

    fn session_id(&self) -> u64 {
        self.lock().as_ref().map_or(0, |c| c.session_id().0 as u64)
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
        let client = self.session(path)?;
        match self.finish(&client, path, client.delete(path, None)) {
            Ok(()) | Err(ZkFailure::Zk(ZkError::NoNode)) => Ok(()),
            Err(e) => Err(e.into_state(path)),
        }
    }
}
