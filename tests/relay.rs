//! Relay mode end to end: `ssh` → `arcgate connect` → `arcgate relay` ← `arcgate serve
//! --relay --relay-only` (no inbound port) → `sshd`.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn ssh_through_the_relay_keeps_every_byte() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    let gate = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let token = relay.sender_token_file(GATE_NAME);
    let proxy = relay_proxy_command(&relay, &token);
    assert_ssh_echo(&sshd, &proxy, "relayed");
    gate.running
        .log
        .expect(&["decision=\"allow\"", &format!("port={}", sshd.port)]);
    round_trip_64_mib(&sshd, &proxy);
}

#[test]
fn refusals_reach_the_sender_with_the_gates_status_lines() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    let gate = Gate::start_relayed(&[sshd.port, 1], &relay.url(GATE_NAME), &[]);
    let token = relay.sender_token_file(GATE_NAME);
    let proxy = relay_proxy_command(&relay, &token);

    // sshd's port not listening: 503 with the dial error, exactly as direct mode says it.
    let (ok, _, err) = run(&mut ssh_to(
        1,
        &sshd.client_key,
        &sshd.user,
        &proxy,
        &["true"],
    ));
    assert!(!ok);
    assert!(
        err.contains("503 connection to localhost:1 failed: Connection refused"),
        "{err}"
    );

    // Incoming connections disabled: 403 connection not allowed.
    let from = gate.running.log.len();
    gate.config_ok(&["set", "incomingconnections.enabled", "false"]);
    gate.wait_reload(from);
    let (ok, _, err) = run(&mut ssh(&sshd, &proxy, &["true"]));
    assert!(!ok);
    assert!(err.contains("403 connection not allowed"), "{err}");
    gate.running
        .log
        .expect(&["decision=\"deny\"", "incoming_connections_disabled"]);

    // A name with no listener: 404.
    let other = format!("wss://localhost:{}/$hc/nobody", relay.addr.port());
    let out = arcgate_cmd()
        .args([
            "connect",
            &other,
            "--ca",
            repo("certs-dev/ca.pem").to_str().unwrap(),
            "--token-file",
        ])
        .arg(relay.sender_token_file("nobody"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404 Endpoint does not exist"));

    // A sender token without the send right (the listen key) is refused by the relay.
    let listen_token = arcgate::token::mint(
        &format!("http://localhost/{GATE_NAME}/"),
        RELAY_LISTEN_KEY.0,
        RELAY_LISTEN_KEY.1,
        4_000_000_000,
    );
    let bad = relay.dir.path().join("listen-as-sender");
    std::fs::write(&bad, listen_token).unwrap();
    let (ok, _, err) = run(&mut ssh(
        &sshd,
        &relay_proxy_command(&relay, &bad),
        &["true"],
    ));
    assert!(!ok && err.contains("401 Unauthorized"), "{err}");
}

#[test]
fn a_policy_change_revokes_a_relayed_session_with_1008() {
    let port = echo_service();
    let relay = RelayServer::start();
    let gate = Gate::start_relayed(&[port], &relay.url(GATE_NAME), &[]);
    let token = relay.sender_token_file(GATE_NAME);
    let mut client = spawn_piped(&mut connect_cmd(&relay.url(GATE_NAME), port, &token));
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"abc").unwrap();
    let mut back = [0u8; 3];
    read_stdout(&mut client, &mut back);
    assert_eq!(&back, b"abc");
    gate.config_ok(&[
        "set",
        "--remove",
        "incomingconnections.ports",
        &port.to_string(),
    ]);
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(5));
    let err = stderr_of(&mut client);
    assert_eq!(status.code(), Some(10), "{err}");
    assert!(
        err.contains("closed the session: 1008 connection not allowed"),
        "{err}"
    );
    drop(stdin);
}

#[test]
fn the_listener_reconnects_after_the_relay_restarts() {
    let sshd = Sshd::start();
    let mut relay = RelayServer::start();
    let gate = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let addr = relay.addr.to_string();
    // The relay dies and comes back on the same address, with the same keys.
    relay.running.child.kill().unwrap();
    let _ = relay.running.child.wait();
    let from = gate.running.log.len();
    let dir = std::mem::replace(&mut relay.dir, private_dir());
    let relay = RelayServer::start_at(&addr, dir);
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(30), |l| {
            l.contains("arcgate: attached to relay")
        })
        .unwrap_or_else(|| panic!("no reconnect:\n{}", gate.running.log.lines().join("\n")));
    let token = relay.sender_token_file(GATE_NAME);
    assert_ssh_echo(&sshd, &relay_proxy_command(&relay, &token), "again");
}

