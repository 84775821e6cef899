//! [`Nimbus`]: request handling over the cluster state and the blob store.

use crate::authz::{self, Access, Caller};
use crate::blobstore::BlobStore;
use crate::heartbeats::HeartbeatCache;
use crate::lifecycle::{self, Event, Lifecycle};
use crate::monitor::Monitor;
use crate::stats::StatsWindows;
use squall_cluster::debug::TopologyDebug;
use squall_cluster::log_config::{LogChange, LogConfig};
use squall_cluster::rpc::{
    spec_hash, BlobFetch, BlobSummary, ClusterSummary, ErrorKind, HeartbeatSummary, Request,
    Response, RpcError, SeedFetch, SupervisorSummary, TopologyInfo, TopologySummary,
};
use squall_cluster::schema::{TopologyRecord, TopologyStatus, WorkerHeartbeat};
use squall_cluster::tls::Tls;
use squall_cluster::{system_clock, ClusterState, SharedClock, StateError, StateStorage};
use squall_topology_api::spec::TopologySpec;
use squall_topology_api::{ClusterConfig, Config, TaskLayout, SYSTEM_PREFIX};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Whether `name` is a valid topology name: Storm's `^[^/.:\\]+$`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '.', ':', '\\'])
}

pub(crate) fn state_error(e: StateError) -> RpcError {
    RpcError::new(ErrorKind::Internal, format!("cluster state: {e}"))
}

/// The master daemon's logic, shared by its connection threads and its
/// monitor loop. Every mutation holds one lock, so requests and monitor
/// rounds see each other's writes whole.
pub struct Nimbus<S> {
    pub(crate) id: String,
    pub(crate) state: ClusterState<S>,
    pub(crate) blobs: BlobStore,
    pub(crate) config: ClusterConfig,
    pub(crate) lock: Mutex<Monitor>,
    stats: Mutex<StatsWindows>,
    heartbeats: Mutex<HeartbeatCache>,
    /// Whether the last monitor round found this Nimbus leading (it
    /// accepts heartbeats only then).
    leads: AtomicBool,
    started: Instant,
    counter: AtomicU64,
    /// Since when no leader was seen, ms since the Unix epoch.
    leaderless_since: Mutex<Option<u64>>,
    pub(crate) clock: SharedClock,
    pub(crate) peers: Box<dyn BlobFetch>,
    in_process: bool,
}

impl<S: StateStorage> Nimbus<S> {
    /// A Nimbus known to others as `id` (`host:port`).
    pub fn new(
        id: String,
        state: ClusterState<S>,
        blobs: BlobStore,
        config: ClusterConfig,
    ) -> Self {
        let peers = seed_fetch(&config, &id, None);
        Self {
            id,
            state,
            blobs,
            config,
            lock: Mutex::new(Monitor::default()),
            stats: Mutex::new(StatsWindows::default()),
            heartbeats: Mutex::new(HeartbeatCache::default()),
            leads: AtomicBool::new(false),
            started: Instant::now(),
            counter: AtomicU64::new(0),
            leaderless_since: Mutex::new(None),
            peers,
            clock: system_clock(),
            in_process: false,
        }
    }

    /// This Nimbus copying missing binaries from the other Nimbuses in
    /// `nimbus.seeds` over TLS as `tls`.
    pub fn with_tls(mut self, tls: Arc<Tls>) -> Self {
        self.peers = seed_fetch(&self.config, &self.id, Some(tls));
        self
    }

    /// This Nimbus reading the time from `clock` (a simulation's).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// This Nimbus copying missing binaries from `peers` instead of the
    /// other Nimbuses in `nimbus.seeds`.
    pub fn with_peers(mut self, peers: Box<dyn BlobFetch>) -> Self {
        self.peers = peers;
        self
    }

    /// Now, by this Nimbus's clock, ms since the Unix epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// This Nimbus for `LocalCluster`: it also accepts topologies without a
    /// binary, whose workers run as threads of the submitting process.
    pub fn in_process(mut self) -> Self {
        self.in_process = true;
        self
    }

