//! The [`Launcher`] seam: how a supervisor starts workers. In a cluster
//! they are child processes ([`ProcessLauncher`]); `LocalCluster` can use
//! threads behind the same trait.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Everything a worker needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerLaunch {
    /// The topology.
    pub topology_id: String,
    /// The slot's port.
    pub port: u16,
    /// The topology binary (verified against its hash); `None` for a
    /// topology run in-process (`LocalCluster`).
    pub binary: Option<PathBuf>,
    /// Arguments the topology was submitted with.
    pub args: Vec<String>,
    /// The worker's directory (local heartbeat file).
    pub worker_dir: PathBuf,
    /// Where its stdout and stderr go (its `tracing` lines go to the log
    /// file its environment names, [`squall_cluster::worker_env::LOG_FILE`]).
    pub output_file: PathBuf,
    /// Environment telling the binary to run in worker mode.
    pub env: Vec<(String, String)>,
}

/// A started worker.
pub trait WorkerHandle: Send {
    /// Whether it still runs (reaps it if it exited).
    fn is_alive(&mut self) -> bool;
    /// Asks it to stop (SIGTERM for a process) so its components clean
    /// up; returns at once. [`WorkerHandle::is_alive`] tells when it did.
    fn terminate(&mut self);
    /// Stops it at once (SIGKILL for a process) and waits for it (reaps
    /// it); harmless when it already exited.
    fn kill(&mut self);
    /// Its process id, or another identifier.
    fn id(&self) -> u32;
}

impl WorkerLaunch {
    /// The value of environment variable `name` given to the worker.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Starts workers.
pub trait Launcher: Send {
    /// Starts a worker for `launch`.
    ///
    /// # Errors
    /// The OS error when it cannot be started.
    fn launch(&mut self, launch: &WorkerLaunch) -> std::io::Result<Box<dyn WorkerHandle>>;

    /// A handle on worker `pid` that an earlier run of this supervisor
    /// started in `worker_dir`, if it still runs (a restarted supervisor
    /// adopts its workers rather than start a second one per slot).
    fn recover(&mut self, _pid: u32, _worker_dir: &Path) -> Option<Box<dyn WorkerHandle>> {
        None
    }
}

/// Runs workers as child processes of the supervisor, output appended to
/// their log file. A handle dropped while its process runs kills and reaps
/// it, so no worker is left behind as a zombie.
#[derive(Debug, Default)]
pub struct ProcessLauncher;

struct ProcessHandle(Child);

impl WorkerHandle for ProcessHandle {
    fn is_alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    fn terminate(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if matches!(self.0.try_wait(), Ok(None)) {
            if let Ok(pid) = i32::try_from(self.0.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A worker started by an earlier run of the supervisor: no longer its
/// child (init reaps it), watched and signalled by pid.
struct AdoptedHandle {
    pid: i32,
    /// `SQUALL_WORKER_DIR=<dir>`, which tells it from a reused pid.
    marker: Vec<u8>,
}

impl AdoptedHandle {
    fn runs(&self) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        !zombie && environ_has(self.pid, &self.marker)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), signal);
    }
}

fn environ_has(pid: i32, marker: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker))
}

impl WorkerHandle for AdoptedHandle {
    fn is_alive(&mut self) -> bool {
        self.runs()
    }

    fn terminate(&mut self) {
        if self.runs() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
        }
    }

    fn kill(&mut self) {
        if self.runs() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
        }
        // Not a child: wait (bounded) for it to go.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.runs() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn id(&self) -> u32 {
        self.pid as u32
    }
}

impl Launcher for ProcessLauncher {
    fn recover(&mut self, pid: u32, worker_dir: &Path) -> Option<Box<dyn WorkerHandle>> {
        let pid = i32::try_from(pid).ok()?;
        let mut marker = format!("{}=", squall_cluster::worker_env::DIR).into_bytes();
        marker.extend_from_slice(worker_dir.as_os_str().as_encoded_bytes());
        let h = AdoptedHandle { pid, marker };
        h.runs().then(|| Box::new(h) as Box<dyn WorkerHandle>)
    }

    fn launch(&mut self, l: &WorkerLaunch) -> std::io::Result<Box<dyn WorkerHandle>> {
        std::fs::create_dir_all(&l.worker_dir)?;
        if let Some(dir) = l.output_file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&l.output_file)?;
        let binary = l.binary.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "topology {} has no binary: it runs in the process that submitted it",
                    l.topology_id
                ),
            )
        })?;
        let child = Command::new(binary)
            .args(&l.args)
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Box::new(ProcessHandle(child)))
    }
}
