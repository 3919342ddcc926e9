//! Session behaviour through `arcgate connect` and an independent WebSocket client
//! (tokio-tungstenite): half-close, prompt exit when the gate goes away, shutdown, pings,
//! text frames, fail-closed reloads, SIGHUP, and the agent's relay-info input.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::*;

/// A local service that reads until EOF, then answers with the SHA-256 of what it read and
/// closes: it only answers if the client's half-close reached it as EOF.
fn digest_service() -> (u16, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        let digest: String = Sha256::digest(&data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Take a moment before answering: the client must keep waiting for it.
        std::thread::sleep(Duration::from_millis(300));
        conn.write_all(format!("{} {digest}\n", data.len()).as_bytes())
            .unwrap();
        data.len()
    });
    (port, handle)
}

#[test]
fn stdin_eof_is_a_half_close_and_the_answer_still_arrives() {
    let (port, service) = digest_service();
    let gate = Gate::start(&[port], &[]);
    let token = gate.token_file(&[]);
    let mut data = vec![0u8; 3 << 20];
    rand::fill(&mut data[..]);
    let digest: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut child = spawn_piped(&mut connect_cmd(&gate.url(), port, &token));
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(&data).unwrap()); // then dropped: EOF
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{} {digest}\n", 3 << 20)
    );
    assert_eq!(service.join().unwrap(), 3 << 20);
    let end = gate.running.log.expect(&["session ended"]);
    assert!(
        end.contains("close_received=1000") && end.contains("close_sent=1000"),
        "{end}"
    );
    assert!(
        end.contains(&format!("bytes_from_client={}", 3 << 20)),
        "{end}"
    );
}

/// Starts `arcgate connect` to sshd and waits until sshd's banner comes through. The
/// client's stdin is returned apart, so that waiting for the client does not close it.
fn connected_client(gate: &Gate, sshd: &Sshd) -> (std::process::Child, std::process::ChildStdin) {
    let token = gate.token_file(&[]);
    let mut child = spawn_piped(&mut connect_cmd(&gate.url(), sshd.port, &token));
    let mut banner = [0u8; 8];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut banner)
        .unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

#[test]
fn client_exits_promptly_when_the_gate_dies() {
    let sshd = Sshd::start();
    let mut gate = Gate::start(&[sshd.port], &[]);
    let (client, _stdin) = connected_client(&gate, &sshd);
    let killed_at = Instant::now();
    gate.running.child.kill().unwrap();
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(5));
    assert!(
        killed_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed_at.elapsed()
    );
    assert_eq!(status.code(), Some(10));
    let err = stderr_of(&mut client);
    assert!(err.contains("the connection to testhost was lost"), "{err}");
}

#[test]
fn sigterm_closes_sessions_with_1001_and_the_gate_exits_zero() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &["--shutdown-grace", "0s"]);
    let (client, _stdin) = connected_client(&gate, &sshd);
    gate.running.signal("TERM");
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(10));
    assert_eq!(status.code(), Some(10));
    let err = stderr_of(&mut client);
    assert!(err.contains("1001 gate shutting down"), "{err}");
    let mut gate = gate;
    let status = gate.running.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "gate exit: {status:?}");
    let end = gate.running.log.expect(&["session ended"]);
    assert!(
        end.contains("gate shutting down") && end.contains("close_sent=1001"),
        "{end}"
    );
}

async fn ws_client(
    gate: &Gate,
    port: u16,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(gate.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(dev_ca_client_config())
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let url = format!(
        "wss://localhost:{}/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}",
        gate.addr.port()
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    request
        .headers_mut()
        .insert("ServiceBusAuthorization", gate.token(&[]).parse().unwrap());
    let (ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(response.status(), 101);
    ws
}

#[tokio::test]
async fn text_frame_is_answered_with_close_1003_and_binary_frames_pass() {
    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in echo.incoming().take(2) {
            let mut conn = conn.unwrap();
            std::thread::spawn(move || {
                let mut reader = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut conn);
            });
        }
    });
    let gate = Gate::start(&[port], &[]);

    let mut ws = ws_client(&gate, port).await;
    ws.send(Message::binary(b"ping-pong".to_vec()))
        .await
        .unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_data().as_ref(), b"ping-pong");

    let mut ws = ws_client(&gate, port).await;
    ws.send(Message::text("hello")).await.unwrap();
    let close = loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a Close, got {other:?}"),
        }
    };
    assert_eq!(close.unwrap().code, CloseCode::Unsupported);
    gate.running
        .log
        .expect(&["session ended", "text frame received", "close_sent=1003"]);
}

#[tokio::test]
async fn a_client_that_ignores_pings_is_dropped() {
    let sshd = Sshd::start();
    let gate = Gate::start(
        &[sshd.port],
        &["--ping-interval", "1s", "--missed-pongs", "1"],
    );
    let ws = ws_client(&gate, sshd.port).await;
    // Never read, so never answer a ping: after ~1 s of silence a ping, after ~2 s the drop.
    let line = gate
        .running
        .log
        .wait_for_from(0, Duration::from_secs(10), |l| l.contains("session ended"))
        .unwrap_or_else(|| panic!("not dropped:\n{}", gate.running.log.lines().join("\n")));
    assert!(line.contains("client missed pings"), "{line}");
    drop(ws);
}

