//! A multilang subprocess (Storm's `ShellProcess`): spawn, handshake, and
//! the three threads around its pipes.
//!
//! - the **reader** turns stdout into [`Event`]s and wakes the task;
//! - the **writer** drains the task's writes into stdin (tuples from a
//!   queue bounded by `topology.shellbolt.max.pending`, control messages
//!   such as task ids and heartbeats from an unbounded one), flushing when
//!   both are empty;
//! - the **watchdog** sends bolt heartbeats every second (or a third of the
//!   timeout, if shorter) and kills a child
//!   that has said nothing for `topology.subprocess.timeout.secs` while it
//!   owes an answer;
//! - stderr is logged line by line, and its last lines kept for errors.

use crate::protocol::{self, BoltTuple, ProtocolError, ShellMsg};
use crate::ShellError;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use squall_topology_api::{TaskWaker, TopologyContext, Tuple, SYSTEM_COMPONENT};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Lines of stderr kept for error reports.
const STDERR_TAIL_LINES: usize = 20;
/// How often bolt heartbeats are sent and the timeout checked (Storm: 1 s),
/// at most: a third of the subprocess timeout when that is shorter, so a
/// healthy child always has time to answer.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How to start a subprocess: the command line, its working directory and
/// extra environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// Program and arguments, e.g. `["python3", "split.py"]`.
    pub argv: Vec<String>,
    /// The working directory (default: the worker's).
    pub dir: Option<PathBuf>,
    /// Variables added to the worker's environment.
    pub env: Vec<(String, String)>,
}

impl ShellCommand {
    /// The command line as one string, for messages.
    pub fn display(&self) -> String {
        self.argv.join(" ")
    }
}

/// What the reader thread reports.
#[derive(Debug)]
pub enum Event {
    /// A command from the child.
    Msg(Box<ShellMsg>),
    /// The child's output ended or broke; no more events follow.
    Ended(ProtocolError),
}

/// A write for the child's stdin.
pub enum ToChild {
    /// An input tuple for a bolt, encoded on the writer thread.
    Tuple {
        /// The id the child will ack or fail.
        id: u64,
        /// The tuple.
        tuple: Tuple,
    },
    /// An encoded message (task ids, spout commands, heartbeats).
    Raw(Vec<u8>),
}

/// Whether the watchdog applies the timeout always (bolts, which get
/// heartbeats) or only while a command is unanswered (spouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Bolt: heartbeat tuples every second, timeout always applies.
    Heartbeats,
    /// Spout: the timeout applies while [`ShellProcess::set_busy`] is on.
    WhileBusy,
}

struct Clock {
    base: Instant,
    last_heard_ms: AtomicU64,
    /// Nonzero while the child owes an answer (ms since `base`, plus one).
    busy_since_ms: AtomicU64,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }
    fn heard(&self) {
        self.last_heard_ms.store(self.now_ms(), Ordering::Release);
    }
}

struct Stderr {
    tail: Mutex<VecDeque<String>>,
    done: AtomicBool,
}

/// A running subprocess speaking the multilang protocol.
pub struct ShellProcess {
    child: Arc<Mutex<Child>>,
    pid: u32,
    events: Receiver<Event>,
    tuples: Sender<ToChild>,
    control: Sender<Vec<u8>>,
    clock: Arc<Clock>,
    stderr: Arc<Stderr>,
    /// Why the watchdog killed the child, if it did.
    killed_for: Arc<Mutex<Option<String>>>,
    _stop_watchdog: Sender<()>,
    _pid_dir: tempfile::TempDir,
}

/// Who a process belongs to, for logs and errors.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Component id.
    pub component: String,
    /// Task id.
    pub task: u32,
    /// `"bolt"` or `"spout"`.
    pub kind: &'static str,
}

