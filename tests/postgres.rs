//! PostgreSQL connectors against a private PostgreSQL cluster per test
//! (`initdb`, `pg_ctl` on a free port): Trident map states (Storm's
//! `StateTest` cases, a lookup through `MapGet`, word count exact under
//! batch failures and `pg_ctl restart`), and `PostgresBolt` (acks what
//! committed, refused rows and wrong types fail alone, a wrong password or
//! database is reported and retried).

mod store_support;

use squall::connectors::postgres::*;
use squall::testing::{wait_for, Feeder};
use squall::trident::state::StatePartition;
use squall::trident::*;
use squall::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_support::sinks::{errors_of, run_sink, run_sink_tasks};
use store_support::words::{count_words, macbeth, plain_counts};
use store_support::{Postgres, PG_PASSWORD};

const WAIT: Duration = Duration::from_secs(120);

fn config() -> Config {
    let mut c = Config::new();
    c.acker_executors = Some(1);
    c.message_timeout_secs = 30;
    c
}

fn key(w: &str) -> Key {
    Key(values![w])
}

fn add(state: &mut dyn MapState, txid: u64, word: &str, n: i64) -> Result<Value, StateError> {
    state.begin_commit(txid)?;
    let v = state.multi_update(&[key(word)], &mut |_, old| {
        Value::Int(old.and_then(|v| v.as_i64()).unwrap_or(0) + n)
    })?;
    state.commit(txid)?;
    Ok(v[0].clone())
}

fn counts_state(pg: &Postgres, table: &str, semantics: Semantics) -> PostgresMapState {
    let s = PostgresMapState::new(PostgresConfig::new(&pg.url()), table, &["word"], &["count"])
        .with_semantics(semantics);
    s.create_table(&[SqlType::Text], &[SqlType::Int8]).unwrap();
    s
}

/// Storm's `StateTest`-style cases against PostgreSQL, the txids in the
/// table; the rows survive `pg_ctl restart`; bad settings are named.
#[test]
fn map_states_follow_storms_three_semantics() {
    let mut pg = Postgres::start();
    let part = StatePartition { index: 0, count: 1 };
    let tx = counts_state(&pg, "tx_counts", Semantics::Transactional);
    let mut s = tx.make_state(&part).unwrap();
    assert_eq!(add(&mut *s, 1, "a", 5).unwrap(), Value::Int(5));
    assert_eq!(
        add(&mut *s, 1, "a", 5).unwrap(),
        Value::Int(5),
        "replay skipped"
    );
    assert_eq!(
        add(&mut *s, 2, "a", 1).unwrap(),
        Value::Int(6),
        "newer applied"
    );

    let op = counts_state(&pg, "op_counts", Semantics::Opaque);
    let mut s = op.make_state(&part).unwrap();
    assert_eq!(add(&mut *s, 1, "a", 5).unwrap(), Value::Int(5));
    assert_eq!(add(&mut *s, 2, "a", 3).unwrap(), Value::Int(8));
    assert_eq!(
        add(&mut *s, 2, "a", 4).unwrap(),
        Value::Int(9),
        "replay on prev"
    );
    assert!(matches!(
        add(&mut *s, 1, "a", 1).unwrap_err(),
        StateError::BehindBatch { batch: 1, state: 2 }
    ));

    let nt = counts_state(&pg, "nt_counts", Semantics::NonTransactional);
    let mut s = nt.make_state(&part).unwrap();
    add(&mut *s, 1, "a", 5).unwrap();
    assert_eq!(add(&mut *s, 1, "a", 5).unwrap(), Value::Int(10));

    pg.restart();
    // The first call after the restart finds its connection gone and fails
    // (its batch would replay); the next reconnects.
    let applied = i64::from(add(&mut *s, 2, "a", 1).is_ok());
    assert_eq!(add(&mut *s, 3, "a", 1).unwrap(), Value::Int(11 + applied));
    assert_eq!(tx.read_all().unwrap()[&key("a")], Value::Int(6));
    let mut c = pg.client();
    let row = c
        .query_one(
            "SELECT count, txid, prev_count FROM op_counts WHERE word = 'a'",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2)
        ),
        (9, 2, 5)
    );

    // Wrong password, port, database: named with the server.
    let cases = [
        (
            pg.url().replace(PG_PASSWORD, "wrong"),
            "postgres",
            "password authentication failed",
        ),
        (
            pg.url().replace("dbname=postgres", "dbname=nope"),
            "nope",
            "database \"nope\" does not exist",
        ),
    ];
    for (url, db, cause) in cases {
        let state = PostgresMapState::new(
            PostgresConfig::new(&url),
            "tx_counts",
            &["word"],
            &["count"],
        );
        let err = state.make_state(&part).err().unwrap().to_string();
        let server = format!("PostgreSQL at 127.0.0.1:{}/{db}", pg.port);
        assert!(err.contains(&server) && err.contains(cause), "{err}");
    }
    let closed = store_support::free_port();
    let url = pg
        .url()
        .replace(&format!("port={}", pg.port), &format!("port={closed}"));
    let err = PostgresMapState::new(PostgresConfig::new(&url), "t", &["k"], &["v"])
        .make_state(&part)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("PostgreSQL at 127.0.0.1:{closed}/postgres"))
            && err.contains("refused"),
        "{err}"
    );
    let err = PostgresMapState::new(PostgresConfig::new(&pg.url()), "missing", &["k"], &["v"])
        .make_state(&part)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("relation \"missing\" does not exist"), "{err}");
}

