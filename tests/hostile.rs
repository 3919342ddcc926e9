//! Hostile input against the real `serve` over real sockets. Every case asserts the exact
//! answer, and an unrelated SSH session through the same gate (the witness) must keep
//! working after each one.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

fn request_with(path_and_query: &str, token: &str) -> Vec<u8> {
    upgrade_request(path_and_query, &[("ServiceBusAuthorization", token)])
}

#[test]
fn malformed_http_gets_its_exact_status_line() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let mut witness = Witness::start(&gate, &sshd);
    let token = gate.token(&[]);
    let q = |rest: &str| format!("/$hc/{GATE_NAME}?sb-hc-action=connect{rest}");
    let upgrade_head = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    let huge = "A".repeat(1 << 20);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "HTTP/1.0",
            format!("GET {} HTTP/1.0\r\n{upgrade_head}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", q(""))
                .into_bytes(),
            "HTTP/1.0 400 Bad Request\r\n",
        ),
        (
            "missing Upgrade",
            format!("GET {} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", q(""))
                .into_bytes(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "missing Sec-WebSocket-Key",
            format!("GET {} HTTP/1.1\r\nHost: x\r\n{upgrade_head}\r\n", q("")).into_bytes(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "duplicate Sec-WebSocket-Key",
            upgrade_request(&q(""), &[("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")]),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "oversized header",
            upgrade_request(&q(""), &[("X-Filler", &"A".repeat(20 * 1024))]),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
        (
            "1 MiB token header",
            request_with(&q(""), &format!("SharedAccessSignature sr={huge}")),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
        (
            "1 MiB token in the query",
            upgrade_request(&q(&format!("&sb-hc-token={huge}")), &[]),
            "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        ),
        (
            "dot-dot name",
            request_with(&format!("/$hc/..%2F..%2Fetc%2Fpasswd?sb-hc-action=connect&port={}", sshd.port), &token),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "encoded dot-dot",
            request_with("/$hc/%2e%2e?sb-hc-action=connect", &token),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "NUL in the name",
            request_with("/$hc/testhost%00evil?sb-hc-action=connect", &token),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "another gate's name",
            request_with("/$hc/otherhost?sb-hc-action=connect", &token),
            "HTTP/1.1 404 Endpoint does not exist\r\n",
        ),
        ("port=0", request_with(&q("&port=0"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        ("port=65536", request_with(&q("&port=65536"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        ("port twice", request_with(&q("&port=22&port=3389"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        ("port=+22", request_with(&q("&port=+22"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        ("port=%2B22", request_with(&q("&port=%2B22"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        ("port=22.0", request_with(&q("&port=22.0"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        (
            "non-UTF-8 path",
            b"GET /$hc/test\xff\xfe?sb-hc-action=connect HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        ("non-UTF-8 query", request_with(&q("&port=%FF%FE"), &token), "HTTP/1.1 400 Bad Request\r\n"),
        (
            "control byte in a header name",
            upgrade_request(&q(""), &[("X-Bad\u{1}", "y")]),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        ("garbage", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(), "HTTP/1.1 400 Bad Request\r\n"),
    ];
    for (what, request, want) in &cases {
        let answer = raw_tls(gate.addr, request);
        assert!(
            answer.starts_with(want),
            "{what}: {:?}",
            &answer[..answer.len().min(200)]
        );
        witness.check(what);
    }
    gate.running.log.expect(&["decision=\"bad_request\""]);
    gate.running.log.expect(&["decision=\"not_found\""]);
}

#[test]
fn broken_tls_and_slow_clients_are_dropped_at_the_handshake_deadline() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &["--handshake-timeout", "2s"]);
    let mut witness = Witness::start(&gate, &sshd);

    // Plain HTTP to the TLS port: never an HTTP answer; at most a TLS alert, then closed.
    let mut plain = TcpStream::connect(gate.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "plain HTTP got {answer:?}"
    );
    witness.check("plain HTTP to the TLS port");

    // A truncated ClientHello, then EOF: closed without an answer beyond an alert.
    let mut truncated = TcpStream::connect(gate.addr).unwrap();
    truncated
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    truncated
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 7, 7, 7,
        ])
        .unwrap();
    truncated.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    let _ = truncated.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "truncated hello got {answer:?}"
    );
    witness.check("a truncated ClientHello");

    // Slowloris: connections that send one byte at a time, before TLS and after it.
    let started = Instant::now();
    let addr = gate.addr;
    let tcp_drips: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || drip_until_closed(addr, false)))
        .collect();
    let tls_drips: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || drip_until_closed(addr, true)))
        .collect();
    for t in tcp_drips.into_iter().chain(tls_drips) {
        let lasted = t.join().unwrap();
        assert!(
            lasted >= Duration::from_millis(1500) && lasted < Duration::from_secs(6),
            "a dripping connection lasted {lasted:?} against a 2 s handshake deadline"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    witness.check("slowloris");
}

/// Sends one byte every 200 ms (of a ClientHello, or of an HTTP head after a real TLS
/// handshake) until the gate closes the connection; returns how long that took.
fn drip_until_closed(addr: std::net::SocketAddr, after_tls: bool) -> Duration {
    let started = Instant::now();
    let pace = Duration::from_millis(200); // the attack's pace, not a wait for readiness
    let bytes = b"GET /$hc/testhost?sb-hc-action=connect HTTP/1.1\r\nHost: x\r\n";
    let mut tcp = TcpStream::connect(addr).unwrap();
    if after_tls {
        let conn = rustls::ClientConnection::new(
            dev_ca_client_config(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp.try_clone().unwrap());
        for b in bytes.iter().cycle() {
            if tls.write_all(&[*b]).and_then(|()| tls.flush()).is_err() {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(8), "never closed");
            std::thread::sleep(pace);
        }
    } else {
        for b in [0x16u8, 0x03, 0x01, 0x02, 0x00].iter().cycle() {
            if tcp.write_all(&[*b]).is_err() {
                return started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(8), "never closed");
            std::thread::sleep(pace);
        }
    }
    unreachable!()
}

#[test]
fn bad_frames_get_their_close_codes() {
    let sshd = Sshd::start();
    let port = echo_service();
    let gate = Gate::start(&[sshd.port, port], &["--max-frame-bytes", "4096"]);
    let mut witness = Witness::start(&gate, &sshd);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "frame over the size limit",
            frame(0x82, &vec![0u8; 8192], true),
            1009,
        ),
        ("text frame", frame(0x81, b"hello", true), 1003),
        ("reserved opcode", frame(0x83, b"x", true), 1002),
        ("reserved control opcode", frame(0x8B, b"x", true), 1002),
        ("reserved bits", frame(0xC2, b"x", true), 1002),
        ("unmasked client frame", frame(0x82, b"x", false), 1002),
        ("fragmented ping", frame(0x09, b"x", true), 1002),
        ("continuation from nowhere", frame(0x80, b"x", true), 1002),
        (
            "control frame over 125 bytes",
            frame(0x89, &[0u8; 126], true),
            1002,
        ),
        (
            "close code 999",
            frame(0x88, &999u16.to_be_bytes(), true),
            1002,
        ),
        (
            "close reason not UTF-8",
            frame(0x88, &[0x03, 0xE8, 0xFF], true),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut ws = RawWs::open(&gate, port);
        // A good frame first: the session works until the bad one.
        ws.send(&frame(0x82, b"ok", true));
        ws.send(&bytes);
        assert_eq!(ws.close_code(), Some(code), "{what}");
        witness.check(what);
    }
    gate.running
        .log
        .expect(&["session ended", "close_sent=1009"]);
}

/// A local service that writes as fast as it can and never reads.
fn flood_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                while conn.write_all(&chunk).is_ok() {}
            });
        }
    });
    port
}

/// A local service that accepts and never reads.
fn deaf_service() -> (u16, Arc<std::sync::Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            keep.lock().unwrap().push(conn);
        }
    });
    (port, held)
}

#[test]
fn a_client_that_never_reads_is_dropped_and_costs_bounded_memory() {
    let sshd = Sshd::start();
    let port = flood_service();
    let gate = Gate::start(
        &[sshd.port, port],
        &["--ping-interval", "1s", "--missed-pongs", "1"],
    );
    let mut witness = Witness::start(&gate, &sshd);
    let pid = gate.running.child.id();
    let before = rss_kib(pid);
    let ws = RawWs::open(&gate, port);
    // The service floods; this client reads nothing. Once the buffers between are full the
    // gate's writes stall, and after ping interval × (missed pongs + 1) = 2 s it gives up.
    let line = gate
        .running
        .log
        .wait_for_from(0, Duration::from_secs(15), |l| l.contains("session ended"))
        .unwrap_or_else(|| panic!("never dropped:\n{}", gate.running.log.lines().join("\n")));
    assert!(line.contains("accepted no data"), "{line}");
    let grew = rss_kib(pid).saturating_sub(before);
    assert!(
        grew < 32 * 1024,
        "the gate grew by {grew} KiB for one stalled session"
    );
    drop(ws);
    witness.check("a client that never reads");
}

#[test]
fn pushing_into_a_service_that_never_reads_is_held_back_not_buffered() {
    let (port, _held) = deaf_service();
    let gate = Gate::start(&[port], &[]);
    let pid = gate.running.child.id();
    let before = rss_kib(pid);
    let mut ws = RawWs::open(&gate, port);
    // Push up to 256 MiB; a write that makes no progress for 3 s means backpressure holds.
    ws.tls
        .sock
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let pushed = Arc::new(AtomicU64::new(0));
    let chunk = frame(0x82, &vec![b'y'; 60 * 1024], true);
    while pushed.load(Ordering::Relaxed) < 256 << 20 {
        if ws
            .tls
            .write_all(&chunk)
            .and_then(|()| ws.tls.flush())
            .is_err()
        {
            break;
        }
        pushed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    let pushed = pushed.load(Ordering::Relaxed);
    let grew = rss_kib(pid).saturating_sub(before);
    assert!(
        pushed < 64 << 20,
        "{pushed} bytes went in: nothing held the client back"
    );
    assert!(
        grew < 32 * 1024,
        "the gate grew by {grew} KiB holding {pushed} bytes"
    );
}

#[test]
fn a_thousand_connections_opened_and_dropped_at_once() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    // 1,000 sockets here and as many in the gate (which inherits this limit).
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < 4096) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum.map(|m| m.min(8192)).or(Some(8192)),
            maximum: limit.maximum,
        };
        setrlimit(Resource::Nofile, raised).expect("raise the open-file limit to 8192");
    }
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let mut witness = Witness::start(&gate, &sshd);
    let conns: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(gate.addr).expect("connect"))
        .collect();
    drop(conns);
    witness.check("1,000 connections dropped at once");
    // And the gate still answers new clients with the exact status line.
    assert_still_answers(gate.addr);
}

#[test]
fn an_idle_session_is_closed_after_the_idle_timeout() {
    let port = echo_service();
    let gate = Gate::start(&[port], &["--idle-timeout", "1s"]);
    let token = gate.token_file(&[]);
    let mut client = spawn_piped(&mut connect_cmd(&gate.url(), port, &token));
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"a").unwrap();
    let mut one = [0u8; 1];
    read_stdout(&mut client, &mut one);
    let idle_from = Instant::now();
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(10));
    let waited = idle_from.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    let err = stderr_of(&mut client);
    assert_eq!(status.code(), Some(10), "{err}");
    assert!(err.contains("1001 idle timeout"), "{err}");
    gate.running.log.expect(&["session ended", "idle timeout"]);
    drop(stdin);
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let port = echo_service();
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    config_cmd(
        &cfg,
        &["set", "incomingconnections.ports", &port.to_string()],
    );
    // The gate with room for about 40 open files.
    let running = Running::spawn(
        Command::new("sh").arg("-c").arg(format!(
            "ulimit -n 40; exec '{}' serve --listen 127.0.0.1:0 --name {GATE_NAME} --config '{}' --cert '{}' --key '{}'",
            arcgate(),
            cfg.display(),
            repo("certs-dev/server.pem").display(),
            repo("certs-dev/server-key.pem").display()
        )),
        false,
    );
    let line = running
        .wait_ready("the gate", "arcgate: listening on ", &["arcgate: "])
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim_start_matches("arcgate: listening on ")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // More connections than it has descriptors for: accept fails with EMFILE.
    let hogs: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    running.log.expect(&["accept failed; backing off"]);
    drop(hogs);
    // Once they are gone (closed by their handshake deadline or by us), it serves again.
    assert_still_answers(addr);
}
