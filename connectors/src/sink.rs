//! The I/O thread behind the store bolts ([`RedisBolt`](crate::redis::RedisBolt),
//! [`PostgresBolt`](crate::postgres::PostgresBolt),
//! [`MqttBolt`](crate::mqtt::MqttBolt)): the executor thread hands each
//! tuple with its write to it and never waits for a server; the thread
//! writes in batches, connects (and reconnects with backoff) on its own,
//! and hands each tuple back with its write's outcome, waking the task,
//! which acks or fails it.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use squall_topology_api::{OutputCollector, TaskWaker, Tuple};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first and the longest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How long dropping a sink waits for the writes handed to its thread;
/// tuples still in flight then time out and replay.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes one kind of job to one server, on the I/O thread.
pub(crate) trait Writer: Send + 'static {
    /// One tuple's write (what the writer needs beyond the tuple itself).
    type Job: Send + 'static;

    /// Connects.
    ///
    /// # Errors
    /// A message naming the server and the cause.
    fn connect(&mut self) -> Result<(), String>;

    /// Writes `jobs` (each tuple with its job), giving each one's outcome
    /// in order (`Err`: why that job failed, naming the key or column).
    ///
    /// # Errors
    /// When the connection failed: every job of the batch fails with it,
    /// and the writer connects again before the next batch.
    fn write(&mut self, jobs: &[(Tuple, Self::Job)]) -> Result<Vec<Result<(), String>>, String>;
}

enum Outcome {
    /// A tuple's write is done: acked, or failed with its reason.
    Done(Tuple, Result<(), String>),
    /// A tuple failed with its batch, whose error was reported once.
    Failed(Tuple),
    /// An error to report (a failed connection or batch).
    Error(String),
}

/// The executor's side of a sink.
pub(crate) struct Sink<J> {
    jobs: Option<Sender<(Tuple, J)>>,
    outcomes: Receiver<Outcome>,
    /// Tuples handed to the thread and not yet settled.
    in_flight: usize,
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
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            thread: Some(thread),
        }
    }

    /// Hands `tuple` and its write `job` to the I/O thread; first settles
    /// what is done, waiting while `max_in_flight` writes are out.
    pub(crate) fn send(&mut self, tuple: &Tuple, job: J, collector: &mut OutputCollector<'_>) {
        self.settle_ready(collector);
        while self.in_flight >= self.max_in_flight {
            match self.outcomes.recv_timeout(Duration::from_millis(100)) {
                Ok(o) => self.settle(o, collector),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|j| j.send((tuple.clone(), job)).is_ok());
        if sent {
            self.in_flight += 1;
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
            Outcome::Failed(tuple) => {
                self.in_flight -= 1;
                collector.fail(&tuple);
            }
            Outcome::Done(tuple, result) => {
                self.in_flight -= 1;
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

/// The I/O thread's connection state: connected, or when to try again.
struct Link<W> {
    writer: W,
    connected: bool,
    backoff: Duration,
    next_attempt: Instant,
}

impl<W: Writer> Link<W> {
    /// Connects if not connected and an attempt is due; a failure is
    /// logged, reported (`true`: the task is to be woken) and makes the
    /// next wait longer.
    fn ensure(&mut self, out: &Sender<Outcome>) -> bool {
        if self.connected || Instant::now() < self.next_attempt {
            return false;
        }
        match self.writer.connect() {
            Ok(()) => {
                self.connected = true;
                self.backoff = BACKOFF.0;
                false
            }
            Err(e) => {
                tracing::warn!(target: "squall::connectors", "{e}");
                let _ = out.send(Outcome::Error(e));
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF.1);
                true
            }
        }
    }
}

fn run<W: Writer>(
    writer: W,
    jobs: Receiver<(Tuple, W::Job)>,
    out: Sender<Outcome>,
    waker: Option<TaskWaker>,
    max_batch: usize,
) {
    let wake = || {
        if let Some(w) = &waker {
            w.wake();
        }
    };
    let mut link = Link {
        writer,
        connected: false,
        backoff: BACKOFF.0,
        next_attempt: Instant::now(),
    };
    loop {
        if link.ensure(&out) {
            wake();
        }
        let wait = if link.connected {
            Duration::from_secs(3600)
        } else {
            link.next_attempt.saturating_duration_since(Instant::now())
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
        link.ensure(&out);
        let results = if link.connected {
            link.writer.write(&batch).map_err(Some)
        } else {
            Err(None)
        };
        match results {
            Ok(results) => {
                for ((tuple, _), r) in batch.into_iter().zip(results) {
                    let _ = out.send(Outcome::Done(tuple, r));
                }
            }
            Err(e) => {
                if let Some(e) = e {
                    link.connected = false;
                    tracing::warn!(target: "squall::connectors", "{e}");
                    let _ = out.send(Outcome::Error(e));
                }
                for (tuple, _) in batch {
                    let _ = out.send(Outcome::Failed(tuple));
                }
            }
        }
        wake();
    }
}
