//! A secured cluster (`squall secure-init`, `squall.security.enable`) of
//! real processes: every RPC client is authenticated by its certificate
//! (none, another CA's, an expired one and plaintext are refused, with the
//! reason), Storm's roles decide what each principal may do (an admin
//! everything, a submitter its topology, a read-only user list and info,
//! a stranger nothing), binaries go only to daemons and the topology's
//! users, every mutation is in the audit log, and word count is exact.
//! In ZooKeeper each topology's workers read their own record and write
//! their own heartbeats only, and Trident commits through their identity.
//! Daemons with a missing, mismatched or expired identity exit at start
//! naming the file.

mod cluster_support;
mod corpus;

use cluster_support::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use squall::secure_init::Authority;
use squall_cluster::blocking::FramedStream;
use squall_cluster::rpc::{sha256_hex, ClientError, ErrorKind, NimbusClient, Request, Response};
use squall_cluster::tls::{Stream, Tls};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// `squall secure-init DIR --user …` in the cluster's folder.
fn secure_init(c: &Cluster, dir: &str, users: &[&str]) -> PathBuf {
    let mut args = vec!["secure-init", dir];
    for u in users {
        args.extend(["--user", u]);
    }
    c.squall_ok(&args);
    c.path().join(dir)
}

/// `-c` arguments acting as `user` of the identities in `dir`.
fn as_user(dir: &Path, user: &str) -> Vec<String> {
    vec![
        "-c".into(),
        format!(
            "squall.tls.cert.path={}",
            dir.join(format!("{user}.pem")).display()
        ),
        "-c".into(),
        format!(
            "squall.tls.key.path={}",
            dir.join(format!("{user}.key")).display()
        ),
    ]
}

/// Runs `squall` as `user` with `args`: (success, stdout + stderr).
fn run_as(c: &Cluster, dir: &Path, user: &str, args: &[&str]) -> (bool, String) {
    let mut all = as_user(dir, user);
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let out = c.squall(&all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client trusting `ca` and presenting `cert` (none when `None`),
/// built here so the test can offer what Squall's own client refuses to
/// load (an expired certificate, another CA's).
fn raw_client(ca: &Path, cert: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            builder
                .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
    })
}

/// A certificate for `cn` from the CA in `sec` that expired yesterday, and
/// its key: (certificate file, key file) in the cluster's folder.
fn expired_identity(c: &Cluster, sec: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let ca = Authority::load(
        &std::fs::read_to_string(sec.join("ca.pem")).unwrap(),
        &std::fs::read_to_string(sec.join("ca.key")).unwrap(),
    )
    .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = ca
        .issue(
            cn,
            &["127.0.0.1".into()],
            now - time::Duration::days(10),
            now - time::Duration::days(1),
        )
        .unwrap();
    let files = (
        c.path().join(format!("expired-{cn}.pem")),
        c.path().join(format!("expired-{cn}.key")),
    );
    std::fs::write(&files.0, cert).unwrap();
    std::fs::write(&files.1, key).unwrap();
    files
}

/// Sends `List` over TLS as `config` and returns why it failed.
fn refused_reason(addr: &str, config: Arc<rustls::ClientConfig>) -> String {
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let stream = Stream::Client(Box::new(rustls::StreamOwned::new(conn, tcp)));
    let mut framed: FramedStream<Stream, Response, Request> = FramedStream::new(stream, 4 << 20);
    let sent = framed.send(Request::List);
    match (sent, framed.recv()) {
        (Err(e), _) | (Ok(()), Err(e)) => e.to_string(),
        (Ok(()), Ok(r)) => panic!("served: {r:?}"),
    }
}