    /// One round now: the leadership campaign (see
    /// [`Nimbus::campaign_round`]), then, while leading, timed kills and
    /// rebalances, liveness and scheduling (see [`Monitor`]).
    pub fn monitor_round(&self) {
        let campaigned = self.campaign_round();
        let mut guard = self.locked();
        // Confirmed again under the lock the round mutates under.
        let leads = campaigned && self.is_leader();
        if leads {
            guard.schedule_all(self, self.now_ms());
        } else {
            guard.stand_by();
        }
        self.leads.store(leads, Ordering::Release);
    }

    /// This Nimbus's id, `host:port`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn locked(&self) -> MutexGuard<'_, Monitor> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The windowed statistics.
    pub(crate) fn stats(&self) -> MutexGuard<'_, StatsWindows> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds a topology's heartbeats into its windowed statistics.
    pub(crate) fn observe(&self, topology_id: &str, beats: &[WorkerHeartbeat], now_ms: u64) {
        self.stats().observe(topology_id, beats, now_ms)
    }

    /// The workers' heartbeats this Nimbus holds.
    pub(crate) fn heartbeats(&self) -> MutexGuard<'_, HeartbeatCache> {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn leaderless_since(&self) -> MutexGuard<'_, Option<u64>> {
        self.leaderless_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this Nimbus holds the leader node now (read from the
    /// cluster state; false when it cannot be read).
    pub fn is_leader(&self) -> bool {
        self.state.holds_leadership(&self.id).unwrap_or(false)
    }

    /// Confirms from the cluster state that this Nimbus leads before a
    /// mutation; refuses it when another leads or the state is out of
    /// reach (a Nimbus that cannot confirm it leads changes nothing).
    fn require_leader(&self) -> Result<(), RpcError> {
        let confirmed = self.state.holds_leadership(&self.id).and_then(|held| {
            if held {
                Ok(None)
            } else {
                self.state.leader().map(Some)
            }
        });
        match confirmed {
            Ok(None) => Ok(()),
            Ok(Some(leader)) => Err(RpcError::new(
                ErrorKind::NotLeader,
                format!(
                    "Nimbus {} is not the leader (leader: {}); send this to the leader",
                    self.id,
                    leader.as_deref().unwrap_or("none elected yet")
                ),
            )),
            Err(e) => Err(RpcError::new(
                ErrorKind::NotLeader,
                format!(
                    "Nimbus {} cannot confirm that it leads ({e}); refusing to change the cluster",
                    self.id
                ),
            )),
        }
    }

    /// Answers one request from this process.
    pub fn handle(&self, req: Request) -> Response {
        self.handle_from("local", req)
    }

    /// Answers one request from `client` (its connection's peer address:
    /// per-client limits count by it), with security off.
    pub fn handle_from(&self, client: &str, req: Request) -> Response {
        self.handle_as(
            Caller {
                peer: client,
                principal: None,
            },
            req,
        )
    }

    /// Answers one request from `caller`, authorized by its principal
    /// when it has one (see [`crate::authz`]). Every mutation, allowed or
    /// not, is written to the audit log (target `squall::audit`): the
    /// principal, the operation, the topology and the outcome.
    pub fn handle_as(&self, caller: Caller<'_>, req: Request) -> Response {
        let audit = audited(&req);
        let caller_name = match &req {
            Request::OnBehalfOf { principal, .. } => {
                format!("{principal} (through {})", caller.name())
            }
            _ => caller.name().to_owned(),
        };
        let result = self.dispatch(caller, req);
        if let Some((op, topology)) = audit {
            let outcome = match &result {
                Ok(_) => "done".to_owned(),
                Err(e) => format!("refused ({:?}): {}", e.kind, e.message),
            };
            tracing::info!(
                target: "squall::audit",
                principal = caller_name,
                peer = caller.peer,
                op,
                topology,
                "audit: {outcome}"
            );
        }
        match result {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e.message, kind = ?e.kind, "request refused");
                Response::Error(e)
            }
        }
    }

    /// The live topology `name`, when `caller` may `access` it as `op`.
    fn authorized(
        &self,
        caller: Caller<'_>,
        name: &str,
        access: Access,
        op: &str,
    ) -> Result<(), RpcError> {
        let Some(principal) = caller.principal else {
            return Ok(());
        };
        let t = self.by_name(name)?;
        if authz::may(&self.config, principal, &t, access) {
            Ok(())
        } else {
            Err(authz::denied(principal, op, name))
        }
    }

