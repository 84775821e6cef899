//! Forwarding the workers' heartbeats to the leading Nimbus over RPC
//! (Storm 2's `ReportWorkerHeartbeats`): one request per supervisor round
//! carries every running worker's latest beat, so Nimbus hears from a
//! host over one connection whatever its number of workers, and no worker
//! writes to ZooKeeper.

use squall_cluster::rpc::{HeartbeatReport, NimbusClient, Request};
use squall_cluster::schema::WorkerHeartbeat;
use squall_cluster::tls::Tls;
use squall_cluster::LogLimiter;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends reports to the leader from its own thread, so an unreachable
/// Nimbus never delays the supervisor's round: a report made while the
/// previous one is still on its way is dropped (the next round's is
/// newer). The connection is kept between reports and opened again, to
/// whichever Nimbus leads, after any failure.
pub struct NimbusReport {
    tx: SyncSender<(String, Vec<WorkerHeartbeat>)>,
}

impl NimbusReport {
    /// A reporter to the leader among `addresses` (`host:port`, from
    /// `nimbus.seeds`), with frames capped at `max_frame_bytes`, over TLS
    /// as `tls` when given.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn start(
        addresses: Vec<String>,
        max_frame_bytes: usize,
        tls: Option<Arc<Tls>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<(String, Vec<WorkerHeartbeat>)>(1);
        std::thread::Builder::new()
            .name("supervisor-report".into())
            .spawn(move || {
                let mut client: Option<NimbusClient> = None;
                let mut failures = LogLimiter::new(Duration::from_secs(30));
                for (supervisor_id, beats) in rx {
                    let sent = match client.as_mut() {
                        Some(c) => Ok(c),
                        None => NimbusClient::connect_leader_with(
                            &addresses,
                            max_frame_bytes,
                            tls.as_deref(),
                        )
                        .map(|c| client.insert(c)),
                    }
                    .and_then(|c| {
                        c.call_ok(Request::SupervisorHeartbeats {
                            supervisor_id,
                            beats,
                        })
                    });
                    if let Err(e) = sent {
                        client = None;
                        if let Some(n) = failures.note(Instant::now()) {
                            tracing::warn!(
                                failures = n,
                                "cannot send workers' heartbeats to Nimbus: {e}"
                            );
                        }
                    }
                }
            })?;
        Ok(Self { tx })
    }
}

impl HeartbeatReport for NimbusReport {
    fn report(&self, supervisor_id: &str, beats: Vec<WorkerHeartbeat>) -> Result<(), String> {
        match self.tx.try_send((supervisor_id.to_owned(), beats)) {
            Ok(()) | Err(TrySendError::Full(_)) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err("the report thread has stopped".into()),
        }
    }
}