#[test]
fn a_secured_cluster_authenticates_and_authorizes_every_request() {
    let mut c = Cluster::new(1);
    let other = secure_init(&c, "other", &["admin"]);
    let sec = c.secure(
        &["admin", "alice", "reader", "mallory"],
        &["admin", "alice"],
    );
    // The test's commands act as alice unless told otherwise.
    c.extra_conf.push("topology.readonly.users=[reader]".into());
    c.start_nimbus(0);
    c.start_supervisor(2);
    c.wait_supervisors(1);
    let addr = c.nimbus_addresses()[0].clone();
    anonymous_zookeeper_clients_cannot_touch_the_root(&c);

    // Unauthenticated clients are refused, each with its reason.
    let example = corpus::example();
    let example_arg = example.display().to_string();
    for args in [
        vec!["list"],
        vec!["kill", "anything"],
        vec!["jar", example_arg.as_str()],
    ] {
        let mut all = vec!["-c", "squall.security.enable=false"];
        all.extend(args.iter().copied());
        let plain = c.squall(&all);
        let plain_err = String::from_utf8_lossy(&plain.stderr);
        assert!(!plain.status.success(), "{args:?} served in plaintext");
        assert!(
            plain_err.contains("may require TLS"),
            "{args:?}: {plain_err}"
        );
    }
    let no_cert = refused_reason(&addr, raw_client(&sec.join("ca.pem"), None));
    assert!(no_cert.contains("CertificateRequired"), "{no_cert}");
    let foreign = refused_reason(
        &addr,
        raw_client(
            &sec.join("ca.pem"),
            Some((&other.join("admin.pem"), &other.join("admin.key"))),
        ),
    );
    assert!(
        foreign.contains("UnknownCA") || foreign.contains("BadCertificate"),
        "{foreign}"
    );
    let (expired_cert, expired_key) = expired_identity(&c, &sec, "admin");
    let expired = refused_reason(
        &addr,
        raw_client(&sec.join("ca.pem"), Some((&expired_cert, &expired_key))),
    );
    assert!(
        expired.contains("CertificateExpired") || expired.contains("BadCertificate"),
        "{expired}"
    );
    // Squall's own client will not even present it.
    let out = c.squall(&[
        "-c",
        &format!("squall.tls.cert.path={}", expired_cert.display()),
        "-c",
        &format!("squall.tls.key.path={}", expired_key.display()),
        "list",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the certificate expired on"),
        "{err}"
    );
    // A client that trusts another CA refuses Nimbus's certificate.
    let (ok, out) = run_as(
        &c,
        &other,
        "admin",
        &[
            "-c",
            &format!("squall.tls.ca.path={}", other.join("ca.pem").display()),
            "list",
        ],
    );
    assert!(!ok && out.contains("UnknownIssuer"), "{out}");

    // alice submits; supervisors download the binary over TLS; two
    // workers exchange tuples over TLS.
    let state = c.submit_word_count("wc", &["--workers", "2", "--max-spout-pending", "2000"]);
    strangers_cannot_reach_the_workers(&c, &sec);
    workers_reach_only_their_own_topology_in_zookeeper(&c);
    let (ok, out) = run_as(&c, &sec, "reader", &["list"]);
    assert!(ok && out.contains("wc"), "{out}");
    let (ok, out) = run_as(&c, &sec, "reader", &["info", "wc"]);
    assert!(ok, "{out}");
    // The supervisors forward the workers' heartbeats to Nimbus over TLS
    // as daemons: the metrics show.
    wait_until(
        "metrics through the heartbeat reports",
        Duration::from_secs(60),
        || {
            let (ok, out) = run_as(&c, &sec, "reader", &["info", "wc", "--json"]);
            ok && serde_json::from_str::<serde_json::Value>(&out)
                .is_ok_and(|v| v["components"]["count"]["executed"].as_u64() > Some(0))
        },
    );
    let (ok, out) = run_as(&c, &sec, "reader", &["kill", "wc"]);
    assert!(
        !ok && out.contains("reader may not kill topology \"wc\""),
        "{out}"
    );
    let (ok, out) = run_as(&c, &sec, "mallory", &["list"]);
    assert!(
        ok && !out.contains("wc"),
        "a stranger sees no topology: {out}"
    );
    let (ok, out) = run_as(&c, &sec, "mallory", &["info", "wc"]);
    assert!(!ok && out.contains("mallory may not read"), "{out}");
    let (ok, out) = run_as(&c, &sec, "mallory", &["deactivate", "wc"]);
    assert!(!ok && out.contains("may not deactivate"), "{out}");
    let example = corpus::example();
    let (ok, out) = run_as(
        &c,
        &sec,
        "mallory",
        &["jar", &example.display().to_string()],
    );
    assert!(!ok && out.contains("mallory may not upload"), "{out}");

    // Binaries: the topology's users and daemons, nobody else.
    let sha = sha256_hex(&std::fs::read(&example).unwrap());
    let download_as = |user: &str| {
        let tls = Tls::from_files(
            &sec.join("ca.pem"),
            &sec.join(format!("{user}.pem")),
            &sec.join(format!("{user}.key")),
        )
        .unwrap();
        let mut client =
            NimbusClient::connect_with(std::slice::from_ref(&addr), 4 << 20, Some(&tls)).unwrap();
        client.call(Request::Download {
            sha256: sha.clone(),
            offset: 0,
            len: 1024,
        })
    };
    match download_as("reader") {
        Err(ClientError::Refused(e)) => assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}"),
        other => panic!("reader downloaded the binary: {other:?}"),
    }
    assert!(matches!(download_as("daemon"), Ok(Response::Chunk { .. })));
    assert!(matches!(download_as("alice"), Ok(Response::Chunk { .. })));

    c.wait_word_count_done(&state, Duration::from_secs(240));
    check_counts(&Cluster::merged_counts(&state));

    the_rest_api_takes_bearer_tokens_over_https(&mut c, &sec);
    the_log_viewer_takes_bearer_tokens_over_https(&c, &sec);

    // The submitter pauses and resumes it; an admin kills it.
    let (ok, out) = run_as(&c, &sec, "alice", &["deactivate", "wc"]);
    assert!(ok, "{out}");
    let (ok, out) = run_as(&c, &sec, "alice", &["activate", "wc"]);
    assert!(ok, "{out}");
    let (ok, out) = run_as(&c, &sec, "admin", &["kill", "wc", "-w", "0"]);
    assert!(ok, "{out}");

    let log = std::fs::read_to_string(&c.nimbus[0].as_ref().unwrap().log).unwrap();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("audit:")).collect();
    for (principal, op, outcome) in [
        ("alice", "submit", "done"),
        ("reader", "kill", "refused (Unauthorized)"),
        ("mallory", "deactivate", "refused (Unauthorized)"),
        ("alice", "deactivate", "done"),
        ("alice (through squall-daemon)", "deactivate", "done"),
        (
            "reader (through squall-daemon)",
            "kill",
            "refused (Unauthorized)",
        ),
        ("admin", "kill", "done"),
    ] {
        assert!(
            audit
                .iter()
                .any(|l| l.contains(&format!("principal=\"{principal}\""))
                    && l.contains(&format!("op=\"{op}\""))
                    && l.contains(outcome)),
            "no audit line for {principal} {op} {outcome}: {audit:#?}"
        );
    }
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
    trident_commits_through_the_workers_identity(&c);
}

