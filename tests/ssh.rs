//! End to end with real OpenSSH: `ssh` → `arcgate connect` → `arcgate serve` → `sshd`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn allowed_session_runs_a_command() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    let (ok, out, err) = run(&mut ssh(
        &sshd,
        &proxy_command(&gate, &token, ""),
        &["echo", "ok"],
    ));
    assert!(ok, "ssh failed: {err}");
    assert_eq!(out, "ok\n");
    let allow = gate
        .running
        .log
        .expect(&["decision=\"allow\"", "connection allowed"]);
    assert!(allow.contains(&format!("port={}", sshd.port)), "{allow}");
    assert!(allow.contains("key=\"default\""), "{allow}");
    let end = gate.running.log.expect(&["session ended"]);
    assert!(
        end.contains("bytes_from_client=") && end.contains("duration_ms="),
        "{end}"
    );
}

#[test]
fn sixty_four_mib_round_trip_keeps_every_byte() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    round_trip_64_mib(&sshd, &proxy_command(&gate, &token, ""));
}

/// `ssh` through the gate fails with the 403 line and the gate's audit names `reason`.
fn assert_refused(gate: &Gate, sshd: &Sshd, reason: &str, detail: &str) {
    let token = gate.token_file(&[]);
    let (ok, out, err) = run(&mut ssh(
        sshd,
        &proxy_command(gate, &token, ""),
        &["echo", "ok"],
    ));
    assert!(!ok, "ssh succeeded: {out}");
    assert!(out.is_empty());
    assert!(err.contains("403 connection not allowed"), "{err}");
    assert!(err.contains(detail), "{err}");
    gate.running
        .log
        .expect(&["decision=\"deny\"", &format!("reason=\"{reason}\"")]);
    // The 403 body carries the interface's reason value.
    let body = raw_tls(
        gate.addr,
        &upgrade_request(
            &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={}", sshd.port),
            &[("ServiceBusAuthorization", &gate.token(&[]))],
        ),
    );
    assert!(
        body.starts_with("HTTP/1.1 403 connection not allowed\r\n"),
        "{body}"
    );
    let json: serde_json::Value =
        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["error"], "connection not allowed");
    assert_eq!(json["reason"], reason);
    assert_eq!(json["port"], sshd.port);
}

#[test]
fn disabled_incoming_connections_refuse_with_403() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let from = gate.running.log.len();
    gate.config_ok(&["set", "incomingconnections.enabled", "false"]);
    gate.wait_reload(from);
    assert_refused(
        &gate,
        &sshd,
        "incoming_connections_disabled",
        "incomingconnections.enabled is false",
    );
}

#[test]
fn port_not_in_the_list_is_refused_with_403() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[22], &[]);
    assert_refused(
        &gate,
        &sshd,
        "port_not_allowed",
        &format!(
            "port {} is not in incomingconnections.ports on the host",
            sshd.port
        ),
    );
}

#[test]
fn monitor_mode_refuses_with_403() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let from = gate.running.log.len();
    gate.config_ok(&["set", "config.mode", "monitor"]);
    gate.wait_reload(from);
    assert_refused(&gate, &sshd, "monitor_mode", "monitor mode");
}

#[test]
fn config_change_applies_to_the_next_connection_and_revokes_live_sessions() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    let proxy = proxy_command(&gate, &token, "");

    // A long session is open...
    let mut long = ssh(&sshd, &proxy, &["echo", "started;", "sleep", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = long.stdout.take().unwrap();
    let mut first = [0u8; 8];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"started\n");

    // ...when its port is removed from the list.
    let from = gate.running.log.len();
    let removed_at = Instant::now();
    gate.config_ok(&[
        "set",
        "--remove",
        "incomingconnections.ports",
        &sshd.port.to_string(),
    ]);
    let (status, mut long) = wait_with_deadline(long, Duration::from_secs(10));
    let ended_after = removed_at.elapsed();
    assert!(!status.success());
    assert!(
        ended_after < Duration::from_secs(2),
        "session ended only after {ended_after:?}"
    );
    let err = stderr_of(&mut long);
    assert!(
        err.contains("closed the session: 1008 connection not allowed"),
        "{err}"
    );
    let line = gate
        .running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("session ended") && l.contains("revoked by policy change")
        })
        .unwrap_or_else(|| {
            panic!(
                "no revocation audit:\n{}",
                gate.running.log.lines().join("\n")
            )
        });
    assert!(
        line.contains("close_sent=1008") && line.contains("closed_by=\"policy\""),
        "{line}"
    );

    // The next connection is refused; adding the port back lets the one after through.
    let (ok, _, err) = run(&mut ssh(&sshd, &proxy, &["true"]));
    assert!(!ok && err.contains("403 connection not allowed"), "{err}");
    let from = gate.running.log.len();
    gate.config_ok(&[
        "set",
        "--add",
        "incomingconnections.ports",
        &sshd.port.to_string(),
    ]);
    gate.wait_reload(from);
    assert_ssh_echo(&sshd, &proxy, "back");
}

