//! Bounded fuzzing of the sockets that take bytes from the network, on
//! real processes: Nimbus's RPC port and the UI get random bytes, random
//! payloads behind valid lengths, oversized and truncated frames, frames
//! of another protocol version, and hundreds of idle connections, from a
//! seeded generator. Each keeps serving a well-behaved client, with its
//! thread count and memory bounded, and never panics.

mod cluster_support;
mod corpus;

use cluster_support::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use squall_cluster::blocking::FramedStream;
use squall_cluster::rpc::{Request, Response};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The bytes of one valid `Request::ClusterInfo` frame.
fn valid_frame() -> Vec<u8> {
    let mut framed: FramedStream<std::io::Cursor<Vec<u8>>, Response, Request> =
        FramedStream::new(std::io::Cursor::new(Vec::new()), 4 << 20);
    framed.send(Request::ClusterInfo).unwrap();
    framed.into_inner().into_inner()
}

/// One hostile connection's bytes, case `case` of five.
fn hostile(rng: &mut SmallRng, case: u32, valid: &[u8]) -> Vec<u8> {
    fn random(rng: &mut SmallRng, n: usize) -> Vec<u8> {
        (0..n).map(|_| rng.random::<u8>()).collect()
    }
    match case {
        // Random bytes.
        0 => {
            let n = rng.random_range(0..4096);
            random(rng, n)
        }
        // A valid length, a random payload.
        1 => {
            let n = rng.random_range(1..2048u32);
            let mut out = n.to_be_bytes().to_vec();
            out.extend(random(rng, n as usize));
            out
        }
        // An oversized length, then a little.
        2 => {
            let mut out = rng
                .random_range((4u32 << 20) + 1..=u32::MAX)
                .to_be_bytes()
                .to_vec();
            out.extend(random(rng, 16));
            out
        }
        // A valid frame cut short.
        3 => valid[..rng.random_range(1..valid.len())].to_vec(),
        // A valid frame with its version bytes flipped.
        _ => {
            let mut out = valid.to_vec();
            let i = rng.random_range(4..out.len());
            out[i] ^= 0xff;
            out
        }
    }
}

/// Sends `bytes` on a new connection to `addr`, reads what comes back for
/// a moment, then closes.
fn send_and_close(addr: &str, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.write_all(bytes);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut sink = [0u8; 4096];
    let _ = s.read(&mut sink);
}

fn no_panic(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked"),
        "a panic in {}:\n{text}",
        log.display()
    );
}

#[test]
fn nimbus_and_the_ui_survive_hostile_bytes_and_idle_connections() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    wait_until("a leader", Duration::from_secs(60), || {
        c.cluster_info().is_some_and(|s| s.leader.is_some())
    });
    let ui = c.start_ui();
    let nimbus = c.nimbus_addresses()[0].clone();
    let ui_addr = ui.trim_start_matches("http://").to_owned();
    let pid = c.nimbus[0].as_ref().unwrap().child.id();
    let (base_threads, base_rss) = (proc_status(pid, "Threads:"), proc_status(pid, "VmRSS:"));
    let valid = valid_frame();

    // 200 idle connections to each, held through the fuzzing.
    let idle: Vec<TcpStream> = (0..200)
        .flat_map(|_| [TcpStream::connect(&nimbus), TcpStream::connect(&ui_addr)])
        .filter_map(Result::ok)
        .collect();

    let workers: Vec<_> = (0..4u64)
        .map(|seed| {
            let (nimbus, ui_addr, valid) = (nimbus.clone(), ui_addr.clone(), valid.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(0x5eed_0000 + seed);
                for i in 0..150u32 {
                    let bytes = hostile(&mut rng, i % 5, &valid);
                    send_and_close(&nimbus, &bytes);
                    let mut http = b"GET /".to_vec();
                    http.extend(hostile(&mut rng, i % 5, &valid));
                    send_and_close(&ui_addr, &http);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }

    // A well-behaved client is still served by both.
    let mut client = c.client(0);
    assert!(matches!(
        client.call(Request::ClusterInfo),
        Ok(Response::Cluster(_))
    ));
    let answer = ureq::get(&format!("{ui}/api/v1/cluster/summary"))
        .call()
        .expect("the UI answers");
    assert_eq!(answer.status(), 200);
    let threads = proc_status(pid, "Threads:");
    let rss = proc_status(pid, "VmRSS:");
    // One thread per connection, never more than the connection cap.
    assert!(
        threads <= base_threads + 256,
        "Nimbus threads {base_threads} -> {threads} with 200 idle connections (cap 256)"
    );
    assert!(
        rss < base_rss + 100 * 1024,
        "Nimbus RSS {base_rss} kB -> {rss} kB"
    );
    drop(idle);
    no_panic(&c.nimbus[0].as_ref().unwrap().log);
    no_panic(&c.path().join("ui.log"));
}

/// Worker ports get the same hostile bytes while a word count runs on two
/// workers: the workers drop the bad connections, keep exchanging
/// batches, and the counts stay exact.
#[test]
fn workers_survive_hostile_bytes_and_word_count_stays_exact() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let state = c.submit_word_count(
        "wc-fuzz",
        &["--workers", "2", "--max-spout-pending", "5000"],
    );
    let info = c.info("wc-fuzz").expect("topology is listed");
    let mut slots: Vec<String> = info
        .executors
        .iter()
        .map(|e| format!("{}:{}", e.3.host, e.3.port))
        .collect();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), 2, "{slots:?}");
    for s in &slots {
        wait_until("the worker to listen", Duration::from_secs(120), || {
            TcpStream::connect(s).is_ok()
        });
    }
    let valid = valid_frame();
    let mut rng = SmallRng::seed_from_u64(0x5eed_1000);
    for i in 0..400u32 {
        let bytes = hostile(&mut rng, i % 5, &valid);
        send_and_close(&slots[i as usize % 2], &bytes);
    }
    c.wait_word_count_done(&state, Duration::from_secs(300));
    assert_eq!(
        Cluster::merged_counts(&state),
        corpus::plain_count(&corpus::corpus()),
        "counts differ from a plain count"
    );
    let (acked, _) = Cluster::spout_progress(&state).unwrap();
    assert_eq!(acked, 187_182, "every line acked once");
    let mut logs = Vec::new();
    collect_logs(c.path(), &mut logs);
    logs.retain(|l| {
        l.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("worker-"))
    });
    assert!(!logs.is_empty());
    for l in logs {
        no_panic(&l);
    }
    c.squall_ok(&["kill", "wc-fuzz", "-w", "0"]);
}
