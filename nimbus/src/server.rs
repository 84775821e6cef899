//! The RPC server: one thread per client connection, frames in and out.

use crate::service::Nimbus;
use squall_cluster::blocking::FramedStream;
use squall_cluster::frame::FrameError;
use squall_cluster::rpc::{Request, Response};
use squall_cluster::StateStorage;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may stay silent before Nimbus closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Accepts connections on `listener` until the process ends, serving each
/// on its own thread. A bad frame closes only its own connection.
pub fn serve<S: StateStorage + Send + Sync + 'static>(
    listener: TcpListener,
    nimbus: Arc<Nimbus<S>>,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let nimbus = nimbus.clone();
        let spawned = std::thread::Builder::new()
            .name("nimbus-conn".into())
            .spawn(move || serve_connection(stream, &nimbus));
        if let Err(e) = spawned {
            tracing::error!("cannot start a connection thread: {e}");
        }
    }
}

fn serve_connection<S: StateStorage>(stream: TcpStream, nimbus: &Nimbus<S>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown peer".into());
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err() || stream.set_nodelay(true).is_err() {
        return;
    }
    let mut framed: FramedStream<TcpStream, Request, Response> =
        FramedStream::new(stream, nimbus.config.nimbus_max_frame_bytes);
    loop {
        match framed.recv() {
            Ok(Some(req)) => {
                let resp = nimbus.handle(req);
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