impl ShellProcess {
    /// Starts `command` and performs the handshake for the task of
    /// `context`, waiting at most `timeout` for the child's pid.
    ///
    /// The reader wakes the task through the context's waker (bolts).
    ///
    /// Errors: the program cannot be started, the setup message cannot be
    /// written, or the child does not answer `{"pid": N}` in time; each
    /// carries the child's stderr tail.
    pub fn start(
        command: &ShellCommand,
        owner: &Owner,
        context: &TopologyContext,
        watch: Watch,
        timeout: Duration,
        max_pending: usize,
    ) -> Result<Self, ShellError> {
        let error = |pid, kind, stderr_tail: String| ShellError {
            component: owner.component.clone(),
            task: owner.task,
            command: command.display(),
            pid,
            kind,
            stderr_tail,
        };
        let Some((program, args)) = command.argv.split_first() else {
            return Err(error(
                None,
                crate::ShellErrorKind::EmptyCommand,
                String::new(),
            ));
        };
        let pid_dir = tempfile::Builder::new()
            .prefix("squall-shell-pids")
            .tempdir()
            .map_err(|e| error(None, crate::ShellErrorKind::Spawn(e), String::new()))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &command.dir {
            cmd.current_dir(dir);
        }
        for (k, v) in &command.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| error(None, crate::ShellErrorKind::Spawn(e), String::new()))?;
        let os_pid = child.id();
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let child = Arc::new(Mutex::new(child));
        let stderr = Arc::new(Stderr {
            tail: Mutex::new(VecDeque::new()),
            done: AtomicBool::new(false),
        });
        spawn_stderr(stderr_pipe, stderr.clone(), owner.clone(), os_pid);
        let clock = Arc::new(Clock {
            base: Instant::now(),
            last_heard_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
        });
        let (event_tx, events) = crossbeam_channel::unbounded();
        let (pid_tx, pid_rx) = crossbeam_channel::bounded(1);
        spawn_reader(
            stdout,
            event_tx,
            pid_tx,
            clock.clone(),
            context.waker().cloned(),
        );
        let mut stdin = BufWriter::with_capacity(64 * 1024, stdin);
        let setup = crate::setup::setup_message(context, pid_dir.path());
        let wrote = protocol::write_message(&mut stdin, &setup).and_then(|()| stdin.flush());
        let fail = |kind| {
            let _ = child.lock().map(|mut c| c.kill());
            let tail = wait_tail(&child, &stderr);
            Err(error(Some(os_pid), kind, tail))
        };
        if let Err(e) = wrote {
            return fail(crate::ShellErrorKind::Handshake(format!(
                "writing the setup message: {e}"
            )));
        }
        let pid = match pid_rx.recv_timeout(timeout) {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                return fail(crate::ShellErrorKind::Handshake(e.to_string()));
            }
            Err(_) => {
                return fail(crate::ShellErrorKind::Handshake(format!(
                    "no {{\"pid\": N}} reply within {} s",
                    timeout.as_secs_f64()
                )));
            }
        };
        clock.heard();
        if watch == Watch::Heartbeats {
            clock.busy_since_ms.store(1, Ordering::Release);
        }
        let (tuples, tuple_rx) = crossbeam_channel::bounded(max_pending.max(1));
        let (control, control_rx) = crossbeam_channel::unbounded();
        spawn_writer(stdin, tuple_rx, control_rx);
        let killed_for = Arc::new(Mutex::new(None));
        let (stop_watchdog, stop_rx) = crossbeam_channel::bounded(0);
        spawn_watchdog(Watchdog {
            watch,
            timeout,
            clock: clock.clone(),
            child: child.clone(),
            killed_for: killed_for.clone(),
            control: control.clone(),
            stop: stop_rx,
        });
        tracing::info!(component = %owner.component, task = owner.task, pid, "started {} subprocess `{}`", owner.kind, command.display());
        Ok(Self {
            child,
            pid,
            events,
            tuples,
            control,
            clock,
            stderr,
            killed_for,
            _stop_watchdog: stop_watchdog,
            _pid_dir: pid_dir,
        })
    }

    /// The pid the child reported in the handshake.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child's events.
    pub fn events(&self) -> &Receiver<Event> {
        &self.events
    }

    /// The queue of tuples for the child (bounded by
    /// `topology.shellbolt.max.pending`).
    pub fn tuples(&self) -> &Sender<ToChild> {
        &self.tuples
    }

    /// Queues a control message (task ids, spout commands) for the child.
    pub fn send_control(&self, msg: &impl serde::Serialize) {
        let mut buf = Vec::with_capacity(64);
        protocol::encode(&mut buf, msg);
        let _ = self.control.send(buf);
    }

    /// Marks whether the child owes an answer (spouts: a command is
    /// unanswered), which arms the watchdog's timeout.
    pub fn set_busy(&self, busy: bool) {
        let v = if busy { self.clock.now_ms() + 1 } else { 0 };
        self.clock.busy_since_ms.store(v, Ordering::Release);
    }

    /// Ends the child (if it still runs) after its output ended with
    /// `cause`, and describes the failure: the watchdog's reason if it
    /// killed the child, else `cause`, with the exit status and stderr tail.
    pub fn failure(
        &self,
        owner: &Owner,
        command: &ShellCommand,
        cause: ProtocolError,
    ) -> ShellError {
        let killed_for = self.killed_for.lock().map(|k| k.clone()).unwrap_or(None);
        if !matches!(cause, ProtocolError::Closed { .. }) {
            let _ = self.child.lock().map(|mut c| c.kill());
        }
        let tail = wait_tail(&self.child, &self.stderr);
        let status = self
            .child
            .lock()
            .ok()
            .and_then(|mut c| c.try_wait().ok().flatten())
            .map(|s| s.to_string());
        let kind = match (killed_for, cause) {
            (Some(why), _) => crate::ShellErrorKind::Hung(why),
            (None, ProtocolError::Closed { partial }) => crate::ShellErrorKind::Exited {
                status: status.unwrap_or_else(|| "still running".into()),
                partial,
            },
            (None, other) => crate::ShellErrorKind::Protocol(other.to_string()),
        };
        ShellError {
            component: owner.component.clone(),
            task: owner.task,
            command: command.display(),
            pid: Some(self.pid),
            kind,
            stderr_tail: tail,
        }
    }
}