/// Trident word count into PostgreSQL equals the plain count, transactional
/// and opaque, with batches failing once and `pg_ctl restart` while
/// batches commit; a query stream reads the counts back (`MapGet`).
#[test]
fn trident_word_count_into_postgres_is_exact_through_failures_and_a_restart() {
    let mut pg = Postgres::start();
    let files = macbeth();
    let expected = plain_counts(&files);
    for semantics in [Semantics::Transactional, Semantics::Opaque] {
        let state = counts_state(
            &pg,
            &format!("wc_{}", semantics.name().replace('-', "_")),
            semantics,
        );
        let failures = Arc::new(AtomicU64::new(0));
        let t = TridentTopology::new();
        let counts = count_words(
            t.new_stream("lines", RecordSpout::lines(&files, 200).unwrap()),
            state.clone(),
            (10, 3),
            failures.clone(),
        );
        let requests = FeederSpout::new(["word"]);
        let answers: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
        let sink = answers.clone();
        t.new_stream("requests", requests.clone())
            .state_query(&counts, ["word"], MapGet, ["count"])
            .each(
                ["word", "count"],
                move |t: &TridentTuple, _: &mut TridentCollector| -> Result<(), ExecuteError> {
                    sink.lock()
                        .unwrap()
                        .insert(t.str(0)?.to_owned(), t.value(1)?.clone());
                    Ok(())
                },
                Fields::default(),
            );
        let cluster = LocalCluster::new();
        let mut c = config();
        c.max_spout_pending = Some(2);
        let name = format!("pg-wc-{}", semantics.name());
        cluster
            .submit_topology(&name, &c, t.build().unwrap())
            .unwrap();
        assert!(wait_for(WAIT, || state
            .read_all()
            .is_ok_and(|m| m.len() > 500)));
        pg.restart();
        let done = wait_for(WAIT, || state.read_all().is_ok_and(|m| m == expected));
        let got = state.read_all().unwrap();
        assert!(
            done && got == expected,
            "{}: {} of {} words right",
            semantics.name(),
            got.iter()
                .filter(|(k, v)| expected.get(*k) == Some(*v))
                .count(),
            expected.len()
        );
        assert!(failures.load(Ordering::Relaxed) > 0);
        requests.feed(vec![values!["macbeth"], values!["zebra"]]);
        assert!(requests.wait_committed(WAIT));
        let answers = answers.lock().unwrap().clone();
        assert_eq!(answers["macbeth"], expected[&key("macbeth")]);
        assert_eq!(answers["zebra"], Value::Null);
        cluster.kill_topology(&name).unwrap();
    }
}