/// A topology's workers authenticate to ZooKeeper as that topology, with
/// the identity their supervisor derives: they read its record and write
/// its errors, and another topology's workers can do neither
/// (`cluster/tests/zookeeper_acl.rs` checks every node kind). Their
/// heartbeats go through the supervisor to Nimbus, never to ZooKeeper.
fn workers_reach_only_their_own_topology_in_zookeeper(c: &Cluster) {
    use squall_cluster::zk_acl::WorkerIdentity;
    use squall_cluster::{ClusterState, NodeMode, StateStorage, ZkCredentials, ZkStorage};
    let daemon = ClusterState::new(c.zookeeper().unwrap());
    let wc = daemon
        .topologies()
        .unwrap()
        .into_iter()
        .find(|t| t.name == "wc")
        .unwrap()
        .id;
    assert!(
        daemon.storage().get("/workerbeats").unwrap().is_none(),
        "no heartbeat is written to ZooKeeper"
    );
    let payload = c.zk_payload.as_deref().unwrap();
    let worker_of = |id: &str| {
        let identity = WorkerIdentity::derive(payload, id);
        ZkStorage::connect_with(
            &c.zk,
            &c.root,
            Duration::from_secs(10),
            Some(ZkCredentials::Worker(identity)),
        )
        .unwrap()
    };
    let own = worker_of(&wc);
    assert!(own.get(&format!("/topologies/{wc}")).unwrap().is_some());
    let error = format!("/errors/{wc}/probe");
    own.create(&error, b"error", NodeMode::Persistent).unwrap();

    let stranger = worker_of("other-9-9");
    for (what, refused) in [
        (
            "read wc's record (and its secret)",
            stranger.get(&format!("/topologies/{wc}")).map(drop),
        ),
        (
            "forge wc's errors",
            stranger.set(&error, b"forged", None).map(drop),
        ),
        ("delete wc's errors", stranger.delete_all(&error)),
    ] {
        let err = refused.expect_err(what).to_string();
        assert!(err.contains("not authorized"), "{what}: {err}");
    }
    own.delete_all(&error).unwrap();
}

