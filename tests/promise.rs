//! The one promise under every timing: a kill switch written while the gate starts is not
//! lost, no client phase waits for ever on an endpoint that never answers, a grant ends when
//! the key that granted it changes, `connect` ends sessions in order, and one flooding source
//! cannot hold the handshake slots everyone else needs.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// Twelve gates, each told `incomingconnections.enabled false` the moment it is started
/// (before it has said it listens): every one of them refuses, within the spec's second of
/// the write (polled for up to 3 s). Before the watch was armed first, 2-7 in 12 kept
/// letting sessions through for good.
#[test]
fn a_kill_switch_written_while_the_gate_starts_is_never_lost() {
    let echo = echo_service();
    let secret = "startup-race-secret-0123456789";
    let request = upgrade_request(
        &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={echo}"),
        &[("ServiceBusAuthorization", &mint_token("ops", secret))],
    );
    let mut lost = Vec::new();
    for round in 0..12 {
        let dir = private_dir();
        let config = dir.path().join("localconfig.json");
        let out = config_cmd(
            &config,
            &["set", "incomingconnections.ports", &echo.to_string()],
        );
        assert!(out.status.success());
        write_secret(
            &dir.path().join("keys.json"),
            &serde_json::json!([{"name": "ops", "key": secret}]).to_string(),
        );
        let running = Gate::spawn_at("127.0.0.1:0", dir.path(), &[]);
        let out = config_cmd(&config, &["set", "incomingconnections.enabled", "false"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let written = Instant::now();
        let gate = Gate::when_listening(running, dir);
        loop {
            let head = answer_head(gate.addr, &request);
            if head.starts_with("HTTP/1.1 403 connection not allowed\r\n") {
                break;
            }
            assert!(head.starts_with("HTTP/1.1 101 "), "round {round}: {head}");
            if written.elapsed() > Duration::from_secs(3) {
                lost.push(round);
                break;
            }
            // A retry with a deadline: the answer changes within a second of the write.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        lost.is_empty(),
        "gates that never applied the kill switch written while they started: {lost:?}"
    );
}

/// A TLS server with the development certificate that completes the handshake, reads the
/// request head and never answers. Counts the connections whose client gave up (closed).
fn silent_tls_server() -> (u16, Arc<AtomicUsize>) {
    let config = dev_server_config();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = closed.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (config, counter) = (config.clone(), counter.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // Read (the head, then whatever follows) until the client closes.
                let mut buf = [0u8; 4096];
                while matches!(tls.read(&mut buf), Ok(n) if n > 0) {}
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, closed)
}

/// Waits until `counter` reaches `want`, up to `limit`.
fn wait_count(counter: &AtomicUsize, want: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::SeqCst) < want {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn connect_and_forward_give_up_on_an_endpoint_that_never_answers_the_upgrade() {
    let (port, closed) = silent_tls_server();
    let url = format!("wss://localhost:{port}/$hc/{GATE_NAME}");
    let dir = private_dir();
    let token = dir.path().join("token");
    std::fs::write(&token, mint_token("ops", "never-checked-0123456789")).unwrap();

    let started = Instant::now();
    let child = connect_cmd(&url, 22, &token)
        .args(["--connect-timeout", "2s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, mut child) = wait_with_deadline(child, Duration::from_secs(20));
    let elapsed = started.elapsed();
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(9), "{err}");
    assert!(
        err.contains("the WebSocket handshake did not finish within 2s"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        wait_count(&closed, 1, Duration::from_secs(5)),
        "connect let go of its connection"
    );

    // forward: the tunnel gives up, closes its local connection and says why; the listener
    // keeps serving.
    let running = Running::spawn(
        arcgate_cmd()
            .args([
                "forward",
                "127.0.0.1:0",
                &url,
                "-p",
                "22",
                "--no-check",
                "--ca",
            ])
            .arg(repo("certs-dev/ca.pem"))
            .arg("--token-file")
            .arg(&token)
            .args(["--connect-timeout", "2s"])
            .env("RUST_LOG", "info"),
        false,
    );
    let line = running
        .wait_ready("forward", "arcgate: forwarding ", &["arcgate: "])
        .unwrap();
    let addr: std::net::SocketAddr = line
        .strip_prefix("arcgate: forwarding ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap();
    for round in 1..=2 {
        let mut local = TcpStream::connect(addr).unwrap();
        local
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            local.read(&mut buf).unwrap(),
            0,
            "the local connection is closed"
        );
        running.log.expect(&[
            "tunnel refused",
            "the WebSocket handshake did not finish within 2s",
        ]);
        assert!(
            wait_count(&closed, 1 + round, Duration::from_secs(5)),
            "the tunnel let go of its connection"
        );
    }
}

/// A scripted relay sends the relayed gate an accept whose address completes TLS and never
/// answers the upgrade: the gate gives up at `--relay-connect-timeout`, lets go of the sshd
/// connection it dialled and of the session slot, and says which phase stalled.
#[tokio::test]
async fn a_relayed_rendezvous_that_never_answers_is_given_up_and_holds_nothing() {
    use futures_util::SinkExt;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::Message;

    let acceptor = tokio_rustls::TlsAcceptor::from(dev_server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The local service: records when the gate closes the connection it dialled.
    let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_port = service.local_addr().unwrap().port();
    let url = format!("wss://localhost:{port}/$hc/{GATE_NAME}");
    let gate = tokio::task::spawn_blocking(move || {
        Gate::start_relayed(
            &[service_port],
            &url,
            &["--relay-connect-timeout", "2s", "--admin", "127.0.0.1:0"],
        )
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let tls = acceptor.accept(tcp).await.unwrap();
    let mut control = tokio_tungstenite::accept_async(tls).await.unwrap();
    let gate = gate.await.unwrap();
    let accept = serde_json::json!({"accept": {
        "address": format!("wss://localhost:{port}/$hc/{GATE_NAME}?sb-hc-action=accept&sb-hc-id=stall-1&port={service_port}"),
        "id": "stall-1",
        "connectHeaders": {},
    }});
    control
        .send(Message::text(accept.to_string()))
        .await
        .unwrap();
    let (mut dialled, _) = tokio::time::timeout(Duration::from_secs(10), service.accept())
        .await
        .expect("the gate dials the service once it allows")
        .unwrap();
    // The rendezvous: TLS, then the upgrade request, never answered.
    let (tcp, _) = listener.accept().await.unwrap();
    let mut rendezvous = acceptor.accept(tcp).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let gave_up = tokio::time::timeout(Duration::from_secs(15), async {
        while rendezvous.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    assert!(gave_up.is_ok(), "the gate still holds the rendezvous");
    assert!(
        tokio::time::timeout(Duration::from_secs(5), dialled.read(&mut buf))
            .await
            .is_ok_and(|r| r.is_ok_and(|n| n == 0)),
        "the sshd-side connection was let go"
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let line = gate
        .running
        .log
        .expect(&["rendezvous with the relay failed"]);
    assert!(
        line.contains("the WebSocket handshake did not finish within 2s"),
        "{line}"
    );
    let admin = gate.admin_addr();
    let (code, sessions) = tokio::task::spawn_blocking(move || http_get(admin, "/sessions"))
        .await
        .unwrap();
    assert_eq!((code, sessions.trim()), (200, "[]"), "no session slot held");
}

/// A session through `arcgate connect` with the given token, once sshd's banner is through.
/// Its stdin comes apart: waiting for a child closes its stdin, which would end the session
/// in order before whatever the test waits for.
fn open_session(
    gate: &Gate,
    port: u16,
    token: &str,
) -> (std::process::Child, std::process::ChildStdin) {
    let file = gate
        .dir
        .path()
        .join(format!("token-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, token).unwrap();
    let mut child = spawn_piped(&mut connect_cmd(&gate.url(), port, &file));
    let mut banner = [0u8; 8];
    read_stdout(&mut child, &mut banner);
    assert_eq!(&banner, b"SSH-2.0-");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Expects the client to have been closed with 1008.
fn assert_revoked(gate: &Gate, child: std::process::Child) {
    let (status, mut child) = wait_with_deadline(child, Duration::from_secs(10));
    let err = stderr_of(&mut child);
    assert_eq!(
        status.code(),
        Some(10),
        "{err}\n{}",
        gate.running.log.lines().join("\n")
    );
    assert!(err.contains("1008 connection not allowed"), "{err}");
}

#[test]
fn a_changed_secret_or_narrowed_ports_revoke_exactly_the_sessions_they_no_longer_cover() {
    let sshd = Sshd::start();
    let dir = private_dir();
    let config = dir.path().join("localconfig.json");
    let echo = echo_service();
    let ports = format!("{},{echo}", sshd.port);
    assert!(
        config_cmd(&config, &["set", "incomingconnections.ports", &ports])
            .status
            .success()
    );
    let keys = dir.path().join("keys.json");
    let (ops, narrow, other) = (
        "ops-secret-0123456789abcdef",
        "narrow-secret-0123456789abcd",
        "other-secret-0123456789abcde",
    );
    let file = |ops_secret: &str, narrow_ports: &[u16]| {
        serde_json::json!([
            {"name": "ops", "key": ops_secret},
            {"name": "narrow", "key": narrow, "ports": narrow_ports},
            {"name": "other", "key": other},
        ])
        .to_string()
    };
    write_secret(&keys, &file(ops, &[sshd.port, echo]));
    let gate = Gate::start_in(dir, &[]);
    let (by_ops, _in1) = open_session(&gate, sshd.port, &mint_token("ops", ops));
    let (by_narrow, _in2) = open_session(&gate, sshd.port, &mint_token("narrow", narrow));
    let (mut witness, _in3) = open_session(&gate, sshd.port, &mint_token("other", other));

    // A new secret under the same name: the session signed with the old one ends.
    let from = gate.running.log.len();
    write_secret(
        &keys,
        &file("ops-rotated-0123456789abcdef", &[sshd.port, echo]),
    );
    assert_revoked(&gate, by_ops);
    let line = gate
        .running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("session ended") && l.contains("key 'ops' given a new secret")
        })
        .unwrap_or_else(|| panic!("no audit:\n{}", gate.running.log.lines().join("\n")));
    assert!(
        line.contains("closed_by=\"policy\"") && line.contains("close_sent=1008"),
        "{line}"
    );

    // Narrowed ports: the session on a port no longer listed ends; the others do not.
    let from = gate.running.log.len();
    write_secret(&keys, &file("ops-rotated-0123456789abcdef", &[echo]));
    assert_revoked(&gate, by_narrow);
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("session ended")
                && l.contains("key=\"narrow\"")
                && l.contains("revoked by policy change: key_port_not_allowed")
        })
        .unwrap_or_else(|| panic!("no audit:\n{}", gate.running.log.lines().join("\n")));
    assert!(
        matches!(witness.try_wait(), Ok(None)),
        "the session whose key did not change is untouched"
    );
    let _ = witness.kill();
    let _ = witness.wait();
}

/// ssh signals its ProxyCommand when it is done: the gate must see an orderly end by the
/// client (Close, then TLS close_notify), not a lost connection.
#[test]
fn connect_ends_sessions_in_order_when_ssh_is_done_or_it_is_signalled() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    let proxy = proxy_command(&gate, &token, "");
    let from = gate.running.log.len();
    assert_ssh_echo(&sshd, &proxy, "orderly");
    let end = gate.session_end_after(from);
    // ssh and sshd end a session at nearly the same moment: either side's Close may come
    // first, but both are orderly Closes, never a connection lost.
    assert!(
        end.contains("closed_by=\"client\"") || end.contains("closed_by=\"service\""),
        "{end}"
    );
    assert!(
        end.contains("close_received=1000") && end.contains("close_sent=1000"),
        "{end}"
    );
    assert!(!end.contains("connection lost"), "{end}");

    for signal in ["TERM", "INT", "HUP"] {
        let from = gate.running.log.len();
        let (child, _stdin) =
            open_session(&gate, sshd.port, &std::fs::read_to_string(&token).unwrap());
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let (status, mut child) = wait_with_deadline(child, Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(0),
            "SIG{signal}: {}",
            stderr_of(&mut child)
        );
        let end = gate.session_end_after(from);
        assert!(
            end.contains("closed_by=\"client\"") && end.contains("close_received=1000"),
            "SIG{signal}: {end}"
        );
    }
}

/// One source opens 400 connections that never send a byte, twice the gate's handshake
/// slots: a real ssh session from another address still gets through at once, and the
/// connections over the source's cap are closed unanswered and counted.
#[test]
fn a_flooding_source_cannot_delay_anyone_else() {
    let sshd = Sshd::start();
    // 200 handshake slots in all (max(--max-sessions, 64)); a 30 s handshake deadline, so a
    // flood that held them all would delay everyone else by 30 s or more.
    let gate = Gate::start(
        &[sshd.port],
        &[
            "--max-sessions",
            "200",
            "--handshake-timeout",
            "30s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let addr = gate.addr;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let flood: Vec<tokio::net::TcpStream> = rt.block_on(async move {
        let mut held = Vec::new();
        for _ in 0..400 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            held.push(socket.connect(addr).await.unwrap());
        }
        held
    });
    let token = gate.token_file(&[]);
    let proxy = proxy_command(&gate, &token, "--connect-timeout 10s");
    let started = Instant::now();
    assert_ssh_echo(&sshd, &proxy, "through-the-flood");
    let elapsed = started.elapsed();
    eprintln!("ssh echo during a 400-connection flood: {elapsed:?}");
    // The bound stated in the closing note: a new session during the flood is as quick as
    // any ssh login here (well under a second), far from the 30 s a held slot would cost.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let metrics = http_get(gate.admin_addr(), "/metrics").1;
    let refused: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("arcgate_handshakes_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(
        refused >= 300.0,
        "connections over the source's cap of 64 are closed: {refused}"
    );
    drop(flood);
}
