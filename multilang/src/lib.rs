//! Spouts and bolts in any language, run as subprocesses speaking Storm's
//! multilang protocol (Storm's `ShellBolt`, `ShellSpout`, `ShellProcess`;
//! docs `Multilang-protocol.md`): JSON messages each followed by a line
//! `end` on the child's stdin and stdout. Storm's own `storm.py` and the
//! PyPI package `pystorm` work unchanged.
//!
//! ```no_run
//! use squall_multilang::{ShellBolt, ShellSpout};
//! use squall_topology_api::TopologyBuilder;
//!
//! let mut b = TopologyBuilder::new();
//! b.set_spout("sentences", || ShellSpout::new(["python3", "sentences.py"]).output_fields(["sentence"]), 1);
//! b.set_bolt("split", || ShellBolt::new(["python3", "split.py"]).dir("multilang").output_fields(["word"]), 2)
//!     .shuffle_grouping("sentences");
//! ```
//!
//! Unlike Storm, a child that exits, writes malformed output or stops
//! answering is not fatal to the worker: the failure is reported (with the
//! child's stderr tail) in the task's errors and log, the tuples it held
//! are failed so their spout tuples replay, and the child is restarted.

/// The builder methods and `Debug` shared by [`ShellBolt`] and
/// [`ShellSpout`] (both hold a `decl: Declaration` and a `run: Option<_>`).
macro_rules! shell_builder {
    ($ty:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!("A ", $what, " running `argv` (program and arguments, e.g. `[\"python3\", \"split.py\"]`), with no output streams yet.")]
            pub fn new<I, S>(argv: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: Into<String>,
            {
                Self {
                    decl: $crate::Declaration::new(argv),
                    run: None,
                }
            }

            /// Runs the child in `dir` (default: the worker's working
            /// directory).
            pub fn dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
                self.decl.command.dir = Some(dir.into());
                self
            }

            /// Adds an environment variable for the child.
            pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
                self.decl.command.env.push((key.into(), value.into()));
                self
            }

            /// Declares the default stream's fields.
            pub fn output_fields(self, fields: impl Into<squall_topology_api::Fields>) -> Self {
                self.stream(squall_topology_api::DEFAULT_STREAM, fields)
            }

            /// Declares a named stream.
            pub fn stream(mut self, stream: &str, fields: impl Into<squall_topology_api::Fields>) -> Self {
                self.decl.outputs.add(stream, fields.into(), false);
                self
            }

            /// Declares a named direct stream (the child emits with `task`).
            pub fn direct_stream(
                mut self,
                stream: &str,
                fields: impl Into<squall_topology_api::Fields>,
            ) -> Self {
                self.decl.outputs.add(stream, fields.into(), true);
                self
            }

            /// Registers the counter `name` for the child's `metrics`
            /// commands (Storm's `CountShellMetric`).
            pub fn count_metric(mut self, name: &str) -> Self {
                self.decl.metrics.add(name, $crate::ShellMetric::Count);
                self
            }

            /// Registers the gauge `name` for the child's `metrics` commands.
            pub fn gauge_metric(mut self, name: &str) -> Self {
                self.decl.metrics.add(name, $crate::ShellMetric::Gauge);
                self
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("declaration", &self.decl)
                    .field("running", &self.run.is_some())
                    .finish()
            }
        }
    };
}
pub(crate) use shell_builder;

mod bolt;
mod managed;
mod metrics;
mod process;
pub mod protocol;
mod setup;
mod spout;

pub use bolt::ShellBolt;
pub use metrics::ShellMetric;
pub use process::ShellCommand;
pub use spout::ShellSpout;

use metrics::Registered;
use squall_topology_api::{Fields, OutputFieldsDeclarer};

/// What went wrong with a subprocess.
#[derive(Debug, thiserror::Error)]
pub enum ShellErrorKind {
    /// The command line is empty.
    #[error("the command line is empty")]
    EmptyCommand,
    /// The program could not be started.
    #[error("cannot start the subprocess: {0}")]
    Spawn(#[source] std::io::Error),
    /// The handshake failed (no pid reply, a malformed one, or a dead pipe).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The child's stdout closed: it exited (or closed it).
    #[error("the subprocess exited ({status}){}", protocol::partial_note(.partial))]
    Exited {
        /// The exit status as the OS gives it.
        status: String,
        /// An unfinished message read before the end, if any.
        partial: String,
    },
    /// The child broke the protocol (malformed JSON, a message with no
    /// `command`, an unknown command, anchoring to an unknown tuple id).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The child said nothing within the subprocess timeout and was killed.
    #[error("the subprocess hung and was killed: {0}")]
    Hung(String),
}

/// A subprocess failure, naming the component, task, pid and command, with
/// the last lines the child wrote to stderr.
#[derive(Debug, thiserror::Error)]
#[error("shell component `{component}` (task {task}, {}command `{command}`): {kind}{}", pid_note(*.pid), tail_note(.stderr_tail))]
pub struct ShellError {
    /// The component id.
    pub component: String,
    /// The task id.
    pub task: u32,
    /// The command line.
    pub command: String,
    /// The child's pid, once known.
    pub pid: Option<u32>,
    /// What went wrong.
    pub kind: ShellErrorKind,
    /// The child's last stderr lines (up to 20).
    pub stderr_tail: String,
}

fn pid_note(pid: Option<u32>) -> String {
    pid.map(|p| format!("pid {p}, ")).unwrap_or_default()
}

fn tail_note(tail: &str) -> String {
    if tail.is_empty() {
        "; stderr was empty".into()
    } else {
        format!("; stderr tail:\n{tail}")
    }
}

/// The output streams a shell component declares: (stream, fields, direct).
#[derive(Debug, Clone, Default)]
struct Outputs(Vec<(String, Fields, bool)>);

impl Outputs {
    fn add(&mut self, stream: &str, fields: Fields, direct: bool) {
        self.0.push((stream.to_owned(), fields, direct));
    }

    fn declare(&self, declarer: &mut OutputFieldsDeclarer) {
        for (stream, fields, direct) in &self.0 {
            if *direct {
                declarer.declare_direct_stream(stream, fields.clone())
            } else {
                declarer.declare_stream(stream, fields.clone())
            }
        }
    }
}

/// What a shell component is declared with: how to start the child, the
/// output streams, and the metrics the child may update.
#[derive(Debug, Clone)]
struct Declaration {
    command: ShellCommand,
    outputs: Outputs,
    metrics: Registered,
}

impl Declaration {
    fn new<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Self {
            command: ShellCommand {
                argv: argv.into_iter().map(Into::into).collect(),
                dir: None,
                env: Vec::new(),
            },
            outputs: Outputs::default(),
            metrics: Registered::default(),
        }
    }
}
