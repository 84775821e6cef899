//! The Nimbus RPC: request and response messages (sent as
//! [`frame`](crate::frame)s), and [`NimbusClient`], a blocking client.

use crate::blocking::FramedStream;
use crate::frame::FrameError;
use crate::schema::{ErrorRecord, TopologyStatus, WorkerSlot};
use crate::tls::{Stream, Tls};
use crate::window_stats::WindowStats;
use serde::{Deserialize, Serialize};
use squall_topology_api::metrics::TopologyMetrics;
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::Config;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Bytes per upload or download chunk (well under the frame cap).
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Largest topology binary Nimbus stores and a daemon downloads, in bytes.
pub const MAX_BLOB_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// A client's request to Nimbus. (A submit is large and rare; boxing it
/// would only complicate the wire type.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Starts uploading a topology binary of `size` bytes whose sha256 is
    /// `sha256` (hex). Answered by [`Response::UploadSession`].
    BeginUpload {
        /// Total size in bytes.
        size: u64,
        /// Expected content hash, sha256 in lower-case hex.
        sha256: String,
    },
    /// The next chunk of an upload. Answered by [`Response::Ok`].
    UploadChunk {
        /// The session.
        session: String,
        /// The bytes, in order.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Ends an upload: Nimbus checks size and hash, then stores the blob
    /// under its hash. Answered by [`Response::Ok`].
    FinishUpload {
        /// The session.
        session: String,
    },
    /// Reads `len` bytes of blob `sha256` from `offset`. Answered by
    /// [`Response::Chunk`].
    Download {
        /// The blob's hash.
        sha256: String,
        /// Start, in bytes.
        offset: u64,
        /// Most bytes wanted.
        len: u32,
    },
    /// Submits a topology whose binary was uploaded.
    Submit {
        /// The topology's name (`^[^/.:\\]+$`, unique among live ones).
        name: String,
        /// Its structure.
        spec: TopologySpec,
        /// Its configuration.
        config: Config,
        /// sha256 of its binary in the blob store; `None` only for an
        /// in-process Nimbus (`LocalCluster`), whose workers are threads.
        binary_sha256: Option<String>,
        /// Arguments the binary is run with in worker mode.
        args: Vec<String>,
    },
    /// Kills a topology: deactivates it, waits `wait_secs` (default: its
    /// message timeout), then removes it.
    Kill {
        /// The topology's name.
        name: String,
        /// Seconds to wait before removing it.
        wait_secs: Option<u64>,
    },
    /// Lets a topology's spouts run.
    Activate {
        /// The topology's name.
        name: String,
    },
    /// Pauses a topology's spouts.
    Deactivate {
        /// The topology's name.
        name: String,
    },
    /// Deactivates a topology, waits `wait_secs` (default: its message
    /// timeout), reschedules it with new worker and executor counts, and
    /// restores its status.
    Rebalance {
        /// The topology's name.
        name: String,
        /// Seconds to wait first.
        wait_secs: Option<u64>,
        /// New worker count.
        workers: Option<u32>,
        /// New executor counts by component.
        executors: BTreeMap<String, u32>,
    },
    /// Lists live topologies.
    List,
    /// One topology in detail.
    Info {
        /// The topology's name.
        name: String,
    },
    /// The cluster: supervisors, slots, Nimbus leader.
    ClusterInfo,
    /// A supervisor's report of its running workers' latest heartbeats
    /// (Storm 2's `sendSupervisorWorkerHeartbeats`), sent to the leader
    /// every `supervisor.monitor.frequency.secs`; only from daemons
    /// (`nimbus.supervisor.users`) with security on. Answered by
    /// [`Response::Ok`]; [`ErrorKind::NotLeader`] from a standby.
    SupervisorHeartbeats {
        /// The reporting supervisor's id.
        supervisor_id: String,
        /// One heartbeat per running worker, as the worker wrote it.
        beats: Vec<crate::schema::WorkerHeartbeat>,
    },
    /// Changes a topology's log level overrides (Storm's `setLogConfig`);
    /// its workers apply them within a heartbeat period. Answered by
    /// [`Response::LogConfig`] with the result.
    SetLogConfig {
        /// The topology's name.
        name: String,
        /// What to set or remove, in order.
        changes: Vec<crate::log_config::LogChange>,
    },
    /// Turns event sampling of a topology's emitted tuples on or off, for
    /// one component or the whole topology (Storm's `debug`); its workers
    /// apply it within a heartbeat period. Answered by
    /// [`Response::Debug`] with the result.
    Debug {
        /// The topology's name.
        name: String,
        /// The component; `None`: the whole topology.
        component: Option<String>,
        /// On or off.
        enable: bool,
        /// Percentage of emitted tuples sampled, in (0, 100] when on.
        sampling_pct: f64,
    },
    /// A topology's log level overrides (Storm's `getLogConfig`).
    /// Answered by [`Response::LogConfig`].
    GetLogConfig {
        /// The topology's name.
        name: String,
    },
    /// The answering Nimbus's settings under Storm's key names, topology
    /// defaults included (Storm's `getNimbusConf`). Answered by
    /// [`Response::Configuration`].
    Configuration,
    /// The workers' latest heartbeats the leader holds (Storm's `storm
    /// heartbeats list`), of the topologies the caller may read. Answered
    /// by [`Response::Heartbeats`].
    ListHeartbeats,
    /// The topology binaries in the blob store (Storm's `storm blobstore
    /// list`): every one for admins and daemons, otherwise those of
    /// topologies the caller may change. Answered by [`Response::Blobs`].
    ListBlobs,
    /// `request` made for `principal` by a daemon that authenticated that
    /// user itself (the UI, by the user's bearer token); Nimbus accepts
    /// it only from `nimbus.supervisor.users` and authorizes `request` as
    /// `principal` (Storm's impersonation).
    OnBehalfOf {
        /// The user.
        principal: String,
        /// What the user asks.
        request: Box<Request>,
    },
}