fn failed_ids(feeder: &Feeder) -> HashSet<i64> {
    feeder
        .failed()
        .into_iter()
        .map(|(id, _)| id.as_i64().unwrap())
        .collect()
}

/// Every acked tuple is a row; a duplicate key, a CHECK violation and a
/// value of the wrong type fail only their own tuples, reported with the
/// constraint or column; upserts update in place.
#[test]
fn the_bolt_writes_acked_rows_and_fails_only_the_offending_tuples() {
    let pg = Postgres::start();
    pg.client()
        .batch_execute(
            "CREATE TABLE flights (id bigint PRIMARY KEY, carrier text NOT NULL, \
             delay integer CHECK (delay > -1000));
             CREATE TABLE latest (origin text PRIMARY KEY, delay integer)",
        )
        .unwrap();
    let feeder = Feeder::new(["id", "carrier", "delay"]);
    let bolt = PostgresBoltConfig::new(PostgresConfig::new(&pg.url()), "flights");
    let cluster = run_sink("pg-sink", &feeder, move || PostgresBolt::new(bolt.clone()));
    let mut bad = HashSet::new();
    for i in 0..1000i64 {
        feeder.feed(values![i, "AA", i % 300]);
    }
    bad.insert(feeder.feed(values![5, "UA", 1]).as_i64().unwrap()); // duplicate id 5
    bad.insert(feeder.feed(values![2000, "UA", -5000]).as_i64().unwrap()); // CHECK
    bad.insert(feeder.feed(values![2001, "UA", "late"]).as_i64().unwrap()); // type
    bad.insert(feeder.feed(values![2002, Value::Null, 3]).as_i64().unwrap()); // NOT NULL
    for i in 3000..3100i64 {
        feeder.feed(values![i, "B6", 7]);
    }
    assert!(
        wait_for(WAIT, || feeder.acked().len() == 1100
            && feeder.failed().len() >= 4),
        "acked {}, failed {:?}; errors {:?}",
        feeder.acked().len(),
        feeder.failed(),
        errors_of(&cluster, "pg-sink", "write")
    );
    assert_eq!(failed_ids(&feeder), bad);
    let n: i64 = pg
        .client()
        .query_one("SELECT count(*) FROM flights", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1100);
    // Task errors reach the metrics when the bolt next publishes them.
    let mut errors = Vec::new();
    wait_for(WAIT, || {
        errors = errors_of(&cluster, "pg-sink", "write");
        errors.len() >= 4
    });
    for expected in [
        "duplicate key value violates unique constraint \"flights_pkey\"",
        "constraint flights_delay_check",
        "column delay is integer, the value is string \"late\"",
        "(column carrier)",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{expected}: {errors:?}"
        );
    }
    cluster.kill_topology("pg-sink").unwrap();

    // Upserts: the latest delay per origin.
    let feeder = Feeder::new(["origin", "delay"]);
    let bolt =
        PostgresBoltConfig::new(PostgresConfig::new(&pg.url()), "latest").with_upsert(&["origin"]);
    let cluster = run_sink("pg-upsert", &feeder, move || {
        PostgresBolt::new(bolt.clone())
    });
    for d in 0..50 {
        feeder.feed(values!["JFK", d]);
    }
    feeder.feed(values!["LGA", 3]);
    assert!(wait_for(WAIT, || feeder.acked().len() == 51));
    let rows: Vec<(String, i32)> = pg
        .client()
        .query("SELECT origin, delay FROM latest ORDER BY origin", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, vec![("JFK".into(), 49), ("LGA".into(), 3)]);
    cluster.kill_topology("pg-upsert").unwrap();
}

