//! The I/O thread behind the store bolts ([`RedisBolt`](crate::redis::RedisBolt),
//! [`PostgresBolt`](crate::postgres::PostgresBolt)): the executor thread
//! hands each tuple's write to it and never waits for a server; the thread
//! writes in batches, connects (and reconnects with backoff) on its own,
//! and sends each write's outcome back, waking the task, which acks or
//! fails the tuple.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use squall_topology_api::{OutputCollector, TaskWaker, Tuple};
use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first and the longest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How long dropping a sink waits for the writes handed to its thread;
/// tuples still in flight then time out and replay.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one kind of job to one server, on the I/O thread.
pub(crate) trait Writer: Send + 'static {
    /// One tuple's write.
    type Job: Send + 'static;

    /// Connects.
    ///
    /// # Errors
    /// A message naming the server and the cause.
    fn connect(&mut self) -> Result<(), String>;

    /// Writes `jobs`, giving each one's outcome in order (`Err`: why that
    /// job failed, naming the key or column).
    ///
    /// # Errors
    /// When the connection failed: every job of the batch fails with it,
    /// and the writer connects again before the next batch.
    fn write(&mut self, jobs: &[Self::Job]) -> Result<Vec<Result<(), String>>, String>;
}

enum Outcome {
    /// A job's write is done: acked, or failed with its reason.
    Done(u64, Result<(), String>),
    /// A job failed with its batch, whose error was reported once.
    Failed(u64),
    /// An error to report (a failed connection or batch).
    Error(String),
}

/// The executor's side of a sink: the tuples awaiting their write.
pub(crate) struct Sink<J> {
    jobs: Option<Sender<(u64, J)>>,
    outcomes: Receiver<Outcome>,
    in_flight: HashMap<u64, Tuple>,
    next_id: u64,
    max_in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

impl<J: Send + 'static> Sink<J> {
    /// Starts the I/O thread for `writer` (named `name`), which connects at
    /// once; at most `max_batch` jobs per write, `max_in_flight` awaiting
    /// their outcome.
    pub(crate) fn start<W: Writer<Job = J>>(
        name: &str,
        writer: W,
        max_batch: usize,
        max_in_flight: usize,
        waker: Option<TaskWaker>,
    ) -> Self {
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let (out_tx, outcomes) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(writer, job_rx, out_tx, waker, max_batch.max(1)))
            .expect("spawn a sink thread");
        Self {
            jobs: Some(jobs),
            outcomes,
            in_flight: HashMap::new(),
            next_id: 1,
            max_in_flight: max_in_flight.max(1),
            thread: Some(thread),
        }
    }

    /// Hands `job`, the write of `tuple`, to the I/O thread; first settles
    /// what is done, waiting while `max_in_flight` writes are out.
    pub(crate) fn send(&mut self, tuple: &Tuple, job: J, collector: &mut OutputCollector<'_>) {
        self.settle_ready(collector);
        while self.in_flight.len() >= self.max_in_flight {
            match self.outcomes.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => self.settle(o, collector),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|j| j.send((id, job)).is_ok());
        if sent {
            self.in_flight.insert(id, tuple.clone());
        } else {
            collector.report_error(&"the writer thread has stopped");
            collector.fail(tuple);
        }
    }

    /// Acks or fails every tuple whose write is done; reports errors.
    pub(crate) fn settle_ready(&mut self, collector: &mut OutputCollector<'_>) {
        while let Ok(o) = self.outcomes.try_recv() {
            self.settle(o, collector);
        }
    }

    fn settle(&mut self, outcome: Outcome, collector: &mut OutputCollector<'_>) {
        match outcome {
            Outcome::Error(e) => collector.report_error(&e),
            Outcome::Failed(id) => {
                if let Some(tuple) = self.in_flight.remove(&id) {
                    collector.fail(&tuple);
                }
            }
            Outcome::Done(id, result) => {
                let Some(tuple) = self.in_flight.remove(&id) else {
                    return;
                };
                match result {
                    Ok(()) => collector.ack(&tuple),
                    Err(e) => {
                        collector.report_error(&e);
                        collector.fail(&tuple);
                    }
                }
            }
        }
    }
}

impl<J> Drop for Sink<J> {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.jobs = None;
            if let Some(t) = self.thread.take() {
                let deadline = Instant::now() + DRAIN_TIMEOUT;
                while !t.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if t.is_finished() {
                    let _ = t.join();
                }
            }
        }
    }
}

/// A store bolt's `execute`: a tick tuple is acked; otherwise `job` makes
/// the tuple's write (`Ok(None)`: nothing to write, acked; an error fails
/// the tuple, reported as `describe` words it) and `sink` takes it.
pub(crate) fn execute<J: Send + 'static>(
    sink: Option<&mut Sink<J>>,
    tuple: &Tuple,
    collector: &mut OutputCollector<'_>,
    job: impl FnOnce(&Tuple) -> Result<Option<J>, String>,
    describe: impl FnOnce(&str) -> String,
) {
    if tuple.is_tick() {
        collector.ack(tuple);
        return;
    }
    let Some(sink) = sink else {
        collector.fail(tuple);
        return;
    };
    match job(tuple) {
        Ok(Some(j)) => sink.send(tuple, j, collector),
        Ok(None) => collector.ack(tuple),
        Err(e) => {
            collector.report_error(&describe(&e));
            collector.fail(tuple);
        }
    }
}

fn run<W: Writer>(
    mut writer: W,
    jobs: Receiver<(u64, W::Job)>,
    out: Sender<Outcome>,
    waker: Option<TaskWaker>,
    max_batch: usize,
) {
    let wake = || {
        if let Some(w) = &waker {
            w.wake();
        }
    };
    let mut connected = false;
    let mut backoff = BACKOFF.0;
    let mut next_attempt = Instant::now();
    loop {
        if !connected && Instant::now() >= next_attempt {
            match writer.connect() {
                Ok(()) => {
                    connected = true;
                    backoff = BACKOFF.0;
                }
                Err(e) => {
                    tracing::warn!(target: "squall::connectors", "{e}");
                    let _ = out.send(Outcome::Error(e));
                    wake();
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
        let wait = if connected {
            Duration::from_secs(3600)
        } else {
            next_attempt.saturating_duration_since(Instant::now())
        };
        let first = match jobs.recv_timeout(wait) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if !connected && Instant::now() >= next_attempt {
            match writer.connect() {
                Ok(()) => connected = true,
                Err(e) => {
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF.1);
                    let _ = out.send(Outcome::Error(e));
                }
            }
        }
        let (ids, batch): (Vec<u64>, Vec<W::Job>) = batch.into_iter().unzip();
        let results = if connected {
            writer.write(&batch).map_err(Some)
        } else {
            Err(None)
        };
        match results {
            Ok(results) => {
                for (id, r) in ids.into_iter().zip(results) {
                    let _ = out.send(Outcome::Done(id, r));
                }
            }
            Err(e) => {
                if let Some(e) = e {
                    connected = false;
                    tracing::warn!(target: "squall::connectors", "{e}");
                    let _ = out.send(Outcome::Error(e));
                }
                for id in ids {
                    let _ = out.send(Outcome::Failed(id));
                }
            }
        }
        wake();
    }
}