/// Nimbus's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// An upload session was opened.
    UploadSession {
        /// Its id, for the chunks.
        session: String,
    },
    /// A chunk of a blob.
    Chunk {
        /// The bytes (empty past the end).
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        /// The blob's total size.
        total: u64,
    },
    /// A topology was submitted.
    Submitted {
        /// Its id.
        id: String,
    },
    /// Live topologies.
    Topologies(Vec<TopologySummary>),
    /// One topology.
    Info(Box<TopologyInfo>),
    /// The cluster.
    Cluster(ClusterSummary),
    /// A topology's log level overrides.
    LogConfig(crate::log_config::LogConfig),
    /// A topology's event sampling.
    Debug(crate::debug::TopologyDebug),
    /// Settings by Storm key name.
    Configuration(BTreeMap<String, squall_topology_api::Value>),
    /// Workers' latest heartbeats.
    Heartbeats(Vec<HeartbeatSummary>),
    /// Blobs in the blob store.
    Blobs(Vec<BlobSummary>),
    /// The request was refused.
    Error(RpcError),
}

/// What kind of refusal an [`RpcError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request is invalid (bad name, bad topology, bad parallelism).
    Invalid,
    /// No such topology, blob or session.
    NotFound,
    /// A live topology already has the name.
    AlreadyExists,
    /// This Nimbus is not the leader.
    NotLeader,
    /// Uploaded bytes do not match the announced hash or size.
    HashMismatch,
    /// Nimbus failed (cluster state unavailable, disk error).
    Internal,
    /// A limit is reached (open uploads); try again later.
    Busy,
    /// The caller's principal may not do this (security on).
    Unauthorized,
}

/// A refusal, with a message naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// The kind.
    pub kind: ErrorKind,
    /// One line for the user.
    pub message: String,
}

impl RpcError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// One row of `squall list` (Storm's columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySummary {
    /// Name.
    pub name: String,
    /// Id.
    pub id: String,
    /// Status.
    pub status: TopologyStatus,
    /// Tasks, ackers included.
    pub num_tasks: u32,
    /// Workers assigned.
    pub num_workers: u32,
    /// Executors, ackers included.
    pub num_executors: u32,
    /// Seconds since submission.
    pub uptime_secs: u64,
    /// How many Nimbuses hold the topology's binary (Storm's
    /// `replicationCount`; 1 for a topology without one).
    #[serde(default)]
    pub replication_count: u32,
    /// The principal that submitted it (security on); `None` otherwise.
    #[serde(default)]
    pub owner: Option<String>,
}

