//! Tuples between the workers of a topology over TCP: one transfer thread
//! sends every batch for a remote executor to the worker holding it (one
//! connection per peer, reconnecting with backoff), and a server thread per
//! inbound connection delivers batches to local executors. Neither touches
//! a tuple: the sending executor encodes its batches
//! ([`crate::message::Encoded`]), the receiving thread reads only a
//! frame's head ([`crate::wire::head`]) to queue it for its executor, and
//! that executor decodes it.
//!
//! With security on ([`PeerAuth`]) every connection is mutual TLS between
//! certificates of the cluster's CA, and its first frame is the
//! topology's secret (issued by Nimbus at submit, Storm's worker tokens):
//! a process that is not a worker of this topology is closed before any
//! batch it sends is read.
//!
//! Batches for an unreachable peer are dropped; their tuple trees fail by
//! timeout and spouts replay them. A receiver whose executor's queue is
//! full waits for room at most [`HOLD_GRACE`]; then it holds the batch
//! and keeps reading, so two workers sending to each other cannot
//! deadlock on their connections. While a receiver holds batches for an
//! executor, its worker tells every peer (a backpressure frame on its own
//! connection to each) which tasks are backpressured, and their spouts
//! wait (see [`crate::backpressure`]). A queue that is full only for a
//! moment (its executor takes the next batch within the grace) thus never
//! pauses the spouts: TCP's own flow control covers the moment, as
//! Storm 2's periodic backpressure check
//! (`topology.backpressure.check.millis`) never sees it.
//! A receiver holding batches reads without blocking and waits on the full
//! queues instead, so an executor gets them the moment it has room; a
//! change of status wakes the transfer thread, so the peers hear of it at
//! once (not at the next backpressure check).

use crate::launch::Inbound;
use crate::message::{Encoded, Envelope};
use crate::wire::{encode_backpressure, head, Head};
use serde_bytes::ByteBuf;
use squall_cluster::blocking::FramedStream;
use squall_cluster::frame::FrameError;
use squall_cluster::rpc::host_of;
use squall_cluster::tls::{HandshakeError, Stream, Tls};
use squall_cluster::LogLimiter;
use squall_topology_api::TaskId;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The address (`host:port`) of the worker holding each executor, by
/// executor index; `None` for executors run here or unassigned. Updated
/// when the assignment changes.
pub type PeerMap = Arc<RwLock<Vec<Option<String>>>>;

/// The distinct addresses of the peer workers in `peers`, sorted.
pub fn distinct_peers(peers: &PeerMap) -> BTreeSet<String> {
    peers
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .flatten()
        .cloned()
        .collect()
}

/// Counters of the transport, for the worker's log.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Tuples dropped because their peer was unreachable.
    pub dropped: AtomicU64,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Batches gathered from the transfer queue before writing: the frames of
/// one round for a peer go out in one write.
const MAX_ROUND_BATCHES: usize = 64;
/// How long a round smaller than [`LINGER_BYTES`] waits for more batches
/// before it is written, while traffic is steady (Kafka's producer
/// `linger.ms`, in microseconds here; see [`linger_after`]). Fewer, larger
/// writes wake the receiving worker's thread less often: each wake costs
/// more than the bytes it reads. The wait adds at most this much to a
/// tuple's trip.
pub const TRANSFER_LINGER: Duration = Duration::from_micros(100);
/// A round of at least this many encoded bytes is written without
/// lingering.
const LINGER_BYTES: usize = 32 * 1024;
/// A peer's fed frames are written once they reach this many bytes.
const FLUSH_BYTES: usize = 256 * 1024;

/// Frames of tuples: one batch (all for one executor) per frame, its
/// bytes written by [`crate::wire::encode_batch`].
type DataStream<In, Out> = FramedStream<Stream, In, Out>;

/// How workers of a topology know each other when security is on.
#[derive(Clone)]
pub struct PeerAuth {
    /// The worker's TLS identity (its supervisor's).
    pub tls: Arc<Tls>,
    /// The topology's secret: a peer's first frame.
    pub secret: Arc<[u8]>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// How long a peer may take to send the topology's secret.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `a` and `b` are equal, in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Peer {
    conn: Option<DataStream<(), ByteBuf>>,
    /// Tuples fed to `conn` and not yet written.
    unwritten: u64,
    retry_at: Instant,
    backoff: Duration,
    /// The backpressured tasks last reported on `conn` (none for a new
    /// connection: its receiver knows of none); `None`: to be told again.
    reported: Option<Vec<u32>>,
}

