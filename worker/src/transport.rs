//! Tuples between the workers of a topology over TCP: one transfer thread
//! sends every batch for a remote executor to the worker holding it (one
//! connection per peer, reconnecting with backoff), and a server thread per
//! inbound connection delivers batches to local executors.
//!
//! Batches for an unreachable peer are dropped; their tuple trees fail by
//! timeout and spouts replay them. Receivers never block on a full local
//! queue (they hold the overflow and keep reading), so two workers sending
//! to each other cannot deadlock on their connections; flow control across
//! workers rests on `topology.max.spout.pending`.

use crate::launch::Inbound;
use crate::message::{Envelope, TupleMsg};
use crate::wire::{decode_batch, encode_batch};
use serde_bytes::ByteBuf;
use squall_cluster::blocking::FramedStream;
use squall_cluster::frame::FrameError;
use squall_cluster::LogLimiter;
use std::collections::{HashMap, VecDeque};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The address (`host:port`) of the worker holding each executor, by
/// executor index; `None` for executors run here or unassigned. Updated
/// when the assignment changes.
pub type PeerMap = Arc<RwLock<Vec<Option<String>>>>;

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
/// A peer's fed frames are written once they reach this many bytes.
const FLUSH_BYTES: usize = 256 * 1024;

/// Frames of tuples: one batch (all for one executor) per frame, its
/// bytes written by [`crate::wire::encode_batch`].
type DataStream<In, Out> = FramedStream<TcpStream, In, Out>;

struct Peer {
    conn: Option<DataStream<(), ByteBuf>>,
    /// Tuples fed to `conn` and not yet written.
    unwritten: u64,
    retry_at: Instant,
    backoff: Duration,
}

