//! Nimbus's listener limits on a real Nimbus process: huge download
//! requests answer one chunk each (memory stays bounded), a download
//! streams to its sink a chunk at a time and checks the hash (a
//! supervisor's memory grows by chunks, not by the binary), upload sessions
//! are capped and hold no file (fds stay bounded, and leave with their
//! connection), connections beyond `nimbus.thrift.threads` are closed at
//! accept, and a Nimbus out of file descriptors pauses, logs a bounded
//! number of lines and serves again once descriptors free up.

mod cluster_support;
mod corpus;

use cluster_support::*;
use squall_cluster::rpc::{
    download_from_any, sha256_hex, BlobSink, ClientError, ErrorKind, NimbusClient, Request,
    Response, CHUNK_BYTES,
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

/// What a download handed its sink: the chunks' sizes and the bytes.
#[derive(Default)]
struct Recorded {
    begun: Vec<u64>,
    chunks: Vec<usize>,
    bytes: Vec<u8>,
}

impl BlobSink for Recorded {
    fn begin(&mut self, total: u64) -> Result<(), String> {
        self.begun.push(total);
        self.bytes.clear();
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.chunks.push(chunk.len());
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }
}

/// A download streams a binary to its sink one chunk at a time (a
/// supervisor or Nimbus holds one chunk, not the binary), and refuses a
/// binary whose content does not hash to its name.
#[test]
fn a_download_streams_chunks_and_refuses_content_that_does_not_match_its_hash() {
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
    let mut sink = Recorded::default();
    let size = NimbusClient::connect(std::slice::from_ref(&addr), 8 << 20)
        .unwrap()
        .download_into(&sha, &mut sink)
        .unwrap();
    assert_eq!(size, data.len() as u64);
    assert_eq!(sink.begun, [data.len() as u64]);
    assert_eq!(sink.chunks.len(), 6, "chunks: {:?}", sink.chunks);
    assert!(sink.chunks.iter().all(|&n| n <= CHUNK_BYTES));
    assert!(sink.bytes == data, "the download differs from the upload");

    // The stored copy goes bad on Nimbus's disk: same size, one byte off.
    let stored = c.nimbus_dir(0).join("nimbus").join("blobs").join(&sha);
    let mut bad = std::fs::read(&stored).unwrap();
    bad[CHUNK_BYTES * 3] ^= 0xff;
    std::fs::write(&stored, &bad).unwrap();
    let mut sink = Recorded::default();
    let err = download_from_any(std::slice::from_ref(&addr), &sha, &mut sink, 8 << 20, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("content hashes to"), "{err}");
    assert!(err.contains(&addr), "the error names the Nimbus: {err}");
}

/// A supervisor writes a topology binary to disk as it downloads it: its
/// peak RSS grows by a few chunks, not by the binary's size, and the
/// binary it stored runs.
#[test]
fn a_supervisor_downloading_a_binary_holds_a_chunk_of_it_not_all() {
    let size = std::fs::metadata(corpus::example()).unwrap().len();
    assert!(
        size > 32 << 20,
        "the example binary ({size} bytes) is too small to tell a chunk from the whole"
    );
    let mut c = Cluster::new(1);
    c.start_nimbus(0);
    leading(&c);
    let sup = c.start_supervisor(1);
    c.wait_supervisors(1);
    let pid = c.supervisors[sup].as_ref().unwrap().child.id();
    let before = proc_status(pid, "VmRSS:") * 1024;
    let state = c.submit_word_count("streamed", &[]);
    Cluster::wait_acked(&state, 0, Duration::from_secs(120));
    let peak = proc_status(pid, "VmHWM:") * 1024;
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 24 << 20,
        "the supervisor grew by {} MB to fetch a {} MB binary",
        grew >> 20,
        size >> 20
    );
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