#[test]
fn two_gates_on_one_name_both_take_sessions() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    let first = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let second = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let token = relay.sender_token_file(GATE_NAME);
    let proxy = relay_proxy_command(&relay, &token);
    for i in 0..4 {
        let (ok, out, err) = run(&mut ssh(&sshd, &proxy, &["echo", &i.to_string()]));
        assert!(ok, "{err}");
        assert_eq!(out, format!("{i}\n"));
    }
    let allowed = |g: &Gate| {
        g.running
            .log
            .lines()
            .iter()
            .filter(|l| l.contains("decision=\"allow\""))
            .count()
    };
    assert!(
        allowed(&first) >= 1 && allowed(&second) >= 1,
        "{} / {}",
        allowed(&first),
        allowed(&second)
    );
    assert_eq!(allowed(&first) + allowed(&second), 4);
}

#[test]
fn the_listener_reaches_the_relay_only_through_the_configured_proxy() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    let proxy = Tinyproxy::start("");
    // The gate's own configuration (proxy.url) names the proxy; its environment does not.
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let gate = Gate::start_relayed_configured(
        &[sshd.port],
        &[("proxy.url", &proxy_url)],
        &relay.url(GATE_NAME),
        &[],
    );
    let connect = format!("CONNECT localhost:{}", relay.addr.port());
    proxy.running.log.expect(&[&connect]);
    let token = relay.sender_token_file(GATE_NAME);
    let seen = proxy
        .running
        .log
        .lines()
        .iter()
        .filter(|l| l.contains(&connect))
        .count();
    assert_ssh_echo(&sshd, &relay_proxy_command(&relay, &token), "proxied");
    // The rendezvous went through the proxy too (the sender's own connection did not: no
    // HTTPS_PROXY in its environment).
    let after = proxy
        .running
        .log
        .lines()
        .iter()
        .filter(|l| l.contains(&connect))
        .count();
    assert_eq!(after, seen + 1, "one more CONNECT: the gate's rendezvous");
    drop(gate);
}

/// A scripted relay (this test, speaking the protocol by hand) sends the gate an unknown
/// control command, then an accept whose address rejects: the gate ignores the first, keeps
/// its channel, and answers the second with a rejection the relay's side answers 410.
#[tokio::test]
async fn the_gate_ignores_unknown_control_commands_and_rejects_by_handshake() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let acceptor = tokio_rustls::TlsAcceptor::from(dev_server_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // The gate allows only port 22: whatever else it is asked, it rejects.
    let url = format!("wss://localhost:{port}/$hc/{GATE_NAME}");
    let gate = tokio::task::spawn_blocking(move || Gate::start_relayed(&[22], &url, &[]));

    // The control channel.
    let (tcp, _) = listener.accept().await.unwrap();
    let tls = acceptor.accept(tcp).await.unwrap();
    let mut control = tokio_tungstenite::accept_async(tls).await.unwrap();
    let gate = gate.await.unwrap();
    control
        .send(Message::text(r#"{"someFutureCommand":{"x":1}}"#))
        .await
        .unwrap();
    gate.running
        .log
        .expect(&["unknown control command ignored", "someFutureCommand"]);
    let accept = serde_json::json!({"accept": {
        "address": format!("wss://localhost:{port}/$hc/{GATE_NAME}?sb-hc-action=accept&sb-hc-id=abc&port=3389"),
        "id": "conformance-1",
        "connectHeaders": {"Host": "localhost"}
    }});
    control
        .send(Message::text(accept.to_string()))
        .await
        .unwrap();

    // The rejection: a WebSocket handshake to the address with the status; answer it 410.
    let (tcp, _) = listener.accept().await.unwrap();
    let mut tls = acceptor.accept(tcp).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::io::AsyncReadExt::read_exact(&mut tls, &mut byte)
            .await
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let line = head.lines().next().unwrap();
    assert!(
        line.contains("sb-hc-action=accept&sb-hc-id=abc&port=3389"),
        "{line}"
    );
    assert!(
        line.contains("&sb-hc-statusCode=403&sb-hc-statusDescription=connection%20not%20allowed"),
        "{line}"
    );
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    tokio::io::AsyncWriteExt::write_all(
        &mut tls,
        b"HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    drop(tls);
    gate.running
        .log
        .expect(&["decision=\"deny\"", "conformance-1", "port_not_allowed"]);

    // The control channel is still up: a ping is answered.
    control
        .send(Message::Ping(bytes::Bytes::from_static(b"still?")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match control.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => continue,
                other => panic!("control channel ended: {other:?}"),
            }
        }
    })
    .await
    .expect("a pong");
    assert_eq!(pong.as_ref(), b"still?");
}

#[test]
fn minted_listen_tokens_are_renewed_before_they_expire() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    // A 5 s token is renewed at 4 s, on the open control channel.
    let _gate = Gate::start_relayed(
        &[sshd.port],
        &relay.url(GATE_NAME),
        &["--relay-token-ttl", "5s"],
    );
    relay
        .running
        .log
        .wait_for_from(0, Duration::from_secs(15), |l| {
            l.contains("listener token renewed")
        })
        .unwrap_or_else(|| panic!("no renewal:\n{}", relay.running.log.lines().join("\n")));
    // Past the first token's expiry the listener still serves.
    let token = relay.sender_token_file(GATE_NAME);
    assert_ssh_echo(&sshd, &relay_proxy_command(&relay, &token), "renewed");
}

