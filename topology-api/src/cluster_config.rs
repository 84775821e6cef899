//! Daemon settings (ZooKeeper, Nimbus, supervisors, workers) with Storm's
//! key names, part of every [`Config`](crate::Config).

use crate::config::ConfigError;
use crate::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A setting that must not be printed (a password): `Debug` shows
/// `Secret(..)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Settings of the cluster daemons, read from `squall.yaml` and `-c`
/// overrides. Defaults follow Storm's `defaults.yaml` unless noted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// `storm.zookeeper.servers`: ZooKeeper hosts (default `[localhost]`).
    pub zookeeper_servers: Vec<String>,
    /// `storm.zookeeper.port`: their client port (default 2181).
    pub zookeeper_port: u16,
    /// `storm.zookeeper.root`: the chroot of Squall's nodes (default `/squall`).
    pub zookeeper_root: String,
    /// `storm.zookeeper.session.timeout`: ZooKeeper session timeout in ms
    /// (default 20000); ephemeral nodes of a dead daemon vanish after it.
    pub zookeeper_session_timeout_ms: u64,
    /// `storm.local.dir`: where daemons keep blobs, binaries, worker
    /// directories and logs (default `squall-local`, relative to the
    /// working directory).
    pub local_dir: String,
    /// `storm.local.hostname`: the host name this daemon advertises
    /// (default `127.0.0.1`; Storm's default is the machine's name).
    pub local_hostname: String,
    /// `nimbus.seeds`: Nimbus hosts, each `host` or `host:port`
    /// (default `[localhost]`).
    pub nimbus_seeds: Vec<String>,
    /// `nimbus.thrift.port`: the Nimbus RPC port (default 6627).
    pub nimbus_port: u16,
    /// `nimbus.thrift.max_buffer_size`: largest RPC frame in bytes
    /// (default 4 MiB; Storm's is 1 MiB).
    pub nimbus_max_frame_bytes: usize,
    /// `nimbus.task.timeout.secs`: an executor whose worker has not beaten
    /// for this long is rescheduled (default 30).
    pub nimbus_task_timeout_secs: u64,
    /// `nimbus.task.launch.secs`: grace period for a newly assigned worker's
    /// first heartbeat (default 120).
    pub nimbus_task_launch_secs: u64,
    /// `nimbus.monitor.freq.secs`: how often Nimbus checks heartbeats and
    /// schedules (default 10).
    pub nimbus_monitor_freq_secs: u64,
    /// `nimbus.file.copy.expiration.secs`: an idle upload session expires
    /// after this long (default 600).
    pub nimbus_file_copy_expiration_secs: u64,
    /// `nimbus.upload.max.sessions`: upload sessions open at once, over all
    /// clients (default 64; one client may hold 8).
    pub nimbus_upload_max_sessions: usize,
    /// `nimbus.thrift.threads`: RPC connections served at once (one thread
    /// each); more are closed at accept (default 256).
    pub nimbus_max_connections: usize,
    /// `nimbus.thrift.idle.timeout.secs`: an RPC connection silent for this
    /// long is closed (default 600).
    pub nimbus_idle_timeout_secs: u64,
    /// `supervisor.slots.ports`: worker ports of a supervisor
    /// (default 6700-6703).
    pub supervisor_slots_ports: Vec<u16>,
    /// `supervisor.worker.timeout.secs`: a worker whose local heartbeat is
    /// older than this is restarted (default 30).
    pub supervisor_worker_timeout_secs: u64,
    /// `supervisor.worker.start.timeout.secs`: grace period for a new
    /// worker's first local heartbeat (default 120).
    pub supervisor_worker_start_timeout_secs: u64,
    /// `supervisor.worker.shutdown.sleep.secs`: how long a worker asked
    /// to stop (SIGTERM) may take to clean up before it is killed
    /// (SIGKILL); default 3, Storm's.
    pub supervisor_worker_shutdown_sleep_secs: u64,
    /// `supervisor.monitor.frequency.secs`: how often a supervisor syncs
    /// assignments and checks workers (default 1; Storm: 3, but Storm also
    /// watches assignments, which Squall polls).
    pub supervisor_monitor_frequency_secs: u64,
    /// `worker.heartbeat.frequency.secs`: how often a worker beats
    /// (default 1).
    pub worker_heartbeat_frequency_secs: u64,
    /// `ui.host`: the address `squall ui` binds (default `127.0.0.1`; Storm
    /// binds all interfaces, Squall only loopback unless told).
    pub ui_host: String,
    /// `ui.port`: the port `squall ui` serves on (default 8080, Storm's).
    pub ui_port: u16,
    /// `ui.max.connections`: connections the UI serves at once (default
    /// 256).
    pub ui_max_connections: usize,
    /// `ui.header.timeout.secs`: how long a client may take to send a
    /// request head, or leave a kept-alive connection idle (default 10).
    pub ui_header_timeout_secs: u64,
    /// `logviewer.port`: the port each supervisor's log viewer serves on
    /// (default 8000, Storm's; 0 takes any free port, which the supervisor
    /// publishes with its record). It listens on `ui.host`, with the UI's
    /// connection limits.
    pub logviewer_port: u16,
    /// `worker.log.max.file.bytes`: a worker's log file is rotated once it
    /// passes this size, in bytes (default 100 MiB, the size of Storm's
    /// `worker.xml` policy).
    pub worker_log_max_file_bytes: u64,
    /// `worker.log.max.files`: rotated log files kept per worker beside
    /// the live one; older ones are deleted (default 9, Storm's
    /// `worker.xml` rollover maximum).
    pub worker_log_max_files: usize,
    /// `squall.security.enable`: mutual TLS on every Squall socket and
    /// authorization of every Nimbus request (default false). With it on,
    /// a missing or bad certificate stops the process at start.
    #[serde(default)]
    pub security_enable: bool,
    /// `storm.zookeeper.auth.payload`: `user:password` every Squall
    /// process authenticates to ZooKeeper with (the `digest` scheme), its
    /// nodes then readable and writable by those credentials only;
    /// required with security on.
    #[serde(default)]
    pub zookeeper_auth_payload: Option<Secret>,
    /// `squall.tls.ca.path`: PEM file of the cluster's CA certificate,
    /// which must have signed every peer's certificate.
    #[serde(default)]
    pub tls_ca_path: Option<String>,
    /// `squall.tls.cert.path`: PEM file of this process's certificate; its
    /// subject CN is the principal it acts as.
    #[serde(default)]
    pub tls_cert_path: Option<String>,
    /// `squall.tls.key.path`: PEM file of that certificate's private key.
    #[serde(default)]
    pub tls_key_path: Option<String>,
    /// `squall.token.key.path`: file of the key that signs bearer tokens
    /// for the REST API and the UI (`squall token`); the UI requires it
    /// with security on.
    #[serde(default)]
    pub token_key_path: Option<String>,
    /// `nimbus.admins`: principals allowed every operation on every
    /// topology (Storm's key).
    #[serde(default)]
    pub nimbus_admins: Vec<String>,
    /// `nimbus.users`: principals allowed to upload and submit (Storm's
    /// key); empty: every authenticated principal.
    #[serde(default)]
    pub nimbus_users: Vec<String>,
    /// `nimbus.supervisor.users`: the daemons' principals (supervisors,
    /// Nimbuses, workers), allowed to download any binary and read the
    /// cluster (Storm's key).
    #[serde(default)]
    pub nimbus_supervisor_users: Vec<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            zookeeper_servers: vec!["localhost".into()],
            zookeeper_port: 2181,
            zookeeper_root: "/squall".into(),
            zookeeper_session_timeout_ms: 20_000,
            local_dir: "squall-local".into(),
            local_hostname: "127.0.0.1".into(),
            nimbus_seeds: vec!["localhost".into()],
            nimbus_port: 6627,
            nimbus_max_frame_bytes: 4 * 1024 * 1024,
            nimbus_task_timeout_secs: 30,
            nimbus_task_launch_secs: 120,
            nimbus_monitor_freq_secs: 10,
            nimbus_file_copy_expiration_secs: 600,
            nimbus_upload_max_sessions: 64,
            nimbus_max_connections: 256,
            nimbus_idle_timeout_secs: 600,
            supervisor_slots_ports: vec![6700, 6701, 6702, 6703],
            supervisor_worker_timeout_secs: 30,
            supervisor_worker_start_timeout_secs: 120,
            supervisor_worker_shutdown_sleep_secs: 3,
            supervisor_monitor_frequency_secs: 1,
            worker_heartbeat_frequency_secs: 1,
            ui_host: "127.0.0.1".into(),
            ui_port: 8080,
            ui_max_connections: 256,
            ui_header_timeout_secs: 10,
            logviewer_port: 8000,
            worker_log_max_file_bytes: 100 * 1024 * 1024,
            worker_log_max_files: 9,
            security_enable: false,
            zookeeper_auth_payload: None,
            tls_ca_path: None,
            tls_cert_path: None,
            tls_key_path: None,
            token_key_path: None,
            nimbus_admins: Vec::new(),
            nimbus_users: Vec::new(),
            nimbus_supervisor_users: Vec::new(),
        }
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Value::Str(s) => Some(s.split(',').map(|p| p.trim().to_owned()).collect()),
        _ => None,
    }
    .filter(|v: &Vec<String>| !v.is_empty() && v.iter().all(|s| !s.is_empty()))
}

