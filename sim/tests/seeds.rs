//! Many seeds of the control-plane simulation; a failing seed is printed
//! with its log and replays with `SQUALL_SIM_SEED`.

use squall_sim::{report, run, Settings};

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
    for seed in first..first + seeds() {
        let o = run(Settings::seed(seed));
        assert!(o.ok(), "{}", report(&o));
    }
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
