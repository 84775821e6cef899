//! Commands that talk to Nimbus.

use anyhow::{anyhow, bail, Context};
use squall_cluster::log_config;
use squall_cluster::rpc::{sha256_hex, NimbusClient, Request, Response, TopologySummary};
use squall_cluster::tls::Tls;
use squall_topology_api::ClusterConfig;
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) fn leader(c: &ClusterConfig) -> anyhow::Result<NimbusClient> {
    let tls = Tls::from_config(c)?;
    Ok(NimbusClient::connect_leader_with(
        &c.nimbus_addresses(),
        c.nimbus_max_frame_bytes,
        tls.as_deref(),
    )?)
}

fn any(c: &ClusterConfig) -> anyhow::Result<NimbusClient> {
    let tls = Tls::from_config(c)?;
    Ok(NimbusClient::connect_with(
        &c.nimbus_addresses(),
        c.nimbus_max_frame_bytes,
        tls.as_deref(),
    )?)
}

/// `squall jar`: uploads the binary (with a progress bar), then runs it
/// with the environment that makes its `submit_topology` submit.
pub fn jar(
    c: &ClusterConfig,
    conf: &[String],
    binary: &Path,
    args: &[String],
) -> anyhow::Result<i32> {
    let data =
        std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    let sha = sha256_hex(&data);
    let mut client = leader(c)?;
    let bar = indicatif::ProgressBar::new(data.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "uploading {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .map_err(|e| anyhow!("{e}"))?
        .progress_chars("=> "),
    );
    bar.set_message(
        binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    client.upload(&data, &sha, |sent| bar.set_position(sent))?;
    bar.finish();
    let mut command = std::process::Command::new(binary);
    if let Some(paths) = squall_cluster::tls::paths_env(c) {
        command.env(squall::submitter::env::JAR_TLS, paths);
    }
    let status = command
        .args(args)
        .env(squall::submitter::env::JAR_NIMBUS, client.address())
        .env(squall::submitter::env::JAR_BINARY, &sha)
        .env(squall::submitter::env::JAR_CONF, conf.join("\n"))
        .env(
            squall::submitter::env::JAR_MAX_FRAME,
            c.nimbus_max_frame_bytes.to_string(),
        )
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    Ok(status.code().unwrap_or(1))
}

/// `squall kill`.
pub fn kill(c: &ClusterConfig, name: &str, wait: Option<u64>) -> anyhow::Result<i32> {
    leader(c)?.call_ok(Request::Kill {
        name: name.to_owned(),
        wait_secs: wait,
    })?;
    println!("Killed topology: {name}");
    Ok(0)
}

/// `squall activate` / `squall deactivate`.
pub fn activate(c: &ClusterConfig, name: &str, on: bool) -> anyhow::Result<i32> {
    let name = name.to_owned();
    let req = if on {
        Request::Activate { name: name.clone() }
    } else {
        Request::Deactivate { name: name.clone() }
    };
    leader(c)?.call_ok(req)?;
    println!(
        "{} topology: {name}",
        if on { "Activated" } else { "Deactivated" }
    );
    Ok(0)
}

/// `squall rebalance`.
pub fn rebalance(
    c: &ClusterConfig,
    name: &str,
    wait: Option<u64>,
    workers: Option<u32>,
    executors: &[String],
) -> anyhow::Result<i32> {
    let mut map = BTreeMap::new();
    for e in executors {
        let Some((comp, n)) = e.split_once('=') else {
            bail!("-e {e:?}: expected component=parallelism");
        };
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| anyhow!("-e {e:?}: {n:?} is not a number"))?;
        map.insert(comp.trim().to_owned(), n);
    }
    leader(c)?.call_ok(Request::Rebalance {
        name: name.to_owned(),
        wait_secs: wait,
        workers,
        executors: map,
    })?;
    println!("Topology {name} is rebalancing");
    Ok(0)
}

/// Prints `value` as pretty JSON (every listing's `--json`).
fn print_json(value: &serde_json::Value) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(0)
}

fn status_name(s: &TopologySummary) -> String {
    format!("{:?}", s.status).to_uppercase()
}