#[test]
fn a_broken_file_on_reload_fails_closed_until_fixed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gate = Gate::start(&[port], &[]);
    let request = || {
        raw_tls(
            gate.addr,
            &upgrade_request(
                &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}"),
                &[("ServiceBusAuthorization", &gate.token(&[]))],
            ),
        )
    };
    let good = std::fs::read(gate.config_path()).unwrap();
    let from = gate.running.log.len();
    std::fs::write(gate.config_path(), b"{\"incomingconnections.ports\": [").unwrap();
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("reload FAILED")
        })
        .expect("the broken file is reported");
    let answer = request();
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("configuration is invalid"), "{answer}");

    let from = gate.running.log.len();
    std::fs::write(gate.config_path(), &good).unwrap();
    gate.wait_reload(from);
    let answer = request();
    assert!(
        answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{answer}"
    );
    drop(listener);
}

#[test]
fn sighup_reloads() {
    let gate = Gate::start(&[22], &[]);
    let from = gate.running.log.len();
    gate.running.signal("HUP");
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("SIGHUP: reloading")
        })
        .expect("SIGHUP logged");
    gate.wait_reload(from);
}

#[test]
fn relay_info_gives_the_url_and_token() {
    use base64::Engine as _;
    let (port, service) = digest_service();
    let gate = Gate::start(&[port], &[]);
    // namespaceName + "." + namespaceNameSuffix is the relay host; splitting 127.0.0.1:PORT
    // at its last dot lets the agent's form point at this test gate.
    let info = serde_json::json!({"relay": {
        "namespaceName": "127.0.0",
        "namespaceNameSuffix": format!("1:{}", gate.addr.port()),
        "hybridConnectionName": GATE_NAME,
        "accessKey": gate.token(&["--host", "127.0.0.1"]),
        "expiresOn": 4_000_000_000u64,
        "serviceConfigurationToken": "unused"
    }});
    let encoded = base64::engine::general_purpose::STANDARD.encode(info.to_string());
    let dir = private_dir();
    let file = dir.path().join("relay-info");
    std::fs::write(&file, &encoded).unwrap();
    let mut child = spawn_piped(
        arcgate_cmd()
            .args(["connect", "-p", &port.to_string(), "--ca"])
            .arg(repo("certs-dev/ca.pem"))
            .arg("-r")
            .arg(&file),
    );
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("3 "));
    assert_eq!(service.join().unwrap(), 3);

    // The same through SSHPROXY_RELAY_INFO, here to a port the gate refuses.
    let out = arcgate_cmd()
        .args(["connect", "-p", "1", "--ca"])
        .arg(repo("certs-dev/ca.pem"))
        .env("SSHPROXY_RELAY_INFO", &encoded)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = exit_stderr(&out, 3);
    assert!(
        err.contains("403 connection not allowed (port 1 is not in"),
        "{err}"
    );
}

#[test]
fn over_the_per_ip_limit_is_503_with_retry_after() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gate = Gate::start(&[port], &["--max-sessions-per-ip", "1"]);
    let token = gate.token_file(&[]);
    let mut first = spawn_piped(&mut connect_cmd(&gate.url(), port, &token));
    // The first session is established once the service sees its connection.
    let (_service_side, _) = listener.accept().unwrap();
    let answer = raw_tls(
        gate.addr,
        &upgrade_request(
            &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}"),
            &[("ServiceBusAuthorization", &gate.token(&[]))],
        ),
    );
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5\r\n"),
        "{answer}"
    );
    gate.running
        .log
        .expect(&["decision=\"over_limit\"", "max sessions per IP"]);
    first.kill().unwrap();
    let _ = first.wait();
}

#[test]
fn an_untrusted_certificate_is_a_tls_error_with_a_hint() {
    let gate = Gate::start(&[22], &[]);
    let token = gate.token_file(&[]);
    // A trust store holding only some other CA: the gate's development CA is unknown.
    let other = rcgen::generate_simple_self_signed(vec!["other-ca".to_string()]).unwrap();
    let dir = private_dir();
    let store = dir.path().join("other.pem");
    std::fs::write(&store, other.cert.pem()).unwrap();
    let out = arcgate_cmd()
        .arg("connect")
        .arg(gate.url())
        .arg("--token-file")
        .arg(&token)
        .env("SSL_CERT_FILE", &store)
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = exit_stderr(&out, 8);
    assert!(
        err.contains("TLS with localhost failed") && err.contains("--ca FILE"),
        "{err}"
    );
}

#[test]
fn a_gate_that_never_answers_times_out_naming_the_phase() {
    // The kernel completes the TCP handshake from the backlog; nothing ever speaks TLS.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = private_dir();
    let token = dir.path().join("token");
    // A token the client has no reason to doubt (nothing ever checks it).
    std::fs::write(&token, mint_token("c", "0123456789abcdef0123")).unwrap();
    let out = arcgate_cmd()
        .arg("connect")
        .arg(format!("wss://localhost:{port}/$hc/{GATE_NAME}"))
        .args(["--connect-timeout", "1s", "--token-file"])
        .arg(&token)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = exit_stderr(&out, 9);
    assert!(
        err.contains("the TLS handshake did not finish within 1s"),
        "{err}"
    );
    drop(silent);
}
