//! A topology's log level overrides (Storm's `LogConfig`, set by `storm
//! set_log_level`): named loggers raised or lowered for a while in every
//! worker of the topology, without a restart.
//!
//! A logger is a `tracing` target (a module path such as `squall_worker`
//! or `word_count`), or `ROOT` for the default level. Nimbus stores the
//! overrides in the topology's record; each worker reads them with the
//! record every round and turns them, with its start-up filter
//! (`RUST_LOG`), into the filter it logs with ([`LogConfig::directives`]).
//! An override with a timeout ends at `expires_at_ms`, and the worker
//! goes back to its start-up level for that logger (Storm's reset level).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Storm's name for the default level.
pub const ROOT_LOGGER: &str = "ROOT";

/// The levels a logger may be set to (Storm's log4j names that `tracing`
/// has, and `OFF`).
pub const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"];

/// One logger's override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLevel {
    /// One of [`LEVELS`].
    pub level: String,
    /// How long it lasts, s; 0: until removed.
    pub timeout_secs: u64,
    /// When it ends, ms since the Unix epoch (Nimbus's clock when it was
    /// set, plus the timeout); `None` when it does not.
    pub expires_at_ms: Option<u64>,
}

impl LogLevel {
    /// Whether it still applies at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|t| now_ms < t)
    }
}

/// A topology's overrides, by logger name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Logger name (a `tracing` target, or [`ROOT_LOGGER`]) to its override.
    pub loggers: BTreeMap<String, LogLevel>,
}

/// One change asked of a topology's overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChange {
    /// The logger.
    pub logger: String,
    /// The level to set (any case); `None` removes the override.
    pub level: Option<String>,
    /// How long it lasts, s; 0: until removed.
    pub timeout_secs: u64,
}

/// `level` in upper case when it is one of [`LEVELS`].
///
/// # Errors
/// A message naming the level and the ones allowed.
pub fn parse_level(level: &str) -> Result<&'static str, String> {
    let upper = level.trim().to_ascii_uppercase();
    LEVELS
        .iter()
        .find(|l| **l == upper)
        .copied()
        .ok_or_else(|| format!("unknown log level {level:?}: expected one of {LEVELS:?}"))
}

/// Whether `name` can name a logger: [`ROOT_LOGGER`] or a target made of
/// letters, digits, `_` and `::`, at most 200 bytes.
pub fn valid_logger(name: &str) -> bool {
    name == ROOT_LOGGER
        || (!name.is_empty()
            && name.len() <= 200
            && name.split("::").all(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            }))
}