/// A Trident topology's coordinator and state commit batches in
/// ZooKeeper through the workers' own identity.
fn trident_commits_through_the_workers_identity(c: &Cluster) {
    let example = corpus::example_named("trident_word_count");
    let out = c.squall_ok(&[
        "jar",
        &example.display().to_string(),
        "--name",
        "tw",
        "--input",
        &corpus::corpus().display().to_string(),
        "--state-dir",
        &c.path().join("trident-state").display().to_string(),
        "--workers",
        "2",
        "--batch-lines",
        "500",
    ]);
    assert!(out.contains("submitted topology"), "{out}");
    wait_until(
        "Trident batches to commit",
        Duration::from_secs(120),
        || committed_lines(c, "tw") >= 2_000,
    );
    c.squall_ok(&["kill", "tw", "-w", "0"]);
    wait_until("workers to exit", Duration::from_secs(30), || {
        c.worker_pids().is_empty()
    });
}

/// One HTTPS request to the UI at `addr` (trusting the CA of `sec`), with
/// `token` as bearer: (status, body).
fn https(sec: &Path, addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let conn = rustls::ClientConnection::new(
        raw_client(&sec.join("ca.pem"), None),
        "127.0.0.1".try_into().unwrap(),
    )
    .unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The supervisor's log viewer serves HTTPS with the UI's tokens: 401
/// without one, 403 for a principal that may not read the topology, the
/// log for its submitter; `squall logs` reads it over HTTPS with a token.
fn the_log_viewer_takes_bearer_tokens_over_https(c: &Cluster, sec: &Path) {
    let token = |user: &str| std::fs::read_to_string(sec.join(format!("{user}.token"))).unwrap();
    let info = c.info("wc").unwrap();
    let base = info
        .logviewers
        .values()
        .next()
        .expect("the supervisor's log viewer")
        .clone();
    let addr = base
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("the log viewer serves HTTPS: {base}"))
        .to_owned();
    let port = slot_of(&info, "count").port;
    let path = format!(
        "/api/v1/log?file={}%2Fworker-{port}.log&length=2000",
        info.summary.id
    );
    let (status, body) = https(sec, &addr, "GET", &path, None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = https(sec, &addr, "GET", &path, Some(&token("mallory")));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("mallory may not read the logs"), "{body}");
    let (status, body) = https(sec, &addr, "GET", &path, Some(&token("alice")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"data\""), "{body}");
    let (ok, out) = run_as(
        c,
        sec,
        "alice",
        &[
            "logs",
            "wc",
            "--bytes",
            "2000",
            "--token",
            token("alice").trim(),
        ],
    );
    assert!(ok && out.contains("INFO"), "{out}");
    let daemon = "/api/v1/daemonlog?file=supervisor.log";
    let (status, body) = https(sec, &addr, "GET", daemon, Some(&token("alice")));
    assert!(
        status == 403 && body.contains("only nimbus.admins"),
        "{status} {body}"
    );
    let (status, body) = https(sec, &addr, "GET", daemon, Some(&token("admin")));
    assert!(
        status == 200 && body.contains("supervisor started"),
        "{status} {body}"
    );
    let (ok, out) = run_as(c, sec, "alice", &["logs", "wc", "--bytes", "2000"]);
    assert!(
        !ok && out.contains("401") && out.contains("--token"),
        "{out}"
    );
}

