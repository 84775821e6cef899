//! Who may touch which ZooKeeper node when security is on: the identities
//! sessions authenticate as (ZooKeeper's `digest` scheme) and, as a pure
//! function of a node's path, the ACL a node is created with.
//!
//! Storm's model (`Utils.getWorkerACL`, `ClusterUtils.mkTopoReadOnlyAcls`,
//! `mkTopoReadWriteAcls`): the daemons share one identity
//! (`storm.zookeeper.auth.payload`) with every right on every node; each
//! topology's workers have their own identity, which may read their
//! topology's record and assignment and write their own errors, and
//! nothing of another topology (heartbeats do not go through ZooKeeper). Unlike Storm, a worker's
//! password is not stored anywhere: it is an HMAC of the daemons' payload
//! over the topology id, so any daemon can name it and no worker can
//! derive another's. Trident's coordination keys (`/transactional`) are
//! named by transactional ids that outlive a topology (a resubmitted
//! topology resumes its state), so they belong to every worker of the
//! cluster (a second, shared identity), never to outsiders.

use crate::coordination::TRANSACTIONAL_ROOT;
use crate::schema::{ASSIGNMENTS, ERRORS, TOPOLOGIES};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// One grant of an ACL: ZooKeeper permission bits (`READ` 1, `WRITE` 2,
/// `CREATE` 4, `DELETE` 8, `ADMIN` 16) for a `digest` id (`user:hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Permission bits.
    pub perms: i32,
    /// The `digest` scheme id, `user:base64(sha1(user:password))`.
    pub id: String,
}

/// Every permission (ZooKeeper's `Perms.ALL`).
pub const ALL: i32 = 31;
/// Read a node's data and children.
pub const READ: i32 = 1;
/// Read, write, create children and delete children: everything but
/// changing the ACL (`ADMIN`).
pub const READ_WRITE: i32 = 1 | 2 | 4 | 8;

/// The credentials one ZooKeeper session authenticates with, and what it
/// is: a daemon or a topology's worker.
#[derive(Clone, PartialEq, Eq)]
pub enum ZkCredentials {
    /// Nimbus or a supervisor: `user:password` (Storm's
    /// `storm.zookeeper.auth.payload`).
    Daemon {
        /// The daemons' payload.
        payload: String,
    },
    /// A worker of one topology, as handed to it by its supervisor
    /// ([`WorkerIdentity::derive`]).
    Worker(WorkerIdentity),
}

/// What a worker authenticates as: its topology's identity, the identity
/// shared by every worker (for `/transactional`), and the daemons' id, which
/// every node it creates grants everything to.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    /// The topology whose worker this is.
    pub topology_id: String,
    /// `topology.<id>:<hex HMAC-SHA256(daemon payload, "topology:" + id)>`.
    pub topology_payload: String,
    /// `workers:<hex HMAC-SHA256(daemon payload, "workers")>`.
    pub workers_payload: String,
    /// The daemons' digest id ([`digest_id`] of their payload).
    pub daemon_id: String,
}

impl std::fmt::Debug for ZkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Daemon { .. } => f.write_str("Daemon(..)"),
            Self::Worker(w) => write!(f, "Worker({w:?})"),
        }
    }
}

/// Names the topology only: the payloads are secrets.
impl std::fmt::Debug for WorkerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WorkerIdentity({}, ..)", self.topology_id)
    }
}

