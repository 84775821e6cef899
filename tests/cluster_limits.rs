//! Nimbus's listener limits on a real Nimbus process: huge download
//! requests answer one chunk each (memory stays bounded), a client's
//! download is held in one allocation of the blob's size, upload sessions
//! are capped and hold no file (fds stay bounded, and leave with their
//! connection), connections beyond `nimbus.thrift.threads` are closed at
//! accept, and a Nimbus out of file descriptors pauses, logs a bounded
//! number of lines and serves again once descriptors free up.

mod cluster_support;
mod corpus;

use cluster_support::*;
use squall_cluster::rpc::{
    sha256_hex, ClientError, ErrorKind, NimbusClient, Request, Response, CHUNK_BYTES,
};
use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

fn pid(c: &Cluster) -> u32 {
    c.nimbus[0].as_ref().unwrap().child.id()
}

fn rss_mb(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:") / 1024
}

fn leading(c: &Cluster) {
    wait_until("a leader", Duration::from_secs(60), || {
        c.cluster_info().is_some_and(|s| s.leader.is_some())
    });
}

/// How many failures the `i`-th accept-failure line of Nimbus's log
/// stands for (`accept failed (N times since the last line)`).
fn failures_in_line(c: &Cluster, i: usize) -> u64 {
    std::fs::read_to_string(&c.nimbus[0].as_ref().unwrap().log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .nth(i)
        .and_then(|l| {
            l.split("accept failed (")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn log_lines(c: &Cluster, needle: &str) -> usize {
    std::fs::read_to_string(&c.nimbus[0].as_ref().unwrap().log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A supervisor fetching a binary holds it in one allocation of its size,
/// not in a buffer grown by doubling (up to three times its size at the
/// last copy).
#[test]
fn a_download_is_held_in_one_allocation_of_the_blobs_size() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    leading(&c);
    // Five and a half chunks.
    let data: Vec<u8> = (0..(CHUNK_BYTES * 11 / 2) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sha = sha256_hex(&data);
    c.client(0).upload(&data, &sha, |_| {}).unwrap();
    let addr = c.nimbus_addresses()[0].clone();
    let got = NimbusClient::connect(&[addr], 8 << 20)
        .unwrap()
        .download(&sha)
        .unwrap();
    assert!(got == data, "the download differs from the upload");
    assert_eq!(got.capacity(), data.len());
}

#[test]
fn huge_downloads_and_a_thousand_upload_sessions_stay_bounded() {
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    leading(&c);
    let pid = pid(&c);
    // A 48 MiB binary.
    let data: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let sha = sha256_hex(&data);
    c.client(0).upload(&data, &sha, |_| {}).unwrap();
    let base_rss = rss_mb(pid);

    // 8 clients ask for the whole binary in one chunk, 5 times each.
    let addr = c.nimbus_addresses()[0].clone();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (addr, sha) = (addr.clone(), sha.clone());
            std::thread::spawn(move || {
                let mut client = NimbusClient::connect(&[addr], 8 << 20).unwrap();
                for _ in 0..5 {
                    match client.call(Request::Download {
                        sha256: sha.clone(),
                        offset: 0,
                        len: u32::MAX,
                    }) {
                        Ok(Response::Chunk { data, total }) => {
                            assert_eq!(data.len(), CHUNK_BYTES);
                            assert_eq!(total, 48 << 20);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for t in clients {
        t.join().unwrap();
    }
    // The kernel's high-water mark covers the whole run, upload included.
    let peak = proc_status(pid, "VmHWM:") / 1024;
    assert!(
        peak < base_rss + 64,
        "RSS grew from {base_rss} MB to {peak} MB serving 40 huge downloads"
    );

    // 1,000 upload sessions asked over 10 connections: at most 64 open,
    // 8 per connection, no file held; they leave with their connection.
    let base_fds = open_fds(pid);
    let mut conns: Vec<NimbusClient> = (0..10)
        .map(|_| NimbusClient::connect(std::slice::from_ref(&addr), 4 << 20).unwrap())
        .collect();
    let (mut opened, mut busy) = (0, 0);
    for i in 0..1000 {
        let r = conns[i % 10].call(Request::BeginUpload {
            size: 10,
            sha256: sha256_hex(b"0123456789"),
        });
        match r {
            Ok(Response::UploadSession { .. }) => opened += 1,
            Err(ClientError::Refused(e)) if e.kind == ErrorKind::Busy => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((opened, busy), (64, 936));
    let held = open_fds(pid);
    assert!(
        held <= base_fds + 10 + 5,
        "{held} fds with 10 connections and {opened} sessions (base {base_fds})"
    );
    conns.clear();
    wait_until(
        "sessions to leave with their connections",
        Duration::from_secs(30),
        || {
            let mut fresh = NimbusClient::connect(std::slice::from_ref(&addr), 4 << 20).unwrap();
            matches!(
                fresh.call(Request::BeginUpload {
                    size: 10,
                    sha256: sha256_hex(b"0123456789"),
                }),
                Ok(Response::UploadSession { .. })
            )
        },
    );
}

/// Whether the server closed `s` (EOF) within `wait`.
fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
        || matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn connections_beyond_the_cap_are_closed_and_fd_exhaustion_recovers() {
    let mut c = Cluster::new(1);
    c.extra_conf.push("nimbus.thrift.threads=20".into());
    c.start_nimbus(0);
    leading(&c);
    let addr = c.nimbus_addresses()[0].clone();
    let mut idle: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let refused = idle
        .iter_mut()
        .map(|s| closed(s, Duration::from_millis(300)))
        .filter(|c| *c)
        .count();
    // The clients that asked for the leader may still be winding down on
    // Nimbus's side, holding a place or two of the 20.
    assert!(
        (10..=12).contains(&refused),
        "{refused} of 30 connections closed at accept with a cap of 20"
    );
    assert!(log_lines(&c, "connections open (nimbus.thrift.threads)") >= 1);
    idle.clear();
    wait_until("Nimbus to serve again", Duration::from_secs(30), || {
        c.cluster_info().is_some()
    });

    // Out of file descriptors: a few more than it holds now.
    let pid = pid(&c);
    let limit = open_fds(pid) + 4;
    let ok = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit");
    let mut held: Vec<TcpStream> = (0..15)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // Accept keeps failing: the first failure is logged, then one line per
    // 10 s stands for all the failures since.
    wait_until(
        "a second accept-failure line",
        Duration::from_secs(60),
        || log_lines(&c, "accept failed") >= 2,
    );
    let lines = log_lines(&c, "accept failed");
    let second = failures_in_line(&c, 1);
    assert!(
        lines == 2 && second > 1,
        "{lines} accept-failure lines; the second stands for {second} failures"
    );
    held.clear();
    wait_until(
        "Nimbus to serve after fds free up",
        Duration::from_secs(30),
        || c.cluster_info().is_some(),
    );
}
