//! Operations: metrics that move by exactly one per decision, the live session list and
//! `arcgate status`, the JSON audit file, certificate replacement under live sessions, the
//! loopback-only admin endpoint, and what systemd is told.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// The value of one sample line of `/metrics` (0 when absent).
fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn metrics(gate: &Gate) -> String {
    let (code, body) = http_get(gate.admin_addr(), "/metrics");
    assert_eq!(code, 200);
    body
}

#[test]
fn metrics_sessions_status_and_audit_file_follow_real_ssh_sessions() {
    let sshd = Sshd::start();
    let audit_dir = private_dir();
    let audit_path = audit_dir.path().join("audit.jsonl");
    let gate = Gate::start(
        &[sshd.port],
        &[
            "--admin",
            "127.0.0.1:0",
            "--audit-log",
            audit_path.to_str().unwrap(),
        ],
    );
    let token = gate.token_file(&[]);
    let proxy = proxy_command(&gate, &token, "");
    let deny = r#"arcgate_decisions_total{decision="deny",reason="port_not_allowed"}"#;
    let allow = r#"arcgate_decisions_total{decision="allow",reason="allowed"}"#;
    let active = format!(r#"arcgate_sessions_active{{port="{}"}}"#, sshd.port);

    let before = metrics(&gate);
    assert!(
        before.contains("# TYPE arcgate_handshake_seconds histogram"),
        "{before}"
    );
    // A refused session: port 2 is not allowed.
    let (ok, _, err) = run(&mut ssh_to(
        2,
        &sshd.client_key,
        &sshd.user,
        &proxy,
        &["true"],
    ));
    assert!(!ok && err.contains("403"), "{err}");
    let after_deny = metrics(&gate);
    assert_eq!(sample(&after_deny, deny), sample(&before, deny) + 1.0);
    assert_eq!(sample(&after_deny, allow), sample(&before, allow));

    // An allowed session, held open: it is listed, counted, and shown by `arcgate status`.
    let mut session = spawn_piped(&mut ssh(&sshd, &proxy, &["cat"]));
    let mut to_cat = session.stdin.take().unwrap();
    let mut from_cat = BufReader::new(session.stdout.take().unwrap());
    writeln!(to_cat, "hello").unwrap();
    let mut line = String::new();
    from_cat.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    let during = metrics(&gate);
    assert_eq!(sample(&during, allow), sample(&before, allow) + 1.0);
    assert_eq!(sample(&during, &active), 1.0, "{during}");
    assert!(
        sample(&during, "arcgate_bytes_from_client_total") > 0.0,
        "{during}"
    );
    let (code, body) = http_get(gate.admin_addr(), "/sessions");
    assert_eq!(code, 200);
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["port"], sshd.port);
    assert_eq!(list[0]["key"], "default");
    assert!(list[0]["bytes_to_client"].as_u64().unwrap() > 0);
    let id = list[0]["id"].as_str().unwrap().to_string();

    let text = succeeded(
        &arcgate_cmd()
            .args(["status", "--admin", &gate.admin_addr().to_string()])
            .output()
            .unwrap(),
        "status --admin",
    );
    assert!(
        text.contains(&format!("incomingconnections.ports=[{}]", sshd.port)),
        "{text}"
    );
    assert!(
        text.contains("Loaded:") && text.contains("SESSION"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains(&format!(" {} ", sshd.port)) && row.contains("default"),
        "{row}"
    );
    let out = arcgate_cmd()
        .args([
            "status",
            "--json",
            "--admin",
            &gate.admin_addr().to_string(),
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sessions"][0]["id"], id.as_str());
    assert_eq!(json["health"]["status"], "ok");
    // With no address, `status` asks the admin socket of the gate with that configuration.
    let text = succeeded(
        &arcgate_cmd()
            .args(["status", "--config"])
            .arg(gate.config_path())
            .output()
            .unwrap(),
        "status --config",
    );
    assert!(
        text.contains(&format!("From:     {}\n", gate.config_path().display()))
            && text.contains(&format!("Version:  {}", env!("CARGO_PKG_VERSION")))
            && text.lines().any(|l| l.starts_with(&id)),
        "{text}"
    );
    let socket = gate.config_path().with_file_name("admin.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the gate's user and root may ask it"
    );

    // The session ends: it leaves the list and the gauge.
    drop(to_cat);
    assert!(session.wait().unwrap().success());
    gate.running.log.expect(&["session ended", &id]);
    let (_, body) = http_get(gate.admin_addr(), "/sessions");
    assert_eq!(body.trim(), "[]");
    assert_eq!(sample(&metrics(&gate), &active), 0.0);

    // The audit file holds the refusal, the decision and the end, as JSON lines.
    let text = std::fs::read_to_string(&audit_path).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denied = records
        .iter()
        .find(|r| r["decision"] == "deny")
        .expect("deny record");
    assert_eq!(denied["event"], "decision");
    assert_eq!(denied["reason"], "port_not_allowed");
    assert_eq!(denied["port"], 2);
    let allowed = records
        .iter()
        .find(|r| r["session"] == id.as_str() && r["event"] == "decision");
    assert_eq!(allowed.expect("allow record")["decision"], "allow");
    let end = records
        .iter()
        .find(|r| r["session"] == id.as_str() && r["event"] == "session_end")
        .expect("session_end record");
    // ssh ends a session from both sides at nearly the same moment: either may be first.
    assert!(
        end["closed_by"] == "client" || end["closed_by"] == "service",
        "{end}"
    );
    assert!(end["bytes_from_client"].as_u64().unwrap() > 0);
    assert!(end["duration_ms"].is_u64() && end["time"].is_string());
    for field in [
        "peer",
        "name",
        "key",
        "close_sent",
        "close_received",
        "reason",
    ] {
        assert!(end.get(field).is_some(), "session_end lacks {field}: {end}");
    }
    // logrotate: the file is moved away, SIGHUP, and new records go to a new file.
    let rotated = audit_dir.path().join("audit.jsonl.1");
    std::fs::rename(&audit_path, &rotated).unwrap();
    let from = gate.running.log.len();
    gate.running.signal("HUP");
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("audit log reopened")
        })
        .expect("the audit log is reopened on SIGHUP");
    let (ok, _, _) = run(&mut ssh_to(
        2,
        &sshd.client_key,
        &sshd.user,
        &proxy,
        &["true"],
    ));
    assert!(!ok);
    let fresh = std::fs::read_to_string(&audit_path).expect("a new audit file");
    assert!(fresh.contains("\"decision\":\"deny\""), "{fresh}");
    let record: serde_json::Value = serde_json::from_str(fresh.lines().next().unwrap()).unwrap();
    let session = record["session"].as_str().unwrap();
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        !old.contains(session),
        "the rotated file got a record after SIGHUP"
    );
}

