//! Many seeds of the control-plane simulation; a failing seed is printed
//! with its log and replays with `SQUALL_SIM_SEED`.

use squall_sim::{report, run, Fault, Regression, Settings};

/// Seeds per run of this test (`SQUALL_SIM_SEEDS`, default 300).
fn seeds() -> u64 {
    std::env::var("SQUALL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

#[test]
fn every_seed_keeps_the_invariants() {
    // A different range each day would find new seeds; a fixed one keeps
    // CI reproducible. `SQUALL_SIM_FIRST` moves it.
    let first: u64 = std::env::var("SQUALL_SIM_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // Seeds are independent: one thread per core, each its share.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let failures: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    (first..first + seeds())
                        .filter(|s| s % threads == t)
                        .map(|seed| run(Settings::seed(seed)))
                        .find(|o| !o.ok())
                        .map(|o| report(&o))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("a simulation thread"))
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_run_without_faults_settles() {
    let o = run(Settings {
        faults: false,
        ..Settings::seed(7)
    });
    assert!(o.ok(), "{}", report(&o));
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(Settings::seed(42));
    let b = run(Settings::seed(42));
    assert_eq!(a.log, b.log);
    assert_eq!(a.violations, b.violations);
}

/// Replays `SQUALL_SIM_SEED` and prints its log.
#[test]
fn replay() {
    let Some(seed) = std::env::var("SQUALL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    // The daemons' own logs (RUST_LOG), interleaved with the world's.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .without_time()
        .try_init();
    let o = run(Settings::seed(seed));
    println!("{}", o.log.join("\n"));
    assert!(o.ok(), "{}", report(&o));
}

/// A scripted scenario: no drawn faults, `script` in the first 40 s.
fn scenario(script: Vec<(u64, Fault)>, regression: Option<Regression>) -> squall_sim::Outcome {
    run(Settings {
        faults: false,
        fault_secs: 40,
        regression,
        script,
        ..Settings::seed(1)
    })
}

/// Each failure found on a real cluster, replayed: it holds now, and
/// breaks the invariants with the old behaviour put back.
#[test]
fn the_fixed_failures_replay_and_hold() {
    use Regression::*;
    let cases = [
        (
            "a supervisor paused past its session timeout rejoins",
            vec![(10, Fault::PauseSupervisor(1, 12_000))],
            SessionsNeverRecreated,
            "supervisor sup-1 is not registered",
        ),
        (
            "after ZooKeeper is down past the session timeout, a leader and the supervisors return",
            vec![(10, Fault::StoreOutage(12_000))],
            SessionsNeverRecreated,
            "not registered",
        ),
        (
            "a new leader serves the binary its predecessor lost to fresh supervisors",
            vec![
                (8, Fault::CrashLeaderWithoutBinaries(60_000)),
                (9, Fault::ReplaceSupervisorHost(0, 2_000)),
                (9, Fault::ReplaceSupervisorHost(1, 2_000)),
                (9, Fault::ReplaceSupervisorHost(2, 2_000)),
            ],
            BinariesNotReplicated,
            "run in 0 workers",
        ),
        (
            "a restarted supervisor adopts its running workers",
            vec![(15, Fault::CrashSupervisor(0, 2_000))],
            WorkersNotAdopted,
            "runs workers",
        ),
    ];
    for (name, script, regression, symptom) in cases {
        let fixed = scenario(script.clone(), None);
        assert!(fixed.ok(), "{name}: {}", report(&fixed));
        let broken = scenario(script, Some(regression));
        assert!(
            broken.violations.iter().any(|v| v.contains(symptom)),
            "{name}: with {regression:?} the simulation must see {symptom:?}: {}",
            report(&broken)
        );
    }
}

#[test]
fn the_leader_crashing_hands_over_and_comes_back() {
    let o = scenario(
        vec![
            (10, Fault::CrashNimbus(0, 10_000)),
            (25, Fault::CutNimbus(1, 8_000)),
            (30, Fault::KillWorker(0)),
        ],
        None,
    );
    assert!(o.ok(), "{}", report(&o));
    assert!(o.log.iter().any(|l| l.contains("crash nimbus-0")));
}