impl Peer {
    fn new() -> Self {
        Self {
            conn: None,
            unwritten: 0,
            retry_at: Instant::now(),
            backoff: MIN_BACKOFF,
            reported: Some(Vec::new()),
        }
    }
}

/// How often an idle transfer thread looks for a change of backpressure
/// (Storm's `topology.backpressure.check.millis` is 50).
const BACKPRESSURE_CHECK: Duration = Duration::from_millis(20);
/// How often a worker with backpressured tasks tells every peer again (a
/// peer that restarted learns it).
const BACKPRESSURE_REPEAT: Duration = Duration::from_secs(1);

/// What the transfer thread last told its peers about backpressure.
struct Reporting {
    /// This worker's backpressured tasks.
    tasks: Vec<u32>,
    /// When every peer in the peer map was last told.
    broadcast_at: Option<Instant>,
}

/// Starts the transfer thread: takes batches from `queue` and sends each
/// to the worker holding its executor per `peers`.
pub fn start_transfer(
    queue: crossbeam_channel::Receiver<Envelope>,
    inbound: Inbound,
    peers: PeerMap,
    stats: Arc<TransportStats>,
    max_frame_bytes: usize,
    auth: Option<PeerAuth>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("worker-transfer".into())
        .spawn(move || {
            let mut conns: HashMap<String, Peer> = HashMap::new();
            let mut round = Vec::with_capacity(MAX_ROUND_BATCHES);
            let mut reporting = Reporting {
                tasks: Vec::new(),
                broadcast_at: None,
            };
            let link = Link {
                inbound: &inbound,
                peers: &peers,
                stats: &stats,
                max_frame_bytes,
                auth: auth.as_ref(),
            };
            let mut last_round = Instant::now();
            loop {
                report_backpressure(&link, &mut conns, &mut reporting);
                match queue.recv_timeout(BACKPRESSURE_CHECK) {
                    Ok(Envelope::Wake) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if inbound.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        continue;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    Ok(env) => round.extend(encoded(env, &inbound)),
                }
                gather(
                    &queue,
                    &mut round,
                    &inbound,
                    linger_after(last_round.elapsed()),
                );
                let mut sent = 0;
                for batch in round.drain(..) {
                    sent += batch.len as u64;
                    feed_batch(batch, &link, &mut conns);
                }
                for (addr, peer) in conns.iter_mut() {
                    flush_peer(addr, peer, &stats);
                }
                inbound.in_flight.fetch_sub(sent as i64, Ordering::AcqRel);
                last_round = Instant::now();
            }
        })
}

/// How long a round waits for more batches, `since_last` the previous
/// round was written: [`TRANSFER_LINGER`] while rounds follow each other
/// closer than that, else not at all, so a batch after a quiet spell goes
/// at once (Nagle's rule for TCP: hold small writes only while earlier
/// ones are recent).
fn linger_after(since_last: Duration) -> Duration {
    if since_last < TRANSFER_LINGER {
        TRANSFER_LINGER
    } else {
        Duration::ZERO
    }
}

/// Adds to `round` the batches waiting on `queue`, encoded, up to
/// [`MAX_ROUND_BATCHES`]; while the round holds fewer than
/// [`LINGER_BYTES`], waits up to `linger` (from the call) for more.
fn gather(
    queue: &crossbeam_channel::Receiver<Envelope>,
    round: &mut Vec<Encoded>,
    inbound: &Inbound,
    linger: Duration,
) {
    let until = Instant::now() + linger;
    let mut bytes: usize = round.iter().map(|b| b.bytes.len()).sum();
    while round.len() < MAX_ROUND_BATCHES {
        let env = match queue.try_recv() {
            Ok(env) => env,
            Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                let left = until.saturating_duration_since(Instant::now());
                if bytes >= LINGER_BYTES || left.is_zero() {
                    return;
                }
                match queue.recv_timeout(left) {
                    Ok(env) => env,
                    Err(_) => return,
                }
            }
        };
        if let Some(batch) = encoded(env, inbound) {
            bytes += batch.bytes.len();
            round.push(batch);
        }
    }
}

