//! Shared helpers: a private temporary directory, a real `sshd`, a real `arcgate serve`, the
//! real `ssh` client through `arcgate connect`, and a raw TLS request for exact status lines.
//!
//! Nothing here sleeps to wait for readiness: servers are ready when they print that they
//! listen, and log assertions wait on the log lines themselves (with a deadline).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn arcgate() -> &'static str {
    env!("CARGO_BIN_EXE_arcgate")
}

/// A file in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A temporary directory only we can read or write (the config checks insist on it).
pub fn private_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Lines a child process writes to stderr, collected by a thread, waitable.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    fn collect(self, stream: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let (lines, cv) = &*self.0;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `pred` (checking lines from index `from`), up to `limit`.
    pub fn wait_for_from(
        &self,
        from: usize,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + limit;
        let (lines, cv) = &*self.0;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().skip(from).find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits for a line containing every one of `needles`; panics with the log if none comes.
    pub fn expect(&self, needles: &[&str]) -> String {
        self.wait_for_from(0, Duration::from_secs(10), |l| {
            needles.iter().all(|n| l.contains(n))
        })
        .unwrap_or_else(|| {
            panic!(
                "no log line with {needles:?} in:\n{}",
                self.lines().join("\n")
            )
        })
    }

    /// Number of lines so far (to look only at what comes after).
    pub fn len(&self) -> usize {
        self.0.0.lock().unwrap().len()
    }
}

/// A child process killed on drop.
pub struct Running {
    pub child: Child,
    pub log: Log,
}

impl Running {
    /// Waits for the process to exit on its own; kills it and fails the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let child = &mut self.child;
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let _ = tx.send(child.wait());
            });
            match rx.recv_timeout(limit) {
                Ok(status) => status.unwrap(),
                Err(_) => {
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                    panic!("process {pid} still running after {limit:?}");
                }
            }
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real OpenSSH server on a free loopback port, with a temporary host key and one
/// authorized test key.
pub struct Sshd {
    pub port: u16,
    pub client_key: PathBuf,
    pub user: String,
    pub running: Running,
    _dir: tempfile::TempDir,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (is openssh-client installed?)");
    assert!(status.success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = private_dir();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        // A port picked by the OS can be taken by someone else before sshd binds it: retry.
        for _ in 0..5 {
            let port = free_port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\n\
                     UsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                     PermitRootLogin prohibit-password\nLogLevel INFO\n",
                    dir = d.display()
                ),
            )
            .unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("sshd runs (is openssh-server installed?)");
            let log = Log::default();
            log.clone().collect(child.stderr.take().unwrap());
            let running = Running { child, log };
            let ready = running.log.wait_for_from(0, Duration::from_secs(10), |l| {
                l.contains("Server listening") || l.contains("Cannot bind") || l.contains("fatal")
            });
            match ready {
                Some(l) if l.contains("Server listening") => {
                    return Sshd {
                        port,
                        client_key: d.join("client_key"),
                        user,
                        running,
                        _dir: dir,
                    };
                }
                Some(l) if l.contains("Cannot bind") => continue,
                other => panic!(
                    "sshd did not start: {other:?}\n{}",
                    running.log.lines().join("\n")
                ),
            }
        }
        panic!("sshd could not bind a free port in 5 tries");
    }
}

/// A running `arcgate serve` with its own configuration directory.
pub struct Gate {
    pub addr: std::net::SocketAddr,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub running: Running,
}

pub const GATE_NAME: &str = "testhost";

