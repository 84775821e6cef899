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
use serde::{Deserialize, Serialize};
use squall_cluster::blocking::FramedStream;
use squall_cluster::frame::FrameError;
use squall_topology_api::{MessageId, TaskId, Values};
use std::collections::{HashMap, VecDeque};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One tuple on the wire: `(dest task, source task, stream index, values,
/// message id)`, an array rather than a map to keep frames small.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireTuple(pub u32, pub u32, pub u32, pub Values, pub MessageId);

impl From<TupleMsg> for WireTuple {
    fn from(m: TupleMsg) -> Self {
        Self(m.dest.0, m.source.0, m.stream, m.values, m.message_id)
    }
}

impl From<WireTuple> for TupleMsg {
    fn from(w: WireTuple) -> Self {
        Self {
            dest: TaskId(w.0),
            source: TaskId(w.1),
            stream: w.2,
            values: w.3,
            message_id: w.4,
        }
    }
}

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

struct Peer {
    conn: Option<FramedStream<TcpStream, (), Vec<WireTuple>>>,
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
            loop {
                let batch = match queue.recv_timeout(Duration::from_millis(200)) {
                    Ok(Envelope::Tuples(b)) => b,
                    Ok(Envelope::Wake) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                        if inbound.stop.load(Ordering::Relaxed) {
                            return;
                        }
                        continue;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                };
                let n = batch.len() as u64;
                if !send_batch(batch, &inbound, &peers, &mut conns, max_frame_bytes) {
                    stats.dropped.fetch_add(n, Ordering::Relaxed);
                }
                inbound.in_flight.fetch_sub(n as i64, Ordering::AcqRel);
            }
        })
}

fn send_batch(
    batch: Vec<TupleMsg>,
    inbound: &Inbound,
    peers: &PeerMap,
    conns: &mut HashMap<String, Peer>,
    max_frame_bytes: usize,
) -> bool {
    let Some(first) = batch.first() else {
        return true;
    };
    let e = inbound.wiring.executor_of_task[first.dest.0 as usize] as usize;
    let Some(addr) = peers.read().unwrap_or_else(|p| p.into_inner())[e].clone() else {
        return false;
    };
    let peer = conns.entry(addr.clone()).or_insert(Peer {
        conn: None,
        retry_at: Instant::now(),
        backoff: MIN_BACKOFF,
    });
    if peer.conn.is_none() {
        if Instant::now() < peer.retry_at {
            return false;
        }
        match connect(&addr) {
            Ok(s) => {
                tracing::info!(peer = %addr, "connected to peer worker");
                peer.conn = Some(FramedStream::new(s, max_frame_bytes));
                peer.backoff = MIN_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(peer = %addr, "cannot reach peer worker: {e}; retry in {:?}", peer.backoff);
                peer.retry_at = Instant::now() + peer.backoff;
                peer.backoff = (peer.backoff * 2).min(MAX_BACKOFF);
                return false;
            }
        }
    }
    let wire: Vec<WireTuple> = batch.into_iter().map(WireTuple::from).collect();
    let conn = peer.conn.as_mut().expect("connected above");
    match conn.send(wire) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(peer = %addr, "sending to peer worker failed: {e}; reconnecting");
            peer.conn = None;
            peer.retry_at = Instant::now();
            false
        }
    }
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

/// Accepts peer connections on `listener` and delivers their batches to
/// the local executors. Returns at once; threads end when the worker stops.
pub fn start_server(
    listener: TcpListener,
    inbound: Inbound,
    max_frame_bytes: usize,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("worker-accept".into())
        .spawn(move || loop {
            if inbound.stop.load(Ordering::Relaxed) {
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    let inbound = inbound.clone();
                    let spawned = std::thread::Builder::new()
                        .name("worker-receive".into())
                        .spawn(move || receive(stream, peer.to_string(), inbound, max_frame_bytes));
                    if let Err(e) = spawned {
                        tracing::error!("cannot start a receive thread: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(20))
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
    let mut framed: FramedStream<TcpStream, Vec<WireTuple>, ()> =
        FramedStream::new(stream, max_frame_bytes);
    let mut overflow: HashMap<usize, VecDeque<Vec<TupleMsg>>> = HashMap::new();
    loop {
        if inbound.stop.load(Ordering::Relaxed) {
            return;
        }
        drain(&mut overflow, &inbound);
        match framed.recv() {
            Ok(Some(batch)) => deliver(batch, &inbound, &mut overflow),
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
    batch: Vec<WireTuple>,
    inbound: &Inbound,
    overflow: &mut HashMap<usize, VecDeque<Vec<TupleMsg>>>,
) {
    let mut current: Option<(usize, Vec<TupleMsg>)> = None;
    for w in batch {
        let Some(&e) = inbound.wiring.executor_of_task.get(w.0 as usize) else {
            continue;
        };
        let e = e as usize;
        if w.0 == 0 || !inbound.local[e] {
            continue;
        }
        match &mut current {
            Some((ce, v)) if *ce == e => v.push(w.into()),
            _ => {
                if let Some((ce, v)) = current.take() {
                    overflow.entry(ce).or_default().push_back(v);
                }
                current = Some((e, vec![w.into()]));
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