/// `squall` topology details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyInfo {
    /// The summary row.
    pub summary: TopologySummary,
    /// Executors (first task, last task) per component and their slots.
    pub executors: Vec<(String, u32, u32, WorkerSlot)>,
    /// Metrics from the latest worker heartbeats.
    pub metrics: TopologyMetrics,
    /// Last errors by component, newest last.
    pub errors: BTreeMap<String, Vec<String>>,
    /// The topology's structure.
    #[serde(default)]
    pub spec: Option<TopologySpec>,
    /// Its configuration.
    #[serde(default)]
    pub config: Option<Config>,
    /// Its workers: slot and start time (ms since the Unix epoch, 0 if not
    /// yet heard from).
    #[serde(default)]
    pub workers: Vec<(WorkerSlot, u64)>,
    /// The last errors of each component with their worker and time,
    /// oldest first.
    #[serde(default)]
    pub error_records: Vec<ErrorRecord>,
    /// Per-task counters within Storm's windows (10 min, 3 h, 1 day, all
    /// time, in that order), from the heartbeats Nimbus has seen.
    #[serde(default)]
    pub windows: Vec<WindowStats>,
    /// The log viewer of each supervisor running one of its workers:
    /// `http[s]://host:port` by supervisor id (none for a supervisor
    /// serving no log viewer).
    #[serde(default)]
    pub logviewers: BTreeMap<String, String>,
    /// Its event sampling.
    #[serde(default)]
    pub debug: crate::debug::TopologyDebug,
    /// Each component over the last 10 minutes, in 30 s points, oldest
    /// first (the UI's charts).
    #[serde(default)]
    pub series: BTreeMap<String, Vec<crate::series::SeriesPoint>>,
}

/// One worker's latest heartbeat, as Nimbus holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatSummary {
    /// The topology.
    pub topology_id: String,
    /// The worker's slot.
    pub slot: WorkerSlot,
    /// When it beat, ms since the Unix epoch (the worker's clock).
    pub time_ms: u64,
    /// When the worker started, ms since the Unix epoch.
    pub started_at_ms: u64,
    /// How many executors it runs.
    pub executors: usize,
}

/// One blob of Nimbus's blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobSummary {
    /// Its key: the content's sha256, lower-case hex.
    pub sha256: String,
    /// Its size, bytes.
    pub size: u64,
    /// Modified, ms since the Unix epoch.
    pub modified_ms: u64,
    /// The names of the live topologies that run it.
    pub topologies: Vec<String>,
}

/// A live supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorSummary {
    /// Its id.
    pub id: String,
    /// Its host.
    pub host: String,
    /// Its slots.
    pub slots: u32,
    /// Slots in use.
    pub used_slots: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Its log viewer's port at `host`, when it serves one.
    #[serde(default)]
    pub logviewer_port: Option<u16>,
}

/// The cluster as Nimbus sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// The leading Nimbus, `host:port`.
    pub leader: Option<String>,
    /// Live supervisors.
    pub supervisors: Vec<SupervisorSummary>,
    /// Seconds since the answering Nimbus started.
    #[serde(default)]
    pub nimbus_uptime_secs: u64,
}

