//! Nimbus at scale: one topology of 2,000 executors (plus its ackers)
//! over 100 slots on 20 supervisors. The supervisors are registered in an
//! in-memory cluster state with the records a supervisor writes (20 hosts ×
//! 5 ports); no worker runs, so every figure is Nimbus's own: the time
//! from `Submit` to a complete assignment, a monitor round, an `Info`
//! over every executor, and this process's resident memory before and
//! after (MB, `VmRSS`).

use anyhow::{bail, Result};
use clap::Parser;
use squall_cluster::rpc::{Request, Response};
use std::time::Instant;

#[path = "../common/nimbus_load.rs"]
mod nimbus_load;

#[derive(Parser)]
#[command(about = "Nimbus scheduling a large topology")]
struct Args {
    /// Supervisors.
    #[arg(long, default_value_t = 20)]
    supervisors: u16,
    /// Slots per supervisor.
    #[arg(long, default_value_t = 5)]
    slots: u16,
    /// Executors of the topology's own components (ackers come on top,
    /// one per worker).
    #[arg(long, default_value_t = 2000)]
    executors: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let slots = u32::from(args.supervisors) * u32::from(args.slots);
    let before = nimbus_load::rss_mb();
    let scheduled = nimbus_load::schedule("scale", args.supervisors, args.slots, args.executors)?;
    let (nimbus, assignment) = (&scheduled.nimbus, &scheduled.assignment);
    let to_assignment = scheduled.to_assignment;
    let executors = assignment.executors.len();
    let used: std::collections::BTreeSet<_> = assignment.slots().into_iter().collect();

    let round = Instant::now();
    nimbus.monitor_round();
    let round = round.elapsed();
    // No worker runs, but none is due to beat yet: the round keeps it.
    let kept = scheduled.state.assignment(&scheduled.id)?.map(|(a, _)| a);
    if kept.as_ref() != Some(assignment) {
        bail!("the monitor round changed the assignment");
    }
    let info = Instant::now();
    let answer = nimbus.handle(Request::Info {
        name: "scale".into(),
    });
    let info = info.elapsed();
    let Response::Info(details) = answer else {
        bail!("info refused: {answer:?}");
    };
    let after = nimbus_load::rss_mb();
    println!(
        "scale: {executors} executors ({} in components, the rest ackers) over {} of {slots} slots on {} supervisors",
        args.executors,
        used.len(),
        args.supervisors
    );
    println!(
        "scale: submit to assignment {:.1} ms; a monitor round {:.1} ms; Info over {} executors {:.1} ms",
        to_assignment.as_secs_f64() * 1e3,
        round.as_secs_f64() * 1e3,
        details.executors.len(),
        info.as_secs_f64() * 1e3,
    );
    println!("scale: resident memory {before:.1} MB before Nimbus, {after:.1} MB after");
    Ok(())
}