/// ZooKeeper's `digest` id for `payload` (`user:password`):
/// `user:base64(sha1(payload))`, as ZooKeeper's
/// `DigestAuthenticationProvider.generateDigest`.
pub fn digest_id(payload: &str) -> String {
    let user = payload.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(payload.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

fn derived(daemon_payload: &str, user: &str, label: &str) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(daemon_payload.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(label.as_bytes());
    let tag = mac.finalize().into_bytes();
    format!("{user}:{}", crate::rpc::hex(&tag))
}

/// The separator of [`WorkerIdentity::to_env`]'s fields.
const ENV_SEPARATOR: char = '\n';

impl ZkCredentials {
    /// A daemon's credentials.
    pub fn daemon(payload: &str) -> Self {
        Self::Daemon {
            payload: payload.to_owned(),
        }
    }

    /// The `digest` payloads the session authenticates with.
    pub fn payloads(&self) -> Vec<&str> {
        match self {
            Self::Daemon { payload } => vec![payload],
            Self::Worker(w) => vec![&w.topology_payload, &w.workers_payload],
        }
    }

    /// The ACL of node `path` (below the chroot) when this session creates
    /// it; see the module doc for the policy.
    pub fn acl_for(&self, path: &str) -> Vec<Grant> {
        let (daemon, worker_payload, workers_payload) = match self {
            Self::Daemon { payload } => {
                let owner = topology_of(path)
                    .map(|t| derived(payload, &format!("topology.{t}"), &format!("topology:{t}")));
                (
                    digest_id(payload),
                    owner,
                    derived(payload, "workers", "workers"),
                )
            }
            Self::Worker(w) => (
                w.daemon_id.clone(),
                Some(w.topology_payload.clone()),
                w.workers_payload.clone(),
            ),
        };
        let mut acl = vec![Grant {
            perms: ALL,
            id: daemon,
        }];
        let worker_perms = match area_of(path) {
            Area::ReadOnly => Some(READ),
            Area::Owned => Some(READ_WRITE),
            Area::Shared => {
                acl.push(Grant {
                    perms: READ_WRITE,
                    id: digest_id(&workers_payload),
                });
                None
            }
            Area::Daemons => None,
        };
        if let (Some(perms), Some(payload)) = (worker_perms, worker_payload) {
            // A worker creating a node in another topology's area is
            // refused by the parent's ACL before this one counts.
            acl.push(Grant {
                perms,
                id: digest_id(&payload),
            });
        }
        acl
    }
}

impl WorkerIdentity {
    /// The identity of topology `topology_id`'s workers, derived from the
    /// daemons' payload (what a supervisor hands its workers).
    pub fn derive(daemon_payload: &str, topology_id: &str) -> Self {
        Self {
            topology_id: topology_id.to_owned(),
            topology_payload: derived(
                daemon_payload,
                &format!("topology.{topology_id}"),
                &format!("topology:{topology_id}"),
            ),
            workers_payload: derived(daemon_payload, "workers", "workers"),
            daemon_id: digest_id(daemon_payload),
        }
    }

    /// The identity as one environment value (three lines: topology
    /// payload, workers payload, daemons' id), for a worker process.
    pub fn to_env(&self) -> String {
        [
            self.topology_payload.as_str(),
            &self.workers_payload,
            &self.daemon_id,
        ]
        .join(&ENV_SEPARATOR.to_string())
    }

    /// Reads [`WorkerIdentity::to_env`]'s value back for `topology_id`.
    ///
    /// # Errors
    /// A message when the value does not hold three lines, or its
    /// topology payload names another topology.
    pub fn from_env(topology_id: &str, value: &str) -> Result<Self, String> {
        let lines: Vec<&str> = value.split(ENV_SEPARATOR).collect();
        let [topology, workers, daemon] = lines[..] else {
            return Err(
                "must hold three lines (topology payload, workers payload, daemon id)".into(),
            );
        };
        let expected = format!("topology.{topology_id}:");
        if !topology.starts_with(&expected) {
            return Err(format!(
                "the credentials are not those of topology {topology_id:?}"
            ));
        }
        Ok(Self {
            topology_id: topology_id.to_owned(),
            topology_payload: topology.to_owned(),
            workers_payload: workers.to_owned(),
            daemon_id: daemon.to_owned(),
        })
    }
}

/// What a topology's workers may do in part of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    /// `/topologies/<id>`, `/assignments/<id>`: the workers read.
    ReadOnly,
    /// `/errors/<id>` and below: the workers write.
    Owned,
    /// `/transactional` and below: every worker writes.
    Shared,
    /// Everything else: daemons only.
    Daemons,
}

fn area_of(path: &str) -> Area {
    if path == TRANSACTIONAL_ROOT || path.starts_with(&format!("{TRANSACTIONAL_ROOT}/")) {
        return Area::Shared;
    }
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (dir, id, rest) = (parts.next(), parts.next(), parts.next());
    match (dir.map(|d| format!("/{d}")).as_deref(), id, rest) {
        (Some(TOPOLOGIES | ASSIGNMENTS), Some(_), None) => Area::ReadOnly,
        (Some(ERRORS), Some(_), _) => Area::Owned,
        _ => Area::Daemons,
    }
}

/// The topology id a per-topology path names, if any.
fn topology_of(path: &str) -> Option<&str> {
    match area_of(path) {
        Area::ReadOnly | Area::Owned => path.trim_start_matches('/').split('/').nth(1),
        Area::Shared | Area::Daemons => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAEMON: &str = "squall:s3cret";

    fn ids(acl: &[Grant]) -> Vec<(i32, &str)> {
        acl.iter().map(|g| (g.perms, g.id.as_str())).collect()
    }

    #[test]
    fn digest_ids_are_zookeepers() {
        // ZooKeeper's DigestAuthenticationProvider.generateDigest("super:test").
        assert_eq!(
            digest_id("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn a_topology_s_nodes_grant_its_workers_what_they_need_and_no_more() {
        let daemon = ZkCredentials::daemon(DAEMON);
        let wc = WorkerIdentity::derive(DAEMON, "wc-1-7");
        let d = digest_id(DAEMON);
        let w = digest_id(&wc.topology_payload);
        let all = digest_id(&wc.workers_payload);
        assert_eq!(
            ids(&daemon.acl_for("/topologies/wc-1-7")),
            [(ALL, d.as_str()), (READ, &w)]
        );
        assert_eq!(
            ids(&daemon.acl_for("/assignments/wc-1-7")),
            [(ALL, d.as_str()), (READ, &w)]
        );
        for owned in ["/errors/wc-1-7", "/errors/wc-1-7/count"] {
            assert_eq!(
                ids(&daemon.acl_for(owned)),
                [(ALL, d.as_str()), (READ_WRITE, &w)],
                "{owned}"
            );
        }
        for daemons_only in [
            "/topologies",
            "/workerbeats/wc-1-7",
            "/supervisors/s1",
            "/nimbus/leader",
        ] {
            assert_eq!(ids(&daemon.acl_for(daemons_only)), [(ALL, d.as_str())]);
        }
        for shared in ["/transactional", "/transactional/tw/meta/1"] {
            assert_eq!(
                ids(&daemon.acl_for(shared)),
                [(ALL, d.as_str()), (READ_WRITE, &all)]
            );
        }
        let worker = ZkCredentials::Worker(wc.clone());
        assert_eq!(
            ids(&worker.acl_for("/errors/wc-1-7/split")),
            [(ALL, d.as_str()), (READ_WRITE, &w)]
        );
        assert_eq!(
            ids(&worker.acl_for("/transactional/tw")),
            [(ALL, d.as_str()), (READ_WRITE, &all)]
        );
    }

    #[test]
    fn workers_cannot_derive_each_other() {
        let a = WorkerIdentity::derive(DAEMON, "a-1-1");
        let b = WorkerIdentity::derive(DAEMON, "b-1-1");
        assert_ne!(a.topology_payload, b.topology_payload);
        assert_eq!(a.workers_payload, b.workers_payload);
        assert!(a.topology_payload.starts_with("topology.a-1-1:"));
        assert!(!a.to_env().contains("s3cret"));
        let back = WorkerIdentity::from_env("a-1-1", &a.to_env()).unwrap();
        assert!(back == a);
        let err = WorkerIdentity::from_env("b-1-1", &a.to_env()).unwrap_err();
        assert!(err.contains("b-1-1"), "{err}");
        assert!(WorkerIdentity::from_env("a-1-1", "x").is_err());
        assert!(WorkerIdentity::derive("squall:other", "a-1-1") != a);
    }
}