/// Parses Storm's `-l LOGGER=LEVEL[:TIMEOUT_SECS]`.
///
/// # Errors
/// A message naming what is wrong in `arg`.
pub fn parse_change(arg: &str) -> Result<LogChange, String> {
    let (logger, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected LOGGER=LEVEL[:TIMEOUT_SECS]"))?;
    let (level, timeout) = match rest.split_once(':') {
        Some((l, t)) => (
            l,
            t.trim()
                .parse::<u64>()
                .map_err(|_| format!("{arg:?}: timeout {t:?} is not a number of seconds"))?,
        ),
        None => (rest, 0),
    };
    let change = LogChange {
        logger: logger.trim().to_owned(),
        level: Some(level.to_owned()),
        timeout_secs: timeout,
    };
    validate(&change)?;
    Ok(change)
}

fn validate(change: &LogChange) -> Result<(), String> {
    if !valid_logger(&change.logger) {
        return Err(format!(
            "logger {:?} is neither ROOT nor a target such as my_crate::module",
            change.logger
        ));
    }
    if let Some(level) = &change.level {
        parse_level(level)?;
    }
    Ok(())
}

impl LogConfig {
    /// This config with `changes` applied at `now_ms`, overrides that
    /// ended before `now_ms` dropped.
    ///
    /// # Errors
    /// A message naming the first invalid logger or level; nothing is
    /// changed then.
    pub fn with_changes(&self, changes: &[LogChange], now_ms: u64) -> Result<LogConfig, String> {
        let mut next = self.clone();
        next.loggers.retain(|_, l| l.live(now_ms));
        for c in changes {
            validate(c)?;
            match &c.level {
                None => {
                    next.loggers.remove(&c.logger);
                }
                Some(level) => {
                    let level = parse_level(level)?.to_owned();
                    let expires_at_ms = (c.timeout_secs > 0)
                        .then(|| now_ms.saturating_add(c.timeout_secs.saturating_mul(1000)));
                    next.loggers.insert(
                        c.logger.clone(),
                        LogLevel {
                            level,
                            timeout_secs: c.timeout_secs,
                            expires_at_ms,
                        },
                    );
                }
            }
        }
        Ok(next)
    }

    /// The `tracing` filter (`EnvFilter` syntax) a worker whose start-up
    /// filter is `base` logs with at `now_ms`: `base` with the live
    /// overrides in place of its directives for the same targets (`ROOT`
    /// replaces its default level).
    pub fn directives(&self, base: &str, now_ms: u64) -> String {
        let live: Vec<(&String, &LogLevel)> = self
            .loggers
            .iter()
            .filter(|(_, l)| l.live(now_ms))
            .collect();
        // The logger a base directive sets: `None` for the default level;
        // span filters (`target[span]=level`) are never overridden.
        let overridden = |d: &str| {
            if d.contains('[') {
                return false;
            }
            let target = match d.split_once('=') {
                Some((t, _)) => t.trim(),
                None if parse_level(d).is_ok() => ROOT_LOGGER,
                None => d,
            };
            live.iter().any(|(n, _)| n.as_str() == target)
        };
        let mut out: Vec<String> = base
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && !overridden(d))
            .map(str::to_owned)
            .collect();
        for (name, l) in live {
            let level = l.level.to_ascii_lowercase();
            if name == ROOT_LOGGER {
                out.insert(0, level);
            } else {
                out.push(format!("{name}={level}"));
            }
        }
        out.join(",")
    }

    /// When the next live override ends after `now_ms`, if any.
    pub fn next_expiry(&self, now_ms: u64) -> Option<u64> {
        self.loggers
            .values()
            .filter_map(|l| l.expires_at_ms)
            .filter(|&t| t > now_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(arg: &str) -> LogChange {
        parse_change(arg).unwrap()
    }

    #[test]
    fn storms_syntax_parses_and_bad_input_is_named() {
        assert_eq!(
            change("ROOT=debug:60"),
            LogChange {
                logger: "ROOT".into(),
                level: Some("debug".into()),
                timeout_secs: 60
            }
        );
        assert_eq!(change("squall_worker::acking=TRACE").timeout_secs, 0);
        let e = parse_change("ROOT=LOUD:5").unwrap_err();
        assert!(e.contains("LOUD"), "{e}");
        let e = parse_change("ROOT=DEBUG:soon").unwrap_err();
        assert!(e.contains("soon"), "{e}");
        let e = parse_change("a b=DEBUG").unwrap_err();
        assert!(e.contains("a b"), "{e}");
        assert!(parse_change("DEBUG").is_err());
        assert!(!valid_logger("a::"));
        assert!(!valid_logger(""));
    }

    #[test]
    fn overrides_replace_the_base_and_end_at_their_time() {
        let c = LogConfig::default()
            .with_changes(
                &[change("ROOT=DEBUG:60"), change("word_count=TRACE")],
                1_000,
            )
            .unwrap();
        assert_eq!(c.loggers["ROOT"].expires_at_ms, Some(61_000));
        assert_eq!(c.loggers["word_count"].expires_at_ms, None);
        let base = "info,zookeeper_client=warn,word_count=error";
        assert_eq!(
            c.directives(base, 2_000),
            "debug,zookeeper_client=warn,word_count=trace"
        );
        // After the ROOT override ends, the base's default comes back.
        assert_eq!(
            c.directives(base, 61_000),
            "info,zookeeper_client=warn,word_count=trace"
        );
        assert_eq!(c.next_expiry(2_000), Some(61_000));
        assert_eq!(c.next_expiry(61_000), None);
        // Removing and expiring both drop the entry.
        let removed = c
            .with_changes(
                &[LogChange {
                    logger: "word_count".into(),
                    level: None,
                    timeout_secs: 0,
                }],
                61_000,
            )
            .unwrap();
        assert!(removed.loggers.is_empty(), "{removed:?}");
        assert_eq!(removed.directives(base, 61_000), base);
    }

    #[test]
    fn an_invalid_change_changes_nothing() {
        let c = LogConfig::default()
            .with_changes(&[change("ROOT=DEBUG")], 0)
            .unwrap();
        let bad = LogChange {
            logger: "x".into(),
            level: Some("LOUD".into()),
            timeout_secs: 0,
        };
        assert!(c.with_changes(&[change("y=WARN"), bad], 0).is_err());
        assert_eq!(c.loggers.len(), 1);
    }
}