/// What the transfer thread sends by.
struct Link<'a> {
    inbound: &'a Inbound,
    peers: &'a PeerMap,
    stats: &'a TransportStats,
    max_frame_bytes: usize,
    auth: Option<&'a PeerAuth>,
}

/// `env` in its wire form: executors encode what they send to another
/// worker ([`crate::outbox`]); a batch of messages is encoded here.
fn encoded(env: Envelope, inbound: &Inbound) -> Option<Encoded> {
    let executor = |dest: TaskId| inbound.wiring.executor_of_task[dest.0 as usize] as usize;
    match env {
        Envelope::Encoded(batch) => Some(batch),
        Envelope::Tuples(t) => Some(Encoded::tuples(&t, executor(t.first()?.dest))),
        Envelope::Acks(a) => Some(Encoded::acks(&a, executor(a.first()?.dest))),
        Envelope::Wake => None,
    }
}

/// Feeds a batch (tuples or acks, all for one executor) to the connection
/// of the worker holding its executor, connecting first if needed; counts
/// it as dropped when that fails.
fn feed_batch(batch: Encoded, link: &Link<'_>, conns: &mut HashMap<String, Peer>) {
    let Link { peers, stats, .. } = *link;
    let n = batch.len as u64;
    let addr = peers.read().unwrap_or_else(|p| p.into_inner())[batch.executor].clone();
    let Some(addr) = addr else {
        stats.dropped.fetch_add(n, Ordering::Relaxed);
        return;
    };
    let peer = connected(&addr, link, conns);
    let Some(conn) = peer.conn.as_mut() else {
        stats.dropped.fetch_add(n, Ordering::Relaxed);
        return;
    };
    match conn.feed(ByteBuf::from(batch.bytes)) {
        Ok(()) => peer.unwritten += n,
        Err(err) => {
            tracing::warn!("cannot send a batch to a peer worker: {err}; dropped");
            stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
    if conn.pending_bytes() >= FLUSH_BYTES {
        flush_peer(&addr, peer, stats);
    }
}

/// The peer at `addr`, connected if it was not and its retry is due.
fn connected<'c>(
    addr: &str,
    link: &Link<'_>,
    conns: &'c mut HashMap<String, Peer>,
) -> &'c mut Peer {
    let peer = conns.entry(addr.to_owned()).or_insert_with(Peer::new);
    if peer.conn.is_none() && Instant::now() >= peer.retry_at {
        match connect(addr, link.auth, link.max_frame_bytes) {
            Ok(conn) => {
                tracing::info!(peer = %addr, "connected to peer worker");
                peer.conn = Some(conn);
                peer.backoff = MIN_BACKOFF;
                peer.reported = Some(Vec::new());
            }
            Err(err) => {
                tracing::warn!(peer = %addr, "cannot reach peer worker: {err}; retry in {:?}", peer.backoff);
                peer.retry_at = Instant::now() + peer.backoff;
                peer.backoff = (peer.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    peer
}

/// Tells peers which of this worker's tasks are backpressured: every peer
/// in the peer map when that changed (and again every
/// [`BACKPRESSURE_REPEAT`] while some are), and any connection made since
/// that was not told.
fn report_backpressure(
    link: &Link<'_>,
    conns: &mut HashMap<String, Peer>,
    reporting: &mut Reporting,
) {
    let bp = &link.inbound.backpressure;
    let changed = match bp.take_local_change(&link.inbound.layout) {
        Some(tasks) => {
            let changed = tasks != reporting.tasks;
            reporting.tasks = tasks;
            changed
        }
        None => false,
    };
    let repeat = !reporting.tasks.is_empty()
        && reporting
            .broadcast_at
            .is_none_or(|at| at.elapsed() >= BACKPRESSURE_REPEAT);
    if changed || repeat {
        reporting.broadcast_at = Some(Instant::now());
        for addr in distinct_peers(link.peers) {
            let peer = connected(&addr, link, conns);
            if repeat {
                peer.reported = None;
            }
        }
    }
    for (addr, peer) in conns.iter_mut() {
        if peer.conn.is_none() || peer.reported.as_ref() == Some(&reporting.tasks) {
            continue;
        }
        let mut bytes = Vec::with_capacity(16 + 4 * reporting.tasks.len());
        encode_backpressure(&reporting.tasks, &mut bytes);
        if let Some(conn) = peer.conn.as_mut() {
            if conn.feed(ByteBuf::from(bytes)).is_ok() {
                peer.reported = Some(reporting.tasks.clone());
            }
        }
        flush_peer(addr, peer, link.stats);
    }
}

/// Writes the frames fed to `peer`; on failure drops the connection (to be
/// made again at the next batch) and counts its tuples as dropped.
fn flush_peer(addr: &str, peer: &mut Peer, stats: &TransportStats) {
    let Some(conn) = peer.conn.as_mut() else {
        return;
    };
    if conn.pending_bytes() == 0 {
        return;
    }
    if let Err(err) = conn.flush() {
        tracing::warn!(peer = %addr, "sending to peer worker failed: {err}; reconnecting");
        stats.dropped.fetch_add(peer.unwritten, Ordering::Relaxed);
        peer.conn = None;
        peer.retry_at = Instant::now();
    }
    peer.unwritten = 0;
}

/// A connection to the peer worker at `addr`: over TLS, its first frame
/// the topology's secret, when `auth` is given.
fn connect(
    addr: &str,
    auth: Option<&PeerAuth>,
    max_frame_bytes: usize,
) -> Result<DataStream<(), ByteBuf>, String> {
    let sa = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    s.set_nodelay(true)
        .and_then(|()| s.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    let Some(auth) = auth else {
        return Ok(FramedStream::new(Stream::Plain(s), max_frame_bytes));
    };
    let stream = auth
        .tls
        .connect(s, &host_of(addr))
        .map_err(|e| e.to_string())?;
    let mut conn = FramedStream::new(stream, max_frame_bytes);
    conn.send(ByteBuf::from(auth.secret.to_vec()))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Peer connections a worker serves at once; more are closed at accept.
pub const MAX_PEER_CONNECTIONS: usize = 256;

/// Counts a receiving connection while it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts peer connections on `listener` and delivers their batches to
/// the local executors, at most [`MAX_PEER_CONNECTIONS`] at once (more are
/// closed, logged at most once per 10 s). Returns at once; threads end
/// when the worker stops.
pub fn start_server(
    listener: TcpListener,
    inbound: Inbound,
    max_frame_bytes: usize,
    auth: Option<PeerAuth>,
) -> std::io::Result<JoinHandle<()>> {
    serve(listener, inbound, max_frame_bytes, auth, HOLD_GRACE)
}

/// [`start_server`] with receivers that wait up to `grace` for room in a
/// full queue before holding a batch.
fn serve(
    listener: TcpListener,
    inbound: Inbound,
    max_frame_bytes: usize,
    auth: Option<PeerAuth>,
    grace: Duration,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    // One limiter per kind of refusal, so a burst of one kind does not
    // hide the other.
    let refusals = Arc::new(Mutex::new([
        LogLimiter::new(Duration::from_secs(10)),
        LogLimiter::new(Duration::from_secs(10)),
    ]));
    let open = Arc::new(AtomicUsize::new(0));
    let mut over_cap = LogLimiter::new(Duration::from_secs(10));
    let mut accept_errors = LogLimiter::new(Duration::from_secs(10));
    std::thread::Builder::new()
        .name("worker-accept".into())
        .spawn(move || loop {
            if inbound.stop.load(Ordering::Relaxed) {
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if open.load(Ordering::Acquire) >= MAX_PEER_CONNECTIONS {
                        if let Some(n) = over_cap.note(Instant::now()) {
                            tracing::warn!(
                                "{MAX_PEER_CONNECTIONS} peer connections open: closed {n} more since the last line"
                            );
                        }
                        continue;
                    }
                    open.fetch_add(1, Ordering::AcqRel);
                    let guard = Open(open.clone());
                    let inbound = inbound.clone();
                    let auth = auth.clone();
                    let refusals = refusals.clone();
                    let spawned = std::thread::Builder::new()
                        .name("worker-receive".into())
                        .spawn(move || {
                            let _guard = guard;
                            let peer = peer.to_string();
                            match accept(stream, auth.as_ref(), max_frame_bytes) {
                                Ok(framed) => receive(framed, peer, inbound, grace),
                                Err(r) => r.log(&peer, &refusals),
                            }
                        });
                    if let Err(e) = spawned {
                        tracing::error!("cannot start a receive thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    if let Some(n) = accept_errors.note(Instant::now()) {
                        tracing::warn!("accept failed ({n} times since the last line): {e}");
                    }
                    std::thread::sleep(Duration::from_millis(100))
                }
            }
        })
}

/// Why a peer connection was refused.
enum Refusal {
    /// Closed during the handshake, or a socket error (a port probe).
    Probe(String),
    /// The TLS handshake failed (plaintext, a certificate not of the CA).
    Handshake(String),
    /// The peer did not prove the topology's secret.
    Secret(String),
}

impl Refusal {
    /// Logs the refusal: a probe at debug, the others as warnings at most
    /// once per interval for each kind (`limiters`: handshake, secret).
    fn log(self, peer: &str, limiters: &Mutex<[LogLimiter; 2]>) {
        let (kind, e) = match self {
            Refusal::Probe(e) => return tracing::debug!(%peer, "{e}"),
            Refusal::Handshake(e) => (0, e),
            Refusal::Secret(e) => (1, e),
        };
        let mut l = limiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = l[kind].note(Instant::now()) {
            tracing::warn!(%peer, "refused a connection ({n} since the last line): {e}");
        }
    }
}

/// The receiving side of a peer connection: with `auth`, a TLS handshake
/// and then the topology's secret as the first frame (within
/// [`HELLO_TIMEOUT`]).
///
/// # Errors
/// Why the connection is refused.
fn accept(
    stream: TcpStream,
    auth: Option<&PeerAuth>,
    max_frame_bytes: usize,
) -> Result<DataStream<ByteBuf, ()>, Refusal> {
    let probe = |e: std::io::Error| Refusal::Probe(e.to_string());
    stream.set_nonblocking(false).map_err(probe)?;
    let framed = match auth {
        None => FramedStream::new(Stream::Plain(stream), max_frame_bytes),
        Some(auth) => {
            let (stream, principal) = auth.tls.accept(stream).map_err(|e| match e {
                HandshakeError::Closed | HandshakeError::Io(_) => Refusal::Probe(e.to_string()),
                HandshakeError::Tls(_) => Refusal::Handshake(e.to_string()),
            })?;
            stream
                .tcp()
                .set_read_timeout(Some(HELLO_TIMEOUT))
                .map_err(probe)?;
            let mut framed = FramedStream::new(stream, max_frame_bytes);
            let hello: Option<ByteBuf> = framed.recv().map_err(|e| {
                Refusal::Secret(format!("{principal} sent no topology secret: {e}"))
            })?;
            if !hello.is_some_and(|h| same_secret(&h, &auth.secret)) {
                return Err(Refusal::Secret(format!(
                    "{principal} is not a worker of this topology (wrong topology secret)"
                )));
            }
            framed
        }
    };
    framed
        .get_ref()
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(5)))
        .map_err(probe)?;
    Ok(framed)
}

/// Clears what a connection held and reported once it ends.
struct Held<'a> {
    inbound: &'a Inbound,
    connection: u64,
    /// Executors this connection holds batches for.
    executors: Vec<usize>,
}

impl Held<'_> {
    /// Tells the worker's [`crate::backpressure::Backpressure`] which
    /// executors this connection now holds batches for.
    fn update(&mut self, overflow: &Overflow) {
        let bp = &self.inbound.backpressure;
        self.executors.retain(|e| {
            let still = overflow.contains_key(e);
            if !still {
                bp.set_holding(*e, false);
            }
            still
        });
        for &e in overflow.keys() {
            if !self.executors.contains(&e) {
                bp.set_holding(e, true);
                self.executors.push(e);
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for &e in &self.executors {
            self.inbound.backpressure.set_holding(e, false);
        }
        self.inbound
            .backpressure
            .report(self.connection, Vec::new());
    }
}

/// What a connection holds for local executors whose queues were full, in
/// order, by executor index.
type Overflow = HashMap<usize, VecDeque<Envelope>>;

fn receive(mut framed: DataStream<ByteBuf, ()>, peer: String, inbound: Inbound, grace: Duration) {
    let mut overflow: Overflow = HashMap::new();
    let mut held = Held {
        connection: inbound.backpressure.connection_id(),
        inbound: &inbound,
        executors: Vec::new(),
    };
    let mut nonblocking = false;
    loop {
        if inbound.stop.load(Ordering::Relaxed) {
            return;
        }
        drain(&mut overflow, &inbound);
        // Holding batches, the thread reads without waiting and waits on
        // the full queues instead: their executor gets the held batches
        // the moment it has room, not at the next read timeout.
        let holding = !overflow.is_empty();
        if holding != nonblocking {
            if let Err(e) = framed.get_ref().tcp().set_nonblocking(holding) {
                tracing::warn!(%peer, "cannot set its connection's mode: {e}; closing it");
                return;
            }
            nonblocking = holding;
        }
        match framed.recv() {
            Ok(Some(bytes)) => match head(&bytes) {
                Ok(Head::Messages { task, len }) => {
                    deliver(bytes.into_vec(), task, len, &inbound, &mut overflow, grace)
                }
                Ok(Head::Empty) => {}
                Ok(Head::Backpressure(tasks)) => {
                    inbound.backpressure.report(held.connection, tasks)
                }
                Err(e) => {
                    tracing::warn!(%peer, "{e}; closing its connection");
                    return;
                }
            },
            Ok(None) => return,
            Err(FrameError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if holding {
                    wait_for_room(&overflow, &inbound);
                }
            }
            Err(e) => {
                tracing::warn!(%peer, "bad frame from peer worker: {e}; closing its connection");
                return;
            }
        }
        if held.executors.len() != overflow.len()
            || held.executors.iter().any(|e| !overflow.contains_key(e))
        {
            held.update(&overflow);
        }
    }
}

/// Queues a frame of `len` messages whose first is for task `task` for
/// that task's executor, waiting up to `grace` for room when nothing is
/// held for it, else holding it behind what is; then sends what the
/// queues take. A frame for a task not run here is dropped. The executor
/// decodes the frame: a sender batches by executor, and the executor
/// drops a message for a task not its own.
fn deliver(
    bytes: Vec<u8>,
    task: TaskId,
    len: usize,
    inbound: &Inbound,
    overflow: &mut Overflow,
    grace: Duration,
) {
    let executor = inbound
        .wiring
        .executor_of_task
        .get(task.0 as usize)
        .map(|&e| e as usize)
        .filter(|&e| task.0 != 0 && inbound.local[e]);
    if let Some(executor) = executor {
        let batch = Envelope::Encoded(Encoded {
            bytes,
            len,
            executor,
        });
        let queue = &inbound.wiring.queues[executor];
        let full = if overflow.contains_key(&executor) {
            // Behind the held ones, in order.
            Some(batch)
        } else {
            send_within(batch, queue, &inbound.in_flight, grace)
        };
        if let Some(batch) = full {
            overflow.entry(executor).or_default().push_back(batch);
        }
    }
    drain(overflow, inbound);
}

/// How long a receiving thread waits for room in a full executor queue
/// before it holds the batch (and the executor becomes backpressured).
/// An executor takes a batch in well under a millisecond, so only a queue
/// that stays full is reported; the wait is bounded, so the thread soon
/// reads its connection again.
pub const HOLD_GRACE: Duration = Duration::from_millis(1);

/// Sends `batch` to `queue`, counted in `in_flight` (while it waits too),
/// waiting up to `grace` for room (not at all when zero). Returns the
/// batch if the queue stayed full; a batch for a queue whose executor
/// ended is dropped.
fn send_within(
    batch: Envelope,
    queue: &crossbeam_channel::Sender<Envelope>,
    in_flight: &AtomicI64,
    grace: Duration,
) -> Option<Envelope> {
    use crossbeam_channel::{SendTimeoutError, TrySendError};
    let n = batch.len() as i64;
    in_flight.fetch_add(n, Ordering::AcqRel);
    let refused = if grace.is_zero() {
        match queue.try_send(batch) {
            Ok(()) => return None,
            Err(TrySendError::Full(batch)) => Some(batch),
            Err(TrySendError::Disconnected(_)) => None,
        }
    } else {
        match queue.send_timeout(batch, grace) {
            Ok(()) => return None,
            Err(SendTimeoutError::Timeout(batch)) => Some(batch),
            Err(SendTimeoutError::Disconnected(_)) => None,
        }
    };
    in_flight.fetch_sub(n, Ordering::AcqRel);
    refused
}

/// How long a receiving thread holding batches waits for room in the full
/// queues before it reads its connection again.
const HOLD_WAIT: Duration = Duration::from_millis(1);

/// Blocks until a queue the connection holds batches for has room, or for
/// [`HOLD_WAIT`].
fn wait_for_room(overflow: &Overflow, inbound: &Inbound) {
    let mut select = crossbeam_channel::Select::new();
    for &e in overflow.keys() {
        select.send(&inbound.wiring.queues[e]);
    }
    let _ = select.ready_timeout(HOLD_WAIT);
}

fn drain(overflow: &mut Overflow, inbound: &Inbound) {
    for (e, q) in overflow.iter_mut() {
        let queue = &inbound.wiring.queues[*e];
        while let Some(batch) = q.pop_front() {
            if let Some(batch) = send_within(batch, queue, &inbound.in_flight, Duration::ZERO) {
                q.push_front(batch);
                break;
            }
        }
    }
    overflow.retain(|_, q| !q.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backpressure::Backpressure;
    use crate::message::TupleMsg;
    use crate::outbox::Wiring;
    use squall_topology_api::spec::TopologySpec;
    use squall_topology_api::{MessageId, TaskLayout, Value};
    use std::sync::atomic::{AtomicBool, AtomicI64};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A frame of one tuple for task 1.
    fn frame(n: i64) -> ByteBuf {
        let t = TupleMsg {
            dest: TaskId(1),
            source: TaskId(2),
            stream: 0,
            values: vec![Value::Int(n)].into(),
            message_id: MessageId::untracked(),
        };
        ByteBuf::from(Encoded::tuples(&[t], 0).bytes)
    }

    /// The first tuple's value in a batch taken from an executor's queue.
    fn first_value(env: Envelope) -> Value {
        let Envelope::Encoded(batch) = env else {
            panic!("expected an encoded batch");
        };
        let mut first = None;
        crate::wire::decode_each(&batch.bytes, |m| {
            if let (crate::wire::Message::Tuple(t), None) = (m, &first) {
                first = Some(t.values.0[0].clone());
            }
        })
        .unwrap();
        first.unwrap()
    }

    /// An executor whose queue stays full is held for, and its batches
    /// follow as it drains.
    #[test]
    fn a_held_executor_gets_its_batches_as_it_drains_and_the_transfer_thread_is_woken() {
        let (inbound, queue, transfer, addr) = worker(HOLD_GRACE);
        let (stop, bp) = (inbound.stop.clone(), inbound.backpressure.clone());
        let mut conn = connect(&addr, None, 1 << 20).unwrap();
        for n in 0..3 {
            conn.send(frame(n)).unwrap();
        }
        // The queue takes one batch; the others are held, and the transfer
        // thread is woken to report it.
        assert!(matches!(
            transfer.recv_timeout(DEADLINE),
            Ok(Envelope::Wake)
        ));
        assert!(bp.is_held(0));
        // As the executor takes batches, the held ones follow in order
        // though the peer sends nothing more; once none is held, the
        // transfer thread is woken again.
        for n in 0..3 {
            assert_eq!(
                first_value(queue.recv_timeout(DEADLINE).unwrap()),
                Value::Int(n)
            );
        }
        wait_until("nothing held", || !bp.is_held(0));
        assert!(matches!(
            transfer.recv_timeout(DEADLINE),
            Ok(Envelope::Wake)
        ));
        stop.store(true, Ordering::Release);
    }

    /// A batch of `bytes` bytes for executor 1 (another worker's).
    fn batch(bytes: usize) -> Encoded {
        Encoded {
            bytes: vec![0; bytes],
            len: 1,
            executor: 1,
        }
    }

    /// A small round waits for more batches, and goes as soon as it holds
    /// [`LINGER_BYTES`]; a round already that large goes at once; with
    /// nothing more coming, a round goes when the linger ends.
    #[test]
    fn a_small_round_lingers_for_more_batches_until_it_is_large_enough() {
        let (inbound, _queue, _transfer, _addr) = worker(HOLD_GRACE);
        let (tx, rx) = crossbeam_channel::bounded(16);
        let long = DEADLINE * 2;
        // The sender waits until the round's first batch is taken, so
        // the later ones reach only a thread that lingers.
        tx.send(Envelope::Encoded(batch(100))).unwrap();
        let sender = std::thread::spawn(move || {
            wait_until("first batch taken", || tx.is_empty());
            tx.send(Envelope::Wake).unwrap();
            tx.send(Envelope::Encoded(batch(200))).unwrap();
            tx.send(Envelope::Encoded(batch(LINGER_BYTES))).unwrap();
            tx
        });
        let mut round = vec![batch(10)];
        let started = Instant::now();
        gather(&rx, &mut round, &inbound, long);
        let sizes: Vec<usize> = round.iter().map(|b| b.bytes.len()).collect();
        assert_eq!(sizes, [10, 100, 200, LINGER_BYTES]);
        assert!(
            started.elapsed() < DEADLINE,
            "waited past {LINGER_BYTES} bytes"
        );
        let tx = sender.join().unwrap();

        let mut round = vec![batch(LINGER_BYTES)];
        let started = Instant::now();
        gather(&rx, &mut round, &inbound, long);
        assert_eq!(round.len(), 1);
        assert!(started.elapsed() < DEADLINE, "a large round lingered");

        tx.send(Envelope::Encoded(batch(5))).unwrap();
        let mut round = vec![batch(10)];
        gather(&rx, &mut round, &inbound, Duration::from_millis(1));
        assert_eq!(round.len(), 2);
    }

    /// Rounds that follow each other closely linger; the first after a
    /// quiet spell goes at once.
    #[test]
    fn only_steady_traffic_lingers() {
        assert_eq!(linger_after(Duration::from_micros(10)), TRANSFER_LINGER);
        assert_eq!(linger_after(TRANSFER_LINGER), Duration::ZERO);
        assert_eq!(linger_after(Duration::from_secs(1)), Duration::ZERO);
    }

    /// A worker's receiving side, its receivers waiting up to `grace` for
    /// room: task 1 on executor 0, run here with a queue of one batch; task
    /// 2 on executor 1, in another worker, whose queue is the transfer
    /// queue. Returns the worker, executor 0's queue, the transfer queue
    /// and the address it listens on.
    fn worker(grace: Duration) -> (Inbound, Receiver, Receiver, String) {
        let (tx, queue) = crossbeam_channel::bounded(1);
        let (transfer_tx, transfer) = crossbeam_channel::bounded(16);
        let inbound = Inbound {
            wiring: Arc::new(Wiring::new(
                vec![tx, transfer_tx.clone()],
                vec![0, 0, 1],
                vec![false, true],
            )),
            in_flight: Arc::new(AtomicI64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            local: Arc::new(vec![true, false]),
            layout: Arc::new(TaskLayout::new(&TopologySpec::default(), 0)),
            backpressure: Arc::new(Backpressure::new(2, 2).with_transfer(transfer_tx)),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        serve(listener, inbound.clone(), 1 << 20, None, grace).unwrap();
        (inbound, queue, transfer, addr)
    }

    type Receiver = crossbeam_channel::Receiver<Envelope>;

    /// Waits until `cond` holds, failing after [`DEADLINE`].
    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A queue that is full when a batch arrives, and takes it within the
    /// grace, never makes its executor backpressured: the receiver waits
    /// for room (the batch counted in flight meanwhile) instead of holding
    /// it and pausing the peers' spouts.
    #[test]
    fn a_queue_full_for_less_than_the_grace_is_not_backpressured() {
        let (inbound, queue, transfer, addr) = worker(DEADLINE);
        let mut conn = connect(&addr, None, 1 << 20).unwrap();
        for n in 0..3 {
            conn.send(frame(n)).unwrap();
        }
        // Batch 0 is queued; the receiver read batch 1 and waits for room.
        wait_until("batch 1 waiting for room", || {
            inbound.in_flight.load(Ordering::Acquire) == 2
        });
        assert!(!inbound.backpressure.is_held(0));
        for n in 0..3 {
            assert_eq!(
                first_value(queue.recv_timeout(DEADLINE).unwrap()),
                Value::Int(n)
            );
        }
        assert!(!inbound.backpressure.is_held(0));
        assert!(
            transfer.try_recv().is_err(),
            "the peers were told of backpressure"
        );
        inbound.stop.store(true, Ordering::Release);
    }
}
