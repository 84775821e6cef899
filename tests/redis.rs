//! Redis connectors against a real `redis-server` per test: Trident map
//! states (Storm's `StateTest` cases, and word count exact under batch
//! failures and a server restart), the `KeyValueState` provider (the
//! two-phase contract, a stateful word count), `RedisBolt` (acks only what
//! Redis took, refused writes fail alone) and the Redis Streams spout (a
//! killed consumer's entries are claimed by another).

mod corpus;
mod store_support;

use squall::connectors::redis::*;
use squall::stateful::store::{Prepared, StateProvider};
use squall::testing::{wait_for, Feeder};
use squall::trident::state::StatePartition;
use squall::trident::*;
use squall::*;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store_support::sinks::{errors_of, run_sink};
use store_support::words::{count_words, macbeth, plain_counts};
use store_support::Redis;

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

fn partition() -> StatePartition {
    StatePartition { index: 0, count: 1 }
}

/// Applies `+n` to `word` in batch `txid`, as a persistent count would.
fn add(state: &mut dyn MapState, txid: u64, word: &str, n: i64) -> Result<Value, StateError> {
    state.begin_commit(txid)?;
    let v = state.multi_update(&[key(word)], &mut |_, old| {
        Value::Int(old.and_then(|v| v.as_i64()).unwrap_or(0) + n)
    })?;
    state.commit(txid)?;
    Ok(v[0].clone())
}

/// Storm's `StateTest`-style cases, on the real server: a replayed txid is
/// skipped (transactional) or re-applied to the previous value (opaque),
/// a newer one applies, an older one is refused; non-transactional applies
/// every time. Values survive a restart of Redis.
#[test]
fn map_states_follow_storms_three_semantics() {
    let mut redis = Redis::start();
    let cfg = RedisConfig::new(&redis.url());
    let tx = RedisMapState::new(cfg.clone(), "tx:");
    let mut s = tx.make_state(&partition()).unwrap();
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

    let op = RedisMapState::new(cfg.clone(), "op:").with_semantics(Semantics::Opaque);
    let mut s = op.make_state(&partition()).unwrap();
    assert_eq!(add(&mut *s, 1, "a", 5).unwrap(), Value::Int(5));
    assert_eq!(add(&mut *s, 2, "a", 3).unwrap(), Value::Int(8));
    // Batch 2 replayed with other tuples: applied to the value before it.
    assert_eq!(add(&mut *s, 2, "a", 4).unwrap(), Value::Int(9));
    let err = add(&mut *s, 1, "a", 1).unwrap_err();
    assert!(
        matches!(err, StateError::BehindBatch { batch: 1, state: 2 }),
        "{err}"
    );

    let nt = RedisMapState::new(cfg.clone(), "nt:").with_semantics(Semantics::NonTransactional);
    let mut s = nt.make_state(&partition()).unwrap();
    add(&mut *s, 1, "a", 5).unwrap();
    assert_eq!(add(&mut *s, 1, "a", 5).unwrap(), Value::Int(10));

    redis.restart();
    // The next call after a restart may find the old connection closed: it
    // fails (its batch would replay) and the one after reconnects.
    let _ = add(&mut *s, 2, "b", 1);
    assert_eq!(tx.read_all().unwrap()[&key("a")], Value::Int(6));
    assert_eq!(op.read_all().unwrap()[&key("a")], Value::Int(9));
    let mut con = redis.connection();
    let raw: String = redis::cmd("GET").arg("tx:a").query(&mut con).unwrap();
    assert!(raw.contains("\"txid\":2"), "{raw}");
    // A wrong password is refused at open, naming the server and the cause.
    let bad = RedisConfig::new(&format!("redis://:nope@127.0.0.1:{}/", redis.port));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("right")
        .query(&mut con)
        .unwrap();
    let err = RedisMapState::new(bad, "x:")
        .make_state(&partition())
        .err()
        .expect("a wrong password is refused")
        .to_string();
    assert!(
        err.contains(&format!("Redis at 127.0.0.1:{}", redis.port))
            && err.contains("authentication failed"),
        "{err}"
    );
}

