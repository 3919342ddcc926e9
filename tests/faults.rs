//! Faults: the service dies mid-session, the gate dies while a client connects, the
//! configuration directory cannot be written, the keys file breaks under a running gate,
//! and a second stop signal.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn sshd_killed_mid_session_closes_cleanly_and_the_gate_stays_up() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    let mut client = spawn_piped(&mut connect_cmd(&gate.url(), sshd.port, &token));
    let _stdin = client.stdin.take();
    let mut banner = [0u8; 8];
    read_stdout(&mut client, &mut banner);
    assert_eq!(&banner, b"SSH-2.0-");
    let killed_at = Instant::now();
    sshd.kill_all();
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(10));
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed_at.elapsed()
    );
    let err = stderr_of(&mut client);
    // A WebSocket Close either way: 1000 (the service closed) or 1011 (its connection failed).
    match status.code() {
        Some(0) => assert!(err.is_empty(), "{err}"),
        Some(10) => assert!(err.contains("1011"), "{err}"),
        other => panic!("exit {other:?}: {err}"),
    }
    let end = gate.running.log.expect(&["session ended"]);
    assert!(end.contains("closed_by=\"service\""), "{end}");
    assert_still_answers(gate.addr);
}

#[test]
fn the_gate_dying_during_a_handshake_is_a_clear_client_error_and_a_restart_serves_again() {
    // A listener stands in for the gate process that is about to die: it takes the client's
    // TCP connection and ClientHello, then goes away as a killed process's sockets do.
    let doomed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = doomed.local_addr().unwrap();
    let dir = private_dir();
    let token = dir.path().join("token");
    // A token the client has no reason to doubt (the gate never gets to check it).
    std::fs::write(&token, mint_token("c", "0123456789abcdef0123")).unwrap();
    let client = arcgate_cmd()
        .arg("connect")
        .arg(format!("wss://localhost:{}/$hc/{GATE_NAME}", addr.port()))
        .args([
            "--ca",
            repo("certs-dev/ca.pem").to_str().unwrap(),
            "--token-file",
        ])
        .arg(&token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut conn, _) = doomed.accept().unwrap();
    let mut hello = [0u8; 5];
    conn.read_exact(&mut hello).unwrap();
    assert_eq!(hello[0], 0x16, "a TLS handshake was under way");
    drop(conn);
    drop(doomed);
    let (status, mut client) = wait_with_deadline(client, Duration::from_secs(10));
    let err = stderr_of(&mut client);
    assert_eq!(status.code(), Some(9), "{err}");
    assert!(
        err.contains("the connection ended during the TLS handshake"),
        "{err}"
    );

    // The gate comes back on the same address and serves.
    let port = echo_service();
    let gate_dir = private_dir();
    config_cmd(
        &gate_dir.path().join("localconfig.json"),
        &["set", "incomingconnections.ports", &port.to_string()],
    );
    let gate = Gate::start_at(&addr.to_string(), gate_dir, &[]);
    let token = gate.token_file(&[]);
    let mut child = spawn_piped(&mut connect_cmd(&gate.url(), port, &token));
    child.stdin.take().unwrap().write_all(b"back").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"back");
}

#[test]
fn a_full_or_unwritable_config_directory_fails_clearly_and_keeps_the_old_file() {
    // "Full": writes fail with EFBIG (file-size limit 0, SIGXFSZ ignored, as a full disk
    // fails them with ENOSPC) — the error is reported, nothing is torn.
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    config_cmd(&cfg, &["set", "incomingconnections.ports", "22"]);
    let before = std::fs::read(&cfg).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 0; exec '{}' config set incomingconnections.ports 2222 --config '{}'",
            arcgate(),
            cfg.display()
        ))
        .output()
        .unwrap();
    let err = exit_stderr(&out, 1);
    assert!(
        err.contains("cannot write") && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");

    // Read-only: a user who may read the directory but not write it.
    let shared = temp_dir_with_mode(0o755);
    let cfg = shared.path().join("localconfig.json");
    config_cmd(&cfg, &["set", "incomingconnections.ports", "22"]);
    let before = std::fs::read(&cfg).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(arcgate())
        .args([
            "config",
            "set",
            "incomingconnections.ports",
            "2222",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = exit_stderr(&out, 1);
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(std::fs::read(&cfg).unwrap(), before);
}

#[test]
fn a_keys_file_removed_or_corrupted_under_a_running_gate_fails_closed() {
    let port = echo_service();
    let gate = Gate::start(&[port], &[]);
    let token = gate.token(&[]);
    let request = || {
        raw_tls(
            gate.addr,
            &upgrade_request(
                &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}"),
                &[("ServiceBusAuthorization", &token)],
            ),
        )
    };
    assert!(request().starts_with("HTTP/1.1 101 "));
    let good = std::fs::read(gate.keys_path()).unwrap();
    for (what, breakage) in [("removed", None), ("corrupted", Some(&b"[{\"name\":"[..]))] {
        let from = gate.running.log.len();
        match breakage {
            None => std::fs::remove_file(gate.keys_path()).unwrap(),
            Some(bytes) => std::fs::write(gate.keys_path(), bytes).unwrap(),
        }
        let line = gate
            .running
            .log
            .wait_for_from(from, Duration::from_secs(5), |l| {
                l.contains("reload FAILED")
            })
            .unwrap_or_else(|| panic!("{what}: nothing logged"));
        assert!(line.contains("keys.json"), "{what}: {line}");
        let answer = request();
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{what}: {answer}"
        );
        // Restored: served again.
        let from = gate.running.log.len();
        let tmp = gate.dir.path().join("keys.restore");
        std::fs::write(&tmp, &good).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        std::fs::rename(&tmp, gate.keys_path()).unwrap();
        gate.wait_reload(from);
        assert!(
            request().starts_with("HTTP/1.1 101 "),
            "{what}: not restored"
        );
    }
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let port = echo_service();
    let mut gate = Gate::start(&[port], &["--shutdown-grace", "60s"]);
    let token = gate.token_file(&[]);
    let mut client = spawn_piped(&mut connect_cmd(&gate.url(), port, &token));
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    read_stdout(&mut client, &mut one);
    let from = gate.running.log.len();
    gate.running.signal("TERM");
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("no longer accepting")
        })
        .expect("the first signal starts the graceful stop");
    let second = Instant::now();
    gate.running.signal("INT");
    let status = gate.running.wait_exit(Duration::from_secs(5));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
    assert_eq!(status.code(), Some(1));
    gate.running.log.expect(&["second signal: exiting now"]);
    drop(stdin);
    let _ = client.kill();
    let _ = client.wait();
}
