//! Policy beyond the agent's keys, end to end with a real sshd and ssh: an access window
//! that closes on time, a session time limit, source networks.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;

/// The audit file's records of one kind (`decision`, `session_end`).
fn records(audit: &std::path::Path, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

/// The audit file's records of one kind once there are at least `n` (the gate writes a
/// session's end after its close handshake, maybe after the client has gone).
fn records_at_least(audit: &std::path::Path, event: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = records(audit, event);
        if found.len() >= n || std::time::Instant::now() > deadline {
            assert!(found.len() >= n, "{n} {event} records expected: {found:?}");
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An `ssh ... 'echo up; sleep 60'` through the gate, returned once the remote side runs.
fn open_session(sshd: &Sshd, proxy: &str) -> std::process::Child {
    let mut child =
        spawn_piped(ssh(sshd, proxy, &["echo up; sleep 60"]).stderr(std::process::Stdio::piped()));
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line,
        "up\n",
        "the session did not start: {}",
        stderr_of(&mut child)
    );
    child
}

/// Waits for `child` to end (it must, within `limit`) and returns its stderr.
fn ended(child: std::process::Child, limit: Duration) -> String {
    let (status, mut child) = wait_with_deadline(child, limit);
    assert!(!status.success(), "the session ended on its own");
    stderr_of(&mut child)
}

fn parse_time(v: &serde_json::Value) -> SystemTime {
    arcgate::config::parse_utc(v.as_str().unwrap()).unwrap()
}

#[test]
fn an_access_window_closes_on_time_and_ends_the_sessions_it_let_in() {
    let sshd = Sshd::start();
    let audit_dir = private_dir();
    let audit = audit_dir.path().join("audit.jsonl");
    let gate = Gate::start(&[sshd.port], &["--audit-log", audit.to_str().unwrap()]);
    let proxy = proxy_command(&gate, &gate.token_file(&[]), "");

    // --for writes the window's end: two hours from now, to the second.
    let before = SystemTime::now();
    gate.config_ok(&["set", "incomingconnections.enabled", "true", "--for", "2h"]);
    let out = gate.config(&["get", "incomingconnections.enableduntil", "-j"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let end = parse_time(&got["value"]);
    let two_hours = Duration::from_secs(7200);
    assert!(
        end + Duration::from_secs(1) >= before + two_hours && end <= SystemTime::now() + two_hours,
        "{got}"
    );

    // A window that ends in a few seconds, and a session inside it.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let end = UNIX_EPOCH + Duration::from_secs(now.as_secs() + 12);
    let end_text = arcgate::config::format_utc(end);
    let seen = gate.running.log.len();
    gate.config_ok(&["set", "incomingconnections.enableduntil", &end_text]);
    gate.running
        .log
        .wait_for_from(seen, Duration::from_secs(10), |l| {
            l.contains("configuration reloaded")
                && l.contains(&format!("incomingconnections.enableduntil={end_text}"))
        })
        .expect("the window reached the gate");
    let session = open_session(&sshd, &proxy);
    assert!(
        SystemTime::now() < end,
        "this machine took more than 12 s to open an ssh session; the test needs it open first"
    );

    // At the end — not at the next file change — the session is closed with 1008.
    let err = ended(session, Duration::from_secs(20));
    assert!(
        err.contains("1008 access window closed") && err.contains("enableduntil"),
        "{err}"
    );
    let ends = records_at_least(&audit, "session_end", 1);
    let closed = ends.last().expect("a session_end record");
    assert_eq!(closed["reason"], "access window closed", "{closed}");
    assert_eq!(closed["close_sent"], 1008, "{closed}");
    assert_eq!(closed["closed_by"], "policy", "{closed}");
    let at = parse_time(&closed["time"]);
    let late = at
        .duration_since(end)
        .unwrap_or_else(|e| panic!("closed {:?} before the window's end", e.duration()));
    assert!(
        late < Duration::from_secs(1),
        "closed {late:?} after the end"
    );

    // And a new request is refused with a reason of its own.
    let (ok, _, err) = run(&mut ssh(&sshd, &proxy, &["true"]));
    assert!(
        !ok && err.contains("403 connection not allowed") && err.contains("enabled only until"),
        "{err}"
    );
    let refused = records(&audit, "decision");
    assert_eq!(
        refused.last().unwrap()["reason"],
        "access_window_closed",
        "{refused:?}"
    );
}

#[test]
fn a_session_is_cut_at_its_time_limit_and_a_tighter_limit_reaches_open_sessions() {
    let sshd = Sshd::start();
    let audit_dir = private_dir();
    let audit = audit_dir.path().join("audit.jsonl");
    let gate = Gate::start(&[sshd.port], &["--audit-log", audit.to_str().unwrap()]);
    let proxy = proxy_command(&gate, &gate.token_file(&[]), "");
    gate.config_ok(&["set", "incomingconnections.maxsessionduration", "8s"]);
    gate.running
        .log
        .expect(&["incomingconnections.maxsessionduration=8s"]);

    let session = open_session(&sshd, &proxy);
    let err = ended(session, Duration::from_secs(30));
    assert!(err.contains("1008 session time limit reached"), "{err}");
    let end = records_at_least(&audit, "session_end", 1).pop().unwrap();
    assert_eq!(end["reason"], "session time limit reached", "{end}");
    assert_eq!(end["close_sent"], 1008);
    // The limit counts from admission; the record's duration from the bridge's start, a few
    // milliseconds (the local dial) later.
    let lasted = end["duration_ms"].as_u64().unwrap();
    assert!((7_800..10_000).contains(&lasted), "{end}");

    // A session opened under a loose limit is held to a tighter one set while it runs.
    gate.config_ok(&["set", "incomingconnections.maxsessionduration", "1h"]);
    gate.running
        .log
        .expect(&["incomingconnections.maxsessionduration=1h"]);
    let session = open_session(&sshd, &proxy);
    gate.config_ok(&["set", "incomingconnections.maxsessionduration", "1s"]);
    let err = ended(session, Duration::from_secs(20));
    assert!(err.contains("1008 session time limit reached"), "{err}");
    let end = records_at_least(&audit, "session_end", 2).pop().unwrap();
    assert_eq!(end["reason"], "session time limit reached", "{end}");
}

/// A connect request from `source` (a loopback address of our choosing), its answer's head
/// and body.
fn request_from(source: &str, gate: &Gate, port: u16) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(gate.addr).await.unwrap()
    });
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let conn = rustls::ClientConnection::new(
        dev_ca_client_config(),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let token = gate.token(&[]);
    let request = upgrade_request(
        &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}"),
        &[("ServiceBusAuthorization", &token)],
    );
    tls.write_all(&request).unwrap();
    // The head; a 403's JSON body comes with it, and the gate closes after a refusal, while
    // a 101 keeps the connection open.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out);
        let head_done = text.contains("\r\n\r\n");
        if head_done && (text.starts_with("HTTP/1.1 101 ") || text.trim_end().ends_with('}')) {
            break;
        }
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn only_the_listed_source_networks_get_in() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let proxy = proxy_command(&gate, &gate.token_file(&[]), "");
    gate.config_ok(&["set", "incomingconnections.allowedsources", "127.0.0.1/32"]);
    gate.running
        .log
        .expect(&["incomingconnections.allowedsources=[127.0.0.1/32]"]);

    // From 127.0.0.1: a real ssh session.
    let (ok, out, err) = run(&mut ssh(&sshd, &proxy, &["echo", "ok"]));
    assert!(ok && out.trim() == "ok", "{err}");

    // From 127.0.0.2: refused before 101, with the reason.
    let answer = request_from("127.0.0.2", &gate, sshd.port);
    assert!(
        answer.starts_with("HTTP/1.1 403 connection not allowed\r\n")
            && answer.contains(r#""reason":"source_not_allowed""#),
        "{answer}"
    );
    gate.running
        .log
        .expect(&["deny", "source_not_allowed", "127.0.0.2"]);

    // An empty list allows every address again.
    let seen = gate.running.log.len();
    gate.config_ok(&["set", "incomingconnections.allowedsources", ""]);
    gate.running
        .log
        .wait_for_from(seen, Duration::from_secs(10), |l| {
            l.contains("configuration reloaded") && !l.contains("allowedsources")
        })
        .expect("reloaded");
    let answer = request_from("127.0.0.2", &gate, sshd.port);
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
}

/// The approval id in the gate's "session waits for approval" line after `seen`.
fn waiting_id(gate: &Gate, seen: usize) -> String {
    let line = gate
        .running
        .log
        .wait_for_from(seen, Duration::from_secs(20), |l| {
            l.contains("session waits for approval")
        })
        .unwrap_or_else(|| panic!("nothing waits:\n{}", gate.running.log.lines().join("\n")));
    let id = line.split("approval=").nth(1).unwrap();
    id.chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// `arcgate sessions ...` on this gate's admin socket, as root.
fn sessions_cmd(gate: &Gate, args: &[&str]) -> std::process::Output {
    arcgate_cmd()
        .arg("sessions")
        .args(args)
        .arg("--config")
        .arg(gate.config_path())
        .output()
        .unwrap()
}

#[test]
fn sessions_wait_for_the_administrators_answer_and_a_timeout_is_a_denial() {
    let sshd = Sshd::start();
    let audit_dir = private_dir();
    let audit = audit_dir.path().join("audit.jsonl");
    let gate = Gate::start(
        &[sshd.port],
        &[
            "--audit-log",
            audit.to_str().unwrap(),
            "--approval-timeout",
            "5s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let proxy = proxy_command(&gate, &gate.token_file(&[]), "--approval-wait 30s");
    gate.config_ok(&["set", "incomingconnections.approval", "required"]);
    gate.running
        .log
        .expect(&["incomingconnections.approval=required"]);
    let ssh_piped =
        || spawn_piped(ssh(&sshd, &proxy, &["echo", "ok"]).stderr(std::process::Stdio::piped()));

    // Approved by a second process: the ssh session runs.
    let seen = gate.running.log.len();
    let session = ssh_piped();
    let id = waiting_id(&gate, seen);
    let status = succeeded(
        &arcgate_cmd()
            .args(["status", "--config"])
            .arg(gate.config_path())
            .output()
            .unwrap(),
        "status",
    );
    assert!(
        status.contains("Waiting for approval: 1") && status.contains(&id),
        "{status}"
    );
    let said = succeeded(&sessions_cmd(&gate, &["approve", &id]), "approve");
    assert!(
        said.starts_with(&format!("approved {id}: 127.0.0.1:")),
        "{said}"
    );
    let out = session.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "ok\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers = records_at_least(&audit, "approval", 1);
    assert_eq!(answers[0]["verdict"], "approve", "{answers:?}");
    assert_eq!(answers[0]["by"], "root", "{answers:?}");
    assert_eq!(answers[0]["approval"], id.as_str());
    let allowed = records(&audit, "decision").pop().unwrap();
    assert_eq!(allowed["reason"], "allowed, approved by root", "{allowed}");

    // Denied: 403 with its reason; the same id cannot be answered twice.
    let seen = gate.running.log.len();
    let session = ssh_piped();
    let id = waiting_id(&gate, seen);
    succeeded(&sessions_cmd(&gate, &["deny", &id]), "deny");
    let out = session.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("403 connection not allowed")
            && err.contains("administrator denied this session"),
        "{err}"
    );
    let again = sessions_cmd(&gate, &["approve", &id]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no session waits for approval"),
        "{again:?}"
    );
    let denied = records(&audit, "decision").pop().unwrap();
    assert_eq!(denied["reason"], "approval_denied, by root", "{denied}");

    // Nobody answers: after --approval-timeout, a denial of its own; the client said it
    // was waiting.
    let session = ssh_piped();
    let out = session.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no answer yet")
            && err.contains("nobody on the host approved this session in time"),
        "{err}"
    );
    assert_eq!(
        records(&audit, "decision").pop().unwrap()["reason"],
        "approval_timed_out"
    );

    // An approval that stands for the key: its next session starts without asking.
    let seen = gate.running.log.len();
    let session = ssh_piped();
    let id = waiting_id(&gate, seen);
    let said = succeeded(
        &sessions_cmd(&gate, &["approve", &id, "--for-key", "10m"]),
        "approve --for-key",
    );
    assert!(
        said.contains("key 'default' needs no approval for the next 10m"),
        "{said}"
    );
    assert!(session.wait_with_output().unwrap().status.success());
    let (ok, out, err) = run(&mut ssh(&sshd, &proxy, &["echo", "ok"]));
    assert!(ok && out == "ok\n", "{err}");
    let last = records(&audit, "decision").pop().unwrap();
    assert_eq!(
        last["reason"], "allowed, approved by root (standing approval for key 'default')",
        "{last}"
    );
    // Over --admin (no word from the kernel on who asks), nothing can be approved: the gate
    // refuses a POST there, and the command does not try.
    let admin = gate.admin_addr();
    let mut tcp = std::net::TcpStream::connect(admin).unwrap();
    write!(
        tcp,
        "POST /approvals/x/approve HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let over_tcp = arcgate_cmd()
        .args(["sessions", "approve", "x", "--admin", "127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&over_tcp.stderr).contains("go through the gate's admin socket"),
        "{over_tcp:?}"
    );
}