    fn dispatch(&self, caller: Caller<'_>, req: Request) -> Result<Response, RpcError> {
        let client = caller.peer;
        if let Some(p) = caller.principal {
            authz::check_request(&self.config, p, &req)?;
        }
        match req {
            Request::BeginUpload { size, sha256 } => {
                self.require_leader()?;
                let session = self.blobs.begin(client, size, &sha256)?;
                Ok(Response::UploadSession { session })
            }
            Request::UploadChunk { session, data } => {
                self.blobs.chunk(&session, &data)?;
                Ok(Response::Ok)
            }
            Request::FinishUpload { session } => {
                self.blobs.finish(&session)?;
                Ok(Response::Ok)
            }
            Request::Download {
                sha256,
                offset,
                len,
            } => {
                if let Some(p) = caller.principal {
                    let live = self.state.topologies().map_err(state_error)?;
                    if !authz::may_download(&self.config, p, &sha256, &live) {
                        return Err(RpcError::new(
                            ErrorKind::Unauthorized,
                            format!("{p} may not download binary {sha256}: only daemons (nimbus.supervisor.users), admins and the users of a topology running it may"),
                        ));
                    }
                }
                let (data, total) = self.blobs.read(&sha256, offset, len)?;
                Ok(Response::Chunk { data, total })
            }
            Request::Submit {
                name,
                spec,
                config,
                binary_sha256,
                args,
            } => {
                let owner = caller.principal.map(str::to_owned);
                let id = self.submit(name, spec, config, binary_sha256, args, owner)?;
                Ok(Response::Submitted { id })
            }
            Request::Kill { name, wait_secs } => {
                self.require_leader()?;
                self.authorized(caller, &name, Access::Write, "kill")?;
                self.kill(&name, wait_secs)?;
                Ok(Response::Ok)
            }
            Request::Activate { name } => {
                self.require_leader()?;
                self.authorized(caller, &name, Access::Write, "activate")?;
                self.transition(&name, Event::Activate)?;
                Ok(Response::Ok)
            }
            Request::Deactivate { name } => {
                self.require_leader()?;
                self.authorized(caller, &name, Access::Write, "deactivate")?;
                self.transition(&name, Event::Deactivate)?;
                Ok(Response::Ok)
            }
            Request::Rebalance {
                name,
                wait_secs,
                workers,
                executors,
            } => {
                self.authorized(caller, &name, Access::Write, "rebalance")?;
                self.rebalance(&name, wait_secs, workers, executors)?;
                Ok(Response::Ok)
            }
            Request::SetLogConfig { name, changes } => {
                self.authorized(caller, &name, Access::Write, "set the log levels of")?;
                Ok(Response::LogConfig(self.set_log_config(&name, &changes)?))
            }
            Request::Debug {
                name,
                component,
                enable,
                sampling_pct,
            } => {
                self.authorized(caller, &name, Access::Write, "debug")?;
                Ok(Response::Debug(self.debug(
                    &name,
                    component.as_deref(),
                    enable,
                    sampling_pct,
                )?))
            }
            Request::GetLogConfig { name } => {
                self.authorized(caller, &name, Access::Read, "read")?;
                let t = self.by_name(&name)?;
                Ok(Response::LogConfig(t.log_config))
            }
            Request::Configuration => {
                let mut conf = Config::default().to_storm_map();
                conf.extend(self.config.to_storm_map());
                Ok(Response::Configuration(conf))
            }
            Request::ListHeartbeats => Ok(Response::Heartbeats(self.heartbeat_list(caller)?)),
            Request::ListBlobs => Ok(Response::Blobs(self.blob_list(caller)?)),
            Request::List => Ok(Response::Topologies(self.list(caller.principal)?)),
            Request::Info { name } => {
                self.authorized(caller, &name, Access::Read, "read")?;
                Ok(Response::Info(Box::new(self.info(&name)?)))
            }
            Request::ClusterInfo => Ok(Response::Cluster(self.cluster_info()?)),
            Request::SupervisorHeartbeats {
                supervisor_id,
                beats,
            } => {
                if !self.leads.load(Ordering::Acquire) {
                    return Err(RpcError::new(
                        ErrorKind::NotLeader,
                        format!(
                            "Nimbus {} is not the leader; send heartbeats to the leader",
                            self.id
                        ),
                    ));
                }
                self.heartbeats().record(&supervisor_id, beats)?;
                Ok(Response::Ok)
            }
            Request::OnBehalfOf { principal, request } => {
                let user = authz::on_behalf_of(&self.config, caller, &principal, &request)?;
                self.dispatch(user, *request)
            }
        }
    }

