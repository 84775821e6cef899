//! Typed topology configuration with Storm's key names.

use crate::cluster_config::ClusterConfig;
use crate::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why a configuration key or value was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A key in a reserved namespace (`topology.`, `storm.`, …) that Squall
    /// does not know.
    #[error("unknown config key {0:?}")]
    UnknownKey(String),
    /// A value of the wrong type or out of range.
    #[error("config key {key:?} wants {expected}, got {got:?}")]
    BadValue {
        /// The key.
        key: String,
        /// What the key takes.
        expected: &'static str,
        /// The value given, as written.
        got: String,
    },
    /// The YAML text did not parse, or is not a map of keys to values.
    #[error("config is not a YAML map of keys to values: {0}")]
    Yaml(String),
    /// A `key=value` override without `=`.
    #[error("config override {0:?} is not of the form key=value")]
    NotKeyValue(String),
}

/// Key namespaces Squall owns: an unknown key under them is an error, so a
/// typo does not pass silently. Other keys are user settings.
const RESERVED: &[&str] = &[
    "topology.",
    "storm.",
    "nimbus.",
    "supervisor.",
    "worker.",
    "squall.",
];

/// A topology's configuration (Storm's `Config`, typed). Defaults follow
/// Storm unless noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `topology.workers`: worker processes for the topology (default 1).
    pub workers: u32,
    /// `topology.acker.executors`: acker executors; `None` means one per
    /// worker (Storm's default); 0 disables tracking.
    pub acker_executors: Option<u32>,
    /// `topology.acker.spout.thread`: run each acker executor of a worker
    /// in the thread of one of the worker's spout executors, paired in
    /// order, so that a tree's init and its completion are function calls
    /// rather than messages between threads (default true). Bolts still
    /// send their acks to the acker's task; its metrics are its own. Turn
    /// it off when a spout's `next_tuple` may block, which would delay
    /// every ack the acker handles. Squall's own setting (Storm runs
    /// ackers as separate executors).
    pub acker_spout_thread: bool,
    /// `topology.message.timeout.secs`: a tuple tree not completed within
    /// this many seconds fails with reason timeout (default 30).
    pub message_timeout_secs: u64,
    /// `topology.max.spout.pending`: most tracked tuples in flight per spout
    /// task; `None` is unlimited (default).
    pub max_spout_pending: Option<usize>,
    /// `topology.tick.tuple.freq.secs`: bolts get a tick tuple this often
    /// (default none).
    pub tick_tuple_freq_secs: Option<u64>,
    /// `topology.debug`: log every emitted tuple (default false).
    pub debug: bool,
    /// `topology.producer.batch.size`: tuples per batch between executors
    /// (default 128; Storm's is 1). Batches also flush whenever the emitting
    /// executor runs out of input, so light load keeps low latency.
    pub producer_batch_size: usize,
    /// `topology.executor.receive.buffer.size`: an executor's inbound queue
    /// capacity, in tuples (default 32768, as Storm).
    pub executor_receive_buffer_size: usize,
    /// `topology.flush.tuple.freq.millis`: how often partial batches are
    /// flushed at the latest, in ms (default 1, as Storm).
    pub flush_tuple_freq_millis: u64,
    /// `topology.stats.sample.rate`: the fraction of tuples timed for
    /// latency metrics (default 0.05, as Storm).
    pub stats_sample_rate: f64,
    /// `topology.disable.loadaware.messaging`: plain shuffle everywhere
    /// instead of preferring the worker's own tasks (default false, as
    /// Storm).
    pub disable_loadaware_messaging: bool,
    /// `topology.localityaware.higher.bound`: a shuffle widens from the
    /// worker's own tasks to every task once their average load reaches
    /// this (0 to 1; default 0.8, as Storm). An executor's load is the
    /// larger of its inbound queue's fill (Storm's) and its capacity over
    /// the last 100 ms (the share of that time it spent executing), so an
    /// executor kept busy by a bounded stream (`max.spout.pending`) counts
    /// as loaded too.
    pub localityaware_higher_bound: f64,
    /// `topology.localityaware.lower.bound`: and narrows back to them once
    /// it falls under this (0 to 1; default 0.2, as Storm).
    pub localityaware_lower_bound: f64,
    /// `topology.subprocess.timeout.secs`: a multilang subprocess that sends
    /// nothing for this many seconds (heartbeats included) is taken as hung
    /// and restarted; `None` falls back to `supervisor.worker.timeout.secs`,
    /// as in Storm.
    #[serde(default)]
    pub subprocess_timeout_secs: Option<u64>,
    /// `topology.shellbolt.max.pending`: tuples queued for a shell bolt's
    /// subprocess before `execute` waits (default 100, as Storm).
    #[serde(default = "default_shellbolt_max_pending")]
    pub shellbolt_max_pending: usize,
    /// `topology.state.provider`: where stateful bolts keep their state:
    /// `memory` (this process's memory, kept across task restarts within
    /// the process; the default, as Storm's `InMemoryKeyValueStateProvider`),
    /// `redb` (a file per task on local disk), or a provider the topology
    /// registered under that name.
    #[serde(default = "default_state_provider")]
    pub state_provider: String,
    /// `topology.state.provider.config`: the provider's setting; for `redb`
    /// the folder of its files (default `<storm.local.dir>/state`).
    #[serde(default)]
    pub state_provider_config: Option<String>,
    /// `topology.state.checkpoint.interval.ms`: how often stateful bolts
    /// checkpoint, in ms (default 1000, as Storm).
    #[serde(default = "default_checkpoint_interval_ms")]
    pub state_checkpoint_interval_ms: u64,
    /// `topology.users`: principals besides its submitter allowed every
    /// operation on this topology when security is on (Storm's key).
    #[serde(default)]
    pub topology_users: Vec<String>,
    /// `topology.readonly.users`: principals allowed to see this topology
    /// (list, info) but not change it (Storm's key).
    #[serde(default)]
    pub topology_readonly_users: Vec<String>,
    /// Daemon settings (`storm.zookeeper.*`, `nimbus.*`, `supervisor.*`,
    /// `worker.*`, `storm.local.*`) of this process. Never stored with a
    /// submitted topology: a worker fills them from its supervisor's, so
    /// both judge heartbeats and frames by the same numbers.
    #[serde(skip)]
    pub cluster: ClusterConfig,
    /// Keys outside the reserved namespaces, for the topology's own use.
    pub user: BTreeMap<String, Value>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            workers: 1,
            acker_executors: None,
            acker_spout_thread: true,
            message_timeout_secs: 30,
            max_spout_pending: None,
            tick_tuple_freq_secs: None,
            debug: false,
            producer_batch_size: 128,
            executor_receive_buffer_size: 32768,
            flush_tuple_freq_millis: 1,
            stats_sample_rate: 0.05,
            disable_loadaware_messaging: false,
            localityaware_higher_bound: 0.8,
            localityaware_lower_bound: 0.2,
            subprocess_timeout_secs: None,
            shellbolt_max_pending: default_shellbolt_max_pending(),
            state_provider: default_state_provider(),
            state_provider_config: None,
            state_checkpoint_interval_ms: default_checkpoint_interval_ms(),
            topology_users: Vec::new(),
            topology_readonly_users: Vec::new(),
            cluster: ClusterConfig::default(),
            user: BTreeMap::new(),
        }
    }
}

