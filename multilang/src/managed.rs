//! A subprocess kept running: started on first use, described and dropped
//! when it fails, restarted: at once after a child that ran for a while,
//! with a doubling delay (0.1 s up to 5 s) while children keep dying young,
//! and once a second while starts fail.

use crate::metrics::Registered;
use crate::process::{Event, Owner, ShellCommand, ShellProcess, Watch};
use crate::protocol::{ProtocolError, ShellMsg};
use crate::ShellError;
use squall_topology_api::{
    MetricUpdate, OutputCollector, SpoutOutputCollector, TaskId, TopologyContext,
};
use std::fmt::Display;
use std::time::{Duration, Instant};

/// What a shell component reports through its task's collector (bolt or
/// spout).
pub trait Report {
    /// Records an error in the task's errors.
    fn error(&mut self, error: &dyn Display);
    /// Updates a user metric.
    fn metric(&mut self, name: &str, update: MetricUpdate);
}

impl Report for OutputCollector<'_> {
    fn error(&mut self, error: &dyn Display) {
        self.report_error(error)
    }
    fn metric(&mut self, name: &str, update: MetricUpdate) {
        match update {
            MetricUpdate::Add(by) => self.incr_metric(name, by),
            MetricUpdate::Set(v) => self.set_metric(name, v),
        }
    }
}

impl Report for SpoutOutputCollector<'_> {
    fn error(&mut self, error: &dyn Display) {
        self.report_error(error)
    }
    fn metric(&mut self, name: &str, update: MetricUpdate) {
        match update {
            MetricUpdate::Add(by) => self.incr_metric(name, by),
            MetricUpdate::Set(v) => self.set_metric(name, v),
        }
    }
}

/// How long to wait before retrying a start that failed.
const RETRY_START_AFTER: Duration = Duration::from_secs(1);
/// A child that dies sooner than this after its start died young.
const YOUNG: Duration = Duration::from_secs(5);
/// The first and the longest delay before restarting after young deaths.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A task's subprocess and how to start it again.
pub struct Managed {
    pub command: ShellCommand,
    pub owner: Owner,
    /// The metrics the child may update.
    metrics: Registered,
    context: TopologyContext,
    watch: Watch,
    timeout: Duration,
    max_pending: usize,
    process: Option<ShellProcess>,
    retry_at: Option<Instant>,
    started_at: Instant,
    /// Young deaths in a row.
    young_deaths: u32,
    /// A start failure not yet reported to the task's errors (one from
    /// `prepare` / `open`, which have no collector).
    unreported: Option<ShellError>,
}

impl Managed {
    /// A manager for the task of `context`; nothing starts yet.
    pub fn new(
        command: ShellCommand,
        metrics: Registered,
        kind: &'static str,
        context: &TopologyContext,
        watch: Watch,
    ) -> Self {
        let config = context.config();
        Self {
            owner: Owner {
                component: context.this_component_id().as_str().to_owned(),
                task: context.this_task_id().0,
                kind,
            },
            command,
            metrics,
            context: context.clone(),
            watch,
            timeout: Duration::from_secs(config.effective_subprocess_timeout_secs()),
            max_pending: config.shellbolt_max_pending,
            process: None,
            retry_at: None,
            started_at: Instant::now(),
            young_deaths: 0,
            unreported: None,
        }
    }