/// Trident word count into Redis equals the plain count, for each
/// semantics that promises it, with one batch in ten failing once and the
/// server restarted while batches commit.
#[test]
fn trident_word_count_into_redis_is_exact_through_failures_and_a_restart() {
    let mut redis = Redis::start();
    let files = macbeth();
    let expected = plain_counts(&files);
    for semantics in [Semantics::Transactional, Semantics::Opaque] {
        let prefix = format!("wc-{}:", semantics.name());
        let state =
            RedisMapState::new(RedisConfig::new(&redis.url()), &prefix).with_semantics(semantics);
        let failures = Arc::new(AtomicU64::new(0));
        let t = TridentTopology::new();
        count_words(
            t.new_stream("lines", RecordSpout::lines(&files, 200).unwrap()),
            state.clone(),
            (10, 3),
            failures.clone(),
        );
        let cluster = LocalCluster::new();
        let mut c = config();
        c.max_spout_pending = Some(2);
        let name = format!("redis-wc-{}", semantics.name());
        cluster
            .submit_topology(&name, &c, t.build().unwrap())
            .unwrap();
        // Restart the server once some batches committed.
        assert!(wait_for(WAIT, || state
            .read_all()
            .is_ok_and(|m| m.len() > 500)));
        redis.restart();
        let done = wait_for(WAIT, || state.read_all().is_ok_and(|m| m == expected));
        cluster.kill_topology(&name).unwrap();
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
    }
}

fn kv(k: &str) -> Vec<u8> {
    k.as_bytes().to_vec()
}

/// The checkpoint contract on Redis (Storm's `RedisKeyValueStateTest`
/// cases): writes count only through their COMMIT, ROLLBACK drops the
/// prepared set, a prepared set survives for a COMMIT after a restart of
/// the task and of the server, a repeated COMMIT does nothing.
#[test]
fn the_key_value_provider_commits_only_what_was_prepared() {
    let mut redis = Redis::start();
    let provider = RedisStateProvider::from_url(&redis.url());
    let mut s = squall::stateful::TxStore::new(provider.open("topo", "count-1").unwrap()).unwrap();
    s.put(kv("a"), kv("1"));
    s.prepare(1, b"acks-1".to_vec()).unwrap();
    s.put(kv("b"), kv("2"));
    s.commit(1).unwrap();
    s.prepare(2, b"acks-2".to_vec()).unwrap();
    drop(s);
    redis.restart();
    // The task's successor sees what committed and the prepared set.
    let store = provider.open("topo", "count-1").unwrap();
    assert_eq!(store.entries().unwrap(), vec![(kv("a"), kv("1"))]);
    assert_eq!(store.committed_txid().unwrap(), Some(1));
    assert_eq!(
        store.committed_acks().unwrap(),
        Some((1, b"acks-1".to_vec()))
    );
    let prepared: Prepared = store.prepared().unwrap().unwrap();
    assert_eq!(prepared.txid, 2);
    let mut s = squall::stateful::TxStore::new(store).unwrap();
    s.commit(2).unwrap();
    s.commit(2).unwrap();
    assert_eq!(
        s.entries().unwrap(),
        vec![(kv("a"), kv("1")), (kv("b"), kv("2"))]
    );
    s.put(kv("c"), kv("3"));
    s.delete(kv("a"));
    s.prepare(3, Vec::new()).unwrap();
    s.rollback().unwrap();
    drop(s);
    let store = provider.open("topo", "count-1").unwrap();
    assert_eq!(store.committed_txid().unwrap(), Some(2));
    assert!(store.prepared().unwrap().is_none());
    assert_eq!(
        provider.read("topo").unwrap()["count-1"],
        vec![(kv("a"), kv("1")), (kv("b"), kv("2"))]
    );
    // An unreachable server is named at open.
    redis.stop();
    let err = provider.open("topo", "count-1").err().unwrap().to_string();
    assert!(
        err.contains(&format!("Redis at 127.0.0.1:{}", redis.port)),
        "{err}"
    );
}

