//! The RPC server: one thread per client connection, frames in and out,
//! with limits: at most `nimbus.thrift.threads` connections at once (more
//! are closed at accept), an idle timeout, and accept errors (out of file
//! descriptors) met with a growing pause instead of a spinning loop, each
//! kind of trouble logged at most once per [`LOG_EVERY`].

use crate::authz::Caller;
use crate::service::Nimbus;
use squall_cluster::blocking::FramedStream;
use squall_cluster::frame::FrameError;
use squall_cluster::rpc::{Request, Response};
use squall_cluster::tls::{HandshakeError, Stream, Tls};
use squall_cluster::LogLimiter;
use squall_cluster::StateStorage;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A repeated warning is logged at most this often, with how many times
/// it happened since the last line.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The longest pause after failed accepts (it doubles from 10 ms).
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Counts a connection while it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections on `listener` until the process ends, serving each
/// on its own thread. A bad frame closes only its own connection.
pub fn serve<S: StateStorage + Send + Sync + 'static>(
    listener: TcpListener,
    nimbus: Arc<Nimbus<S>>,
    tls: Option<Arc<Tls>>,
) {
    let handshakes = Arc::new(std::sync::Mutex::new(LogLimiter::new(LOG_EVERY)));
    let open = Arc::new(AtomicUsize::new(0));
    let max = nimbus.config.nimbus_max_connections.max(1);
    let mut accept_errors = LogLimiter::new(LOG_EVERY);
    let mut refusals = LogLimiter::new(LOG_EVERY);
    let mut pause = Duration::from_millis(10);
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => {
                pause = Duration::from_millis(10);
                s
            }
            Err(e) => {
                if let Some(n) = accept_errors.note(Instant::now()) {
                    tracing::warn!("accept failed ({n} times since the last line): {e}; pausing");
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                continue;
            }
        };
        if open.load(Ordering::Acquire) >= max {
            if let Some(n) = refusals.note(Instant::now()) {
                tracing::warn!(
                    "{max} connections open (nimbus.thrift.threads): closed {n} more since the last line"
                );
            }
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        let guard = Open(open.clone());
        let nimbus = nimbus.clone();
        let tls = tls.clone();
        let handshakes = handshakes.clone();
        let spawned = std::thread::Builder::new()
            .name("nimbus-conn".into())
            .spawn(move || {
                let _guard = guard;
                serve_connection(stream, &nimbus, tls.as_deref(), &handshakes);
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
        }
    }
}

fn serve_connection<S: StateStorage>(
    stream: TcpStream,
    nimbus: &Nimbus<S>,
    tls: Option<&Tls>,
    handshakes: &std::sync::Mutex<LogLimiter>,
) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown peer".into());
    let idle = Duration::from_secs(nimbus.config.nimbus_idle_timeout_secs.max(1));
    if stream.set_read_timeout(Some(idle)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let (stream, principal) = match tls {
        None => (Stream::Plain(stream), None),
        Some(tls) => match tls.accept(stream) {
            Ok((s, p)) => (s, Some(p)),
            Err(e @ HandshakeError::Closed) => {
                tracing::debug!(%peer, "{e}");
                return;
            }
            Err(e) => {
                let mut limiter = handshakes.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(n) = limiter.note(Instant::now()) {
                    tracing::warn!(%peer, "refused a client ({n} since the last line): {e}");
                }
                return;
            }
        },
    };
    let caller = Caller {
        peer: &peer,
        principal: principal.as_deref(),
    };
    let mut framed: FramedStream<Stream, Request, Response> =
        FramedStream::new(stream, nimbus.config.nimbus_max_frame_bytes);
    serve_frames(&mut framed, caller, nimbus);
    // Uploads live as long as the connection that opened them.
    nimbus.blobs.drop_sessions_of(&peer);
}

fn serve_frames<S: StateStorage>(
    framed: &mut FramedStream<Stream, Request, Response>,
    caller: Caller<'_>,
    nimbus: &Nimbus<S>,
) {
    let peer = caller.peer;
    loop {
        match framed.recv() {
            Ok(Some(req)) => {
                let resp = nimbus.handle_as(caller, req);
                if let Err(e) = framed.send(resp) {
                    tracing::warn!(%peer, "cannot answer: {e}; closing the connection");
                    return;
                }
            }
            Ok(None) => return,
            Err(FrameError::Io(e)) => {
                tracing::debug!(%peer, "connection ended: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(%peer, "bad frame: {e}; closing the connection");
                return;
            }
        }
    }
}