fn list(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn default_shellbolt_max_pending() -> usize {
    100
}

fn default_state_provider() -> String {
    "memory".to_owned()
}

fn default_checkpoint_interval_ms() -> u64 {
    1000
}

fn yaml_to_value(v: &yaml_serde::Value) -> Value {
    use yaml_serde::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        Y::String(s) => Value::from(s.as_str()),
        Y::Sequence(s) => Value::List(s.iter().map(yaml_to_value).collect()),
        Y::Mapping(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (yaml_key(k), yaml_to_value(v)))
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_value(&t.value),
    }
}

fn yaml_key(k: &yaml_serde::Value) -> String {
    match k {
        yaml_serde::Value::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

impl Config {
    /// The default configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Acker executors in effect: the setting, or one per worker.
    pub fn effective_ackers(&self) -> u32 {
        self.acker_executors.unwrap_or(self.workers)
    }

    /// The effective multilang subprocess timeout in seconds:
    /// `topology.subprocess.timeout.secs`, else
    /// `supervisor.worker.timeout.secs` (Storm's fallback).
    pub fn effective_subprocess_timeout_secs(&self) -> u64 {
        self.subprocess_timeout_secs
            .unwrap_or(self.cluster.supervisor_worker_timeout_secs)
    }

    /// The topology settings under their Storm key names, with the user
    /// keys (what Storm hands multilang subprocesses as `conf`). Unset
    /// optional keys are `Null`; daemon settings are left out.
    pub fn to_storm_map(&self) -> BTreeMap<String, Value> {
        let opt = |v: Option<u64>| v.map_or(Value::Null, |v| Value::Int(v as i64));
        let mut m = self.user.clone();
        let entries = [
            ("topology.workers", Value::Int(self.workers.into())),
            (
                "topology.acker.executors",
                opt(self.acker_executors.map(u64::from)),
            ),
            (
                "topology.acker.spout.thread",
                Value::Bool(self.acker_spout_thread),
            ),
            (
                "topology.message.timeout.secs",
                Value::Int(self.message_timeout_secs as i64),
            ),
            (
                "topology.max.spout.pending",
                opt(self.max_spout_pending.map(|v| v as u64)),
            ),
            (
                "topology.tick.tuple.freq.secs",
                opt(self.tick_tuple_freq_secs),
            ),
            ("topology.debug", Value::Bool(self.debug)),
            (
                "topology.producer.batch.size",
                Value::Int(self.producer_batch_size as i64),
            ),
            (
                "topology.executor.receive.buffer.size",
                Value::Int(self.executor_receive_buffer_size as i64),
            ),
            (
                "topology.flush.tuple.freq.millis",
                Value::Int(self.flush_tuple_freq_millis as i64),
            ),
            (
                "topology.stats.sample.rate",
                Value::Float(self.stats_sample_rate),
            ),
            (
                "topology.disable.loadaware.messaging",
                Value::Bool(self.disable_loadaware_messaging),
            ),
            (
                "topology.localityaware.higher.bound",
                Value::Float(self.localityaware_higher_bound),
            ),
            (
                "topology.localityaware.lower.bound",
                Value::Float(self.localityaware_lower_bound),
            ),
            (
                "topology.subprocess.timeout.secs",
                opt(self.subprocess_timeout_secs),
            ),
            (
                "topology.shellbolt.max.pending",
                Value::Int(self.shellbolt_max_pending as i64),
            ),
            (
                "topology.state.provider",
                Value::from(self.state_provider.as_str()),
            ),
            (
                "topology.state.provider.config",
                self.state_provider_config
                    .as_deref()
                    .map_or(Value::Null, Value::from),
            ),
            (
                "topology.state.checkpoint.interval.ms",
                Value::Int(self.state_checkpoint_interval_ms as i64),
            ),
            ("topology.users", list(&self.topology_users)),
            (
                "topology.readonly.users",
                list(&self.topology_readonly_users),
            ),
        ];
        for (k, v) in entries {
            m.insert(k.to_owned(), v);
        }
        m
    }

    /// Parses a YAML map of Storm keys (e.g. `topology.workers: 2`) over the
    /// defaults. Errors name the first bad key.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let mut c = Self::default();
        c.merge_yaml(text)?;
        Ok(c)
    }

    /// Applies a YAML map of keys over this configuration.
    pub fn merge_yaml(&mut self, text: &str) -> Result<(), ConfigError> {
        let doc: yaml_serde::Value =
            yaml_serde::from_str(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
        match doc {
            yaml_serde::Value::Null => Ok(()),
            yaml_serde::Value::Mapping(m) => m
                .iter()
                .try_for_each(|(k, v)| self.set(&yaml_key(k), yaml_to_value(v))),
            other => Err(ConfigError::Yaml(format!(
                "top level is {}",
                yaml_serde::to_string(&other).unwrap_or_default().trim()
            ))),
        }
    }

    /// Applies one `key=value` override (as `-c key=value` on a command
    /// line); the value is read as YAML, so `3` is an int and `true` a bool.
    pub fn apply_override(&mut self, kv: &str) -> Result<(), ConfigError> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| ConfigError::NotKeyValue(kv.to_owned()))?;
        let value = yaml_serde::from_str::<yaml_serde::Value>(v)
            .map(|y| yaml_to_value(&y))
            .unwrap_or_else(|_| Value::from(v));
        self.set(k.trim(), value)
    }

    /// Sets one key. Known keys are type-checked; unknown keys in Squall's
    /// namespaces are refused; other keys go to [`Config::user`].
    pub fn set(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        let bad = |expected: &'static str| ConfigError::BadValue {
            key: key.to_owned(),
            expected,
            got: value.to_string(),
        };
        let positive = |v: &Value| v.as_i64().filter(|i| *i > 0);
        let non_negative = |v: &Value| v.as_i64().filter(|i| *i >= 0);
        let fraction = |v: &Value| v.as_f64().filter(|r| (0.0..=1.0).contains(r));
        match key {
            "topology.workers" => {
                self.workers = positive(&value).ok_or_else(|| bad("a positive integer"))? as u32
            }
            "topology.acker.executors" => {
                self.acker_executors = match value {
                    Value::Null => None,
                    ref v => {
                        Some(non_negative(v).ok_or_else(|| bad("an integer >= 0 or null"))? as u32)
                    }
                }
            }
            "topology.message.timeout.secs" => {
                self.message_timeout_secs =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as u64
            }
            "topology.max.spout.pending" => {
                self.max_spout_pending = match value {
                    Value::Null => None,
                    ref v => {
                        Some(positive(v).ok_or_else(|| bad("a positive integer or null"))? as usize)
                    }
                }
            }
            "topology.tick.tuple.freq.secs" => {
                self.tick_tuple_freq_secs = match value {
                    Value::Null => None,
                    ref v => {
                        Some(positive(v).ok_or_else(|| bad("a positive integer or null"))? as u64)
                    }
                }
            }
            "topology.debug" => self.debug = value.as_bool().ok_or_else(|| bad("true or false"))?,
            "topology.producer.batch.size" => {
                self.producer_batch_size =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as usize
            }
            "topology.executor.receive.buffer.size" => {
                self.executor_receive_buffer_size =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as usize
            }
            "topology.flush.tuple.freq.millis" => {
                self.flush_tuple_freq_millis =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as u64
            }
            "topology.stats.sample.rate" => {
                self.stats_sample_rate =
                    fraction(&value).ok_or_else(|| bad("a number from 0 to 1"))?
            }
            "topology.acker.spout.thread" => {
                self.acker_spout_thread = value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "topology.disable.loadaware.messaging" => {
                self.disable_loadaware_messaging =
                    value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "topology.localityaware.higher.bound" => {
                self.localityaware_higher_bound =
                    fraction(&value).ok_or_else(|| bad("a number from 0 to 1"))?
            }
            "topology.localityaware.lower.bound" => {
                self.localityaware_lower_bound =
                    fraction(&value).ok_or_else(|| bad("a number from 0 to 1"))?
            }
            "topology.subprocess.timeout.secs" => {
                self.subprocess_timeout_secs = match value {
                    Value::Null => None,
                    ref v => {
                        Some(positive(v).ok_or_else(|| bad("a positive integer or null"))? as u64)
                    }
                }
            }
            "topology.shellbolt.max.pending" => {
                self.shellbolt_max_pending =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as usize
            }
            "topology.state.provider" => match value.as_str() {
                Some(p) if !p.is_empty() => self.state_provider = p.to_owned(),
                _ => return Err(bad("a provider name: memory, redb or a registered one")),
            },
            "topology.state.provider.config" => {
                self.state_provider_config = match value {
                    Value::Null => None,
                    ref v => Some(
                        v.as_str()
                            .ok_or_else(|| bad("a string or null"))?
                            .to_owned(),
                    ),
                }
            }
            "topology.state.checkpoint.interval.ms" => {
                self.state_checkpoint_interval_ms =
                    positive(&value).ok_or_else(|| bad("a positive integer"))? as u64
            }
            "topology.users" => {
                self.topology_users = crate::cluster_config::principals(&value)
                    .ok_or_else(|| bad("a list of principals"))?
            }
            "topology.readonly.users" => {
                self.topology_readonly_users = crate::cluster_config::principals(&value)
                    .ok_or_else(|| bad("a list of principals"))?
            }
            k if self.cluster.set(k, &value)? => {}
            k if RESERVED.iter().any(|p| k.starts_with(p)) => {
                return Err(ConfigError::UnknownKey(k.to_owned()))
            }
            k => {
                self.user.insert(k.to_owned(), value);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storm_map_sets_back_to_the_same_config() {
        let mut c = Config::new();
        for kv in [
            "topology.workers=3",
            "topology.max.spout.pending=500",
            "topology.subprocess.timeout.secs=7",
            "topology.shellbolt.max.pending=9",
            "topology.debug=true",
            "pystorm.log.level=debug",
            "topology.state.provider=redb",
            "topology.state.provider.config=/tmp/s",
            "topology.state.checkpoint.interval.ms=250",
        ] {
            c.apply_override(kv).unwrap();
        }
        let map = c.to_storm_map();
        assert_eq!(map["topology.subprocess.timeout.secs"], Value::Int(7));
        assert_eq!(map["pystorm.log.level"], Value::from("debug"));
        let mut back = Config::new();
        for (k, v) in map {
            if v != Value::Null {
                back.set(&k, v).unwrap();
            }
        }
        assert_eq!(back, c);
        assert_eq!(c.effective_subprocess_timeout_secs(), 7);
        assert_eq!(
            Config::new().effective_subprocess_timeout_secs(),
            Config::new().cluster.supervisor_worker_timeout_secs
        );
    }

    #[test]
    fn multilang_keys_refuse_bad_values() {
        let mut c = Config::new();
        let e = c
            .apply_override("topology.shellbolt.max.pending=0")
            .unwrap_err();
        assert!(
            e.to_string().contains("topology.shellbolt.max.pending"),
            "{e}"
        );
        assert!(c
            .apply_override("topology.subprocess.timeout.secs=x")
            .is_err());
    }
}