    fn total_slots(&self) -> Result<u32, RpcError> {
        Ok(self
            .state
            .supervisors()
            .map_err(state_error)?
            .iter()
            .map(|s| s.ports.len() as u32)
            .sum())
    }

    /// The live topology named `name`.
    pub(crate) fn by_name(&self, name: &str) -> Result<TopologyRecord, RpcError> {
        self.state
            .topologies()
            .map_err(state_error)?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                RpcError::new(ErrorKind::NotFound, format!("no topology named {name:?}"))
            })
    }

    fn submit(
        &self,
        name: String,
        spec: TopologySpec,
        mut config: Config,
        binary: Option<String>,
        args: Vec<String>,
        owner: Option<String>,
    ) -> Result<String, RpcError> {
        let invalid = |m: String| RpcError::new(ErrorKind::Invalid, m);
        if !valid_name(&name) {
            return Err(invalid(format!(
                "topology name {name:?} is invalid: it must be non-empty and contain none of / . : \\"
            )));
        }
        spec.validate_with_config(&config)
            .map_err(|e| invalid(format!("invalid topology {name:?}: {e}")))?;
        if let Some(c) = spec
            .components
            .keys()
            .find(|c| c.as_str().starts_with(SYSTEM_PREFIX))
        {
            return Err(invalid(format!(
                "component id {c} is reserved (ids starting with {SYSTEM_PREFIX:?} are Squall's)"
            )));
        }
        match &binary {
            Some(b) if !self.blobs.contains(b) => {
                return Err(RpcError::new(
                    ErrorKind::NotFound,
                    format!("binary {b} was not uploaded; run the topology with `squall jar`"),
                ))
            }
            None if !self.in_process => {
                return Err(invalid(
                    "no topology binary given; submit with `squall jar`, which uploads it".into(),
                ))
            }
            _ => {}
        }
        let mut guard = self.leading()?;
        if self.by_name(&name).is_ok() {
            return Err(RpcError::new(
                ErrorKind::AlreadyExists,
                format!("a topology named {name:?} is already running; kill it first"),
            ));
        }
        let slots = self.total_slots()?;
        if config.workers > slots {
            return Err(invalid(format!(
                "topology {name:?} wants {} workers but the cluster has {slots} free or used slots",
                config.workers
            )));
        }
        // Fix the acker count so a rebalance of workers keeps task ids.
        config.acker_executors = Some(config.effective_ackers());
        let now = self.now_ms();
        let id = format!(
            "{name}-{}-{}",
            self.counter.fetch_add(1, Ordering::Relaxed) + 1,
            now / 1000
        );
        let record = TopologyRecord {
            id: id.clone(),
            name,
            status: TopologyStatus::Active,
            spec_hash: spec_hash(&spec),
            spec,
            config,
            binary_hash: binary,
            submitted_at_ms: now,
            args,
            pending: None,
            secret: owner
                .is_some()
                .then(|| squall_cluster::rpc::hex(&rand::random::<[u8; 32]>())),
            owner,
            log_config: Default::default(),
            debug: Default::default(),
        };
        self.state.prepare_topology(&id).map_err(state_error)?;
        self.state.put_topology(&record).map_err(state_error)?;
        tracing::info!(topology = %id, "submitted");
        guard.schedule_all(self, now);
        Ok(id)
    }

    /// Takes the Nimbus lock, then confirms leadership: a mutation runs
    /// only while this Nimbus holds both, so no monitor round of its own
    /// interleaves and a Nimbus that lost leadership changes nothing.
    fn leading(&self) -> Result<MutexGuard<'_, Monitor>, RpcError> {
        let guard = self.locked();
        self.require_leader()?;
        Ok(guard)
    }

    /// Moves topology `name` through its lifecycle (see
    /// [`crate::lifecycle`]); a due action runs in a monitor round at once.
    fn transition(&self, name: &str, event: Event) -> Result<(), RpcError> {
        let mut guard = self.leading()?;
        let mut t = self.by_name(name)?;
        let now = self.now_ms();
        let current = Lifecycle {
            status: t.status,
            pending: t.pending.clone(),
        };
        let (next, _) = lifecycle::transition(&current, event, now)
            .map_err(|e| RpcError::new(ErrorKind::Invalid, format!("topology {name:?}: {e}")))?;
        let due = next.pending.as_ref().is_some_and(|p| p.at_ms() <= now);
        t.status = next.status;
        t.pending = next.pending;
        self.state.put_topology(&t).map_err(state_error)?;
        tracing::info!(topology = %t.id, status = ?t.status, pending = ?t.pending, "lifecycle");
        if due {
            guard.schedule_all(self, now);
        }
        Ok(())
    }

    /// Applies `changes` to topology `name`'s log level overrides (Storm's
    /// `setLogConfig`); its workers read them with its record.
    fn set_log_config(&self, name: &str, changes: &[LogChange]) -> Result<LogConfig, RpcError> {
        let _guard = self.leading()?;
        let mut t = self.by_name(name)?;
        t.log_config = t
            .log_config
            .with_changes(changes, self.now_ms())
            .map_err(|e| RpcError::new(ErrorKind::Invalid, format!("topology {name:?}: {e}")))?;
        self.state.put_topology(&t).map_err(state_error)?;
        tracing::info!(topology = %t.id, loggers = ?t.log_config.loggers, "log levels set");
        Ok(t.log_config)
    }

    fn debug(
        &self,
        name: &str,
        component: Option<&str>,
        enable: bool,
        pct: f64,
    ) -> Result<TopologyDebug, RpcError> {
        let _guard = self.leading()?;
        let mut t = self.by_name(name)?;
        if let Some(c) = component {
            if !t.spec.components.contains_key(c) {
                return Err(RpcError::new(
                    ErrorKind::Invalid,
                    format!("topology {name:?} has no component {c:?}"),
                ));
            }
        }
        t.debug = t
            .debug
            .with(component, enable, pct)
            .map_err(|e| RpcError::new(ErrorKind::Invalid, format!("topology {name:?}: {e}")))?;
        self.state.put_topology(&t).map_err(state_error)?;
        tracing::info!(topology = %t.id, component = component.unwrap_or("(all)"), enable, pct, "event sampling set");
        Ok(t.debug)
    }

    /// The leader's kept heartbeats of the topologies `caller` may read.
    fn heartbeat_list(&self, caller: Caller<'_>) -> Result<Vec<HeartbeatSummary>, RpcError> {
        self.require_leader()?;
        let live = self.state.topologies().map_err(state_error)?;
        let readable = self.visible(caller, &live, Access::Read);
        let beats = self.heartbeats();
        Ok(beats
            .all()
            .filter(|b| readable.contains(&b.topology_id))
            .map(|b| HeartbeatSummary {
                topology_id: b.topology_id.clone(),
                slot: b.slot.clone(),
                time_ms: b.time_ms,
                started_at_ms: b.started_at_ms,
                executors: b.executors.len(),
            })
            .collect())
    }

    /// The stored binaries `caller` may download (see
    /// [`authz::may_download`]; all with security off).
    fn blob_list(&self, caller: Caller<'_>) -> Result<Vec<BlobSummary>, RpcError> {
        let live = self.state.topologies().map_err(state_error)?;
        let mut out = Vec::new();
        for (sha256, size, modified_ms) in self.blobs.list()? {
            if let Some(p) = caller.principal {
                if !authz::may_download(&self.config, p, &sha256, &live) {
                    continue;
                }
            }
            let users: Vec<&TopologyRecord> = live
                .iter()
                .filter(|t| t.binary_hash.as_deref() == Some(sha256.as_str()))
                .collect();
            out.push(BlobSummary {
                sha256,
                size,
                modified_ms,
                topologies: users.iter().map(|t| t.name.clone()).collect(),
            });
        }
        Ok(out)
    }

    /// Ids of the topologies of `live` that `caller` may `access`.
    fn visible(
        &self,
        caller: Caller<'_>,
        live: &[TopologyRecord],
        access: Access,
    ) -> BTreeSet<String> {
        live.iter()
            .filter(|t| {
                caller
                    .principal
                    .is_none_or(|p| authz::may(&self.config, p, t, access))
            })
            .map(|t| t.id.clone())
            .collect()
    }

    fn kill(&self, name: &str, wait_secs: Option<u64>) -> Result<(), RpcError> {
        let t = self.by_name(name)?;
        let wait_secs = wait_secs.unwrap_or(t.config.message_timeout_secs);
        self.transition(name, Event::Kill { wait_secs })
    }

    fn rebalance(
        &self,
        name: &str,
        wait_secs: Option<u64>,
        workers: Option<u32>,
        executors: BTreeMap<String, u32>,
    ) -> Result<(), RpcError> {
        let t = self.by_name(name)?;
        let invalid = |m: String| RpcError::new(ErrorKind::Invalid, m);
        if let Some(w) = workers {
            let slots = self.total_slots()?;
            if w == 0 || w > slots {
                return Err(invalid(format!(
                    "cannot rebalance {name:?} to {w} workers: the cluster has {slots} slots"
                )));
            }
        }
        for (c, n) in &executors {
            let Some(spec) = t.spec.components.get(c.as_str()) else {
                return Err(invalid(format!("topology {name:?} has no component {c:?}")));
            };
            if *n == 0 || *n > spec.num_tasks {
                return Err(invalid(format!(
                    "component {c:?} has {} tasks, so its executors must be 1 to {}; got {n}",
                    spec.num_tasks, spec.num_tasks
                )));
            }
        }
        let wait_secs = wait_secs.unwrap_or(t.config.message_timeout_secs);
        self.transition(
            name,
            Event::Rebalance {
                wait_secs,
                workers,
                executors,
            },
        )
    }

    fn summary(&self, t: &TopologyRecord, now: u64) -> Result<TopologySummary, RpcError> {
        let ackers = t.config.effective_ackers();
        let layout = TaskLayout::new(&t.spec, ackers);
        let workers = self
            .state
            .assignment(&t.id)
            .map_err(state_error)?
            .map(|(a, _)| a.slots().len() as u32)
            .unwrap_or(0);
        Ok(TopologySummary {
            name: t.name.clone(),
            id: t.id.clone(),
            status: t.status,
            num_tasks: layout.num_tasks() as u32,
            num_workers: workers,
            num_executors: layout.executors().len() as u32,
            uptime_secs: now.saturating_sub(t.submitted_at_ms) / 1000,
            replication_count: match &t.binary_hash {
                Some(h) => self.state.blob_holders(h).map_err(state_error)?.len() as u32,
                None => 1,
            },
            owner: t.owner.clone(),
        })
    }

    /// The live topologies `principal` may see (all with security off).
    fn list(&self, principal: Option<&str>) -> Result<Vec<TopologySummary>, RpcError> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for t in self.state.topologies().map_err(state_error)? {
            if principal.is_some_and(|p| !authz::may(&self.config, p, &t, Access::Read)) {
                continue;
            }
            out.push(self.summary(&t, now)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn info(&self, name: &str) -> Result<TopologyInfo, RpcError> {
        let t = self.by_name(name)?;
        let now = self.now_ms();
        let summary = self.summary(&t, now)?;
        let assignment = self.state.assignment(&t.id).map_err(state_error)?;
        let executors: Vec<(String, u32, u32, squall_cluster::schema::WorkerSlot)> = assignment
            .as_ref()
            .map(|(a, _)| {
                a.executors
                    .iter()
                    .map(|(e, s)| {
                        (
                            e.component.0.clone(),
                            e.tasks.start,
                            e.tasks.end - 1,
                            s.clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let beats = self.heartbeats().of(&t.id);
        self.observe(&t.id, &beats, now);
        let workers = assignment
            .map(|(a, _)| {
                a.slots()
                    .into_iter()
                    .map(|s| {
                        let started = beats
                            .iter()
                            .find(|b| b.slot == s)
                            .map_or(0, |b| b.started_at_ms);
                        (s, started)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut metrics = squall_topology_api::metrics::TopologyMetrics::default();
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for hb in beats {
            for (task, m) in hb.metrics.tasks {
                if !m.errors.is_empty() {
                    errors
                        .entry(m.component.0.clone())
                        .or_default()
                        .extend(m.errors.iter().map(|e| format!("{e} (worker {})", hb.slot)));
                }
                metrics.tasks.insert(task, m);
            }
        }
        let mut error_records = Vec::new();
        for c in t.spec.components.keys() {
            if let Ok(list) = self.state.errors(&t.id, c.as_str()) {
                error_records.extend(list);
            }
        }
        error_records.sort_by_key(|e| e.time_ms);
        let windows = self.stats().windows(&t.id, now);
        let series = self.stats().series(&t.id, now);
        let scheme = if self.config.security_enable {
            "https"
        } else {
            "http"
        };
        let running: BTreeSet<&str> = executors.iter().map(|e| e.3.supervisor.as_str()).collect();
        let logviewers = self
            .state
            .supervisors()
            .map_err(state_error)?
            .into_iter()
            .filter(|s| running.contains(s.id.as_str()))
            .filter_map(|s| Some((s.id, format!("{scheme}://{}:{}", s.host, s.logviewer_port?))))
            .collect();
        Ok(TopologyInfo {
            summary,
            executors,
            metrics,
            errors,
            spec: Some(t.spec),
            config: Some(t.config),
            workers,
            error_records,
            windows,
            logviewers,
            debug: t.debug,
            series,
        })
    }

    fn cluster_info(&self) -> Result<ClusterSummary, RpcError> {
        let now = self.now_ms();
        let mut used: BTreeSet<(String, u16)> = BTreeSet::new();
        for t in self.state.topologies().map_err(state_error)? {
            if let Some((a, _)) = self.state.assignment(&t.id).map_err(state_error)? {
                used.extend(a.slots().into_iter().map(|s| (s.supervisor, s.port)));
            }
        }
        let supervisors = self
            .state
            .supervisors()
            .map_err(state_error)?
            .into_iter()
            .map(|s| SupervisorSummary {
                used_slots: s
                    .ports
                    .iter()
                    .filter(|p| used.contains(&(s.id.clone(), **p)))
                    .count() as u32,
                slots: s.ports.len() as u32,
                uptime_secs: now.saturating_sub(s.started_at_ms) / 1000,
                id: s.id,
                host: s.host,
                logviewer_port: s.logviewer_port,
            })
            .collect();
        Ok(ClusterSummary {
            leader: self.state.leader().map_err(state_error)?,
            supervisors,
            nimbus_uptime_secs: self.started.elapsed().as_secs(),
        })
    }
}

/// The other Nimbuses of `config.nimbus_seeds` than `id`, to copy
/// binaries from (over TLS as `tls`).
fn seed_fetch(config: &ClusterConfig, id: &str, tls: Option<Arc<Tls>>) -> Box<dyn BlobFetch> {
    Box::new(SeedFetch {
        addresses: config
            .nimbus_addresses()
            .into_iter()
            .filter(|a| a != id)
            .collect(),
        max_frame_bytes: config.nimbus_max_frame_bytes,
        tls,
    })
}

/// The audit entry of a mutation: its operation and topology (or blob).
fn audited(req: &Request) -> Option<(&'static str, String)> {
    Some(match req {
        Request::OnBehalfOf { request, .. } => return audited(request),
        Request::BeginUpload { sha256, .. } => ("upload", sha256.clone()),
        Request::Submit { name, .. } => ("submit", name.clone()),
        Request::Kill { name, .. } => ("kill", name.clone()),
        Request::Activate { name } => ("activate", name.clone()),
        Request::Deactivate { name } => ("deactivate", name.clone()),
        Request::Rebalance { name, .. } => ("rebalance", name.clone()),
        Request::SetLogConfig { name, .. } => ("set_log_level", name.clone()),
        Request::Debug { name, .. } => ("debug", name.clone()),
        _ => return None,
    })
}