/// A list of principals (possibly empty): a YAML list, or one string
/// split at commas.
pub(crate) fn principals(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::List(items) => items
            .iter()
            .map(|i| i.as_str().map(|s| s.trim().to_owned()))
            .collect(),
        Value::Str(s) => Some(
            s.split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        ),
        _ => None,
    }
    .filter(|v: &Vec<String>| v.iter().all(|s| !s.is_empty()))
}

fn ports(v: &Value) -> Option<Vec<u16>> {
    match v {
        Value::List(items) => items.iter().map(port).collect(),
        Value::Int(_) => port(v).map(|p| vec![p]),
        _ => None,
    }
    .filter(|v: &Vec<u16>| !v.is_empty())
}

fn port(v: &Value) -> Option<u16> {
    v.as_i64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// `host:port` for each of `hosts`; a host given with its own port keeps it.
fn with_port(hosts: &[String], port: u16) -> impl Iterator<Item = String> + '_ {
    hosts.iter().map(move |h| {
        if h.contains(':') {
            h.clone()
        } else {
            format!("{h}:{port}")
        }
    })
}

impl ClusterConfig {
    /// Sets `key` if it is a daemon key; `Ok(false)` when it is not one.
    pub(crate) fn set(&mut self, key: &str, value: &Value) -> Result<bool, ConfigError> {
        let bad = |expected: &'static str| ConfigError::BadValue {
            key: key.to_owned(),
            expected,
            got: value.to_string(),
        };
        let secs = || {
            value
                .as_i64()
                .filter(|i| *i > 0)
                .map(|i| i as u64)
                .ok_or_else(|| bad("a positive integer"))
        };
        let text = || {
            value
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| bad("a non-empty string"))
        };
        match key {
            "storm.zookeeper.servers" => {
                self.zookeeper_servers = strings(value).ok_or_else(|| bad("a list of hosts"))?
            }
            "storm.zookeeper.port" => {
                self.zookeeper_port = port(value).ok_or_else(|| bad("a port number"))?
            }
            "storm.zookeeper.root" => {
                let root = text()?;
                if !root.starts_with('/') {
                    return Err(bad("an absolute ZooKeeper path"));
                }
                self.zookeeper_root = root
            }
            "storm.zookeeper.session.timeout" => self.zookeeper_session_timeout_ms = secs()?,
            "storm.local.dir" => self.local_dir = text()?,
            "storm.local.hostname" => self.local_hostname = text()?,
            "nimbus.seeds" => {
                self.nimbus_seeds = strings(value).ok_or_else(|| bad("a list of hosts"))?
            }
            "nimbus.thrift.port" => {
                self.nimbus_port = port(value).ok_or_else(|| bad("a port number"))?
            }
            "nimbus.thrift.max_buffer_size" => {
                self.nimbus_max_frame_bytes = value
                    .as_i64()
                    .filter(|i| *i >= 1024)
                    .ok_or_else(|| bad("a byte count >= 1024"))?
                    as usize
            }
            "nimbus.task.timeout.secs" => self.nimbus_task_timeout_secs = secs()?,
            "nimbus.task.launch.secs" => self.nimbus_task_launch_secs = secs()?,
            "nimbus.monitor.freq.secs" => self.nimbus_monitor_freq_secs = secs()?,
            "nimbus.file.copy.expiration.secs" => self.nimbus_file_copy_expiration_secs = secs()?,
            "nimbus.upload.max.sessions" => self.nimbus_upload_max_sessions = secs()? as usize,
            "nimbus.thrift.threads" => self.nimbus_max_connections = secs()? as usize,
            "nimbus.thrift.idle.timeout.secs" => self.nimbus_idle_timeout_secs = secs()?,
            "supervisor.slots.ports" => {
                self.supervisor_slots_ports = ports(value).ok_or_else(|| bad("a list of ports"))?
            }
            "supervisor.worker.timeout.secs" => self.supervisor_worker_timeout_secs = secs()?,
            "supervisor.worker.start.timeout.secs" => {
                self.supervisor_worker_start_timeout_secs = secs()?
            }
            "supervisor.worker.shutdown.sleep.secs" => {
                self.supervisor_worker_shutdown_sleep_secs = value
                    .as_i64()
                    .and_then(|i| u64::try_from(i).ok())
                    .ok_or_else(|| bad("a non-negative integer"))?
            }
            "supervisor.monitor.frequency.secs" => self.supervisor_monitor_frequency_secs = secs()?,
            "worker.heartbeat.frequency.secs" => self.worker_heartbeat_frequency_secs = secs()?,
            "ui.host" => self.ui_host = text()?,
            "ui.port" => self.ui_port = port(value).ok_or_else(|| bad("a port number"))?,
            "ui.max.connections" => self.ui_max_connections = secs()? as usize,
            "ui.header.timeout.secs" => self.ui_header_timeout_secs = secs()?,
            "logviewer.port" => {
                self.logviewer_port = value
                    .as_i64()
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| bad("a port number, or 0 for any free port"))?
            }
            "worker.log.max.file.bytes" => {
                self.worker_log_max_file_bytes = value
                    .as_i64()
                    .filter(|i| *i >= 1024)
                    .ok_or_else(|| bad("a byte count >= 1024"))?
                    as u64
            }
            "worker.log.max.files" => self.worker_log_max_files = secs()? as usize,
            "squall.security.enable" => {
                self.security_enable = value.as_bool().ok_or_else(|| bad("true or false"))?
            }
            "storm.zookeeper.auth.payload" => {
                let p = text()?;
                if !p.contains(':') {
                    return Err(ConfigError::BadValue {
                        key: key.to_owned(),
                        expected: "user:password",
                        got: "a value without ':' (not shown)".to_owned(),
                    });
                }
                self.zookeeper_auth_payload = Some(Secret(p))
            }
            "squall.tls.ca.path" => self.tls_ca_path = Some(text()?),
            "squall.tls.cert.path" => self.tls_cert_path = Some(text()?),
            "squall.tls.key.path" => self.tls_key_path = Some(text()?),
            "squall.token.key.path" => self.token_key_path = Some(text()?),
            "nimbus.admins" => {
                self.nimbus_admins = principals(value).ok_or_else(|| bad("a list of principals"))?
            }
            "nimbus.users" => {
                self.nimbus_users = principals(value).ok_or_else(|| bad("a list of principals"))?
            }
            "nimbus.supervisor.users" => {
                self.nimbus_supervisor_users =
                    principals(value).ok_or_else(|| bad("a list of principals"))?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The daemon settings under their Storm key names (`squall getconf`,
    /// the REST API's `/cluster/configuration`). Unset paths are `Null`;
    /// `storm.zookeeper.auth.payload` is never shown: `"(set)"` or `Null`.
    pub fn to_storm_map(&self) -> BTreeMap<String, Value> {
        let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
        let list = |v: &[String]| Value::List(v.iter().map(|s| Value::from(s.as_str())).collect());
        let path = |p: &Option<String>| p.as_deref().map_or(Value::Null, Value::from);
        let entries = [
            ("storm.zookeeper.servers", list(&self.zookeeper_servers)),
            ("storm.zookeeper.port", int(self.zookeeper_port.into())),
            (
                "storm.zookeeper.root",
                Value::from(self.zookeeper_root.as_str()),
            ),
            (
                "storm.zookeeper.session.timeout",
                int(self.zookeeper_session_timeout_ms),
            ),
            ("storm.local.dir", Value::from(self.local_dir.as_str())),
            (
                "storm.local.hostname",
                Value::from(self.local_hostname.as_str()),
            ),
            ("nimbus.seeds", list(&self.nimbus_seeds)),
            ("nimbus.thrift.port", int(self.nimbus_port.into())),
            (
                "nimbus.thrift.max_buffer_size",
                int(self.nimbus_max_frame_bytes as u64),
            ),
            (
                "nimbus.task.timeout.secs",
                int(self.nimbus_task_timeout_secs),
            ),
            ("nimbus.task.launch.secs", int(self.nimbus_task_launch_secs)),
            (
                "nimbus.monitor.freq.secs",
                int(self.nimbus_monitor_freq_secs),
            ),
            (
                "nimbus.file.copy.expiration.secs",
                int(self.nimbus_file_copy_expiration_secs),
            ),
            (
                "nimbus.upload.max.sessions",
                int(self.nimbus_upload_max_sessions as u64),
            ),
            (
                "nimbus.thrift.threads",
                int(self.nimbus_max_connections as u64),
            ),
            (
                "nimbus.thrift.idle.timeout.secs",
                int(self.nimbus_idle_timeout_secs),
            ),
            (
                "supervisor.slots.ports",
                Value::List(
                    self.supervisor_slots_ports
                        .iter()
                        .map(|p| int((*p).into()))
                        .collect(),
                ),
            ),
            (
                "supervisor.worker.timeout.secs",
                int(self.supervisor_worker_timeout_secs),
            ),
            (
                "supervisor.worker.start.timeout.secs",
                int(self.supervisor_worker_start_timeout_secs),
            ),
            (
                "supervisor.worker.shutdown.sleep.secs",
                int(self.supervisor_worker_shutdown_sleep_secs),
            ),
            (
                "supervisor.monitor.frequency.secs",
                int(self.supervisor_monitor_frequency_secs),
            ),
            (
                "worker.heartbeat.frequency.secs",
                int(self.worker_heartbeat_frequency_secs),
            ),
            ("ui.host", Value::from(self.ui_host.as_str())),
            ("ui.port", int(self.ui_port.into())),
            ("ui.max.connections", int(self.ui_max_connections as u64)),
            ("ui.header.timeout.secs", int(self.ui_header_timeout_secs)),
            ("logviewer.port", int(self.logviewer_port.into())),
            (
                "worker.log.max.file.bytes",
                int(self.worker_log_max_file_bytes),
            ),
            (
                "worker.log.max.files",
                int(self.worker_log_max_files as u64),
            ),
            ("squall.security.enable", Value::Bool(self.security_enable)),
            (
                "storm.zookeeper.auth.payload",
                self.zookeeper_auth_payload
                    .as_ref()
                    .map_or(Value::Null, |_| Value::from("(set)")),
            ),
            ("squall.tls.ca.path", path(&self.tls_ca_path)),
            ("squall.tls.cert.path", path(&self.tls_cert_path)),
            ("squall.tls.key.path", path(&self.tls_key_path)),
            ("squall.token.key.path", path(&self.token_key_path)),
            ("nimbus.admins", list(&self.nimbus_admins)),
            ("nimbus.users", list(&self.nimbus_users)),
            (
                "nimbus.supervisor.users",
                list(&self.nimbus_supervisor_users),
            ),
        ];
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    /// The ZooKeeper connect string, `host:port,host:port` (a server given
    /// with its own port keeps it).
    pub fn zookeeper_connect(&self) -> String {
        with_port(&self.zookeeper_servers, self.zookeeper_port)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Nimbus RPC addresses, `host:port`, in `nimbus.seeds` order.
    pub fn nimbus_addresses(&self) -> Vec<String> {
        with_port(&self.nimbus_seeds, self.nimbus_port).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_never_printed() {
        let mut c = ClusterConfig::default();
        c.set(
            "storm.zookeeper.auth.payload",
            &Value::from("squall:hunter2"),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = c
            .set("storm.zookeeper.auth.payload", &Value::from("hunter2"))
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            c.zookeeper_auth_payload.as_ref().map(Secret::expose),
            Some("squall:hunter2")
        );
        let map = c.to_storm_map();
        assert_eq!(map["storm.zookeeper.auth.payload"], Value::from("(set)"));
    }

    #[test]
    fn every_key_read_back_sets_the_same_config() {
        let mut c = ClusterConfig::default();
        c.set("nimbus.seeds", &Value::from("h1")).unwrap();
        c.set(
            "supervisor.slots.ports",
            &Value::List(vec![Value::Int(7000)]),
        )
        .unwrap();
        c.set("squall.tls.ca.path", &Value::from("/ca.pem"))
            .unwrap();
        let map = c.to_storm_map();
        let mut back = ClusterConfig::default();
        for (k, v) in &map {
            if matches!(v, Value::Null) || k == "storm.zookeeper.auth.payload" {
                continue;
            }
            assert!(back.set(k, v).unwrap(), "{k} is not a daemon key");
        }
        assert_eq!(format!("{back:?}"), format!("{c:?}"));
        assert_eq!(map["nimbus.seeds"], Value::List(vec![Value::from("h1")]));
    }
}
