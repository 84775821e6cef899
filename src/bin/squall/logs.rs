//! `squall logs`: a topology's worker logs through its supervisors' log
//! viewers (their `/api/v1/log`), printed once or followed (`-f`).

use anyhow::{bail, Context};
use squall_cluster::rpc::{Request, Response};
use squall_cluster::schema::WorkerSlot;
use squall_cluster::tls::Tls;
use squall_topology_api::ClusterConfig;
use std::collections::BTreeSet;
use std::time::Duration;

/// Most bytes asked for at once while following.
const FOLLOW_BYTES: u64 = 1024 * 1024;

/// The options of `squall logs`.
pub struct LogsArgs<'a> {
    /// The topology's name.
    pub name: &'a str,
    /// Only the workers running this component.
    pub component: Option<&'a str>,
    /// Bytes of each log's tail printed first.
    pub bytes: u64,
    /// Keep printing what the workers write.
    pub follow: bool,
    /// A bearer token for log viewers with security on.
    pub token: Option<&'a str>,
}

/// The workers whose logs `squall logs` reads: those of topology `name`'s
/// `executors` running `component` (every worker without one), in slot
/// order.
///
/// # Errors
/// A message naming the component when no worker runs it.
fn slots_of(
    name: &str,
    executors: &[(String, u32, u32, WorkerSlot)],
    component: Option<&str>,
) -> anyhow::Result<Vec<WorkerSlot>> {
    let slots: BTreeSet<(String, u16, String)> = executors
        .iter()
        .filter(|e| component.is_none_or(|c| c == e.0))
        .map(|e| (e.3.host.clone(), e.3.port, e.3.supervisor.clone()))
        .collect();
    if slots.is_empty() {
        match component {
            Some(c) => bail!("no worker of topology {name:?} runs component {c:?}"),
            None => bail!("topology {name:?} has no workers yet"),
        }
    }
    Ok(slots
        .into_iter()
        .map(|(host, port, supervisor)| WorkerSlot {
            supervisor,
            host,
            port,
        })
        .collect())
}

/// One followed log: where the next read starts, and the text of a line
/// not yet ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Position {
    next: u64,
    partial: String,
}

impl Position {
    /// Takes `data` read at `start` (the file being `size` bytes then);
    /// returns the complete lines to print.
    fn take(&mut self, start: u64, data: &str) -> Vec<String> {
        self.next = start + data.len() as u64;
        self.partial.push_str(data);
        let Some(end) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let lines = std::mem::replace(&mut self.partial, rest);
        lines.lines().map(str::to_owned).collect()
    }
}

struct Viewer {
    agent: ureq::Agent,
    token: Option<String>,
}

/// A log viewer's `/api/v1/log` answer (the fields used here).
struct Chunk {
    start: u64,
    size: u64,
    data: String,
}