#[test]
fn admin_must_be_loopback() {
    let dir = private_dir();
    let out = serve_cmd(&dir.path().join("localconfig.json"))
        .args(["--admin", "0.0.0.0:9443"])
        .output()
        .unwrap();
    let err = exit_stderr(&out, 2);
    assert!(err.contains("must listen on a loopback address"), "{err}");
}

/// Sockets a process holds, from /proc.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("socket:"))
        .count()
}

/// DNS rebinding: a web page whose name now resolves to 127.0.0.1 sends its own name as
/// `Host`; the admin endpoint answers only loopback names. And a local user opening
/// connections by the hundred makes the gate hold at most its cap of them.
#[test]
fn the_admin_endpoint_answers_only_loopback_names_and_holds_few_connections() {
    let gate = Gate::start(&[22], &["--admin", "127.0.0.1:0"]);
    let admin = gate.admin_addr();
    let port = admin.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_string(),
    ] {
        assert_eq!(http_get_as(admin, "/sessions", &host).0, 200, "{host}");
    }
    for host in [
        format!("evil.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        String::new(),
    ] {
        assert_eq!(http_get_as(admin, "/sessions", &host).0, 421, "{host:?}");
    }
    let (code, _) = http_get(admin, "/healthz");
    assert_eq!(code, 200, "arcgate's own requests name a loopback address");

    let pid = gate.running.child.id();
    let before = open_sockets(pid);
    let idle: Vec<_> = (0..100)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    // Sampled for a second (the gate holds a silent connection for 2 s): the most it ever
    // holds is its cap, and it does take about that many (the baseline may still count a
    // socket of the requests above on its way out, hence not exactly 16).
    let mut most = 0;
    for _ in 0..50 {
        most = most.max(open_sockets(pid).saturating_sub(before));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        (12..=16).contains(&most),
        "admin connections the gate held at once: {most}"
    );
    drop(idle);
    // Once they go, scrapes are served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http_get(admin, "/healthz").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the admin endpoint stays stuck"
        );
    }
}

fn write_pem_pair(dir: &std::path::Path, ca_pem: &mut String) -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    *ca_pem = ca_cert.pem();
    std::fs::write(dir.join("new-ca.pem"), ca_cert.pem()).unwrap();
    (leaf_cert.pem(), leaf_key.serialize_pem())
}