/// `squall list`: Storm's columns.
pub fn list(c: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let Response::Topologies(list) = any(c)?.call(Request::List)? else {
        bail!("unexpected answer from Nimbus");
    };
    if json {
        let rows: Vec<_> = list
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name, "id": t.id, "status": status_name(t),
                    "num_tasks": t.num_tasks, "num_workers": t.num_workers,
                    "num_executors": t.num_executors, "uptime_secs": t.uptime_secs,
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(rows));
    }
    if list.is_empty() {
        println!("No topologies running.");
        return Ok(0);
    }
    println!(
        "{:<24} {:<12} {:>10} {:>12} {:>14}",
        "Topology_name", "Status", "Num_tasks", "Num_workers", "Uptime_secs"
    );
    println!("{}", "-".repeat(76));
    for t in &list {
        println!(
            "{:<24} {:<12} {:>10} {:>12} {:>14}",
            t.name,
            status_name(t),
            t.num_tasks,
            t.num_workers,
            t.uptime_secs
        );
    }
    Ok(0)
}

/// `squall info`.
pub fn info(c: &ClusterConfig, name: &str, json: bool) -> anyhow::Result<i32> {
    let Response::Info(info) = any(c)?.call(Request::Info {
        name: name.to_owned(),
    })?
    else {
        bail!("unexpected answer from Nimbus");
    };
    let components = info.metrics.components();
    if json {
        let comps: BTreeMap<_, _> = components
            .iter()
            .map(|(id, m)| {
                (
                    id.0.clone(),
                    serde_json::json!({
                        "emitted": m.emitted, "acked": m.acked, "failed": m.failed,
                        "executed": m.executed,
                        "complete_latency_p99_ms": m.complete_latency.p99_ms,
                    }),
                )
            })
            .collect();
        let execs: Vec<_> = info
            .executors
            .iter()
            .map(|(comp, first, last, slot)| {
                serde_json::json!({"component": comp, "tasks": [first, last], "worker": slot.to_string()})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": info.summary.name, "id": info.summary.id,
                "status": status_name(&info.summary),
                "num_workers": info.summary.num_workers,
                "uptime_secs": info.summary.uptime_secs,
                "replication_count": info.summary.replication_count,
                "executors": execs, "components": comps, "errors": info.errors,
            }))?
        );
        return Ok(0);
    }
    let s = &info.summary;
    println!(
        "{} ({}) {} — {} workers, {} executors, {} tasks, up {} s, binary on {} Nimbus",
        s.name,
        s.id,
        status_name(s),
        s.num_workers,
        s.num_executors,
        s.num_tasks,
        s.uptime_secs,
        s.replication_count
    );
    println!(
        "{:<16} {:>12} {:>12} {:>10} {:>12}",
        "component", "emitted", "acked", "failed", "executed"
    );
    for (id, m) in &components {
        println!(
            "{:<16} {:>12} {:>12} {:>10} {:>12}",
            id.0, m.emitted, m.acked, m.failed, m.executed
        );
    }
    for (comp, errors) in &info.errors {
        for e in errors {
            println!("error in {comp}: {e}");
        }
    }
    Ok(0)
}

/// `squall set_log_level`: sends the changes, prints the overrides in force.
pub fn set_log_level(
    c: &ClusterConfig,
    name: &str,
    set: &[String],
    remove: &[String],
    json: bool,
) -> anyhow::Result<i32> {
    let mut changes = Vec::new();
    for arg in set {
        changes.push(log_config::parse_change(arg).map_err(|e| anyhow!("-l {e}"))?);
    }
    for logger in remove {
        changes.push(log_config::LogChange {
            logger: logger.trim().to_owned(),
            level: None,
            timeout_secs: 0,
        });
    }
    let request = if changes.is_empty() {
        Request::GetLogConfig {
            name: name.to_owned(),
        }
    } else {
        Request::SetLogConfig {
            name: name.to_owned(),
            changes,
        }
    };
    let Response::LogConfig(config) = leader(c)?.call(request)? else {
        bail!("unexpected answer from Nimbus");
    };
    if json {
        return print_json(&serde_json::to_value(&config.loggers)?);
    }
    if config.loggers.is_empty() {
        println!("No log level overrides on topology {name}.");
        return Ok(0);
    }
    println!("{:<40} {:<6} {:>12}", "Logger", "Level", "Timeout_secs");
    for (logger, l) in &config.loggers {
        println!("{logger:<40} {:<6} {:>12}", l.level, l.timeout_secs);
    }
    Ok(0)
}