impl Drop for ShellProcess {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits (at most 2 s) for the child to exit and its stderr to close, and
/// returns the stderr tail.
fn wait_tail(child: &Mutex<Child>, stderr: &Stderr) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let exited = child
            .lock()
            .map(|mut c| c.try_wait().ok().flatten().is_some())
            .unwrap_or(true);
        if exited && stderr.done.load(Ordering::Acquire) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let tail = stderr.tail.lock().map(|t| t.clone()).unwrap_or_default();
    Vec::from(tail).join("\n")
}

fn spawn_stderr(pipe: std::process::ChildStderr, stderr: Arc<Stderr>, owner: Owner, pid: u32) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                    tracing::warn!(component = %owner.component, task = owner.task, pid, "stderr: {text}");
                    if let Ok(mut tail) = stderr.tail.lock() {
                        if tail.len() == STDERR_TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(text);
                    }
                }
            }
        }
        stderr.done.store(true, Ordering::Release);
    });
}

type PidSender = Sender<Result<u32, ProtocolError>>;

fn spawn_reader(
    stdout: std::process::ChildStdout,
    events: Sender<Event>,
    pid: PidSender,
    clock: Arc<Clock>,
    waker: Option<TaskWaker>,
) {
    std::thread::spawn(move || {
        let mut input = BufReader::with_capacity(64 * 1024, stdout);
        let (mut line, mut msg) = (Vec::new(), Vec::new());
        let first = protocol::read_message(&mut input, &mut line, &mut msg)
            .and_then(|()| protocol::parse_pid(&msg));
        let ok = first.is_ok();
        let _ = pid.send(first);
        if !ok {
            return;
        }
        let wake = || {
            if let Some(w) = &waker {
                w.wake()
            }
        };
        loop {
            let event = protocol::read_message(&mut input, &mut line, &mut msg)
                .and_then(|()| protocol::parse_shell_msg(&msg));
            clock.heard();
            match event {
                Ok(m) => {
                    if events.send(Event::Msg(Box::new(m))).is_err() {
                        return;
                    }
                    wake();
                }
                Err(e) => {
                    let _ = events.send(Event::Ended(e));
                    wake();
                    return;
                }
            }
        }
    });
}

fn spawn_writer(
    mut stdin: BufWriter<ChildStdin>,
    tuples: Receiver<ToChild>,
    control: Receiver<Vec<u8>>,
) {
    std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(256);
        let mut id_text = String::new();
        loop {
            let write = crossbeam_channel::select! {
                recv(control) -> m => m.map(ToChild::Raw),
                recv(tuples) -> m => m,
            };
            let Ok(write) = write else { return };
            buf.clear();
            match write {
                ToChild::Raw(bytes) => buf = bytes,
                ToChild::Tuple { id, tuple } => {
                    use std::fmt::Write as _;
                    id_text.clear();
                    let _ = write!(id_text, "{id}");
                    let comp = tuple.source_component().as_str();
                    protocol::encode(
                        &mut buf,
                        &BoltTuple {
                            id: &id_text,
                            comp,
                            stream: tuple.source_stream().as_str(),
                            task: if comp == SYSTEM_COMPONENT {
                                -1
                            } else {
                                i64::from(tuple.source_task().0)
                            },
                            tuple: &tuple.values().0,
                        },
                    )
                }
            }
            if stdin.write_all(&buf).is_err() {
                return;
            }
            if control.is_empty() && tuples.is_empty() && stdin.flush().is_err() {
                return;
            }
        }
    });
}

struct Watchdog {
    watch: Watch,
    timeout: Duration,
    clock: Arc<Clock>,
    child: Arc<Mutex<Child>>,
    killed_for: Arc<Mutex<Option<String>>>,
    control: Sender<Vec<u8>>,
    stop: Receiver<()>,
}

fn spawn_watchdog(w: Watchdog) {
    let every = HEARTBEAT_EVERY.min(w.timeout / 3);
    std::thread::spawn(move || {
        let mut beats = 0u64;
        loop {
            match w.stop.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            let busy_since = w.clock.busy_since_ms.load(Ordering::Acquire);
            if busy_since != 0 {
                let heard = w.clock.last_heard_ms.load(Ordering::Acquire);
                let quiet = w.clock.now_ms().saturating_sub(heard.max(busy_since - 1));
                if quiet > w.timeout.as_millis() as u64 {
                    let why = format!(
                        "no message for {:.1} s (topology.subprocess.timeout.secs is {} s)",
                        quiet as f64 / 1000.0,
                        w.timeout.as_secs()
                    );
                    if let Ok(mut k) = w.killed_for.lock() {
                        *k = Some(why);
                    }
                    let _ = w.child.lock().map(|mut c| c.kill());
                    return;
                }
            }
            if w.watch == Watch::Heartbeats {
                beats += 1;
                let mut buf = Vec::with_capacity(96);
                protocol::encode(
                    &mut buf,
                    &BoltTuple {
                        id: &format!("heartbeat-{beats}"),
                        comp: "__system",
                        stream: "__heartbeat",
                        task: -1,
                        tuple: &[],
                    },
                );
                if w.control.send(buf).is_err() {
                    return;
                }
            }
        }
    });
}
