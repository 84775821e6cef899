//! `squall monitor`: Storm's `storm monitor`, a component's throughput on
//! one stream, printed every interval.

use anyhow::{bail, Context};
use squall_cluster::rpc::{Request, Response, TopologyInfo};
use squall_topology_api::ClusterConfig;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What `-w` watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Watch {
    /// Tuples emitted (one per emit call).
    Emitted,
    /// Tuples sent to tasks.
    Transferred,
}

/// The arguments of `squall monitor`.
pub struct Options {
    /// The topology's name.
    pub name: String,
    /// Seconds between rows.
    pub interval: u64,
    /// The component; `None` lists the components.
    pub component: Option<String>,
    /// The stream.
    pub stream: String,
    /// What to count.
    pub watch: Watch,
    /// Stop after this many rows (Storm's runs until interrupted).
    pub count: Option<u64>,
}

fn info(c: &ClusterConfig, name: &str) -> anyhow::Result<TopologyInfo> {
    let mut client = crate::client::leader(c)?;
    match client.call(Request::Info {
        name: name.to_owned(),
    })? {
        Response::Info(i) => Ok(*i),
        other => bail!("unexpected answer from Nimbus: {other:?}"),
    }
}

fn components(info: &TopologyInfo) -> String {
    let names: BTreeSet<&str> = info.executors.iter().map(|(c, ..)| c.as_str()).collect();
    let list: Vec<&str> = names.into_iter().collect();
    format!(
        "Available components for {}:\n------------------\n{}\n------------------",
        info.summary.name,
        list.join("\n")
    )
}

/// (executors of the component, its count on the stream); errors name the
/// missing component or stream.
fn sample(info: &TopologyInfo, o: &Options, component: &str) -> anyhow::Result<(usize, u64)> {
    let parallelism = info
        .executors
        .iter()
        .filter(|(c, ..)| c == component)
        .count();
    if parallelism == 0 {
        bail!("{}\ncomponent {component:?} not found", components(info));
    }
    let mut found = false;
    let mut total = 0;
    for m in info
        .metrics
        .tasks
        .values()
        .filter(|m| m.component.as_str() == component)
    {
        let counts = match o.watch {
            Watch::Emitted => &m.emitted,
            Watch::Transferred => &m.transferred_streams,
        };
        if let Some(n) = counts.get(&o.stream) {
            found = true;
            total += n;
        }
    }
    if !found {
        bail!("stream {:?} not found on component {component:?}", o.stream);
    }
    Ok((parallelism, total))
}

/// Prints Storm's header, then one row per interval: topology, component,
/// parallelism, stream, time since the last row (ms), count since the last
/// row, throughput (Kt/s = tuples per ms).
pub fn run(c: &ClusterConfig, o: &Options) -> anyhow::Result<i32> {
    if o.interval == 0 {
        bail!("the poll interval (-i) must be a positive number of seconds");
    }
    if o.stream.is_empty() {
        bail!("the stream (-s) must be named");
    }
    let first = info(c, &o.name).with_context(|| format!("cannot monitor {:?}", o.name))?;
    let Some(component) = o.component.as_deref() else {
        println!(
            "{}\nPlease use -m to name one component",
            components(&first)
        );
        return Ok(0);
    };
    let watch = match o.watch {
        Watch::Emitted => "emitted",
        Watch::Transferred => "transferred",
    };
    println!("topology\tcomponent\tparallelism\tstream\ttime-diff ms\t{watch}\tthroughput (Kt/s)");
    let mut last: Option<(Instant, u64)> = None;
    let mut rows = 0;
    let mut snapshot = first;
    loop {
        let now = Instant::now();
        let (parallelism, total) = sample(&snapshot, o, component)?;
        let (dt, delta) = match last {
            // Counters begin again when a worker restarts.
            Some((t, n)) => (
                now.duration_since(t).as_millis() as u64,
                total.saturating_sub(n),
            ),
            None => (0, total),
        };
        let throughput = if dt == 0 {
            0.0
        } else {
            delta as f64 / dt as f64
        };
        println!(
            "{}\t{component}\t{parallelism}\t{}\t{dt}\t{delta}\t{throughput}",
            o.name, o.stream
        );
        last = Some((now, total));
        rows += 1;
        if o.count.is_some_and(|n| rows >= n) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(o.interval).saturating_sub(now.elapsed()));
        snapshot = info(c, &o.name)?;
    }
}