/// Replaces `path` the way certbot does: write beside it, rename over it.
fn replace(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn echo_through(
    gate: &Gate,
    port: u16,
    ca: &std::path::Path,
    token: &std::path::Path,
) -> std::process::Output {
    let mut child = arcgate_cmd()
        .arg("connect")
        .arg(gate.url())
        .args(["-p", &port.to_string(), "--ca"])
        .arg(ca)
        .arg("--token-file")
        .arg(token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_certificate_swap_reaches_new_clients_and_spares_live_sessions() {
    let port = echo_service();
    let tls_dir = private_dir();
    let cert = tls_dir.path().join("fullchain.pem");
    let key = tls_dir.path().join("privkey.pem");
    std::fs::copy(repo("certs-dev/server.pem"), &cert).unwrap();
    std::fs::copy(repo("certs-dev/server-key.pem"), &key).unwrap();
    let dir = private_dir();
    config_cmd(
        &dir.path().join("localconfig.json"),
        &["set", "incomingconnections.ports", &port.to_string()],
    );
    let gate = Gate::start_at(
        "127.0.0.1:0",
        dir,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let token = gate.token_file(&[]);
    let dev_ca = repo("certs-dev/ca.pem");

    // A session opened with the old certificate.
    let mut old = spawn_piped(
        arcgate_cmd()
            .arg("connect")
            .arg(gate.url())
            .args(["-p", &port.to_string(), "--ca"])
            .arg(&dev_ca)
            .arg("--token-file")
            .arg(&token),
    );
    let mut old_in = old.stdin.take().unwrap();
    let mut old_out = old.stdout.take().unwrap();
    old_in.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    old_out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"one");

    // Swap: key first, then the certificate, each by rename.
    let mut new_ca = String::new();
    let (new_cert, new_key) = write_pem_pair(tls_dir.path(), &mut new_ca);
    let from = gate.running.log.len();
    replace(&key, &new_key);
    replace(&cert, &new_cert);
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("TLS certificate reloaded")
        })
        .unwrap_or_else(|| panic!("no reload:\n{}", gate.running.log.lines().join("\n")));
    // Only a reload that read a matching pair logs success: the new pair is in use now.
    let new_ca_path = tls_dir.path().join("new-ca.pem");
    let fresh = echo_through(&gate, port, &new_ca_path, &token);
    assert!(
        fresh.status.success(),
        "new client with the new CA: {}",
        String::from_utf8_lossy(&fresh.stderr)
    );
    assert_eq!(fresh.stdout, b"ping\n");
    let stale = echo_through(&gate, port, &dev_ca, &token);
    assert_eq!(
        stale.status.code(),
        Some(8),
        "the old CA no longer verifies the gate"
    );

    // The old session never noticed.
    old_in.write_all(b"two").unwrap();
    old_out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two");

    // A broken pair (a key that is not the certificate's) is refused; the new pair stays.
    let from = gate.running.log.len();
    let mut unused = String::new();
    let (_, other_key) = write_pem_pair(private_dir().path(), &mut unused);
    replace(&key, &other_key);
    gate.running
        .log
        .wait_for_from(from, Duration::from_secs(5), |l| {
            l.contains("TLS certificate reload FAILED")
        })
        .unwrap_or_else(|| {
            panic!(
                "no failure logged:\n{}",
                gate.running.log.lines().join("\n")
            )
        });
    let still = echo_through(&gate, port, &new_ca_path, &token);
    assert!(
        still.status.success(),
        "{}",
        String::from_utf8_lossy(&still.stderr)
    );
    drop(old_in);
    let _ = old.wait();
}

#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("systemd-analyze is missing: .ci/install-test-deps installs systemd");
    }
    let dir = private_dir();
    let unit = std::fs::read_to_string(repo("packaging/debian/arcgate.service")).unwrap();
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let unit = unit.replace("/usr/bin/arcgate", arcgate());
    let path = dir.path().join("arcgate.service");
    std::fs::write(&path, unit).unwrap();
    // The man pages it names are checked where the package has installed them (package.rs).
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "systemd-analyze warned:\n{err}");
}

#[test]
fn serve_tells_systemd_when_it_listens_and_when_it_stops() {
    // systemd's side of Type=notify: a datagram socket named in NOTIFY_SOCKET.
    let dir = private_dir();
    let socket = dir.path().join("notify");
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = free_port();
    let mut cmd = arcgate_cmd();
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(dir.path().join("localconfig.json"))
        .arg("--cert")
        .arg(repo("certs-dev/server.pem"))
        .arg("--key")
        .arg(repo("certs-dev/server-key.pem"))
        .env("NOTIFY_SOCKET", &socket);
    let mut gate = Running::spawn(&mut cmd, false);
    let mut buf = [0u8; 256];
    let n = systemd
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no READY=1: {e}\n{}", gate.log.lines().join("\n")));
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means listening, and `arcgate status` answered, with no retry.
    std::net::TcpStream::connect(("127.0.0.1", port)).expect("listening once ready");
    succeeded(
        &arcgate_cmd()
            .args(["status", "--config"])
            .arg(dir.path().join("localconfig.json"))
            .output()
            .unwrap(),
        "status at READY=1",
    );
    gate.signal("TERM");
    let n = systemd.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(gate.wait_exit(Duration::from_secs(20)).success());
    assert!(
        !dir.path().join("admin.sock").exists(),
        "a gate that stops takes its admin socket away"
    );
}
