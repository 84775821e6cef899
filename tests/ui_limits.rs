//! The UI server's limits on a real `squall ui` process: unfinished
//! request heads are closed after `ui.header.timeout.secs`, connections
//! beyond `ui.max.connections` are closed at accept, a cross-site POST is
//! refused with JSON, and a huge announced body is refused without
//! waiting for it.

mod store_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use store_support::{free_port, wait_until};

struct Ui {
    child: Child,
    address: String,
    /// Its `storm.local.dir` (its log file), removed with it.
    _dir: tempfile::TempDir,
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_ui() -> Ui {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["-c", &format!("storm.local.dir={}", dir.path().display())])
        .args(["-c", &format!("ui.port={port}")])
        .args(["-c", "nimbus.seeds=[\"127.0.0.1\"]"])
        .args(["-c", &format!("nimbus.thrift.port={}", free_port())])
        .args([
            "-c",
            "ui.header.timeout.secs=2",
            "-c",
            "ui.max.connections=50",
        ])
        .arg("ui")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ui = Ui {
        child,
        address: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    wait_until("the UI to listen", Duration::from_secs(30), || {
        TcpStream::connect(&ui.address).is_ok()
    });
    ui
}

/// Sends `request` and reads the whole answer (the server closes).
fn exchange(address: &str, request: &str) -> String {
    let mut s = TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `s` within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or similar before the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn unfinished_heads_extra_connections_cross_site_posts_and_huge_bodies_are_refused() {
    let ui = start_ui();
    // 80 clients start a request head and never finish it.
    let mut slow: Vec<TcpStream> = (0..80)
        .map(|_| {
            let mut s = TcpStream::connect(&ui.address).unwrap();
            s.write_all(b"GET /api/v1/cluster/summary HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let closed_at_once = slow
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(200)))
        .filter(|c| *c)
        .count();
    assert!(
        closed_at_once >= 30,
        "only {closed_at_once} of the 30 connections over the cap of 50 were closed"
    );
    let all_closed = slow
        .iter_mut()
        .all(|s| closed_within(s, Duration::from_secs(6)));
    assert!(
        all_closed,
        "unfinished heads still open after {:?}",
        started.elapsed()
    );
    drop(slow);

    // The UI serves again; unknown endpoints answer JSON.
    let nope = "GET /api/v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    wait_until("the UI to serve again", Duration::from_secs(10), || {
        answer = exchange(&ui.address, nope);
        answer.starts_with("HTTP/1.1 404")
    });
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer.contains("application/json") && answer.contains("errorMessage"),
        "{answer}"
    );

    // axum's own refusals come as JSON too: a wait that is not a number,
    // a wrong method.
    for (request, status) in [
        (
            "POST /api/v1/topology/wc/kill/soon HTTP/1.1",
            "HTTP/1.1 400",
        ),
        ("GET /api/v1/topology/wc/kill/0 HTTP/1.1", "HTTP/1.1 405"),
    ] {
        let answer = exchange(
            &ui.address,
            &format!("{request}\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        );
        assert!(answer.starts_with(status), "{answer}");
        assert!(
            answer.contains("application/json") && answer.contains("errorMessage"),
            "{answer}"
        );
    }

    // A form posted from another site is refused.
    let host = ui.address.clone();
    let answer = exchange(
        &ui.address,
        &format!(
            "POST /api/v1/topology/wc/deactivate HTTP/1.1\r\nHost: {host}\r\n\
             Origin: http://evil.example\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("cross-site request refused"), "{answer}");

    // A body of 99,999,999,999 bytes is refused at once, not awaited (the
    // answer comes while the body is still owed).
    let answer = exchange(
        &ui.address,
        &format!(
            "POST /api/v1/topology/wc/kill/0 HTTP/1.1\r\nHost: {host}\r\n\
             Content-Length: 99999999999\r\n\r\n"
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
