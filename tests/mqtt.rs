//! MQTT connectors against a real Mosquitto per test: the spout sends
//! PUBACK only for completed tuple trees, so through a broker restart and
//! a topology restart every QoS 1 message is processed at least once; the
//! bolt acks what the broker acknowledged and reports a broker that is
//! gone.

mod store_support;

use rumqttc::{Client, Event, Outgoing, Packet, QoS};
use squall::connectors::mqtt::*;
use squall::testing::{wait_for, Feeder};
use squall::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_support::Mosquitto;

const WAIT: Duration = Duration::from_secs(120);

/// Publishes `messages` (topic, payload) with QoS 1 and waits for every
/// PUBACK, so the broker holds them all.
fn publish(port: u16, messages: &[(String, String)]) {
    let mut o = rumqttc::MqttOptions::new("test-publisher", "127.0.0.1", port);
    o.set_clean_session(true);
    let (client, mut conn) = Client::new(o, messages.len() + 10);
    for (t, p) in messages {
        client
            .publish(t.clone(), QoS::AtLeastOnce, false, p.clone())
            .unwrap();
    }
    let (mut sent, mut acked) = (0, 0);
    let deadline = Instant::now() + WAIT;
    while acked < messages.len() {
        assert!(
            Instant::now() < deadline,
            "{acked} of {} PUBACKs",
            messages.len()
        );
        match conn.recv_timeout(Duration::from_secs(1)) {
            Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) => sent += 1,
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Err(e)) => panic!("publisher: {e} after {sent} sent"),
            _ => {}
        }
    }
    client.disconnect().unwrap();
    let _ = conn.recv_timeout(Duration::from_millis(200));
}

fn telemetry(range: std::ops::Range<u32>) -> Vec<(String, String)> {
    range
        .map(|n| (format!("devices/d{}/telemetry", n % 5), n.to_string()))
        .collect()
}

/// Counts each payload seen; with `hold`, never acks multiples of 10.
struct Recording {
    seen: Arc<Mutex<HashMap<u32, u32>>>,
    hold: bool,
}

impl Bolt for Recording {
    fn execute(&mut self, t: &Tuple, out: &mut OutputCollector<'_>) {
        let Ok(n) = t.get_str(1).unwrap_or("").parse::<u32>() else {
            out.ack(t); // warm-up messages
            return;
        };
        *self.seen.lock().unwrap().entry(n).or_insert(0) += 1;
        if !(self.hold && n % 10 == 0) {
            out.ack(t);
        }
    }
    fn declare_output_fields(&self, _: &mut OutputFieldsDeclarer) {}
}

fn run_spout(
    name: &str,
    port: u16,
    seen: Arc<Mutex<HashMap<u32, u32>>>,
    hold: bool,
) -> LocalCluster {
    let cfg = MqttSpoutConfig::new(
        MqttBroker::new("127.0.0.1", port),
        "squall-telemetry",
        &["devices/+/telemetry"],
    );
    let mut b = TopologyBuilder::new();
    b.set_spout("mqtt", move || MqttSpout::new(cfg.clone()), 1);
    b.set_bolt(
        "record",
        move || Recording {
            seen: seen.clone(),
            hold,
        },
        1,
    )
    .shuffle_grouping("mqtt");
    let mut c = Config::new();
    c.acker_executors = Some(1);
    c.message_timeout_secs = 600;
    let cluster = LocalCluster::new();
    cluster
        .submit_topology(name, &c, b.create_topology().unwrap())
        .unwrap();
    cluster
}