    /// The running subprocess, starting one if there is none and no retry
    /// is pending. A failed start is returned once (to be reported) and
    /// retried after a second; the task's waker is woken then.
    fn running(&mut self) -> Result<Option<&ShellProcess>, ShellError> {
        if self.process.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Ok(None);
            }
            match ShellProcess::start(
                &self.command,
                &self.owner,
                &self.context,
                self.watch,
                self.timeout,
                self.max_pending,
            ) {
                Ok(p) => {
                    self.started_at = Instant::now();
                    self.retry_at = None;
                    self.process = Some(p);
                }
                Err(e) => {
                    self.retry_after(RETRY_START_AFTER);
                    return Err(e);
                }
            }
        }
        Ok(self.process.as_ref())
    }

    /// Starts the first subprocess (from `prepare` / `open`), keeping a
    /// failure for the first collector that comes.
    pub fn start_early(&mut self) {
        if let Err(e) = self.running() {
            tracing::error!("{e}");
            self.unreported = Some(e);
        }
    }

    /// Waits out a pending restart delay (backpressure for a bolt whose
    /// child keeps dying), then as [`Managed::running`].
    fn running_after_delay(&mut self) -> Result<Option<&ShellProcess>, ShellError> {
        if let Some(at) = self.retry_at.filter(|_| self.process.is_none()) {
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
        }
        self.running()
    }

    /// Holds restarts back for `delay`, then wakes the task (bolts; spouts
    /// poll) so it restarts.
    fn retry_after(&mut self, delay: Duration) {
        self.retry_at = Some(Instant::now() + delay);
        if let Some(w) = self.context.waker().cloned() {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                w.wake();
            });
        }
    }

    /// Reports a pending start failure, then starts a child if none runs
    /// (after waiting out a restart delay when `wait`, as backpressure for
    /// a bolt); `false` if none runs.
    pub fn ensure_running(&mut self, out: &mut impl Report, wait: bool) -> bool {
        if let Some(e) = self.unreported.take() {
            out.error(&e);
        }
        let running = if wait {
            self.running_after_delay()
        } else {
            self.running()
        };
        match running {
            Ok(p) => p.is_some(),
            Err(e) => {
                out.error(&e);
                false
            }
        }
    }

    /// Handles the commands bolts and spouts share: `log`, `error` and
    /// `metrics`. Returns `false` for any other command.
    pub fn shared_command(&self, msg: &ShellMsg, out: &mut impl Report) -> bool {
        let Owner {
            component,
            task,
            kind,
        } = &self.owner;
        match msg.command.as_str() {
            "log" => self.log(msg),
            "error" => {
                let text = msg.msg.as_deref().unwrap_or_default();
                tracing::error!(component, task, "shell process exception: {text}");
                out.error(&format!("Shell Process Exception: {text}"));
            }
            "metrics" => match self.metrics.update(msg) {
                Ok((name, update)) => out.metric(&name, update),
                Err(e) => out.error(&format!("shell {kind} `{component}`: {e}")),
            },
            _ => return false,
        }
        true
    }

    /// Answers an emit with the task ids it went to (Storm's reply after an
    /// emit with `need_task_ids`, the default).
    pub fn reply_task_ids(&self, need_task_ids: Option<bool>, targets: &[TaskId]) {
        if need_task_ids.unwrap_or(true) {
            if let Some(p) = &self.process {
                let ids: Vec<u32> = targets.iter().map(|t| t.0).collect();
                p.send_control(&ids);
            }
        }
    }

    /// The subprocess, if one runs.
    pub fn current(&self) -> Option<&ShellProcess> {
        self.process.as_ref()
    }

    /// The next event, if one is ready.
    pub fn try_event(&self) -> Option<Event> {
        self.process.as_ref()?.events().try_recv().ok()
    }

    /// Drops the subprocess after `cause` (killing it if it still runs)
    /// and describes the failure.
    pub fn fail(&mut self, cause: ProtocolError) -> ShellError {
        let process = self
            .process
            .take()
            .expect("fail is called on a running process");
        let e = process.failure(&self.owner, &self.command, cause);
        if self.started_at.elapsed() < YOUNG {
            let delay = BACKOFF.0.saturating_mul(1 << self.young_deaths.min(6));
            self.young_deaths += 1;
            self.retry_after(delay.min(BACKOFF.1));
        } else {
            self.young_deaths = 0;
        }
        tracing::error!(component = %self.owner.component, task = self.owner.task, "{e}; restarting it");
        e
    }

    /// Stops the subprocess, if any.
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// Writes a `log` command's text to Squall's log at its level (Storm's
    /// `ShellLogHandler`: 0 trace, 1 debug, 2 info, 3 warn, 4 error).
    fn log(&self, msg: &ShellMsg) {
        let text = msg.msg.as_deref().unwrap_or("");
        let component = self.owner.component.as_str();
        let task = self.owner.task;
        let pid = self.process.as_ref().map_or(0, |p| p.pid());
        match msg.level.unwrap_or(2) {
            0 => tracing::trace!(component, task, pid, "{text}"),
            1 => tracing::debug!(component, task, pid, "{text}"),
            3 => tracing::warn!(component, task, pid, "{text}"),
            4 => tracing::error!(component, task, pid, "{text}"),
            _ => tracing::info!(component, task, pid, "{text}"),
        }
    }
}
