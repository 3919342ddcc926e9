//! Relay mode as trustworthy as direct mode (issue 14): the relay holds a key to its rights,
//! ports and host for as long as a connection lives, a gate can require its own keys end to
//! end, and one stalled listener holds nothing else up.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;

const NARROW: (&str, &str) = ("narrow", "narrow-secret-0123456789abcdef");

fn resource() -> String {
    format!("http://localhost/{GATE_NAME}/")
}

/// Opens `connect` to `port` through the relay, checks that bytes go both ways, and
/// returns it running.
fn open_echo(url: &str, port: u16, token: &std::path::Path, extra: &[&str]) -> std::process::Child {
    let mut client = spawn_piped(connect_cmd(url, port, token).args(extra));
    client.stdin.as_mut().unwrap().write_all(b"abc").unwrap();
    let mut back = [0u8; 3];
    read_stdout(&mut client, &mut back);
    assert_eq!(&back, b"abc");
    client
}

/// Runs `connect` to `port` with stdin closed and returns its exit code and stderr.
fn refused(url: &str, port: u16, token: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = connect_cmd(url, port, token)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replaces a secret file the way a careful editor does: a new file renamed over the old.
fn replace_file(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("new");
    write_secret(&tmp, content);
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits for `client` to end with the 1008 Close a revocation sends, naming `why`.
fn expect_revoked(mut client: std::process::Child, why: &str) {
    // Held open while waiting: `wait` would close it, and stdin's end is a half-close that
    // ends an echo session by itself.
    let stdin = client.stdin.take();
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(10));
    drop(stdin);
    let err = stderr_of(&mut client);
    assert_eq!(status.code(), Some(10), "stderr: {err}");
    assert!(err.contains("1008") && err.contains(why), "{err}");
}

#[test]
fn a_sender_keys_ports_hold_through_the_relay() {
    // Before: a relay key limited to port 22 reached any port the gate allowed (101).
    let port = echo_service();
    let narrow =
        serde_json::json!({"name": NARROW.0, "key": NARROW.1, "rights": ["send"], "ports": [22]});
    let relay = RelayServer::start_keys(&relay_keys(&[narrow]), &[]);
    let gate = Gate::start_relayed(&[port], &relay.url(GATE_NAME), &[]);
    let token = relay.token_file_as(NARROW, &resource());
    let from = gate.running.log.len();
    let (code, err) = refused(&relay.url(GATE_NAME), port, &token, &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("403 connection not allowed")
            && err.contains(&format!(
                "the relay's key 'narrow' does not allow port {port}"
            )),
        "{err}"
    );
    relay.running.log.expect(&[
        "sender refused: its key does not allow the port",
        "key=narrow",
    ]);
    // Refused before any accept: the gate never heard of it.
    assert!(
        gate.running.log.lines()[from..]
            .iter()
            .all(|l| !l.contains("decision=")),
        "the gate was asked"
    );
    // A key without ports still reaches it.
    let client = open_echo(
        &relay.url(GATE_NAME),
        port,
        &relay.sender_token_file(GATE_NAME),
        &[],
    );
    drop(client);
}

#[test]
fn the_gates_own_keys_decide_when_it_requires_a_gate_token() {
    // Before: whoever held a relay send key was admitted; `--relay-require-gate-token` did
    // not exist.
    let port = echo_service();
    let relay = RelayServer::start();
    let gate = Gate::start_relayed(
        &[port],
        &relay.url(GATE_NAME),
        &["--relay-require-gate-token"],
    );
    let keys = serde_json::json!([
        {"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]},
        {"name": "ops", "key": "ops-secret-0123456789abcdef", "rights": ["send"]},
        {"name": "narrow", "key": "narrow-secret-0123456789abcd", "ports": [1]},
    ]);
    let from = gate.running.log.len();
    replace_file(&gate.keys_path(), &keys.to_string());
    gate.wait_reload(from);
    let url = relay.url(GATE_NAME);
    let relay_token = relay.sender_token_file(GATE_NAME);

    // The relay's word alone: 401 from the gate.
    let (code, err) = refused(&url, port, &relay_token, &[]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("401"), "{err}");
    gate.running
        .log
        .expect(&["decision=\"unauthorized\"", "key=\"relay\"", "no token"]);

    // A gate token whose key does not cover the port: 403, as in direct mode.
    let narrow = gate.token_file(&["--key-name", "narrow", "--ttl", "1h"]);
    let narrow = narrow.to_str().unwrap();
    let (code, err) = refused(&url, port, &relay_token, &["--gate-token-file", narrow]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("403 connection not allowed"), "{err}");

    // The gate's own key: admitted and audited under its name.
    let ops = gate.token_file(&["--key-name", "ops", "--ttl", "1h"]);
    let client = open_echo(
        &url,
        port,
        &relay_token,
        &["--gate-token-file", ops.to_str().unwrap()],
    );
    gate.running
        .log
        .expect(&["decision=\"allow\"", "key=\"ops\""]);

    // Revoked at the gate like a direct session: removing the key closes it with 1008.
    let keys = serde_json::json!([
        {"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]},
    ]);
    let from = gate.running.log.len();
    replace_file(&gate.keys_path(), &keys.to_string());
    expect_revoked(client, "no longer allows this session");
    let end = gate.session_end_after(from);
    assert!(end.contains("key 'ops' removed"), "{end}");
}

#[test]
fn listening_is_a_right_given_by_name() {
    // Before: a key without `rights` could both send and listen, so any sender could attach
    // a listener of its own and take the name's sessions.
    let plain = serde_json::json!({"name": "plain", "key": "plain-secret-0123456789abcdef"});
    let both = serde_json::json!({"name": "both", "key": "both-secret-0123456789abcdef", "rights": ["send", "listen"]});
    let relay = RelayServer::start_keys(&relay_keys(&[plain, both]), &[]);
    relay
        .running
        .log
        .expect(&["key has both the send and the listen right", "key=\"both\""]);

    // A listener with a token of a key without rights: the relay refuses it, and a gate
    // whose listen credentials never worked stops with the reason instead of retrying.
    let dir = private_dir();
    let token = relay.token_file_as(("plain", "plain-secret-0123456789abcdef"), &resource());
    let out = relayed_serve_cmd(
        dir.path(),
        &relay.url(GATE_NAME),
        &["--relay-token-file", token.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let err = exit_stderr(&out, 2);
    assert!(
        err.contains("the relay refused the listen token: 401"),
        "{err}"
    );
    relay
        .running
        .log
        .expect(&["listener refused", "lacks the listen right"]);

    // `--relay-key` naming a key without the listen right: refused before dialling.
    let dir = private_dir();
    write_secret(
        &dir.path().join("keys.json"),
        &serde_json::json!([{"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1}]).to_string(),
    );
    let out = relayed_serve_cmd(dir.path(), &relay.url(GATE_NAME), &[])
        .output()
        .unwrap();
    let err = exit_stderr(&out, 2);
    assert!(err.contains("key 'gates' lacks the listen right"), "{err}");

    // Each joined session's audit names the listener that took it.
    let port = echo_service();
    let _gate = Gate::start_relayed(&[port], &relay.url(GATE_NAME), &[]);
    let client = open_echo(
        &relay.url(GATE_NAME),
        port,
        &relay.sender_token_file(GATE_NAME),
        &[],
    );
    relay
        .running
        .log
        .expect(&["sender joined", "key=senders", "listener_key=gates"]);
    drop(client);
}

#[test]
fn the_relay_revokes_what_its_keys_no_longer_back() {
    // Before: removing a sender key left its relayed sessions running, removing the listen
    // key left the gate attached, and a broken keys file kept the previous keys.
    let port = echo_service();
    let relay = RelayServer::start();
    let gate = Gate::start_relayed(&[port], &relay.url(GATE_NAME), &[]);
    let url = relay.url(GATE_NAME);
    let token = relay.sender_token_file(GATE_NAME);

    let client = open_echo(&url, port, &token, &[]);
    let gates_only = serde_json::json!([
        {"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]},
    ]);
    relay.write_keys(&gates_only.to_string());
    expect_revoked(client, "key 'senders' removed");
    relay
        .running
        .log
        .expect(&["relayed session closed by the keys file", "senders"]);

    // The listen key goes: the gate is detached with 1008, the session it took is closed,
    // and nobody is admitted.
    relay.write_keys(&relay_keys(&[]).to_string());
    let client = open_echo(&url, port, &token, &[]);
    let from = gate.running.log.len();
    let senders_only = serde_json::json!([
        {"name": RELAY_SEND_KEY.0, "key": RELAY_SEND_KEY.1, "rights": ["send"]},
    ]);
    relay.write_keys(&senders_only.to_string());
    expect_revoked(client, "the listener's key 'gates' removed");
    relay
        .running
        .log
        .expect(&["listener detached by the keys file", "key 'gates' removed"]);
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(10), |l| {
            l.contains("relay control channel lost") && l.contains("Policy")
        })
        .unwrap_or_else(|| panic!("{}", gate.running.log.lines().join("\n")));
    let (code, err) = refused(&url, port, &token, &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(err.contains("404"), "{err}");

    // A keys file that does not parse: no keys at all, not the previous ones.
    relay.write_keys("[{\"name\": ");
    let (code, err) = refused(&url, port, &token, &[]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("401"), "{err}");
    relay
        .running
        .log
        .expect(&["sender refused", "keys are unavailable"]);
}

#[test]
fn the_relay_pins_the_host_its_tokens_name() {
    // Before: the relay had no --public-host and took a token for any host.
    let relay = RelayServer::start_with(&["--public-host", "relay.example"]);
    let url = relay.url(GATE_NAME);
    let other = relay.token_file_as(
        RELAY_SEND_KEY,
        &format!("http://other.example/{GATE_NAME}/"),
    );
    let (code, err) = refused(&url, 22, &other, &[]);
    assert_eq!(code, Some(4), "{err}");
    relay
        .running
        .log
        .expect(&["sender refused", "not for this gate"]);
    // The pinned host passes the token check (and finds no listener).
    let pinned = relay.token_file_as(
        RELAY_SEND_KEY,
        &format!("http://relay.example/{GATE_NAME}/"),
    );
    let (code, err) = refused(&url, 22, &pinned, &[]);
    assert_eq!(code, Some(5), "{err}");
}

/// A relay started from async code (with extra flags).
async fn start_relay(extra: &'static [&'static str]) -> RelayServer {
    tokio::task::spawn_blocking(move || RelayServer::start_with(extra))
        .await
        .unwrap()
}

/// [`Log::expect`] from async code.
async fn expect_in(log: &Log, needles: &'static [&'static str]) {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.expect(needles))
        .await
        .unwrap();
}

/// A TLS connection to `addr` as `localhost`, trusting the development CA.
async fn tls_to(
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(dev_ca_client_config())
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// A listener spoken by hand: attaches with the relay's listen key, reading nothing more
/// unless told to; its receive buffer is small so that a stall shows quickly.
async fn scripted_listener(
    relay: std::net::SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    scripted_listener_until(relay, unix_now() + 3600).await
}

/// [`scripted_listener`] with a listen token that expires at `expiry`.
async fn scripted_listener_until(
    relay: std::net::SocketAddr,
    expiry: u64,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(relay).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(dev_ca_client_config())
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let token = arcgate::token::mint(&resource(), RELAY_LISTEN_KEY.0, RELAY_LISTEN_KEY.1, expiry);
    let url = format!(
        "wss://localhost:{}/$hc/{GATE_NAME}?sb-hc-action=listen&sb-hc-id=scripted",
        relay.port()
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("ServiceBusAuthorization", token.parse().unwrap());
    let (ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    ws
}

/// A sender spoken by hand, with a header of `padding` bytes; its answer's status line.
async fn scripted_sender(relay: std::net::SocketAddr, padding: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_to(relay).await;
    let token = arcgate::token::mint(
        &resource(),
        RELAY_SEND_KEY.0,
        RELAY_SEND_KEY.1,
        unix_now() + 3600,
    );
    let pad = "p".repeat(padding);
    let request = upgrade_request(
        &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port=22"),
        &[("ServiceBusAuthorization", &token), ("X-Padding", &pad)],
    );
    tls.write_all(&request).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        match tls.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).trim().to_string()
}

#[tokio::test]
async fn a_stalled_listener_cannot_freeze_its_name() {
    // Before: a listener that stopped reading held its name's senders for 30 s and more
    // (402 of 900 got 504 at 30 s, the rest no answer), and was never detached.
    let relay = start_relay(&["--ping-interval", "1s", "--max-header-bytes", "65536"]).await;
    let addr = relay.addr;
    let _stalled = scripted_listener(addr).await;
    let started = Instant::now();
    // Enough accept messages (each carries a 48 KiB header) to fill every buffer between
    // the relay and a listener that reads nothing; fewer than the per-source cap of 64.
    let senders: Vec<_> = (0..60)
        .map(|_| tokio::spawn(scripted_sender(addr, 48 * 1024)))
        .collect();
    let limit = Duration::from_secs(15);
    for sender in senders {
        let line = tokio::time::timeout(limit.saturating_sub(started.elapsed()), sender)
            .await
            .expect("every sender is answered well before the 30 s accept limit")
            .unwrap();
        assert!(line.starts_with("HTTP/1.1 404"), "{line}");
    }
    // Detached by whichever comes first on this machine: a control write that misses its
    // deadline, or the pongs a listener that reads nothing never sends (under load the ping
    // limit can win; both free the name).
    expect_in(&relay.running.log, &["detaching it", "name=testhost"]).await;
}

#[tokio::test]
async fn senders_are_answered_at_once_when_their_listener_goes_away() {
    // Before: a sender whose accept message had been sent waited out the 30 s limit (504)
    // after its listener's channel died.
    let (_relay, listener, sender, _address) = offered().await;
    // The accept message arrived; the listener then dies without answering.
    let died = Instant::now();
    drop(listener);
    let line = tokio::time::timeout(Duration::from_secs(5), sender)
        .await
        .expect("the sender is answered at once")
        .unwrap();
    assert!(
        line.starts_with("HTTP/1.1 404 Endpoint does not exist"),
        "{line}"
    );
    eprintln!("answered {:?} after the listener died", died.elapsed());
}

/// `arcgate key ARGS --keys FILE`; its stdout when it succeeds.
fn key_cmd(keys: &std::path::Path, args: &[&str]) -> String {
    let out = arcgate_cmd()
        .arg("key")
        .args(args)
        .arg("--keys")
        .arg(keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "key {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn keys_are_managed_by_command_and_a_running_relay_applies_them() {
    // Before: keys were JSON edited by hand; there was no `arcgate key`.
    let port = echo_service();
    let relay = RelayServer::start();
    let _gate = Gate::start_relayed(&[port], &relay.url(GATE_NAME), &[]);
    let keys = relay.dir.path().join("relay-keys.json");

    // add: the secret once on stdout; list: never a secret.
    let from = relay.running.log.len();
    let secret = key_cmd(&keys, &["add", "users", "--ports", &port.to_string()]);
    let secret = secret.trim();
    assert_eq!(secret.len(), 44, "{secret}");
    let listed = key_cmd(&keys, &["list"]);
    assert!(
        listed.contains(&format!("users\trights=send\tports=[{port}]")),
        "{listed}"
    );
    assert!(
        listed.contains("gates\trights=listen\tports=any"),
        "{listed}"
    );
    assert!(
        !listed.contains(secret) && !listed.contains(RELAY_SEND_KEY.1),
        "{listed}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        !relay.dir.path().join("relay-keys.json.bak").exists(),
        "no old secrets kept"
    );
    relay
        .running
        .log
        .wait_for_from(from, Duration::from_secs(10), |l| {
            l.contains("relay keys reloaded") && l.contains("users")
        })
        .expect("the relay reloads");

    // The client's token, minted from the relay's keys file with `arcgate token`.
    let mint = |name: &str| {
        let out = arcgate_cmd()
            .args([
                "token",
                "--key-name",
                name,
                "--ttl",
                "1h",
                "--resource",
                &resource(),
                "--keys",
            ])
            .arg(&keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        write_token(relay.dir.path(), &String::from_utf8(out.stdout).unwrap())
    };
    let token = mint("users");
    let client = open_echo(&relay.url(GATE_NAME), port, &token, &[]);
    // Its ports hold: another port is refused at the relay.
    let (code, err) = refused(&relay.url(GATE_NAME), 22, &token, &[]);
    assert_eq!(code, Some(3), "{err}");

    // rotate: the live session ends with 1008, the old token no longer works, a new one does.
    let rotated = key_cmd(&keys, &["rotate", "users"]);
    assert_ne!(rotated.trim(), secret);
    expect_revoked(client, "key 'users' given a new secret");
    let (code, err) = refused(&relay.url(GATE_NAME), port, &token, &[]);
    assert_eq!(code, Some(4), "{err}");
    drop(open_echo(&relay.url(GATE_NAME), port, &mint("users"), &[]));

    // A secret from elsewhere (mode 0600 only), kept and not printed again.
    let secret_file = relay.dir.path().join("gates2.secret");
    write_secret(&secret_file, "imported-secret-0123456789abcdef\n");
    let shown = key_cmd(
        &keys,
        &[
            "add",
            "gates2",
            "--rights",
            "listen",
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    assert_eq!(shown, "");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&keys).unwrap()).unwrap();
    let gates2 = stored
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "gates2")
        .unwrap();
    assert_eq!(gates2["key"], "imported-secret-0123456789abcdef");
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = arcgate_cmd()
        .args(["key", "add", "gates3", "--secret-file"])
        .arg(&secret_file)
        .arg("--keys")
        .arg(&keys)
        .output()
        .unwrap();
    let err = exit_stderr(&out, 2);
    assert!(err.contains("--secret-file"), "{err}");

    // remove, and refusals that write nothing.
    key_cmd(&keys, &["remove", "users"]);
    let before = std::fs::read(&keys).unwrap();
    for args in [
        &["remove", "users"][..],
        &["add", "gates"],
        &["add", "x", "--ports", "0"],
        &["add", "x", "--rights", "manage"],
    ] {
        let out = arcgate_cmd()
            .arg("key")
            .args(args)
            .arg("--keys")
            .arg(&keys)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    assert_eq!(
        std::fs::read(&keys).unwrap(),
        before,
        "a refused change writes nothing"
    );
}

#[test]
fn the_relay_is_operable_like_the_gate() {
    // Before: the relay had no --admin, no certificate reload, and its clients' messages
    // named the wrong flag and said nothing useful about a name with no gate.
    let port = echo_service();
    let relay = RelayServer::start_with(&["--admin", "127.0.0.1:0"]);
    let line = relay
        .running
        .log
        .expect(&["arcgate: admin endpoint on http://"]);
    let admin: std::net::SocketAddr = line
        .trim_start_matches("arcgate: admin endpoint on http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let _gate = Gate::start_relayed(&[port], &relay.url(GATE_NAME), &[]);
    let (status, health) = http_get(admin, "/healthz");
    assert_eq!(status, 200, "{health}");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["listeners"], 1);

    let client = open_echo(
        &relay.url(GATE_NAME),
        port,
        &relay.sender_token_file(GATE_NAME),
        &[],
    );
    drop(client);
    let bad = relay.token_file_as(("senders", "not-the-secret-0123456789"), &resource());
    let (code, _) = refused(&relay.url(GATE_NAME), port, &bad, &[]);
    assert_eq!(code, Some(4));
    let (status, metrics) = http_get(admin, "/metrics");
    assert_eq!(status, 200);
    for want in [
        &format!("arcgate_relay_listeners{{name=\"{GATE_NAME}\"}} 1"),
        "arcgate_relay_joins_total 1",
        "arcgate_relay_refusals_total{status=\"401\"} 1",
        "arcgate_relay_bytes_total{direction=\"sender_to_listener\"} 3",
        "arcgate_relay_senders_waiting 0",
    ] {
        assert!(metrics.contains(want), "{want} not in:\n{metrics}");
    }

    // A name with no gate: the client says so.
    let nobody = format!("wss://localhost:{}/$hc/nobody", relay.addr.port());
    let token = relay.token_file_as(RELAY_SEND_KEY, "http://localhost/nobody/");
    let (code, err) = refused(&nobody, 22, &token, &[]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.contains("no gate is attached to this relay under the name 'nobody'"),
        "{err}"
    );

    // Certificates reload on SIGHUP (and on a change of their files).
    let from = relay.running.log.len();
    relay.running.signal("HUP");
    relay
        .running
        .log
        .wait_for_from(from, Duration::from_secs(10), |l| {
            l.contains("TLS certificate reloaded")
        })
        .expect("the relay reloads its certificate");

    // Invalid keys: /healthz says so, with 503.
    relay.write_keys("not json");
    let (status, health) = http_get(admin, "/healthz");
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("keys_invalid"), "{health}");

    // A non-loopback admin address is refused.
    let out = arcgate_cmd()
        .args(["relay", "--admin", "0.0.0.0:0", "--keys"])
        .arg(relay.dir.path().join("relay-keys.json"))
        .output()
        .unwrap();
    let err = exit_stderr(&out, 2);
    assert!(err.contains("must listen on a loopback address"), "{err}");
}

#[test]
fn a_relayed_gate_that_does_not_trust_the_relay_names_the_flag_to_fix_it() {
    let relay = RelayServer::start();
    let dir = private_dir();
    write_secret(
        &dir.path().join("keys.json"),
        &serde_json::json!([{"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]}])
            .to_string(),
    );
    let running = Running::spawn(
        arcgate_cmd()
            .args(["serve", "--relay-only", "--name", GATE_NAME, "--config"])
            .arg(dir.path().join("localconfig.json"))
            .args([
                "--relay",
                &relay.url(GATE_NAME),
                "--relay-key",
                RELAY_LISTEN_KEY.0,
            ])
            .current_dir(dir.path())
            .env("RUST_LOG", "info"),
        false,
    );
    running.log.expect(&[
        "cannot attach to the relay",
        "pass its CA with --relay-ca FILE",
    ]);
}

/// A relay, a scripted listener and a sender it has been offered: the sender's answer to
/// come, and the accept address from the message the listener got.
async fn offered() -> (
    RelayServer,
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    tokio::task::JoinHandle<String>,
    String,
) {
    let relay = start_relay(&[]).await;
    let mut listener = scripted_listener(relay.addr).await;
    let sender = tokio::spawn(scripted_sender(relay.addr, 0));
    let message = next_control(&mut listener)
        .await
        .expect("an accept message");
    let accept: serde_json::Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
    let address = accept["accept"]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("not an accept message: {message}"))
        .to_string();
    (relay, listener, sender, address)
}

/// The next control message a scripted listener gets, as JSON (within 10 s).
async fn next_control(
    listener: &mut tokio_tungstenite::WebSocketStream<
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    >,
) -> Option<tokio_tungstenite::tungstenite::Message> {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("a control message within 10 s")
        .and_then(Result::ok)
}

#[tokio::test]
async fn a_listener_whose_token_expires_without_renewal_is_detached() {
    // Before: expiry was checked only when the listener attached; a leaked listen token
    // kept its holder attached, taking a share of the name's senders, for ever.
    let relay = start_relay(&[]).await;
    let mut listener = scripted_listener_until(relay.addr, unix_now() + 2).await;
    let started = Instant::now();
    let closed = loop {
        match next_control(&mut listener).await {
            Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => break frame,
            Some(_) => continue,
            None => panic!("the channel ended without a Close"),
        }
    };
    let frame = closed.expect("a Close with a code");
    assert_eq!(u16::from(frame.code), 1008);
    assert!(
        frame.reason.contains("listen token expired"),
        "{}",
        frame.reason
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    expect_in(
        &relay.running.log,
        &["its token expired without renewToken"],
    )
    .await;
}

#[tokio::test]
async fn a_sender_withdrawn_while_it_waits_is_not_joined() {
    // Before: the sender's key was checked once, before a wait of up to 30 s; removed
    // meanwhile, it was still answered 101 and joined to the gate.
    let (relay, _listener, sender, address) = offered().await;
    let addr = relay.addr;
    // The sender's key goes while the listener has not answered yet.
    let gates_only = serde_json::json!([
        {"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]},
    ])
    .to_string();
    let relay = tokio::task::spawn_blocking(move || {
        relay.write_keys(&gates_only);
        relay
    })
    .await
    .unwrap();
    // The listener accepts at the address.
    let tls = tls_to(addr).await;
    let _rendezvous = tokio_tungstenite::client_async(address.as_str(), tls).await;
    let line = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("the sender is answered")
        .unwrap();
    assert_eq!(line, "HTTP/1.1 401 Unauthorized");
    expect_in(
        &relay.running.log,
        &[
            "sender refused: withdrawn while it waited",
            "key 'senders' removed",
        ],
    )
    .await;
}