/// Why a call to Nimbus failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No seed answered.
    #[error("cannot reach Nimbus at {addresses}: {reason}")]
    Unreachable {
        /// The addresses tried.
        addresses: String,
        /// The last error.
        reason: String,
    },
    /// The connection broke or carried a bad frame.
    #[error("Nimbus connection failed: {0}")]
    Frame(#[from] FrameError),
    /// A plaintext client got an answer that is not a frame: the server
    /// speaks TLS.
    #[error("Nimbus at {address} answered with something that is not a Squall frame ({error}); it may require TLS: set squall.security.enable and the squall.tls.* paths")]
    NotPlaintext {
        /// The server.
        address: String,
        /// The frame error.
        error: FrameError,
    },
    /// Nimbus closed the connection without answering.
    #[error("Nimbus closed the connection without answering")]
    Closed,
    /// Nimbus refused the request.
    #[error(transparent)]
    Refused(#[from] RpcError),
    /// Nimbus answered with a response of the wrong kind.
    #[error("unexpected answer from Nimbus: {0}")]
    Unexpected(String),
}

/// A blocking connection to one Nimbus.
pub struct NimbusClient {
    framed: FramedStream<Stream, Response, Request>,
    address: String,
    tls: bool,
}

/// How long a call may wait for its answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl NimbusClient {
    /// Connects to the first of `addresses` (`host:port`) that accepts, in
    /// plaintext (security off).
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] naming every address when none accepts.
    pub fn connect(addresses: &[String], max_frame_bytes: usize) -> Result<Self, ClientError> {
        Self::connect_with(addresses, max_frame_bytes, None)
    }

    /// Connects to the first of `addresses` (`host:port`) that accepts,
    /// over TLS as `tls` when given.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`] naming every address and why it failed
    /// (refused, TLS handshake: certificate refused either way) when none
    /// accepts.
    pub fn connect_with(
        addresses: &[String],
        max_frame_bytes: usize,
        tls: Option<&Tls>,
    ) -> Result<Self, ClientError> {
        let mut reason = "no address given".to_owned();
        for a in addresses {
            match connect_one(a, tls) {
                Ok(s) => {
                    return Ok(Self {
                        framed: FramedStream::new(s, max_frame_bytes),
                        address: a.clone(),
                        tls: tls.is_some(),
                    })
                }
                Err(e) => reason = format!("{a}: {e}"),
            }
        }
        Err(ClientError::Unreachable {
            addresses: addresses.join(", "),
            reason,
        })
    }

    /// Connects to the leading Nimbus among `addresses`: asks each in turn
    /// and keeps the first that does not answer [`ErrorKind::NotLeader`].
    ///
    /// # Errors
    /// As [`NimbusClient::connect`]; [`ClientError::Refused`] when every
    /// Nimbus answers that it is not the leader.
    pub fn connect_leader(
        addresses: &[String],
        max_frame_bytes: usize,
    ) -> Result<Self, ClientError> {
        Self::connect_leader_with(addresses, max_frame_bytes, None)
    }

    /// [`NimbusClient::connect_leader`] over TLS as `tls` when given.
    ///
    /// # Errors
    /// As [`NimbusClient::connect_leader`].
    pub fn connect_leader_with(
        addresses: &[String],
        max_frame_bytes: usize,
        tls: Option<&Tls>,
    ) -> Result<Self, ClientError> {
        let mut last = None;
        for a in addresses {
            let mut c = match Self::connect_with(std::slice::from_ref(a), max_frame_bytes, tls) {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match c.call(Request::ClusterInfo) {
                Ok(Response::Cluster(s)) if s.leader.as_deref() == Some(a.as_str()) => {
                    return Ok(c)
                }
                Ok(Response::Cluster(s)) => {
                    last = Some(ClientError::Refused(RpcError::new(
                        ErrorKind::NotLeader,
                        format!(
                            "Nimbus at {a} is not the leader (leader: {})",
                            s.leader.as_deref().unwrap_or("none")
                        ),
                    )))
                }
                Ok(other) => last = Some(ClientError::Unexpected(format!("{other:?}"))),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Unreachable {
            addresses: String::new(),
            reason: "no address given".into(),
        }))
    }

    /// The address this client is connected to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Sends `req` and waits for the answer; an [`Response::Error`] answer
    /// becomes [`ClientError::Refused`].
    pub fn call(&mut self, req: Request) -> Result<Response, ClientError> {
        self.framed.send(req)?;
        let got = self.framed.recv().map_err(|error| match error {
            FrameError::Io(_) => ClientError::Frame(error),
            error if !self.tls => ClientError::NotPlaintext {
                address: self.address.clone(),
                error,
            },
            error => ClientError::Frame(error),
        })?;
        match got {
            Some(Response::Error(e)) => Err(ClientError::Refused(e)),
            Some(r) => Ok(r),
            None => Err(ClientError::Closed),
        }
    }

    /// Sends `req` and expects [`Response::Ok`].
    pub fn call_ok(&mut self, req: Request) -> Result<(), ClientError> {
        match self.call(req)? {
            Response::Ok => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Uploads `data` (whose sha256 is `sha256`) in [`CHUNK_BYTES`] chunks,
    /// calling `progress(bytes sent)` after each.
    pub fn upload(
        &mut self,
        data: &[u8],
        sha256: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<(), ClientError> {
        let session = match self.call(Request::BeginUpload {
            size: data.len() as u64,
            sha256: sha256.to_owned(),
        })? {
            Response::UploadSession { session } => session,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let mut sent = 0u64;
        for chunk in data.chunks(CHUNK_BYTES) {
            self.call_ok(Request::UploadChunk {
                session: session.clone(),
                data: chunk.to_vec(),
            })?;
            sent += chunk.len() as u64;
            progress(sent);
        }
        self.call_ok(Request::FinishUpload { session })
    }

    /// Streams blob `sha256` into `sink` chunk by chunk ([`CHUNK_BYTES`]
    /// each), hashing as it goes, so the caller holds one chunk at a time
    /// however large the binary; returns its size in bytes.
    ///
    /// # Errors
    /// [`ClientError`] when a call fails or answers something else;
    /// [`ClientError::Unexpected`] when Nimbus announces a blob over
    /// [`MAX_BLOB_BYTES`], when the sink refuses a chunk, when Nimbus ends
    /// the blob short of the size it announced, or when the content does
    /// not hash to `sha256` (the sink then holds bytes that
    /// must not be used).
    pub fn download_into(
        &mut self,
        sha256: &str,
        sink: &mut dyn BlobSink,
    ) -> Result<u64, ClientError> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut received = 0u64;
        let mut announced = None;
        loop {
            let (data, total) = match self.call(Request::Download {
                sha256: sha256.to_owned(),
                offset: received,
                len: CHUNK_BYTES as u32,
            })? {
                Response::Chunk { data, total } => (data, total),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            };
            if announced.is_none() {
                if total > MAX_BLOB_BYTES {
                    return Err(ClientError::Unexpected(format!(
                        "blob {sha256} is announced at {total} bytes, over the {MAX_BLOB_BYTES} a binary may have"
                    )));
                }
                sink.begin(total).map_err(ClientError::Unexpected)?;
                announced = Some(total);
            }
            if announced != Some(total) {
                return Err(ClientError::Unexpected(format!(
                    "blob {sha256} changed size during the download ({announced:?} then {total} bytes)"
                )));
            }
            if data.is_empty() && received < total {
                return Err(ClientError::Unexpected(format!(
                    "blob {sha256} ended after {received} of its {total} bytes"
                )));
            }
            hasher.update(&data);
            sink.write(&data).map_err(ClientError::Unexpected)?;
            received += data.len() as u64;
            if received >= total {
                break;
            }
        }
        let got = hex(&hasher.finalize());
        if got != sha256 {
            return Err(ClientError::Unexpected(format!("content hashes to {got}")));
        }
        Ok(received)
    }
}

/// Where a supervisor sends its workers' heartbeats: the leading Nimbus
/// over RPC in a cluster, the in-process Nimbus in `LocalCluster`, the
/// simulation's network in a simulation.
pub trait HeartbeatReport: Send + Sync {
    /// Delivers `beats` from supervisor `supervisor_id`.
    ///
    /// # Errors
    /// Why they were not delivered (the next round sends newer ones).
    fn report(
        &self,
        supervisor_id: &str,
        beats: Vec<crate::schema::WorkerHeartbeat>,
    ) -> Result<(), String>;
}

/// Where a daemon gets a topology binary it lacks: the Nimbuses over RPC
/// ([`SeedFetch`]) in a cluster, something else in a simulation.
pub trait BlobFetch: Send + Sync {
    /// Streams binary `sha256` into `sink` (see [`BlobSink`]) and checks
    /// it against its hash; returns its size in bytes. Only after `Ok` may
    /// the caller keep what the sink holds.
    ///
    /// # Errors
    /// Why no source delivered it (the sink may hold a partial or wrong
    /// binary: the caller discards it).
    fn fetch(&self, sha256: &str, sink: &mut dyn BlobSink) -> Result<u64, String>;
}

/// Where a binary being fetched goes, chunk by chunk (a file being
/// written, an upload session), so that no daemon holds a whole binary
/// in memory.
pub trait BlobSink {
    /// Starts a binary of `total` bytes; what an earlier attempt (from
    /// another source) wrote is discarded.
    ///
    /// # Errors
    /// Why the sink cannot take it (the fetch stops).
    fn begin(&mut self, total: u64) -> Result<(), String>;

    /// Appends the next chunk.
    ///
    /// # Errors
    /// Why the sink cannot take it (the fetch stops).
    fn write(&mut self, chunk: &[u8]) -> Result<(), String>;
}

/// A binary held whole in memory (for tests and simulations): `begin`
/// empties it.
impl BlobSink for Vec<u8> {
    fn begin(&mut self, _total: u64) -> Result<(), String> {
        self.clear();
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// The Nimbuses at `addresses` (`host:port`), tried in turn
/// ([`download_from_any`]).
#[derive(Debug, Clone)]
pub struct SeedFetch {
    /// The Nimbuses.
    pub addresses: Vec<String>,
    /// The frame cap, bytes.
    pub max_frame_bytes: usize,
    /// This daemon's TLS identity, when security is on.
    pub tls: Option<Arc<Tls>>,
}

impl BlobFetch for SeedFetch {
    fn fetch(&self, sha256: &str, sink: &mut dyn BlobSink) -> Result<u64, String> {
        download_from_any(
            &self.addresses,
            sha256,
            sink,
            self.max_frame_bytes,
            self.tls.as_deref(),
        )
        .map_err(|e| e.to_string())
    }
}

/// Streams blob `sha256` into `sink` from the first of `addresses` that
/// delivers it whole with the right hash ([`NimbusClient::download_into`];
/// each attempt starts the sink over): any Nimbus serves downloads, so a
/// binary stays reachable while one Nimbus is down or lost its copy.
/// Returns its size in bytes.
///
/// # Errors
/// [`ClientError::Unreachable`] naming each address and why it failed
/// (unreachable, no such blob, cut short, wrong content) when none
/// delivered it.
pub fn download_from_any(
    addresses: &[String],
    sha256: &str,
    sink: &mut dyn BlobSink,
    max_frame_bytes: usize,
    tls: Option<&Tls>,
) -> Result<u64, ClientError> {
    let mut reasons = Vec::new();
    for a in addresses {
        let got = NimbusClient::connect_with(std::slice::from_ref(a), max_frame_bytes, tls)
            .and_then(|mut c| c.download_into(sha256, sink));
        match got {
            Ok(size) => return Ok(size),
            Err(e) => reasons.push(format!("{a}: {e}")),
        }
    }
    Err(ClientError::Unreachable {
        addresses: addresses.join(", "),
        reason: format!("binary {sha256} not downloaded: {}", reasons.join("; ")),
    })
}

fn connect_one(address: &str, tls: Option<&Tls>) -> Result<Stream, String> {
    use std::net::ToSocketAddrs;
    let mut last = "no address resolved".to_owned();
    for sa in address.to_socket_addrs().map_err(|e| e.to_string())? {
        match TcpStream::connect_timeout(&sa, Duration::from_secs(5)) {
            Ok(s) => {
                s.set_read_timeout(Some(CALL_TIMEOUT))
                    .and_then(|()| s.set_nodelay(true))
                    .map_err(|e| e.to_string())?;
                return match tls {
                    None => Ok(Stream::Plain(s)),
                    Some(tls) => tls.connect(s, &host_of(address)).map_err(|e| e.to_string()),
                };
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The host of `host:port` (an IPv6 address without its brackets).
pub fn host_of(address: &str) -> String {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// The content hash Squall uses for binaries: sha256, lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(data))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash of a topology's structure that workers check before they run
/// it: sha256 of its rmp-serde encoding (deterministic: maps are ordered).
pub fn spec_hash(spec: &TopologySpec) -> String {
    sha256_hex(&rmp_serde::to_vec_named(spec).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A peer on 127.0.0.1 that answers each download request with
    /// `chunks` in turn (a Nimbus gone wrong); its address.
    fn serving(chunks: Vec<(Vec<u8>, u64)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut framed: FramedStream<TcpStream, Request, Response> =
                FramedStream::new(s, 8 << 20);
            for (data, total) in chunks {
                if !matches!(framed.recv(), Ok(Some(Request::Download { .. }))) {
                    return;
                }
                let _ = framed.send(Response::Chunk { data, total });
            }
        });
        addr
    }

    fn download(chunks: Vec<(Vec<u8>, u64)>, sha256: &str) -> (Result<u64, String>, Vec<u8>) {
        let addr = serving(chunks);
        let mut sink = Vec::new();
        let got = NimbusClient::connect(&[addr], 8 << 20)
            .unwrap()
            .download_into(sha256, &mut sink)
            .map_err(|e| e.to_string());
        (got, sink)
    }

    #[test]
    fn a_download_takes_a_blob_in_chunks_and_refuses_a_bad_one() {
        let sha = sha256_hex(b"abcdef");
        let (got, sink) = download(vec![(b"abc".to_vec(), 6), (b"def".to_vec(), 6)], &sha);
        assert_eq!(got, Ok(6));
        assert_eq!(sink, b"abcdef");

        // Announced over the cap: refused before anything is written.
        let (got, sink) = download(vec![(b"abc".to_vec(), MAX_BLOB_BYTES + 1)], &sha);
        assert!(got.unwrap_err().contains("over the"), "huge");
        assert!(sink.is_empty());

        // Cut short, resized midway, or with other content.
        let (got, _) = download(vec![(b"abc".to_vec(), 6), (Vec::new(), 6)], &sha);
        assert!(got.unwrap_err().contains("ended after 3 of its 6 bytes"));
        let (got, _) = download(vec![(b"abc".to_vec(), 6), (b"def".to_vec(), 7)], &sha);
        assert!(got.unwrap_err().contains("changed size"));
        let (got, _) = download(vec![(b"abcdeg".to_vec(), 6)], &sha);
        assert!(got.unwrap_err().contains("content hashes to"));
    }
}