impl Gate {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("localconfig.json")
    }

    pub fn keys_path(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    /// Starts a gate whose configuration allows `ports`; more `serve` flags in `extra`.
    pub fn start(ports: &[u16], extra: &[&str]) -> Gate {
        let dir = private_dir();
        let config = dir.path().join("localconfig.json");
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            let out = config_cmd(
                &config,
                &["set", "incomingconnections.ports", &list.join(",")],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Gate::start_in(dir, extra)
    }

    /// Starts a gate on an existing configuration directory.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Gate {
        let config = dir.path().join("localconfig.json");
        let mut child = Command::new(arcgate())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--name", GATE_NAME, "--config"])
            .arg(&config)
            .arg("--cert")
            .arg(repo("certs-dev/server.pem"))
            .arg("--key")
            .arg(repo("certs-dev/server-key.pem"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info")
            .spawn()
            .expect("arcgate serve starts");
        let log = Log::default();
        log.clone().collect(child.stderr.take().unwrap());
        let running = Running { child, log };
        let line = running
            .log
            .wait_for_from(0, Duration::from_secs(20), |l| {
                l.starts_with("arcgate: listening on ") || l.starts_with("arcgate: ")
            })
            .unwrap_or_else(|| panic!("gate did not start:\n{}", running.log.lines().join("\n")));
        let addr = line
            .strip_prefix("arcgate: listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("gate failed: {line}\n{}", running.log.lines().join("\n")));
        Gate {
            addr,
            name: GATE_NAME.to_string(),
            dir,
            running,
        }
    }

    pub fn url(&self) -> String {
        format!("wss://localhost:{}/$hc/{}", self.addr.port(), self.name)
    }

    /// `arcgate config ...` on this gate's file.
    pub fn config(&self, args: &[&str]) -> Output {
        config_cmd(&self.config_path(), args)
    }

    /// `arcgate config ...` that must succeed.
    pub fn config_ok(&self, args: &[&str]) {
        let out = self.config(args);
        assert!(
            out.status.success(),
            "config {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A token from `arcgate token`, written to a file; returns the file.
    pub fn token_file(&self, extra: &[&str]) -> PathBuf {
        let token = self.token(extra);
        let path = self
            .dir
            .path()
            .join(format!("token-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// A token from `arcgate token`.
    pub fn token(&self, extra: &[&str]) -> String {
        let out = Command::new(arcgate())
            .arg("token")
            .arg("--config")
            .arg(self.config_path())
            .args(extra)
            .args(
                if extra.iter().any(|a| *a == "--resource" || *a == "--name") {
                    vec![]
                } else {
                    vec!["--name", GATE_NAME]
                },
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Sends SIGHUP-free configuration through the CLI and waits until the gate logs that
    /// it reloaded (any reload after `from`).
    pub fn wait_reload(&self, from: usize) {
        self.running
            .log
            .wait_for_from(from, Duration::from_secs(5), |l| {
                l.contains("configuration reloaded")
                    || l.contains("configuration unchanged")
                    || l.contains("reload FAILED")
            })
            .unwrap_or_else(|| {
                panic!("no reload logged:\n{}", self.running.log.lines().join("\n"))
            });
    }
}

/// `arcgate config --config PATH ARGS`.
pub fn config_cmd(config: &Path, args: &[&str]) -> Output {
    Command::new(arcgate())
        .arg("config")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// The `ProxyCommand` for `ssh`: `arcgate connect` with the dev CA and a token file.
pub fn proxy_command(gate: &Gate, token_file: &Path, extra: &str) -> String {
    format!(
        "'{}' connect '{}' -p %p --ca '{}' --token-file '{}' {extra}",
        arcgate(),
        gate.url(),
        repo("certs-dev/ca.pem").display(),
        token_file.display()
    )
}

/// An `ssh` command through the gate to `sshd`, running `remote` there.
pub fn ssh(sshd: &Sshd, proxy: &str, remote: &[&str]) -> Command {
    ssh_to(sshd.port, &sshd.client_key, &sshd.user, proxy, remote)
}

/// An `ssh` command through the gate to `port`, as `user` with `key`.
pub fn ssh_to(port: u16, key: &Path, user: &str, proxy: &str, remote: &[&str]) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.args(["-F", "/dev/null"])
        .args(["-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes"])
        .args(["-o", "LogLevel=ERROR"])
        .args(["-o", "ConnectTimeout=20"])
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .args(["-p", &port.to_string()])
        .arg(format!("{user}@{GATE_NAME}"))
        .args(remote)
        .stdin(Stdio::null());
    cmd
}

/// Waits for a child to exit, failing the test if it has not within `limit`.
pub fn wait_with_deadline(mut child: Child, limit: Duration) -> (std::process::ExitStatus, Child) {
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        (status, child)
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("process still running after {limit:?}"));
    let (status, child) = waiter.join().unwrap();
    (status.unwrap(), child)
}

/// Runs a command, returning (status success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("command runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TLS client configuration that trusts only the development CA.
pub fn dev_ca_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in arcgate::tls::load_certs(&repo("certs-dev/ca.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// Spawns a command with stdin, stdout and stderr piped.
pub fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts")
}

/// Sends raw bytes over TLS (trusting the dev CA) and returns everything the gate answers
/// until it closes (bounded at 64 KiB).
pub fn raw_tls(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use rustls::pki_types::ServerName;
    let config = dev_ca_client_config();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request).unwrap();
    tls.flush().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 65536 {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A WebSocket upgrade request head for `path` with `headers`.
pub fn upgrade_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}