/// `squall debug`: turns event sampling on or off; prints what is in
/// force for the topology or the component.
pub fn debug(
    c: &ClusterConfig,
    name: &str,
    component: Option<&str>,
    enable: bool,
    pct: f64,
) -> anyhow::Result<i32> {
    let Response::Debug(d) = leader(c)?.call(Request::Debug {
        name: name.to_owned(),
        component: component.map(str::to_owned),
        enable,
        sampling_pct: pct,
    })?
    else {
        bail!("unexpected answer from Nimbus");
    };
    let what = component.map_or_else(
        || format!("topology {name}"),
        |c| format!("component {c} of {name}"),
    );
    let now = match component {
        Some(c) => d.of(c),
        None => d.topology,
    };
    match now.filter(|o| o.enable) {
        Some(o) => println!("sampling {}% of the tuples {what} emits", o.sampling_pct),
        None => println!("sampling off for {what}"),
    }
    Ok(0)
}

/// `squall getconf`: one setting, or all, from what this command loaded.
pub fn getconf(
    config: &squall_topology_api::Config,
    key: Option<&str>,
    json: bool,
) -> anyhow::Result<i32> {
    let mut all = config.to_storm_map();
    all.extend(config.cluster.to_storm_map());
    let shown = |v: &squall_topology_api::Value| -> anyhow::Result<String> {
        Ok(match v {
            squall_topology_api::Value::Str(s) if !json => s.to_string(),
            v => serde_json::to_string(v)?,
        })
    };
    match key {
        Some(k) => {
            let Some(v) = all.get(k) else {
                bail!("{k:?} is not a setting Squall knows (see `squall getconf` for them all)");
            };
            println!("{}", shown(v)?);
        }
        None if json => println!("{}", serde_json::to_string_pretty(&all)?),
        None => {
            for (k, v) in &all {
                println!("{k}: {}", shown(v)?);
            }
        }
    }
    Ok(0)
}

fn ago_secs(ms: u64) -> u64 {
    squall_cluster::now_ms().saturating_sub(ms) / 1000
}

/// `squall heartbeats list`.
pub fn heartbeats(c: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let Response::Heartbeats(rows) = leader(c)?.call(Request::ListHeartbeats)? else {
        bail!("unexpected answer from Nimbus");
    };
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|h| {
                serde_json::json!({
                    "topology_id": h.topology_id, "supervisor_id": h.slot.supervisor,
                    "host": h.slot.host, "port": h.slot.port, "time_ms": h.time_ms,
                    "uptime_secs": ago_secs(h.started_at_ms), "executors": h.executors,
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(rows));
    }
    if rows.is_empty() {
        println!("No worker heartbeats.");
        return Ok(0);
    }
    println!(
        "{:<32} {:<28} {:>10} {:>12} {:>10}",
        "Topology_id", "Worker", "Beat_secs", "Uptime_secs", "Executors"
    );
    for h in &rows {
        println!(
            "{:<32} {:<28} {:>10} {:>12} {:>10}",
            h.topology_id,
            format!("{}:{}", h.slot.host, h.slot.port),
            ago_secs(h.time_ms),
            ago_secs(h.started_at_ms),
            h.executors
        );
    }
    Ok(0)
}

/// `squall blobstore list`.
pub fn blobs(c: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let Response::Blobs(rows) = any(c)?.call(Request::ListBlobs)? else {
        bail!("unexpected answer from Nimbus");
    };
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|b| {
                serde_json::json!({
                    "key": b.sha256, "size": b.size, "modified_ms": b.modified_ms,
                    "topologies": b.topologies,
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(rows));
    }
    if rows.is_empty() {
        println!("No blobs.");
        return Ok(0);
    }
    println!("{:<64} {:>12}  Topologies", "Key", "Size");
    for b in &rows {
        println!(
            "{:<64} {:>12}  {}",
            b.sha256,
            b.size,
            b.topologies.join(",")
        );
    }
    Ok(0)
}

/// `squall kill_workers`.
pub fn kill_workers(c: &ClusterConfig, json: bool) -> anyhow::Result<i32> {
    let killed = squall_supervisor::kill_workers(c)?;
    if json {
        let rows: Vec<_> = killed
            .iter()
            .map(|k| {
                serde_json::json!({
                    "port": k.port, "pid": k.pid, "topology_id": k.topology_id,
                    "forced": k.forced,
                })
            })
            .collect();
        return print_json(&serde_json::Value::Array(rows));
    }
    if killed.is_empty() {
        println!("No workers running on this supervisor.");
    }
    for k in &killed {
        println!(
            "Stopped worker {} of {} on port {}{}",
            k.pid,
            k.topology_id,
            k.port,
            if k.forced {
                " (killed after the shutdown wait)"
            } else {
                ""
            }
        );
    }
    Ok(0)
}