/// `topology.state.provider: redis`: the stateful word count with failures
/// injected equals a plain count, read back from Redis.
#[test]
fn stateful_word_count_in_redis_equals_a_plain_count() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let input = corpus::small_corpus(dir.path());
    let counts = dir.path().join("counts.tsv");
    let out = Command::new(corpus::example_named("stateful_word_count"))
        .args(["--input", &input.display().to_string()])
        .args(["--output", &counts.display().to_string(), "--top", "0"])
        .args(["--fail-rate", "0.001", "--name", "swc-redis"])
        .args(["-c", "topology.state.provider=redis"])
        .args([
            "-c",
            &format!("topology.state.provider.config={}", redis.url()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    corpus::assert_same_counts(&corpus::read_counts(&counts), &corpus::plain_count(&input));
    let mut con = redis.connection();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("squall:state:swc-redis:*")
        .query(&mut con)
        .unwrap();
    assert!(keys.len() >= 2, "{keys:?}");
}

fn hash_mapper(t: &Tuple) -> Result<Vec<RedisCommand>, String> {
    let k = t.value_by_field("k").map_err(|e| e.to_string())?;
    let n = t.value_by_field("n").map_err(|e| e.to_string())?;
    Ok(vec![RedisCommand::HIncrBy {
        key: k.as_str().ok_or("k is not text")?.to_owned(),
        field: "n".into(),
        by: n.as_i64().ok_or("n is not an integer")?,
    }])
}

/// Every acked tuple is in Redis; a write Redis refuses (`WRONGTYPE`) and
/// a tuple the mapper rejects fail alone, reported with the key; the bolt
/// reports an unreachable server and writes once it is back, without its
/// executor waiting.
#[test]
fn the_bolt_acks_what_redis_took_and_fails_only_refused_writes() {
    let mut redis = Redis::start();
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg("taken")
        .arg("a string")
        .query(&mut con)
        .unwrap();
    let feeder = Feeder::new(["k", "n"]);
    let url = redis.url();
    let cluster = run_sink("redis-sink", &feeder, move || {
        RedisBolt::new(RedisConfig::new(&url), hash_mapper).with_ttl(Duration::from_secs(3600))
    });
    let mut ok = Vec::new();
    for i in 0..300 {
        ok.push(feeder.feed(values![format!("h{}", i % 7), 1]));
    }
    let wrong_type = feeder.feed(values!["taken", 1]);
    let not_int = feeder.feed(values!["h0", "x"]);
    assert!(wait_for(WAIT, || feeder.acked().len() == 300
        && feeder.failed().len() >= 2));
    let failed: HashSet<i64> = feeder
        .failed()
        .into_iter()
        .map(|(id, _)| id.as_i64().unwrap())
        .collect();
    let (wrong_type, not_int) = (wrong_type.as_i64().unwrap(), not_int.as_i64().unwrap());
    assert_eq!(failed, HashSet::from([wrong_type, not_int]));
    let total: i64 = (0..7)
        .map(|h| {
            redis::cmd("HGET")
                .arg(format!("h{h}"))
                .arg("n")
                .query::<i64>(&mut con)
                .unwrap()
        })
        .sum();
    assert_eq!(total, 300);
    let ttl: i64 = redis::cmd("TTL").arg("h0").query(&mut con).unwrap();
    assert!(ttl > 3000, "TTL {ttl}");
    // Task errors reach the metrics when the bolt next publishes them.
    let mut errors = Vec::new();
    wait_for(WAIT, || {
        errors = errors_of(&cluster, "redis-sink", "write");
        errors.len() >= 2
    });
    assert!(
        errors
            .iter()
            .any(|e| e.contains("key taken") && e.contains("WRONGTYPE")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("n is not an integer")),
        "{errors:?}"
    );

    // The server goes away: the error names it; tuples fail (and are fed
    // again, as a spout replays) until it is back.
    redis.stop();
    let during = feeder.feed(values!["later", 1]);
    assert!(wait_for(WAIT, || feeder
        .failed()
        .iter()
        .any(|(id, _)| *id == during)));
    assert!(wait_for(WAIT, || errors_of(
        &cluster,
        "redis-sink",
        "write"
    )
    .iter()
    .any(|e| e.contains(&format!("Redis at 127.0.0.1:{}", redis.port)))));
    redis.start_again();
    let after = loop {
        let id = feeder.feed(values!["later", 1]);
        if wait_for(Duration::from_secs(5), || feeder.acked().contains(&id)) {
            break id;
        }
    };
    assert!(feeder.acked().contains(&after));
    cluster.kill_topology("redis-sink").unwrap();
}

/// A consumer killed with entries pending: a consumer of the same group
/// in another topology claims them; every entry is processed at least
/// once and the group has nothing pending at the end.
#[test]
fn a_killed_consumers_pending_entries_are_claimed_and_acked() {
    let redis = Redis::start();
    let mut con = redis.connection();
    add_events(&mut con, 1000);
    let seen: Arc<Mutex<HashSet<i64>>> = Arc::default();
    // The first topology acks entries below 600 and holds the rest.
    let run = |name: &str, component: &str, hold: bool| {
        let seen = seen.clone();
        let cfg = RedisStreamConfig::new(RedisConfig::new(&redis.url()), "events", "g", &["n"])
            .with_claim_idle(Duration::from_secs(1));
        let mut b = TopologyBuilder::new();
        b.set_spout(component, move || RedisStreamSpout::new(cfg.clone()), 1);
        b.set_bolt(
            "mark",
            move || HoldingBolt {
                seen: seen.clone(),
                hold,
            },
            1,
        )
        .shuffle_grouping(component);
        let cluster = LocalCluster::new();
        let mut c = config();
        c.message_timeout_secs = 300;
        cluster
            .submit_topology(name, &c, b.create_topology().unwrap())
            .unwrap();
        cluster
    };
    let first = run("streams-a", "reader-a", true);
    assert!(wait_for(WAIT, || seen.lock().unwrap().len() == 1000));
    let pending = || -> usize {
        let reply: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg("events")
            .arg("g")
            .query(&mut redis.connection())
            .unwrap();
        reply.count()
    };
    assert!(wait_for(WAIT, || pending() == 400), "pending {}", pending());
    first.kill_topology("streams-a").unwrap();
    drop(first);
    seen.lock().unwrap().clear();
    let second = run("streams-b", "reader-b", false);
    assert!(
        wait_for(WAIT, || pending() == 0),
        "still pending: {}",
        pending()
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, (600..1000).collect::<HashSet<i64>>());
    second.kill_topology("streams-b").unwrap();
}

/// Records each entry's `n`; with `hold`, acks only those below 600.
struct HoldingBolt {
    seen: Arc<Mutex<HashSet<i64>>>,
    hold: bool,
}

impl Bolt for HoldingBolt {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let n: i64 = t.get_str(1).unwrap().parse().unwrap();
        self.seen.lock().unwrap().insert(n);
        if !self.hold || n < 600 {
            out.ack(t);
        }
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// A Trident word count reading a Redis stream (a transactional spout:
/// a replayed txid reads the same entry range) is exact with batches
/// failing once, and entries added while it runs are counted too.
#[test]
fn trident_over_a_redis_stream_replays_the_same_entries() {
    let redis = Redis::start();
    let files = macbeth();
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let add_lines = |lines: &[&str]| {
        let mut con = redis.connection();
        for chunk in lines.chunks(500) {
            let mut pipe = redis::pipe();
            for l in chunk {
                pipe.cmd("XADD")
                    .arg("lines")
                    .arg("*")
                    .arg("line")
                    .arg(*l)
                    .ignore();
            }
            pipe.query::<()>(&mut con).unwrap();
        }
    };
    let half = lines.len() / 2;
    add_lines(&lines[..half]);
    let state = RedisMapState::new(RedisConfig::new(&redis.url()), "swc:");
    let t = TridentTopology::new();
    let stream = t
        .new_stream(
            "stream",
            RedisStreamTridentSpout::new(RedisConfig::new(&redis.url()), "lines", &["line"])
                .with_batch_size(300),
        )
        .parallelism_hint(2);
    count_words(stream, state.clone(), (7, 2), Arc::default());
    let cluster = LocalCluster::new();
    let mut c = config();
    c.max_spout_pending = Some(3);
    cluster
        .submit_topology("redis-stream-wc", &c, t.build().unwrap())
        .unwrap();
    add_lines(&lines[half..]);
    let expected = plain_counts(&files);
    let done = wait_for(WAIT, || state.read_all().is_ok_and(|m| m == expected));
    cluster.kill_topology("redis-stream-wc").unwrap();
    let got = state.read_all().unwrap();
    assert!(
        done,
        "{} of {} words right",
        got.iter()
            .filter(|(k, v)| expected.get(*k) == Some(*v))
            .count(),
        expected.len()
    );
}

/// `SET`, `LPUSH` and `XADD` through the bolt: each acked tuple's writes
/// are in Redis, in order, and a `LPUSH` onto a string fails only its
/// tuple, naming the key.
#[test]
fn set_lpush_and_xadd_write_what_was_acked() {
    let redis = Redis::start();
    let mut con = redis.connection();
    let _: () = redis::cmd("SET")
        .arg("log:bad")
        .arg("a string")
        .query(&mut con)
        .unwrap();
    let feeder = Feeder::new(["device", "reading"]);
    let url = redis.url();
    let cluster = run_sink("redis-commands", &feeder, move || {
        RedisBolt::new(RedisConfig::new(&url), |t: &Tuple| {
            let device = t.get_str(0).map_err(|e| e.to_string())?.to_owned();
            let reading = t.get_str(1).map_err(|e| e.to_string())?.to_owned();
            Ok(vec![
                RedisCommand::Set {
                    key: format!("last:{device}"),
                    value: reading.clone(),
                },
                RedisCommand::LPush {
                    key: format!("log:{device}"),
                    value: reading.clone(),
                },
                RedisCommand::XAdd {
                    key: "readings".into(),
                    fields: vec![("device".into(), device), ("reading".into(), reading)],
                },
            ])
        })
    });
    for i in 0..100 {
        feeder.feed(values![format!("d{}", i % 4), format!("r{i}")]);
    }
    let bad = feeder.feed(values!["bad", "r100"]);
    assert!(wait_for(WAIT, || feeder.acked().len() == 100
        && !feeder.failed().is_empty()));
    let failed: Vec<Value> = feeder.failed().into_iter().map(|(id, _)| id).collect();
    assert_eq!(failed, vec![bad]);
    for d in 0..4 {
        let last: String = redis::cmd("GET")
            .arg(format!("last:d{d}"))
            .query(&mut con)
            .unwrap();
        assert_eq!(last, format!("r{}", 96 + d));
        let log: Vec<String> = redis::cmd("LRANGE")
            .arg(format!("log:d{d}"))
            .arg(0)
            .arg(-1)
            .query(&mut con)
            .unwrap();
        let expected: Vec<String> = (0..25).rev().map(|k| format!("r{}", k * 4 + d)).collect();
        assert_eq!(log, expected);
    }
    let entries: usize = redis::cmd("XLEN").arg("readings").query(&mut con).unwrap();
    // The refused tuple's XADD after its failed LPUSH still ran: Redis
    // pipelines are not transactions.
    assert_eq!(entries, 101);
    let mut errors = Vec::new();
    wait_for(WAIT, || {
        errors = errors_of(&cluster, "redis-commands", "write");
        !errors.is_empty()
    });
    assert!(
        errors
            .iter()
            .any(|e| e.contains("key log:bad") && e.contains("WRONGTYPE")),
        "{errors:?}"
    );
    cluster.kill_topology("redis-commands").unwrap();
}

/// Entries whose tuples fail are emitted again, still pending in the
/// group, until they are acked; none is left pending.
#[test]
fn failed_stream_entries_are_emitted_again_until_acked() {
    let redis = Redis::start();
    let mut con = redis.connection();
    add_events(&mut con, 300);
    let seen: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let s = seen.clone();
    let cfg = RedisStreamConfig::new(RedisConfig::new(&redis.url()), "events", "g", &["n"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("reader", move || RedisStreamSpout::new(cfg.clone()), 1);
    b.set_bolt("first-fails", move || FailFirst { seen: s.clone() }, 1)
        .shuffle_grouping("reader");
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("streams-fail", &config(), b.create_topology().unwrap())
        .unwrap();
    let pending = || -> usize {
        let reply: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg("events")
            .arg("g")
            .query(&mut redis.connection())
            .unwrap();
        reply.count()
    };
    assert!(wait_for(WAIT, || seen.lock().unwrap().len() == 300 && pending() == 0));
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.values().all(|&times| times >= 2),
        "a failed entry was not emitted again"
    );
    cluster.kill_topology("streams-fail").unwrap();
}

/// Fails the first sight of every entry, acks the next.
struct FailFirst {
    seen: Arc<Mutex<HashMap<i64, u32>>>,
}

impl Bolt for FailFirst {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let n: i64 = t.get_str(1).unwrap().parse().unwrap();
        let mut seen = self.seen.lock().unwrap();
        let times = seen.entry(n).or_insert(0);
        *times += 1;
        if *times == 1 {
            out.fail(t);
        } else {
            out.ack(t);
        }
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

/// Appends entries `n` = 0 … `count - 1` to stream `events`.
fn add_events(con: &mut redis::Connection, count: i64) {
    for i in 0..count {
        let _: String = redis::cmd("XADD")
            .arg("events")
            .arg("*")
            .arg("n")
            .arg(i)
            .query(con)
            .unwrap();
    }
}
