//! A worker process's logging: its `tracing` subscriber, whose filter the
//! topology's log level overrides change while it runs (Storm's
//! `set_log_level`; see `squall_cluster::log_config`).

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use squall_cluster::log_config::LogConfig;
use squall_cluster::worker_env as env;
use std::path::PathBuf;
use std::sync::Mutex;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

type SetFilter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The handle the worker loop changes its process's log filter through.
pub struct LogControl {
    base: String,
    current: String,
    set: SetFilter,
}

impl LogControl {
    /// A control over a filter that starts as `base` (`EnvFilter` syntax)
    /// and is replaced by calling `set` with a new one.
    pub fn new(
        base: impl Into<String>,
        set: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let base = base.into();
        Self {
            current: base.clone(),
            base,
            set: Box::new(set),
        }
    }

    /// Makes the filter what `config` asks at `now_ms` (ms since the Unix
    /// epoch), when that differs from the current one, and logs the
    /// change at INFO (after it, so a reset is logged at the base level).
    pub fn apply(&mut self, config: &LogConfig, now_ms: u64) {
        let wanted = config.directives(&self.base, now_ms);
        if wanted == self.current {
            return;
        }
        match (self.set)(&wanted) {
            Ok(()) => {
                let reset = wanted == self.base;
                self.current = wanted;
                if reset {
                    tracing::info!(filter = %self.current, "log levels reset to the worker's own");
                } else {
                    tracing::info!(filter = %self.current, "log levels set");
                }
            }
            Err(e) => {
                tracing::warn!(filter = %wanted, "cannot set log levels: {e}");
                // Not retried every round: the same config fails the same way.
                self.current = wanted;
            }
        }
    }
}

/// The control [`init`] made, until the worker loop takes it.
static CONTROL: Mutex<Option<LogControl>> = Mutex::new(None);

/// Installs the worker process's subscriber once: plain lines filtered by
/// `RUST_LOG` (default `info`) until overrides change it. A worker its
/// supervisor started writes them to the log file its environment names
/// ([`squall_cluster::worker_env::LOG_FILE`]), rotated by size; any other
/// process (or a worker whose file cannot be opened) writes them to
/// stderr. Later calls do nothing.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let base = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| EnvFilter::try_new(v).is_ok())
            .unwrap_or_else(|| "info".to_owned());
        let (writer, refused) = match LogFile::from_env() {
            Some(file) => match file.open() {
                Ok(w) => (BoxMakeWriter::new(w), None),
                Err(e) => (BoxMakeWriter::new(std::io::stderr), Some(e)),
            },
            None => (BoxMakeWriter::new(std::io::stderr), None),
        };
        let builder = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(&base))
            .with_ansi(false)
            .with_writer(writer)
            .with_filter_reloading();
        let handle = builder.reload_handle();
        let installed = builder.try_init().is_ok();
        let control = LogControl::new(base, move |directives| {
            if !installed {
                return Err("the topology binary installed its own logger before \
                            submit_topology (call squall::init_logging instead)"
                    .into());
            }
            let filter = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        });
        *CONTROL.lock().unwrap_or_else(|p| p.into_inner()) = Some(control);
        if let Some(e) = refused {
            tracing::warn!("logging to stderr: {e}");
        }
    });
}

/// A worker's size-rotated log file, as its supervisor set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// The live file; rotated ones add `.1` (newest) to `.<max_files>`.
    pub path: PathBuf,
    /// Size past which the live file is rotated, bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept; older ones are deleted. `file-rotate` renames
    /// the rotated files before it deletes the one past this limit, so for
    /// a moment during a rotation there is one more.
    pub max_files: usize,
}

impl LogFile {
    /// The file the worker environment names, with its limits (Storm's
    /// `worker.xml` ones, 100 MiB and 9, when unset or unreadable);
    /// `None` outside a worker its supervisor started.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os(env::LOG_FILE)?;
        let number = |key: &str| std::env::var(key).ok().and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            path: PathBuf::from(path),
            max_file_bytes: number(env::LOG_MAX_FILE_BYTES)
                .filter(|b| *b > 0)
                .unwrap_or(100 * 1024 * 1024),
            max_files: number(env::LOG_MAX_FILES)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(9),
        })
    }

    /// The file opened for appending (created with its directory when
    /// missing), rotated once it passes `max_file_bytes` at the end of a
    /// line, by `file-rotate`.
    ///
    /// # Errors
    /// A message naming the file when it cannot be created or opened.
    pub fn open(&self) -> Result<Mutex<FileRotate<AppendCount>>, String> {
        let named =
            |e: std::io::Error| format!("cannot open log file {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(named)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(named)?;
        let limit = usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX);
        Ok(Mutex::new(FileRotate::new(
            &self.path,
            AppendCount::new(self.max_files),
            ContentLimit::BytesSurpassed(limit),
            Compression::None,
            None,
        )))
    }
}

/// The control over the subscriber [`init`] installed, once (`None` before
/// `init` and after the first call).
pub fn take_control() -> Option<LogControl> {
    CONTROL.lock().unwrap_or_else(|p| p.into_inner()).take()
}

#[cfg(test)]
mod tests {
    use super::*;
    use squall_cluster::log_config::parse_change;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_filter_changes_only_when_the_overrides_do_and_resets_at_expiry() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let log = seen.clone();
        let mut control = LogControl::new("info", move |d| {
            log.lock().unwrap().push(d.to_owned());
            Ok(())
        });
        let config = LogConfig::default()
            .with_changes(&[parse_change("word_count=DEBUG:5").unwrap()], 1_000)
            .unwrap();
        control.apply(&LogConfig::default(), 1_000);
        control.apply(&config, 1_000);
        control.apply(&config, 2_000);
        control.apply(&config, 6_000);
        control.apply(&config, 7_000);
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["info,word_count=debug".to_owned(), "info".to_owned()]
        );
    }

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_at_most_max_files() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("squall-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = LogFile {
            path: dir.join("topo/worker-6700.log"),
            max_file_bytes: 1024,
            max_files: 3,
        };
        let w = file.open().unwrap();
        for i in 0..1000 {
            writeln!(w.lock().unwrap(), "line {i:04} {}", "x".repeat(40)).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.join("topo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "worker-6700.log",
                "worker-6700.log.1",
                "worker-6700.log.2",
                "worker-6700.log.3"
            ]
        );
        let live = std::fs::read_to_string(&file.path).unwrap();
        assert!(
            live.ends_with(&format!("line 0999 {}\n", "x".repeat(40))),
            "{live}"
        );
        let newest_rotated = std::fs::read_to_string(dir.join("topo/worker-6700.log.1")).unwrap();
        assert!(newest_rotated.len() >= 1024 && newest_rotated.len() < 1024 + 60);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_log_file_is_named_in_the_error() {
        let file = LogFile {
            path: PathBuf::from("/proc/squall-no/worker-1.log"),
            max_file_bytes: 1024,
            max_files: 1,
        };
        let Err(e) = file.open() else {
            panic!("opened a file under /proc")
        };
        assert!(e.contains("/proc/squall-no/worker-1.log"), "{e}");
    }
}