/// The UI serves HTTPS only; its API answers 401 without a valid token
/// (none, forged, expired), runs each request as the token's principal
/// (a read-only user sees the topology but gets 403 on a POST, a stranger
/// sees nothing), and the page itself needs no token.
fn the_rest_api_takes_bearer_tokens_over_https(c: &mut Cluster, sec: &Path) {
    let base = c.start_ui();
    let addr = base.trim_start_matches("http://").to_owned();
    let token = |user: &str| std::fs::read_to_string(sec.join(format!("{user}.token"))).unwrap();
    let key = squall_ui::token::TokenKey::load(&sec.join("token.key")).unwrap();
    let summary = "/api/v1/topology/summary";

    let (status, body) = https(sec, &addr, "GET", summary, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer token"), "{body}");
    let (status, body) = https(sec, &addr, "GET", summary, Some(&token("reader")));
    assert_eq!(status, 200, "{body}");
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = rows["topologies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "wc")
        .and_then(|t| t["id"].as_str())
        .unwrap_or_else(|| panic!("reader sees wc: {body}"))
        .to_owned();
    let (status, body) = https(sec, &addr, "GET", summary, Some(&token("mallory")));
    assert!(status == 200 && !body.contains("\"wc\""), "{status} {body}");

    let deactivate = format!("/api/v1/topology/{id}/deactivate");
    let (status, body) = https(sec, &addr, "POST", &deactivate, None);
    assert_eq!(status, 401, "{body}");
    let forged = token("reader").replace(":reader:", ":admin:");
    let (status, body) = https(sec, &addr, "POST", &deactivate, Some(&forged));
    assert!(
        status == 401 && body.contains("signature"),
        "{status} {body}"
    );
    let expired = key.issue("admin", 1);
    let (status, body) = https(sec, &addr, "POST", &deactivate, Some(&expired));
    assert!(status == 401 && body.contains("expired"), "{status} {body}");
    let (status, body) = https(
        sec,
        &addr,
        "POST",
        &format!("/api/v1/topology/{id}/kill/0"),
        Some(&token("reader")),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("reader may not kill"), "{body}");
    let (status, body) = https(
        sec,
        &addr,
        "POST",
        &format!("/api/v1/topology/{id}/kill/18446744073709551615"),
        Some(&token("alice")),
    );
    assert_eq!(status, 400, "a wait that overflows the clock: {body}");
    let (status, body) = https(sec, &addr, "POST", &deactivate, Some(&token("alice")));
    assert_eq!(status, 200, "{body}");
    let (status, body) = https(
        sec,
        &addr,
        "POST",
        &format!("/api/v1/topology/{id}/activate"),
        Some(&token("alice")),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = https(sec, &addr, "GET", "/", None);
    assert!(status == 200 && body.contains("<html"), "{status}");
    let (status, js) = https(sec, &addr, "GET", "/squall.js", None);
    assert!(
        status == 200 && js.contains("Bearer"),
        "the page sends the token"
    );

    // Plaintext HTTP gets no HTTP answer.
    use std::io::{Read, Write};
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(format!("GET {summary} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "served over plaintext"
    );
}

/// A ZooKeeper client without the daemons' credentials (or with wrong
/// ones) can neither read nor create nor delete under Squall's root.
fn anonymous_zookeeper_clients_cannot_touch_the_root(c: &Cluster) {
    use squall_cluster::{NodeMode, StateStorage, ZkStorage};
    for auth in [None, Some("squall:wrong")] {
        let credentials = auth.map(squall_cluster::ZkCredentials::daemon);
        let zk =
            ZkStorage::connect_with(&c.zk, &c.root, Duration::from_secs(10), credentials).unwrap();
        let who = auth.unwrap_or("anonymous");
        let read = zk.children("/");
        assert!(read.is_err(), "{who} listed the root: {read:?}");
        let made = zk.create("/intruder", b"x", NodeMode::Persistent);
        assert!(made.is_err(), "{who} created a node");
        let gone = zk.delete_all("/supervisors");
        assert!(gone.is_err(), "{who} deleted the supervisors");
        let err = made.unwrap_err().to_string();
        assert!(
            err.contains("NoAuth") || err.contains("not authenticated") || err.contains("auth"),
            "{err}"
        );
    }
    assert!(
        c.cluster_info().is_some_and(|s| s.supervisors.len() == 1),
        "the cluster is untouched"
    );
}

/// A worker's port refuses a plaintext sender, and a sender with a
/// certificate of the cluster's CA that does not know the topology's
/// secret; the worker logs who it refused and why.
fn strangers_cannot_reach_the_workers(c: &Cluster, sec: &Path) {
    let mut info = None;
    wait_until("the workers", Duration::from_secs(60), || {
        info = c.info("wc").filter(|i| !i.executors.is_empty());
        info.is_some()
    });
    let slot = slot_of(&info.unwrap(), "count");
    let addr = format!("{}:{}", slot.host, slot.port);
    let mut plain = None;
    wait_until("the worker to listen", Duration::from_secs(60), || {
        plain = std::net::TcpStream::connect(&addr).ok();
        plain.is_some()
    });
    let mut plain = plain.unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // A well-formed frame header and junk: never read as a batch.
    use std::io::{Read, Write};
    let _ = plain.write_all(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    let mut buf = [0u8; 64];
    let _ = plain.read(&mut buf);
    let alice = Tls::from_files(
        &sec.join("ca.pem"),
        &sec.join("alice.pem"),
        &sec.join("alice.key"),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let stream = alice.connect(tcp, &slot.host).unwrap();
    let mut framed: FramedStream<Stream, Vec<u8>, Vec<u8>> = FramedStream::new(stream, 1 << 20);
    framed.send(b"a guessed secret".to_vec()).unwrap();
    assert!(
        !matches!(framed.recv(), Ok(Some(_))),
        "the worker answered a stranger"
    );
    wait_until(
        "the worker's refusal lines",
        Duration::from_secs(30),
        || {
            let mut logs = Vec::new();
            collect_logs(c.path(), &mut logs);
            let text: String = logs
                .iter()
                .filter_map(|l| std::fs::read_to_string(l).ok())
                .collect();
            text.contains("alice is not a worker of this topology (wrong topology secret)")
                && text.contains("does not speak TLS")
        },
    );
}

/// Runs `squall --config <config> <daemon>` with no ZooKeeper to reach;
/// returns once it exited.
fn start_with(c: &Cluster, config: &Path, daemon: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["--config", &config.display().to_string()])
        .args(["-c", "storm.zookeeper.servers=[127.0.0.1:1]"])
        .args([
            "-c",
            &format!("storm.local.dir={}", c.path().join("local").display()),
        ])
        .arg(daemon)
        .output()
        .unwrap()
}

/// Runs `squall <daemon>` with security on and `cert`/`key`; it must exit
/// non-zero at once, its error naming `expect`.
fn refuses_to_start(c: &Cluster, daemon: &str, dir: &Path, cert: &Path, key: &Path, expect: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["-c", "squall.security.enable=true"])
        .args([
            "-c",
            &format!("squall.tls.ca.path={}", dir.join("ca.pem").display()),
        ])
        .args(["-c", &format!("squall.tls.cert.path={}", cert.display())])
        .args(["-c", &format!("squall.tls.key.path={}", key.display())])
        .args(["-c", "storm.zookeeper.servers=[127.0.0.1:1]"])
        .args([
            "-c",
            &format!("storm.local.dir={}", c.path().join("local").display()),
        ])
        .args(["-c", &format!("nimbus.thrift.port={}", free_port())])
        .arg(daemon)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{daemon} started: {err}");
    assert!(err.contains(expect), "{daemon}: {expect:?} not in {err}");
}

#[test]
fn daemons_with_a_bad_identity_exit_naming_the_file() {
    let c = Cluster::new(1);
    let sec = secure_init(&c, "sec", &["admin"]);
    let other = secure_init(&c, "other", &["admin"]);
    let missing = c.path().join("missing.key");
    let (old_cert, old_key) = expired_identity(&c, &sec, "squall-daemon");
    for daemon in ["nimbus", "supervisor"] {
        let (cert, key) = (sec.join("daemon.pem"), sec.join("daemon.key"));
        refuses_to_start(
            &c,
            daemon,
            &sec,
            &cert,
            &missing,
            &format!("cannot read {}", missing.display()),
        );
        refuses_to_start(
            &c,
            daemon,
            &sec,
            &cert,
            &sec.join("admin.key"),
            &format!("is not the key of the certificate in {}", cert.display()),
        );
        refuses_to_start(
            &c,
            daemon,
            &sec,
            &old_cert,
            &old_key,
            &format!("{}: the certificate expired on", old_cert.display()),
        );
        refuses_to_start(
            &c,
            daemon,
            &sec,
            &other.join("daemon.pem"),
            &other.join("daemon.key"),
            "not signed by the CA",
        );
        refuses_to_start(
            &c,
            daemon,
            &sec,
            &sec.join("ca.key"),
            &key,
            "no PEM certificate",
        );
    }
    for daemon in ["nimbus", "supervisor"] {
        let out = start_with(&c, &sec.join("daemon.yaml"), daemon);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("storm.zookeeper.auth.payload"),
            "daemon.yaml holds the ZooKeeper credentials: {err}"
        );
        let out = start_with(&c, &sec.join("admin.yaml"), daemon);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains(
                    "squall.security.enable is true but storm.zookeeper.auth.payload is not set"
                ),
            "{daemon}: {err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_squall"))
        .args(["-c", "squall.security.enable=true", "nimbus"])
        .current_dir(c.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("squall.tls.ca.path is not set"),
        "{err}"
    );
}