/// Starts the transfer thread: takes batches from `queue` and sends each
/// to the worker holding its executor per `peers`.
pub fn start_transfer(
    queue: crossbeam_channel::Receiver<Envelope>,
    inbound: Inbound,
    peers: PeerMap,
    stats: Arc<TransportStats>,
    max_frame_bytes: usize,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("worker-transfer".into())
        .spawn(move || {
            let mut conns: HashMap<String, Peer> = HashMap::new();
            let mut round = Vec::with_capacity(MAX_ROUND_BATCHES);
            loop {
                match queue.recv_timeout(Duration::from_millis(200)) {
                    Ok(Envelope::Tuples(b)) => round.push(b),
                    Ok(Envelope::Wake) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if inbound.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        continue;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
                while round.len() < MAX_ROUND_BATCHES {
                    match queue.try_recv() {
                        Ok(Envelope::Tuples(b)) => round.push(b),
                        Ok(Envelope::Wake) => {}
                        Err(_) => break,
                    }
                }
                let mut sent = 0;
                for batch in round.drain(..) {
                    sent += batch.len() as u64;
                    feed_batch(batch, &inbound, &peers, &mut conns, &stats, max_frame_bytes);
                }
                for (addr, peer) in conns.iter_mut() {
                    flush_peer(addr, peer, &stats);
                }
                inbound.in_flight.fetch_sub(sent as i64, Ordering::AcqRel);
            }
        })
}

/// Feeds `batch` to the connection of the worker holding its executor,
/// connecting first if needed; counts it as dropped when that fails.
fn feed_batch(
    batch: Vec<TupleMsg>,
    inbound: &Inbound,
    peers: &PeerMap,
    conns: &mut HashMap<String, Peer>,
    stats: &TransportStats,
    max_frame_bytes: usize,
) {
    let Some(first) = batch.first() else {
        return;
    };
    let n = batch.len() as u64;
    let e = inbound.wiring.executor_of_task[first.dest.0 as usize] as usize;
    let addr = peers.read().unwrap_or_else(|p| p.into_inner())[e].clone();
    let Some(addr) = addr else {
        stats.dropped.fetch_add(n, Ordering::Relaxed);
        return;
    };
    if !conns.contains_key(&addr) {
        let peer = Peer {
            conn: None,
            unwritten: 0,
            retry_at: Instant::now(),
            backoff: MIN_BACKOFF,
        };
        conns.insert(addr.clone(), peer);
    }
    let peer = conns.get_mut(&addr).expect("inserted above");
    if peer.conn.is_none() && Instant::now() >= peer.retry_at {
        match connect(&addr) {
            Ok(s) => {
                tracing::info!(peer = %addr, "connected to peer worker");
                peer.conn = Some(FramedStream::new(s, max_frame_bytes));
                peer.backoff = MIN_BACKOFF;
            }
            Err(err) => {
                tracing::warn!(peer = %addr, "cannot reach peer worker: {err}; retry in {:?}", peer.backoff);
                peer.retry_at = Instant::now() + peer.backoff;
                peer.backoff = (peer.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    let Some(conn) = peer.conn.as_mut() else {
        stats.dropped.fetch_add(n, Ordering::Relaxed);
        return;
    };
    let mut bytes = Vec::with_capacity(batch.len() * 32);
    encode_batch(&batch, &mut bytes);
    match conn.feed(ByteBuf::from(bytes)) {
        Ok(()) => peer.unwritten += n,
        Err(err) => {
            tracing::warn!("cannot encode a batch for a peer worker: {err}; dropped");
            stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
    if conn.pending_bytes() >= FLUSH_BYTES {
        flush_peer(&addr, peer, stats);
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

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))?;
    let s = TcpStream::connect_timeout(&sa, Duration::from_secs(1))?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
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
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
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
                    let spawned = std::thread::Builder::new()
                        .name("worker-receive".into())
                        .spawn(move || {
                            let _guard = guard;
                            receive(stream, peer.to_string(), inbound, max_frame_bytes)
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

fn receive(stream: TcpStream, peer: String, inbound: Inbound, max_frame_bytes: usize) {
    if stream.set_nonblocking(false).is_err()
        || stream
            .set_read_timeout(Some(Duration::from_millis(5)))
            .is_err()
    {
        return;
    }
    let mut framed: DataStream<ByteBuf, ()> = FramedStream::new(stream, max_frame_bytes);
    let mut overflow: HashMap<usize, VecDeque<Vec<TupleMsg>>> = HashMap::new();
    loop {
        if inbound.stop.load(Ordering::Relaxed) {
            return;
        }
        drain(&mut overflow, &inbound);
        match framed.recv() {
            Ok(Some(bytes)) => match decode_batch(&bytes) {
                Ok(batch) => deliver(batch, &inbound, &mut overflow),
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
                ) => {}
            Err(e) => {
                tracing::warn!(%peer, "bad frame from peer worker: {e}; closing its connection");
                return;
            }
        }
    }
}

fn deliver(
    batch: Vec<TupleMsg>,
    inbound: &Inbound,
    overflow: &mut HashMap<usize, VecDeque<Vec<TupleMsg>>>,
) {
    // A sender batches by executor: the whole batch is usually for one
    // executor run here, and goes to it as it is.
    let executor = |t: &TupleMsg| {
        let e = *inbound.wiring.executor_of_task.get(t.dest.0 as usize)? as usize;
        (t.dest.0 != 0 && inbound.local[e]).then_some(e)
    };
    if let Some(e) = batch.first().and_then(executor) {
        if batch.iter().all(|t| executor(t) == Some(e)) {
            overflow.entry(e).or_default().push_back(batch);
            drain(overflow, inbound);
            return;
        }
    }
    let mut current: Option<(usize, Vec<TupleMsg>)> = None;
    for t in batch {
        let Some(e) = executor(&t) else {
            continue;
        };
        match &mut current {
            Some((ce, v)) if *ce == e => v.push(t),
            _ => {
                if let Some((ce, v)) = current.take() {
                    overflow.entry(ce).or_default().push_back(v);
                }
                current = Some((e, vec![t]));
            }
        }
    }
    if let Some((ce, v)) = current {
        overflow.entry(ce).or_default().push_back(v);
    }
    drain(overflow, inbound);
}

fn drain(overflow: &mut HashMap<usize, VecDeque<Vec<TupleMsg>>>, inbound: &Inbound) {
    for (e, q) in overflow.iter_mut() {
        while let Some(batch) = q.pop_front() {
            let n = batch.len() as i64;
            inbound.in_flight.fetch_add(n, Ordering::AcqRel);
            match inbound.wiring.queues[*e].try_send(Envelope::Tuples(batch)) {
                Ok(()) => {}
                Err(crossbeam_channel::TrySendError::Full(Envelope::Tuples(b))) => {
                    inbound.in_flight.fetch_sub(n, Ordering::AcqRel);
                    q.push_front(b);
                    break;
                }
                Err(_) => {
                    inbound.in_flight.fetch_sub(n, Ordering::AcqRel);
                }
            }
        }
    }
    overflow.retain(|_, q| !q.is_empty());
}
