//! `arcgate forward`: one tunnel per local connection, refusals that close only their own
//! connection, graceful stop — and RDP end to end with a real xrdp and xfreerdp.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn echo_round_trip(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).unwrap();
    let mut back = vec![0u8; text.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, text);
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

#[test]
fn a_refused_tunnel_closes_only_its_connection_and_the_listener_keeps_serving() {
    let port = echo_service();
    let gate = Gate::start(&[22], &[]);
    let token = gate.token_file(&[]);
    // No check at start: the policy refuses now, and allows later.
    let forward = Forward::start(&gate, port, &token, &["--no-check"]);

    // Refused: the gate does not allow the port; the local connection is closed.
    let mut refused = connect(forward.addr);
    let mut buf = [0u8; 1];
    let n = refused.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "a refused tunnel's connection is closed");
    let line = forward.running.log.expect(&["tunnel refused"]);
    assert!(line.contains("403 connection not allowed"), "{line}");
    assert!(
        line.contains(&format!("port {port} is not in incomingconnections.ports")),
        "{line}"
    );

    // The listener still serves: allow the port and the next connection goes through.
    let from = gate.running.log.len();
    gate.config_ok(&[
        "set",
        "--add",
        "incomingconnections.ports",
        &port.to_string(),
    ]);
    gate.wait_reload(from);
    let mut first = connect(forward.addr);
    let mut second = connect(forward.addr);
    echo_round_trip(&mut first, b"one");
    echo_round_trip(&mut second, b"two");
    echo_round_trip(&mut first, &vec![7u8; 1 << 20]);
}

#[test]
fn sigint_closes_the_listener_and_lets_open_tunnels_finish() {
    let port = echo_service();
    let gate = Gate::start(&[port], &[]);
    let token = gate.token_file(&[]);
    let mut forward = Forward::start(&gate, port, &token, &["--shutdown-grace", "30s"]);
    let mut open = connect(forward.addr);
    echo_round_trip(&mut open, b"before");
    let from = forward.running.log.len();
    forward.running.signal("INT");
    forward
        .running
        .log
        .wait_for_from(from, Duration::from_secs(10), |l| {
            l.contains("letting open tunnels finish")
        })
        .expect("the listener closed");
    assert!(
        TcpStream::connect(forward.addr).is_err(),
        "no new connections after Ctrl-C"
    );
    echo_round_trip(&mut open, b"still working");
    drop(open);
    let status = forward.running.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}

#[test]
fn tunnels_still_open_after_the_grace_period_are_closed() {
    let port = echo_service();
    let gate = Gate::start(&[port], &[]);
    let token = gate.token_file(&[]);
    let mut forward = Forward::start(&gate, port, &token, &["--shutdown-grace", "1s"]);
    let mut open = connect(forward.addr);
    echo_round_trip(&mut open, b"x");
    let stopped_at = Instant::now();
    forward.running.signal("TERM");
    let status = forward.running.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        open.read(&mut buf).unwrap_or(0),
        0,
        "the open tunnel was closed"
    );
    forward.running.log.expect(&["grace period over"]);
}

fn xfreerdp(xvfb: &Xvfb, port: u16) -> (bool, String) {
    // freerdp keeps its known-hosts store under the home directory: give it a private one.
    let home = private_dir();
    let out = Command::new("xfreerdp")
        .arg(format!("/v:127.0.0.1:{port}"))
        .args([
            "/cert:ignore",
            "+auth-only",
            "/u:arcgate-test",
            "/p:not-a-password",
        ])
        .env("DISPLAY", &xvfb.display)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("xfreerdp runs (is freerdp2-x11 installed?)");
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), log)
}

#[test]
fn rdp_through_forward_and_the_gate_reaches_xrdp() {
    let xrdp = Xrdp::start();
    let xvfb = Xvfb::start();
    let gate = Gate::start(&[xrdp.port], &[]);
    let token = gate.token_file(&[]);
    let forward = Forward::start(&gate, xrdp.port, &token, &[]);
    let (ok, log) = xfreerdp(&xvfb, forward.addr.port());
    assert!(ok, "xfreerdp +auth-only failed:\n{log}");
    // The RDP connection sequence really reached xrdp through the gate: it negotiated the
    // client's capabilities, which happens only after TLS and the RDP handshake.
    xrdp.running.log.expect(&["xrdp_caps_process"]);
    gate.running
        .log
        .expect(&["decision=\"allow\"", &format!("port={}", xrdp.port)]);
}

#[test]
fn rdp_to_a_port_not_in_the_list_fails_and_the_gate_says_port_not_allowed() {
    let xrdp = Xrdp::start();
    let xvfb = Xvfb::start();
    let gate = Gate::start(&[22], &[]);
    let token = gate.token_file(&[]);
    let forward = Forward::start(&gate, xrdp.port, &token, &["--no-check"]);
    let (ok, log) = xfreerdp(&xvfb, forward.addr.port());
    assert!(!ok, "xfreerdp succeeded through a refused tunnel:\n{log}");
    gate.running
        .log
        .expect(&["decision=\"deny\"", "reason=\"port_not_allowed\""]);
    forward
        .running
        .log
        .expect(&["tunnel refused", "403 connection not allowed"]);
}

#[test]
fn forward_checks_the_gate_at_start_and_counts_only_live_tunnels_at_the_end() {
    // Before: forward listened whatever the gate would say, closing every connection, and
    // at shutdown after a refused tunnel reported it as open.
    let port = echo_service();
    let gate = Gate::start(&[22], &[]);
    let token = gate.token_file(&[]);

    // A refusal at start: one line, its exit code, no listener.
    let out = arcgate_cmd()
        .args([
            "forward",
            "127.0.0.1:0",
            &gate.url(),
            "-p",
            &port.to_string(),
            "--ca",
        ])
        .arg(repo("certs-dev/ca.pem"))
        .arg("--token-file")
        .arg(&token)
        .output()
        .unwrap();
    let err = exit_stderr(&out, 3);
    assert!(
        err.contains("403 connection not allowed")
            && err.contains(&format!("port {port} is not in incomingconnections.ports")),
        "{err}"
    );
    assert!(!err.contains("forwarding"), "it never listened: {err}");

    // Allowed: the check is an orderly session of its own, ended by the client.
    let from = gate.running.log.len();
    gate.config_ok(&[
        "set",
        "--add",
        "incomingconnections.ports",
        &port.to_string(),
    ]);
    gate.wait_reload(from);
    let from = gate.running.log.len();
    let forward = Forward::start(&gate, port, &token, &[]);
    let end = gate.session_end_after(from);
    assert!(end.contains("closed_by=\"client\""), "{end}");
    forward
        .running
        .log
        .expect(&["test tunnel opened and closed"]);
    drop(forward);

    // A refused tunnel, then a stop: nothing is reported open.
    let mut forward = Forward::start(&gate, 22, &token, &["--no-check"]);
    let from = gate.running.log.len();
    gate.config_ok(&["set", "--remove", "incomingconnections.ports", "22"]);
    gate.wait_reload(from);
    let mut refused = connect(forward.addr);
    let mut buf = [0u8; 1];
    assert_eq!(refused.read(&mut buf).unwrap_or(0), 0);
    forward
        .running
        .log
        .expect(&["tunnel refused", "403 connection not allowed"]);
    forward.running.signal("INT");
    assert!(forward.running.wait_exit(Duration::from_secs(10)).success());
    let lines = forward.running.log.lines().join("\n");
    assert!(!lines.contains("letting open tunnels finish"), "{lines}");
    assert!(lines.contains("tunnels_cut_at_deadline=0"), "{lines}");
}