/// A database that does not exist yet: the bolt reports it naming the
/// server and the cause, fails its tuples at once (they replay), and
/// writes once the database is there, without a restart.
#[test]
fn a_missing_database_is_reported_and_retried() {
    let pg = Postgres::start();
    let url = pg.url().replace("dbname=postgres", "dbname=later");
    let feeder = Feeder::new(["k"]);
    let bolt = PostgresBoltConfig::new(PostgresConfig::new(&url), "t");
    let cluster = run_sink("pg-later", &feeder, move || PostgresBolt::new(bolt.clone()));
    let first = feeder.feed(values![1]);
    assert!(wait_for(WAIT, || feeder
        .failed()
        .iter()
        .any(|(id, _)| *id == first)));
    assert!(wait_for(WAIT, || errors_of(&cluster, "pg-later", "write")
        .iter()
        .any(|e| e.contains(&format!(
            "PostgreSQL at 127.0.0.1:{}/later",
            pg.port
        )) && e.contains("database \"later\" does not exist"))));
    let mut c = pg.client();
    c.batch_execute("CREATE DATABASE later").unwrap();
    let mut later = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    later.batch_execute("CREATE TABLE t (k bigint)").unwrap();
    let acked = wait_for(WAIT, || {
        let id = feeder.feed(values![2]);
        wait_for(Duration::from_secs(2), || feeder.acked().contains(&id))
    });
    assert!(
        acked,
        "errors {:?}",
        errors_of(&cluster, "pg-later", "write")
    );
    cluster.kill_topology("pg-later").unwrap();
}

/// Four tasks share a pool of two connections: the server never sees more
/// than two of the bolt's connections, and every acked tuple is a row;
/// after `pg_ctl restart` the pool drops the connections the server
/// closed and the tasks write again, still through at most two.
#[test]
fn the_tasks_share_a_bounded_pool_that_outlives_a_restart() {
    let mut pg = Postgres::start();
    pg.client()
        .batch_execute("CREATE TABLE events (id bigint PRIMARY KEY)")
        .unwrap();
    let url = format!("{} application_name=pooled", pg.url());
    let feeder = Feeder::new(["id"]);
    let bolt = PostgresBoltConfig::new(PostgresConfig::new(&url), "events")
        .with_max_connections(2)
        .with_max_batch(20);
    let cluster = run_sink_tasks("pg-pool", &feeder, 4, move || {
        PostgresBolt::new(bolt.clone())
    });
    let mut most = 0;
    let mut next = 0i64;
    for _ in 0..10 {
        for _ in 0..300 {
            feeder.feed_with_id(values![next], Value::from(next));
            next += 1;
        }
        let done = wait_for(WAIT, || {
            most = most.max(pooled_connections(&pg));
            feeder.acked().len() == next as usize
        });
        assert!(done, "errors {:?}", errors_of(&cluster, "pg-pool", "write"));
    }
    assert!((1..=2).contains(&most), "{most} connections seen");

    pg.restart();
    let before = feeder.acked().len();
    let written = wait_for(WAIT, || {
        for _ in 0..40 {
            feeder.feed_with_id(values![next], Value::from(next));
            next += 1;
        }
        most = most.max(pooled_connections(&pg));
        wait_for(Duration::from_secs(2), || {
            feeder.acked().len() >= before + 40
        })
    });
    assert!(
        written,
        "errors {:?}",
        errors_of(&cluster, "pg-pool", "write")
    );
    assert!(most <= 2, "{most} connections seen");
    let rows: HashSet<i64> = pg
        .client()
        .query("SELECT id FROM events", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let acked: HashSet<i64> = feeder
        .acked()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert!(
        acked.is_subset(&rows),
        "{} acked ids not written",
        acked.difference(&rows).count()
    );
    cluster.kill_topology("pg-pool").unwrap();
}

/// The server's connections with `application_name=pooled`.
fn pooled_connections(pg: &Postgres) -> i64 {
    pg.client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pooled'",
            &[],
        )
        .unwrap()
        .get(0)
}
