//! A worker process's logging: its `tracing` subscriber, whose filter the
//! topology's log level overrides change while it runs (Storm's
//! `set_log_level`; see `squall_cluster::log_config`).

use squall_cluster::log_config::LogConfig;
use std::sync::Mutex;
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

/// Installs the worker process's subscriber once: plain lines on stderr
/// (its supervisor writes them to the worker's log file), filtered by
/// `RUST_LOG` (default `info`) until overrides change it. Later calls do
/// nothing.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let base = std::env::var("RUST_LOG")
            .ok()
            .filter(|v| EnvFilter::try_new(v).is_ok())
            .unwrap_or_else(|| "info".to_owned());
        let builder = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(&base))
            .with_ansi(false)
            .with_writer(std::io::stderr)
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
    });
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
}