#[test]
fn every_qos1_message_is_processed_through_broker_and_topology_restarts() {
    let mut broker = Mosquitto::start();
    let first: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let a = run_spout("mqtt-a", broker.port, first.clone(), true);
    // The persistent session exists once a warm-up message gets through.
    assert!(wait_for(WAIT, || {
        publish(
            broker.port,
            &[("devices/w/telemetry".into(), "warm-up".into())],
        );
        let m = a.metrics("mqtt-a").ok();
        let emitted: u64 = m
            .map(|m| {
                m.tasks
                    .values()
                    .filter(|t| t.component.0 == "mqtt")
                    .map(|t| t.emitted.values().sum::<u64>())
                    .sum()
            })
            .unwrap_or(0);
        emitted > 0
    }));
    publish(broker.port, &telemetry(0..1000));
    broker.restart();
    publish(broker.port, &telemetry(1000..2000));
    assert!(
        wait_for(WAIT, || first.lock().unwrap().len() == 2000),
        "first run saw {} of 2000; broker log:\n{}",
        first.lock().unwrap().len(),
        broker.log()
    );
    a.kill_topology("mqtt-a").unwrap();
    drop(a);
    // The held messages (never acked) come back to the next run.
    let second: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let b = run_spout("mqtt-b", broker.port, second.clone(), false);
    let held: HashSet<u32> = (0..2000).filter(|n| n % 10 == 0).collect();
    assert!(
        wait_for(WAIT, || held
            .iter()
            .all(|n| second.lock().unwrap().contains_key(n))),
        "{} of {} held messages redelivered",
        held.iter()
            .filter(|n| second.lock().unwrap().contains_key(n))
            .count(),
        held.len()
    );
    b.kill_topology("mqtt-b").unwrap();
}

/// Subscribes to `topic` and returns the payloads received so far.
fn subscriber(port: u16, topic: &str) -> (Arc<Mutex<Vec<String>>>, Arc<Mutex<bool>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let ready = Arc::new(Mutex::new(false));
    let mut o = rumqttc::MqttOptions::new("test-subscriber", "127.0.0.1", port);
    o.set_clean_session(true);
    let (client, mut conn) = Client::new(o, 100);
    client.subscribe(topic, QoS::AtLeastOnce).unwrap();
    let (g, r) = (got.clone(), ready.clone());
    std::thread::spawn(move || {
        let _client = client;
        for e in conn.iter() {
            match e {
                Ok(Event::Incoming(Packet::SubAck(_))) => *r.lock().unwrap() = true,
                Ok(Event::Incoming(Packet::Publish(p))) => g
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&p.payload).into_owned()),
                Err(_) => return,
                _ => {}
            }
        }
    });
    (got, ready)
}

#[test]
fn the_bolt_acks_what_the_broker_acknowledged_and_reports_a_lost_broker() {
    let mut broker = Mosquitto::start();
    let (got, ready) = subscriber(broker.port, "alerts/#");
    assert!(wait_for(WAIT, || *ready.lock().unwrap()));
    let feeder = Feeder::new(["topic", "payload"]);
    let cfg = MqttBoltConfig::new(MqttBroker::new("127.0.0.1", broker.port), "squall-alerts");
    let mut b = TopologyBuilder::new();
    b.set_spout("in", feeder.spout(), 1);
    b.set_bolt("publish", move || MqttBolt::new(cfg.clone()), 1)
        .shuffle_grouping("in");
    let mut c = Config::new();
    c.acker_executors = Some(1);
    let cluster = LocalCluster::new();
    cluster
        .submit_topology("mqtt-out", &c, b.create_topology().unwrap())
        .unwrap();
    for i in 0..500 {
        feeder.feed(values![format!("alerts/{}", i % 3), format!("a{i}")]);
    }
    assert!(wait_for(WAIT, || feeder.acked().len() == 500));
    assert!(wait_for(WAIT, || got.lock().unwrap().len() >= 500));
    let distinct: HashSet<String> = got.lock().unwrap().iter().cloned().collect();
    assert_eq!(distinct.len(), 500);

    // The broker goes away: tuples fail (their spout replays them) and
    // the error names the broker; once it is back, publishing resumes.
    broker.stop();
    let lost = feeder.feed(values!["alerts/x", "while down"]);
    assert!(wait_for(WAIT, || feeder
        .failed()
        .iter()
        .any(|(id, _)| *id == lost)));
    let errors = || -> Vec<String> {
        cluster
            .metrics("mqtt-out")
            .map(|m| m.tasks.values().flat_map(|t| t.errors.clone()).collect())
            .unwrap_or_default()
    };
    let name = format!("MQTT broker at 127.0.0.1:{}", broker.port);
    assert!(
        wait_for(WAIT, || errors().iter().any(|e| e.contains(&name))),
        "{:?}",
        errors()
    );
    broker.start_again();
    assert!(wait_for(WAIT, || {
        let id = feeder.feed(values!["alerts/x", "back"]);
        wait_for(Duration::from_secs(2), || feeder.acked().contains(&id))
    }));
    cluster.kill_topology("mqtt-out").unwrap();
}