impl Viewer {
    fn chunk(
        &self,
        base: &str,
        file: &str,
        start: Option<u64>,
        length: u64,
    ) -> anyhow::Result<Chunk> {
        let mut url = format!("{base}/api/v1/log?file={file}&length={length}");
        if let Some(s) = start {
            url.push_str(&format!("&start={s}"));
        }
        let mut req = self.agent.get(&url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        match req.call() {
            Ok(r) => {
                let v: serde_json::Value =
                    r.into_json().with_context(|| format!("reading {url}"))?;
                let number = |k: &str| v[k].as_u64().with_context(|| format!("{url}: no {k}"));
                Ok(Chunk {
                    start: number("start")?,
                    size: number("size")?,
                    data: v["data"].as_str().unwrap_or_default().to_owned(),
                })
            }
            Err(ureq::Error::Status(code, r)) => {
                let body: serde_json::Value = r.into_json().unwrap_or_default();
                let why = body["errorMessage"].as_str().unwrap_or("").to_owned();
                let hint = if code == 401 {
                    " (give a token: --token or SQUALL_TOKEN; `squall token USER` issues one)"
                } else {
                    ""
                };
                bail!("{url}: {code} {why}{hint}")
            }
            Err(e) => bail!("cannot reach the log viewer at {base}: {e}"),
        }
    }
}

/// Runs `squall logs`.
///
/// # Errors
/// A message when Nimbus, the topology, the component or a log viewer
/// cannot be had.
pub fn logs(c: &ClusterConfig, args: &LogsArgs<'_>) -> anyhow::Result<i32> {
    let tls = Tls::from_config(c)?;
    let Response::Info(info) = crate::client::leader(c)?.call(Request::Info {
        name: args.name.to_owned(),
    })?
    else {
        bail!("unexpected answer from Nimbus");
    };
    let slots = slots_of(args.name, &info.executors, args.component)?;
    let mut agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30));
    if let Some(t) = &tls {
        agent = agent.tls_config(t.client_config());
    }
    let viewer = Viewer {
        agent: agent.build(),
        token: args
            .token
            .map(str::to_owned)
            .or_else(|| std::env::var("SQUALL_TOKEN").ok()),
    };
    let mut logs = Vec::new();
    for slot in &slots {
        let base = info.logviewers.get(&slot.supervisor).with_context(|| {
            format!(
                "supervisor {} (worker {}:{}) serves no log viewer (logviewer.port)",
                slot.supervisor, slot.host, slot.port
            )
        })?;
        let file = squall_cluster::worker_env::log_file_name(&info.summary.id, slot.port);
        logs.push((base.clone(), file, slot, Position::default()));
    }
    let prefixed = logs.len() > 1;
    let print = |slot: &WorkerSlot, lines: Vec<String>| {
        for l in lines {
            if prefixed {
                println!("[{}:{}] {l}", slot.host, slot.port);
            } else {
                println!("{l}");
            }
        }
    };
    for (base, file, slot, pos) in &mut logs {
        let chunk = viewer.chunk(base, file, None, args.bytes)?;
        // The tail starts mid-line; its first line is printed whole anyway.
        let lines = pos.take(chunk.start, &chunk.data);
        print(slot, lines);
    }
    if !args.follow {
        for (_, _, slot, pos) in &mut logs {
            let rest = std::mem::take(&mut pos.partial);
            if !rest.is_empty() {
                print(slot, vec![rest]);
            }
        }
        return Ok(0);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
        for (base, file, slot, pos) in &mut logs {
            let chunk = match viewer.chunk(base, file, Some(pos.next), FOLLOW_BYTES) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("squall logs: {e}; retrying");
                    continue;
                }
            };
            if chunk.size < pos.next {
                // Rotated: the rest of the old file is now `<file>.1`.
                if let Ok(old) =
                    viewer.chunk(base, &format!("{file}.1"), Some(pos.next), FOLLOW_BYTES)
                {
                    print(slot, pos.take(old.start, &old.data));
                }
                let rest = std::mem::take(&mut pos.partial);
                if !rest.is_empty() {
                    print(slot, vec![rest]);
                }
                *pos = Position::default();
                continue;
            }
            print(slot, pos.take(chunk.start, &chunk.data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_are_printed_and_offsets_advance() {
        let mut p = Position::default();
        assert_eq!(p.take(0, "a\nb"), ["a"]);
        assert_eq!(p.next, 3);
        assert!(p.take(3, "").is_empty());
        assert_eq!(p.take(3, "c\nd\n"), ["bc", "d"]);
        assert_eq!((p.next, p.partial.as_str()), (7, ""));
    }

    #[test]
    fn the_workers_of_a_component_are_chosen_once_each() {
        let slot = |port| WorkerSlot {
            supervisor: "s".into(),
            host: "h".into(),
            port,
        };
        let executors = vec![
            ("split".into(), 1, 1, slot(2)),
            ("split".into(), 2, 2, slot(2)),
            ("count".into(), 3, 3, slot(1)),
        ];
        let ports = |c| -> Vec<u16> {
            slots_of("wc", &executors, c)
                .unwrap()
                .into_iter()
                .map(|s| s.port)
                .collect()
        };
        assert_eq!(ports(Some("split")), [2]);
        assert_eq!(ports(None), [1, 2]);
        let e = slots_of("wc", &executors, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }
}
