//! The flights pipeline example (devices → MQTT → Squall → Redis and
//! PostgreSQL) on real servers: both stores match a plain computation
//! over the CSV, and an unreachable store fails the run with its name.

mod corpus;
mod store_support;

use std::process::Command;
use store_support::{Mosquitto, Postgres, Redis};

fn run(mqtt: u16, redis: &str, pg: &str, limit: &str) -> (bool, String) {
    let out = Command::new(corpus::example_named("flights_pipeline"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--limit", limit, "--mqtt", &format!("127.0.0.1:{mqtt}")])
        .args(["--redis", redis, "--postgres", pg])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_stores_match_a_plain_computation_over_the_csv() {
    let (mqtt, redis, pg) = (Mosquitto::start(), Redis::start(), Postgres::start());
    let (ok, out) = run(mqtt.port, &redis.url(), &pg.url(), "30000");
    assert!(ok, "{out}");
    assert!(
        out.contains("30000 rows through MQTT, Redis and PostgreSQL"),
        "{out}"
    );
    assert!(
        out.contains("both stores match a plain computation"),
        "{out}"
    );
    // A wrong PostgreSQL password stops the run with a clear error.
    let bad = pg.url().replace(store_support::PG_PASSWORD, "wrong");
    let (ok, out) = run(mqtt.port, &redis.url(), &bad, "10");
    assert!(!ok);
    assert!(
        out.contains(&format!("PostgreSQL at 127.0.0.1:{}/postgres", pg.port))
            && out.contains("password authentication failed"),
        "{out}"
    );
}