#[test]
fn sshd_not_running_gives_503_with_the_dial_error() {
    let sshd = Sshd::start();
    let port = sshd.port;
    let gate = Gate::start(&[port], &[]);
    let token = gate.token_file(&[]);
    let proxy = proxy_command(&gate, &token, "");
    let (key, user) = (sshd.client_key.clone(), sshd.user.clone());
    drop(sshd.running); // sshd is gone; its port is closed
    let (ok, _, err) = run(&mut ssh_to(port, &key, &user, &proxy, &["true"]));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "503 connection to localhost:{port} failed: Connection refused"
        )),
        "{err}"
    );
    gate.running.log.expect(&["decision=\"dial_failed\""]);
}

#[test]
fn bad_tokens_get_401_and_key_ports_are_enforced() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[22, sshd.port], &[]);
    let dir = private_dir();
    let write = |name: &str, content: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    };
    let good = gate.token(&[]);
    let forged = {
        let (head, rest) = good.split_once("sig=").unwrap();
        let tail = rest.split_once('&').unwrap().1;
        format!("{head}sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&{tail}")
    };
    // The gate refuses each with a bare 401; `connect` says what it can tell before
    // dialling, and sends only what it cannot (a forged signature).
    let cases = [
        (
            "expired",
            gate.token_until(unix_now() - 600),
            "the token expired at",
        ),
        ("forged", forged, "401 Unauthorized"),
        (
            "wrong resource",
            gate.token(&["--resource", "http://localhost/otherhost/"]),
            "not for 'testhost'",
        ),
        (
            "garbage",
            "not a token".to_string(),
            "not a SharedAccessSignature token",
        ),
    ];
    for (what, token, says) in cases {
        let answer = raw_tls(
            gate.addr,
            &upgrade_request(
                &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={}", sshd.port),
                &[("ServiceBusAuthorization", &token)],
            ),
        );
        assert!(
            answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{what}: {answer}"
        );
        let file = write(what, &token);
        let (ok, _, err) = run(&mut ssh(&sshd, &proxy_command(&gate, &file, ""), &["true"]));
        assert!(!ok, "{what} token accepted");
        assert!(err.contains(says), "{what}: {err}");
    }
    // No token at all: the raw request gets 401 with no detail.
    let answer = raw_tls(
        gate.addr,
        &upgrade_request(&format!("/$hc/{GATE_NAME}?sb-hc-action=connect"), &[]),
    );
    assert!(
        answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nUnauthorized\n"), "{answer}");
    gate.running
        .log
        .expect(&["decision=\"unauthorized\"", "no token"]);

    // A key limited to port 22 cannot reach sshd's port.
    let from = gate.running.log.len();
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gate.keys_path()).unwrap()).unwrap();
    let mut keys = keys.as_array().unwrap().clone();
    keys.push(
        serde_json::json!({"name": "narrow", "key": "narrow-key-0123456789abcdef", "ports": [22]}),
    );
    let tmp = gate.dir.path().join("keys.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&keys).unwrap()).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, gate.keys_path()).unwrap();
    gate.wait_reload(from);
    let narrow = gate.token_file(&["--key-name", "narrow"]);
    let (ok, _, err) = run(&mut ssh(
        &sshd,
        &proxy_command(&gate, &narrow, ""),
        &["true"],
    ));
    assert!(!ok);
    assert!(err.contains("403 connection not allowed"), "{err}");
    assert!(
        err.contains(&format!("not allowed to reach port {}", sshd.port)),
        "{err}"
    );
    gate.running
        .log
        .expect(&["reason=\"key_port_not_allowed\""]);
    // The default key, unrestricted, still works: nothing above disturbed the gate.
    let token = gate.token_file(&[]);
    assert_ssh_echo(&sshd, &proxy_command(&gate, &token, ""), "ok");
}

#[test]
fn json_log_format_prints_the_agents_fatal_line() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[22], &[]);
    let token = gate.token_file(&[]);
    let (ok, _, err) = run(&mut ssh(
        &sshd,
        &proxy_command(&gate, &token, "--log-format json"),
        &["true"],
    ));
    assert!(!ok);
    let fatal = err
        .lines()
        .find(|l| l.contains("\"level\":\"fatal\""))
        .unwrap_or_else(|| panic!("no fatal line: {err}"));
    let v: serde_json::Value = serde_json::from_str(fatal).unwrap();
    assert_eq!(
        v["msg"],
        "sshproxy: error connecting to the address: 403 connection not allowed. websocket: bad handshake"
    );
    assert_eq!(v["proxyVersion"], env!("CARGO_PKG_VERSION"));
}