#[test]
fn the_listener_authenticates_to_a_proxy_from_the_url() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    let proxy = Tinyproxy::start("BasicAuth arc s3cret\n");
    let with_creds = format!("http://arc:s3cret@127.0.0.1:{}", proxy.port);
    let _gate = Gate::start_relayed_configured(
        &[sshd.port],
        &[("proxy.url", &with_creds)],
        &relay.url(GATE_NAME),
        &[],
    );
    proxy
        .running
        .log
        .expect(&[&format!("CONNECT localhost:{}", relay.addr.port())]);
    let token = relay.sender_token_file(GATE_NAME);
    assert_ssh_echo(&sshd, &relay_proxy_command(&relay, &token), "authed");
}

#[test]
fn relay_only_refuses_a_certificate_it_would_not_use() {
    let dir = private_dir();
    let out = arcgate_cmd()
        .args([
            "serve",
            "--relay-only",
            "--relay",
            "wss://localhost:1/$hc/x",
        ])
        .arg("--config")
        .arg(dir.path().join("localconfig.json"))
        .arg("--cert")
        .arg(repo("certs-dev/server.pem"))
        .output()
        .unwrap();
    let err = exit_stderr(&out, 2);
    assert!(
        err.contains("--relay-only") && err.contains("--cert"),
        "{err}"
    );
}

#[test]
fn the_relay_parses_requests_with_the_gates_rules() {
    // One sb-hc-id rule in every mode: the gate answers 400 for an id over 64 characters,
    // and so does the relay now (it used to replace it with one of its own), for senders and
    // listeners alike; a port given twice is a 400 there too.
    let relay = RelayServer::start();
    let long_id = "a".repeat(65);
    for (what, query) in [
        (
            "long sender id",
            format!("sb-hc-action=connect&sb-hc-id={long_id}"),
        ),
        (
            "long listener id",
            format!("sb-hc-action=listen&sb-hc-id={long_id}"),
        ),
        (
            "port twice",
            "sb-hc-action=connect&port=22&port=23".to_string(),
        ),
        ("no action", "sb-hc-id=x".to_string()),
    ] {
        let request = upgrade_request(&format!("/$hc/{GATE_NAME}?{query}"), &[]);
        let answer = answer_head(relay.addr, &request);
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what}: {answer}"
        );
    }
    // 64 characters are fine: it goes on to the token check.
    let request = upgrade_request(
        &format!(
            "/$hc/{GATE_NAME}?sb-hc-action=connect&sb-hc-id={}",
            "a".repeat(64)
        ),
        &[],
    );
    let answer = answer_head(relay.addr, &request);
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
}

#[test]
fn a_flooding_source_cannot_hold_the_relays_handshakes() {
    // The gate's rule, now the relay's too: one source holds at most 64 connections in
    // their handshake; more are closed at once, unanswered, however long the handshake
    // deadline. Before, the relay counted only its total and let a 65th wait.
    let sshd = Sshd::start();
    let relay = RelayServer::start_with(&["--handshake-timeout", "60s"]);
    let gate = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let addr = relay.addr;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (flood, closed_after) = rt.block_on(async move {
        use tokio::io::AsyncReadExt;
        let connect = || async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            socket.connect(addr).await.unwrap()
        };
        let mut held = Vec::new();
        for _ in 0..64 {
            held.push(connect().await);
        }
        // Each of those is in its TLS handshake (it never sends a ClientHello): the next
        // one from the same source is closed without an answer.
        let started = Instant::now();
        let mut over = connect().await;
        let read = tokio::time::timeout(Duration::from_secs(30), over.read(&mut [0u8; 16])).await;
        let closed = match read {
            Ok(Ok(0)) | Ok(Err(_)) => Some(started.elapsed()),
            _ => None,
        };
        (held, closed)
    });
    let closed_after = closed_after.expect("the 65th connection from one source was not closed");
    assert!(
        closed_after < Duration::from_secs(10),
        "closed only after {closed_after:?}: it waited for the 60 s handshake deadline"
    );
    // Everyone else is served meanwhile.
    let token = relay.sender_token_file(GATE_NAME);
    assert_ssh_echo(
        &sshd,
        &relay_proxy_command(&relay, &token),
        "through-the-flood",
    );
    drop((flood, gate));
}

#[test]
fn a_sender_waiting_for_its_listener_holds_no_handshake_place() {
    // Everything comes from 127.0.0.1 here: the listener, the sender and the gate's
    // rendezvous. With one handshake place per source, the rendezvous gets through only if
    // the sender, waiting for it, no longer holds that place.
    let sshd = Sshd::start();
    let relay = RelayServer::start_with(&["--max-handshakes-per-ip", "1"]);
    let gate = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let token = relay.sender_token_file(GATE_NAME);
    assert_ssh_echo(&sshd, &relay_proxy_command(&relay, &token), "one-place");
    drop(gate);
}
