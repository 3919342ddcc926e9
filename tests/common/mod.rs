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
pub(crate) fn arcgate() -> &'static str {
    env!("CARGO_BIN_EXE_arcgate")
}

/// A file in the repository.
pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Where the tests' temporary directories go: a place whose every parent only root or we can
/// write, as the gate's StrictModes check insists (so not /tmp, which anyone may write in):
/// the build tree's temporary directory, or the home directory when the checkout itself
/// sits under such a place.
fn safe_base() -> &'static Path {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let _ = std::fs::create_dir_all(&target);
        [Some(target), std::env::var_os("HOME").map(PathBuf::from)]
            .into_iter()
            .flatten()
            .find(|b| arcgate::state::store::check_directories(b).is_ok())
            .expect("no directory whose parents only root or this user can write, for the tests")
    })
}

/// A temporary directory with `mode`, in [`safe_base`].
pub(crate) fn temp_dir_with_mode(mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(safe_base()).expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    dir
}

/// A temporary directory only we can read or write (the config checks insist on it).
pub(crate) fn private_dir() -> tempfile::TempDir {
    temp_dir_with_mode(0o700)
}

/// Lines a child process writes to stderr, collected by a thread, waitable.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

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
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `pred` (checking lines from index `from`), up to `limit`.
    pub(crate) fn wait_for_from(
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
    pub(crate) fn expect(&self, needles: &[&str]) -> String {
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
    pub(crate) fn len(&self) -> usize {
        self.0.0.lock().unwrap().len()
    }
}

/// A child process killed on drop (after a SIGTERM first when `terminate_first`, for
/// programs that clean up after themselves, like Xvfb's lock files).
pub(crate) struct Running {
    pub child: Child,
    pub log: Log,
    pub terminate_first: bool,
}

impl Running {
    /// Sends a signal (`TERM`, `INT`, `HUP`, ...) to the process.
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Starts `cmd` with stderr (or stdout, `from_stdout`) collected into the log.
    pub(crate) fn spawn(cmd: &mut Command, from_stdout: bool) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(if from_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if from_stdout {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let log = Log::default();
        if from_stdout {
            log.clone().collect(child.stdout.take().unwrap());
        } else {
            log.clone().collect(child.stderr.take().unwrap());
        }
        Running {
            child,
            log,
            terminate_first: false,
        }
    }

    /// Waits for a line with `ready` (or `failed`); panics with the log otherwise.
    pub(crate) fn wait_ready(
        &self,
        what: &str,
        ready: &str,
        failed: &[&str],
    ) -> Result<String, String> {
        let line = self
            .log
            .wait_for_from(0, Duration::from_secs(20), |l| {
                l.contains(ready) || failed.iter().any(|f| l.contains(f))
            })
            .unwrap_or_else(|| panic!("{what} did not start:\n{}", self.log.lines().join("\n")));
        if line.contains(ready) {
            Ok(line)
        } else {
            Err(line)
        }
    }
}

impl Running {
    /// Waits for the process to exit on its own; kills it and fails the test after `limit`.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
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
        if self.terminate_first && matches!(self.child.try_wait(), Ok(None)) {
            let pid = self.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let (tx, rx) = std::sync::mpsc::channel();
            let child = &mut self.child;
            std::thread::scope(|scope| {
                scope.spawn(move || {
                    let _ = tx.send(child.wait());
                });
                if rx.recv_timeout(Duration::from_secs(5)).is_err() {
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                }
            });
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real OpenSSH server on a free loopback port, with a temporary host key and one
/// authorized test key.
pub(crate) struct Sshd {
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
    /// Kills sshd and every process under it (its per-connection children start their own
    /// sessions, so a process-group kill would miss them): walks /proc for descendants.
    pub(crate) fn kill_all(&self) {
        let mut pids = vec![self.running.child.id()];
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...: the comm may hold spaces, so split after ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
            i += 1;
        }
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let status = Command::new("kill")
            .arg("-KILL")
            .args(&list)
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {list:?}");
    }

    pub(crate) fn start() -> Sshd {
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
            let running = Running::spawn(
                Command::new("/usr/sbin/sshd")
                    .args(["-D", "-e", "-f"])
                    .arg(&config),
                false,
            );
            match running.wait_ready("sshd", "Server listening", &["Cannot bind", "fatal"]) {
                Ok(_) => {
                    return Sshd {
                        port,
                        client_key: d.join("client_key"),
                        user,
                        running,
                        _dir: dir,
                    };
                }
                Err(l) if l.contains("Cannot bind") => continue,
                Err(l) => panic!(
                    "sshd did not start: {l}\n{}",
                    running.log.lines().join("\n")
                ),
            }
        }
        panic!("sshd could not bind a free port in 5 tries");
    }
}

/// A running `arcgate serve` with its own configuration directory.
pub(crate) struct Gate {
    pub addr: std::net::SocketAddr,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub running: Running,
}

pub(crate) const GATE_NAME: &str = "testhost";

impl Gate {
    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.path().join("localconfig.json")
    }

    pub(crate) fn keys_path(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    /// Starts a gate whose configuration allows `ports`; more `serve` flags in `extra`.
    pub(crate) fn start(ports: &[u16], extra: &[&str]) -> Gate {
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
    pub(crate) fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Gate {
        Gate::start_at("127.0.0.1:0", dir, extra)
    }

    /// Starts a gate listening on `listen`.
    pub(crate) fn start_at(listen: &str, dir: tempfile::TempDir, extra: &[&str]) -> Gate {
        let running = Gate::spawn_at(listen, dir.path(), extra);
        Gate::when_listening(running, dir)
    }

    /// Starts `arcgate serve` on `dir`'s files without waiting for it to listen.
    pub(crate) fn spawn_at(listen: &str, dir: &Path, extra: &[&str]) -> Running {
        let config = dir.join("localconfig.json");
        let mut cmd = Command::new(arcgate());
        cmd.arg("serve")
            .args(["--listen", listen, "--name", GATE_NAME, "--config"])
            .arg(&config)
            .args(extra)
            .env("RUST_LOG", "info");
        if !extra.contains(&"--cert") {
            cmd.arg("--cert")
                .arg(repo("certs-dev/server.pem"))
                .arg("--key")
                .arg(repo("certs-dev/server-key.pem"));
        }
        Running::spawn(&mut cmd, false)
    }

    /// Waits until a gate started by [`Gate::spawn_at`] says where it listens.
    pub(crate) fn when_listening(running: Running, dir: tempfile::TempDir) -> Gate {
        let line = running
            .wait_ready("the gate", "arcgate: listening on ", &["arcgate: "])
            .unwrap_or_else(|l| panic!("gate failed: {l}\n{}", running.log.lines().join("\n")));
        let addr = line
            .strip_prefix("arcgate: listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line}"));
        Gate {
            addr,
            name: GATE_NAME.to_string(),
            dir,
            running,
        }
    }

    /// The admin endpoint's address (the gate must run with `--admin 127.0.0.1:0`).
    pub(crate) fn admin_addr(&self) -> std::net::SocketAddr {
        let line = self
            .running
            .log
            .expect(&["arcgate: admin endpoint on http://"]);
        line.trim_start_matches("arcgate: admin endpoint on http://")
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }

    pub(crate) fn url(&self) -> String {
        format!("wss://localhost:{}/$hc/{}", self.addr.port(), self.name)
    }

    /// `arcgate config ...` on this gate's file.
    pub(crate) fn config(&self, args: &[&str]) -> Output {
        config_cmd(&self.config_path(), args)
    }

    /// `arcgate config ...` that must succeed.
    pub(crate) fn config_ok(&self, args: &[&str]) {
        let out = self.config(args);
        assert!(
            out.status.success(),
            "config {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A token from `arcgate token`, written to a file; returns the file.
    pub(crate) fn token_file(&self, extra: &[&str]) -> PathBuf {
        let token = self.token(extra);
        let path = self
            .dir
            .path()
            .join(format!("token-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, token).unwrap();
        path
    }

    /// A token from `arcgate token`.
    pub(crate) fn token(&self, extra: &[&str]) -> String {
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

    /// The first audit line of a session's end logged after line `from`.
    pub(crate) fn session_end_after(&self, from: usize) -> String {
        self.running
            .log
            .wait_for_from(from, Duration::from_secs(10), |l| {
                l.contains("session ended")
            })
            .unwrap_or_else(|| {
                panic!(
                    "no session end audited:\n{}",
                    self.running.log.lines().join("\n")
                )
            })
    }

    /// Sends SIGHUP-free configuration through the CLI and waits until the gate logs that
    /// it reloaded (any reload after `from`).
    pub(crate) fn wait_reload(&self, from: usize) {
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
pub(crate) fn config_cmd(config: &Path, args: &[&str]) -> Output {
    Command::new(arcgate())
        .arg("config")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

/// The `ProxyCommand` for `ssh`: `arcgate connect` with the dev CA and a token file.
pub(crate) fn proxy_command(gate: &Gate, token_file: &Path, extra: &str) -> String {
    format!(
        "'{}' connect '{}' -p %p --ca '{}' --token-file '{}' {extra}",
        arcgate(),
        gate.url(),
        repo("certs-dev/ca.pem").display(),
        token_file.display()
    )
}

/// An `ssh` command through the gate to `sshd`, running `remote` there.
pub(crate) fn ssh(sshd: &Sshd, proxy: &str, remote: &[&str]) -> Command {
    ssh_to(sshd.port, &sshd.client_key, &sshd.user, proxy, remote)
}

/// An `ssh` command through the gate to `port`, as `user` with `key`.
pub(crate) fn ssh_to(port: u16, key: &Path, user: &str, proxy: &str, remote: &[&str]) -> Command {
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
pub(crate) fn wait_with_deadline(
    mut child: Child,
    limit: Duration,
) -> (std::process::ExitStatus, Child) {
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

/// Asserts that a finished command exited with `code`; returns what it printed on stderr
/// (shown if the code is not the one expected).
pub(crate) fn exit_stderr(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    err
}

/// Everything a finished child printed on stderr.
pub(crate) fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Reads exactly `buf.len()` bytes from a running child's stdout.
pub(crate) fn read_stdout(child: &mut Child, buf: &mut [u8]) {
    child.stdout.as_mut().unwrap().read_exact(buf).unwrap();
}

/// Runs a command, returning (status success, stdout, stderr).
pub(crate) fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("command runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TLS client configuration that trusts only the development CA.
pub(crate) fn dev_ca_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in arcgate::transport::tls::load_certs(&repo("certs-dev/ca.pem")).unwrap() {
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

/// The gate's TLS configuration with the development certificate, for servers the tests
/// script by hand (a relay, an endpoint that never answers).
pub(crate) fn dev_server_config() -> Arc<rustls::ServerConfig> {
    let certs = Arc::new(
        arcgate::transport::tls::CertStore::load(
            &repo("certs-dev/server.pem"),
            &repo("certs-dev/server-key.pem"),
        )
        .unwrap(),
    );
    arcgate::transport::tls::server_config(certs)
}

/// `arcgate serve --listen 127.0.0.1:0 --config CONFIG` with the development certificate,
/// for runs that are expected to stop at once.
pub(crate) fn serve_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(arcgate());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--cert")
        .arg(repo("certs-dev/server.pem"))
        .arg("--key")
        .arg(repo("certs-dev/server-key.pem"));
    cmd
}

/// Spawns a command with stdin, stdout and stderr piped.
pub(crate) fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts")
}

/// Sends raw bytes over TLS (trusting the dev CA) and returns everything the gate answers
/// until it closes (bounded at 64 KiB).
pub(crate) fn raw_tls(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use rustls::pki_types::ServerName;
    let config = dev_ca_client_config();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The gate may answer (431, 400) and close before a huge request is all written.
    let _ = tls.write_all(request).and_then(|()| tls.flush());
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

/// Sends a request over TLS (trusting the dev CA) and returns the answer's head only, up to
/// its blank line; the connection is dropped after (a `101` session ends with it).
pub(crate) fn answer_head(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let conn = rustls::ClientConnection::new(
        dev_ca_client_config(),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && tls.read_exact(&mut byte).is_ok() {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A token for GATE_NAME signed with `key_name`'s `secret`, valid for an hour.
pub(crate) fn mint_token(key_name: &str, secret: &str) -> String {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    arcgate::token::mint(
        &format!("http://localhost/{GATE_NAME}/"),
        key_name,
        secret,
        expiry,
    )
}

/// A WebSocket upgrade request head for `path` with `headers`.
pub(crate) fn upgrade_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
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

/// `arcgate forward` in front of a gate, for one target port.
pub(crate) struct Forward {
    pub addr: std::net::SocketAddr,
    pub running: Running,
}

impl Forward {
    pub(crate) fn start(gate: &Gate, port: u16, token_file: &Path, extra: &[&str]) -> Forward {
        let running = Running::spawn(
            Command::new(arcgate())
                .args(["forward", "127.0.0.1:0"])
                .arg(gate.url())
                .args(["-p", &port.to_string(), "--ca"])
                .arg(repo("certs-dev/ca.pem"))
                .arg("--token-file")
                .arg(token_file)
                .args(extra)
                .env("RUST_LOG", "info"),
            false,
        );
        let line = running
            .wait_ready("forward", "arcgate: forwarding ", &["arcgate: "])
            .unwrap_or_else(|l| panic!("forward failed: {l}"));
        let addr = line
            .strip_prefix("arcgate: forwarding ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line}"));
        Forward { addr, running }
    }
}

/// A real RDP server (Debian's xrdp) on a free loopback port, its own ini, log to stderr.
pub(crate) struct Xrdp {
    pub port: u16,
    pub running: Running,
    _dir: tempfile::TempDir,
}

impl Xrdp {
    pub(crate) fn start() -> Xrdp {
        let dir = private_dir();
        let ini = std::fs::read_to_string("/etc/xrdp/xrdp.ini")
            .expect("/etc/xrdp/xrdp.ini (is xrdp installed?)");
        let ini: String = ini
            .lines()
            .map(|l| match l.split_once('=') {
                Some(("certificate", _)) => {
                    format!("certificate={}", repo("certs-dev/server.pem").display())
                }
                Some(("key_file", _)) => {
                    format!("key_file={}", repo("certs-dev/server-key.pem").display())
                }
                Some(("LogFile", _)) => "LogFile=/dev/stderr".to_string(),
                Some(("EnableSyslog", _)) => "EnableSyslog=false".to_string(),
                Some(("fork", _)) => "fork=false".to_string(),
                _ => l.to_string(),
            })
            .map(|l| l + "\n")
            .collect();
        let config = dir.path().join("xrdp.ini");
        std::fs::write(&config, ini).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let running = Running::spawn(
                Command::new("xrdp")
                    .args(["--nodaemon", "--config"])
                    .arg(&config)
                    .args(["--port", &format!("tcp://127.0.0.1:{port}")]),
                false,
            );
            match running.wait_ready("xrdp", "xrdp_listen_pp done", &["ERROR", "error"]) {
                Ok(_) => {
                    return Xrdp {
                        port,
                        running,
                        _dir: dir,
                    };
                }
                Err(l) => eprintln!("xrdp on {port} failed ({l}); trying another port"),
            }
        }
        panic!("xrdp could not start in 5 tries");
    }
}

/// A virtual X display (Xvfb) for X clients; the display number comes from `-displayfd`.
pub(crate) struct Xvfb {
    pub display: String,
    pub running: Running,
}

impl Xvfb {
    pub(crate) fn start() -> Xvfb {
        let mut running = Running::spawn(
            Command::new("Xvfb").args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "1024x768x24",
            ]),
            true,
        );
        running.terminate_first = true;
        // Xvfb writes the display number to the fd once it accepts clients.
        let line = running
            .log
            .wait_for_from(0, Duration::from_secs(20), |l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())
            })
            .expect("Xvfb printed its display number");
        Xvfb {
            display: format!(":{line}"),
            running,
        }
    }
}

/// A real HTTP CONNECT proxy (Debian's tinyproxy) on a free loopback port; it logs each
/// request, so a test can see that traffic went through it.
pub(crate) struct Tinyproxy {
    pub port: u16,
    pub running: Running,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub(crate) fn start(extra_config: &str) -> Tinyproxy {
        let dir = private_dir();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("tinyproxy.conf");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogLevel Info\n\
                     PidFile \"{}/tinyproxy.pid\"\nMaxClients 20\nAllow 127.0.0.1\n{extra_config}",
                    dir.path().display()
                ),
            )
            .unwrap();
            let running = Running::spawn(
                Command::new("tinyproxy").args(["-d", "-c"]).arg(&config),
                true,
            );
            match running.wait_ready(
                "tinyproxy",
                "Accepting connections",
                &["Could not create listening", "ERROR"],
            ) {
                Ok(_) => {
                    return Tinyproxy {
                        port,
                        running,
                        _dir: dir,
                    };
                }
                Err(l) => eprintln!("tinyproxy on {port} failed ({l}); trying another port"),
            }
        }
        panic!("tinyproxy could not start in 5 tries");
    }
}

/// `GET path` over plain HTTP; returns the status code and body.
pub(crate) fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_get_as(addr, path, &addr.to_string())
}

/// `GET path` over plain HTTP with `host` as the `Host` header.
pub(crate) fn http_get_as(addr: std::net::SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Bodies here are small and sent whole (Content-Length), never chunked.
    (code, body.to_string())
}

/// An echo service on a free loopback port, serving any number of connections.
pub(crate) fn echo_service() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut reader = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut reader, &mut conn);
            });
        }
    });
    port
}

/// An interactive `ssh ... cat` session through a gate: proof that other sessions keep
/// working while a test throws bad input at the same gate.
pub(crate) struct Witness {
    child: Child,
    to_cat: std::process::ChildStdin,
    from_cat: BufReader<std::process::ChildStdout>,
}

impl Witness {
    pub(crate) fn start(gate: &Gate, sshd: &Sshd) -> Witness {
        let token = gate.token_file(&[]);
        let mut child = spawn_piped(&mut ssh(sshd, &proxy_command(gate, &token, ""), &["cat"]));
        let to_cat = child.stdin.take().unwrap();
        let from_cat = BufReader::new(child.stdout.take().unwrap());
        let mut w = Witness {
            child,
            to_cat,
            from_cat,
        };
        w.check("started");
        w
    }

    /// Echoes a line through the session; fails the test if it does not come back.
    pub(crate) fn check(&mut self, label: &str) {
        let line = format!("still here after {label}");
        writeln!(self.to_cat, "{line}")
            .unwrap_or_else(|e| panic!("witness lost after {label}: {e}"));
        self.to_cat.flush().unwrap();
        let mut back = String::new();
        self.from_cat.read_line(&mut back).unwrap();
        assert_eq!(
            back.trim_end(),
            line,
            "the witness session broke after {label}"
        );
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebSocket session opened by hand over TLS, for sending frames no real client would.
pub(crate) struct RawWs {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl RawWs {
    /// Upgrades to a session to `port` through `gate`; fails unless the answer is 101.
    pub(crate) fn open(gate: &Gate, port: u16) -> RawWs {
        let conn = rustls::ClientConnection::new(
            dev_ca_client_config(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let tcp = std::net::TcpStream::connect(gate.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let token = gate.token(&[]);
        tls.write_all(&upgrade_request(
            &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}"),
            &[("ServiceBusAuthorization", &token)],
        ))
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        RawWs { tls }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).unwrap();
        self.tls.flush().unwrap();
    }

    /// Reads frames until a Close; its code, or `None` if the connection ends first.
    pub(crate) fn close_code(&mut self) -> Option<u16> {
        loop {
            let mut h = [0u8; 2];
            self.tls.read_exact(&mut h).ok()?;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                self.tls.read_exact(&mut l).ok()?;
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.tls.read_exact(&mut l).ok()?;
                len = u64::from_be_bytes(l);
            }
            let mut payload = vec![0u8; len as usize];
            self.tls.read_exact(&mut payload).ok()?;
            if h[0] & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless `masked` is false.
pub(crate) fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A process's resident memory, in KiB, from /proc.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Key names and secrets of the test relay: senders sign with the first, gates listen with
/// the second (each has only its right).
pub(crate) const RELAY_SEND_KEY: (&str, &str) = ("senders", "send-secret-0123456789abcdef");
pub(crate) const RELAY_LISTEN_KEY: (&str, &str) = ("gates", "listen-secret-0123456789abcdef");

/// A running `arcgate relay`.
pub(crate) struct RelayServer {
    pub addr: std::net::SocketAddr,
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl RelayServer {
    pub(crate) fn start() -> RelayServer {
        RelayServer::start_at("127.0.0.1:0", private_dir())
    }

    pub(crate) fn start_at(listen: &str, dir: tempfile::TempDir) -> RelayServer {
        let keys = dir.path().join("relay-keys.json");
        if !keys.exists() {
            write_secret(
                &keys,
                &serde_json::json!([
                    {"name": RELAY_SEND_KEY.0, "key": RELAY_SEND_KEY.1, "rights": ["send"]},
                    {"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]},
                ])
                .to_string(),
            );
        }
        let running = Running::spawn(
            Command::new(arcgate())
                .args(["relay", "--listen", listen, "--keys"])
                .arg(&keys)
                .arg("--cert")
                .arg(repo("certs-dev/server.pem"))
                .arg("--key")
                .arg(repo("certs-dev/server-key.pem"))
                .env("RUST_LOG", "info"),
            false,
        );
        let line = running
            .wait_ready("the relay", "arcgate: relay listening on ", &["arcgate: "])
            .unwrap_or_else(|l| panic!("relay failed: {l}"));
        let addr = line
            .trim_start_matches("arcgate: relay listening on ")
            .parse()
            .unwrap();
        RelayServer { addr, running, dir }
    }

    /// The URL gates listen on and senders connect to for `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        format!("wss://localhost:{}/$hc/{name}", self.addr.port())
    }

    /// A sender token for `name`, in a file.
    pub(crate) fn sender_token_file(&self, name: &str) -> PathBuf {
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let token = arcgate::token::mint(
            &format!("http://localhost/{name}/"),
            RELAY_SEND_KEY.0,
            RELAY_SEND_KEY.1,
            expiry,
        );
        let path = self
            .dir
            .path()
            .join(format!("sender-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, token).unwrap();
        path
    }
}

/// Writes a file only its owner may read (keys files insist).
pub(crate) fn write_secret(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

impl Gate {
    /// A gate in relay mode only (no inbound socket), listening on `relay` for GATE_NAME,
    /// with its listen token minted from the relay's listen key.
    pub(crate) fn start_relayed(ports: &[u16], relay_url: &str, extra: &[&str]) -> Gate {
        Gate::start_relayed_configured(ports, &[], relay_url, extra)
    }

    /// [`Gate::start_relayed`] with more configuration keys set first.
    pub(crate) fn start_relayed_configured(
        ports: &[u16],
        settings: &[(&str, &str)],
        relay_url: &str,
        extra: &[&str],
    ) -> Gate {
        let dir = private_dir();
        let config = dir.path().join("localconfig.json");
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let out = config_cmd(
            &config,
            &["set", "incomingconnections.ports", &list.join(",")],
        );
        assert!(out.status.success());
        for (key, value) in settings {
            assert!(config_cmd(&config, &["set", key, value]).status.success());
        }
        write_secret(
            &dir.path().join("keys.json"),
            &serde_json::json!([{"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1}])
                .to_string(),
        );
        let url = relay_url;
        let ca = repo("certs-dev/ca.pem");
        let mut cmd = Command::new(arcgate());
        cmd.arg("serve")
            .args(["--relay-only", "--name", GATE_NAME, "--config"])
            .arg(&config)
            .args([
                "--relay",
                url,
                "--relay-key",
                RELAY_LISTEN_KEY.0,
                "--relay-ca",
            ])
            .arg(&ca)
            .args(extra)
            // No certificate: relay-only accepts no TLS, so it must not need one (its
            // default path, certs-dev/, is relative and not in this directory).
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy");
        let running = Running::spawn(&mut cmd, false);
        running
            .wait_ready(
                "the relayed gate",
                "arcgate: attached to relay",
                &["arcgate: cannot", "error:"],
            )
            .unwrap_or_else(|l| {
                panic!(
                    "relayed gate failed: {l}\n{}",
                    running.log.lines().join("\n")
                )
            });
        // No inbound socket: the address is only a placeholder.
        Gate {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            name: GATE_NAME.to_string(),
            dir,
            running,
        }
    }
}

/// The `ProxyCommand` for `ssh` through a relay.
pub(crate) fn relay_proxy_command(relay: &RelayServer, token_file: &Path) -> String {
    format!(
        "'{}' connect '{}' -p %p --ca '{}' --token-file '{}'",
        arcgate(),
        relay.url(GATE_NAME),
        repo("certs-dev/ca.pem").display(),
        token_file.display()
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pushes 64 MiB of random bytes into `cat > file` over ssh through `proxy`, reads them back
/// with `cat file`, and checks both directions' SHA-256 against the original.
pub(crate) fn round_trip_64_mib(sshd: &Sshd, proxy: &str) {
    use sha2::{Digest, Sha256};
    let remote_dir = private_dir();
    let remote_file = remote_dir.path().join("blob");
    let mut data = vec![0u8; 64 << 20];
    rand::fill(&mut data[..]);
    let want = hex(&Sha256::digest(&data));

    let mut child = spawn_piped(&mut ssh(
        sshd,
        proxy,
        &["cat", ">", remote_file.to_str().unwrap()],
    ));
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "upload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let on_disk = std::fs::read(&remote_file).unwrap();
    assert_eq!(
        hex(&Sha256::digest(&on_disk)),
        want,
        "upload changed the bytes"
    );

    let out = ssh(sshd, proxy, &["cat", remote_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "download failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), 64 << 20);
    assert_eq!(
        hex(&Sha256::digest(&out.stdout)),
        want,
        "download changed the bytes"
    );
}

/// `arcgate connect URL -p PORT --ca <dev CA> --token-file TOKEN`.
pub(crate) fn connect_cmd(url: &str, port: u16, token: &Path) -> Command {
    let mut cmd = Command::new(arcgate());
    cmd.arg("connect")
        .arg(url)
        .args(["-p", &port.to_string(), "--ca"])
        .arg(repo("certs-dev/ca.pem"))
        .arg("--token-file")
        .arg(token);
    cmd
}

/// `ssh ... echo WORD` through `proxy` must succeed and print WORD.
pub(crate) fn assert_ssh_echo(sshd: &Sshd, proxy: &str, word: &str) {
    let (ok, out, err) = run(&mut ssh(sshd, proxy, &["echo", word]));
    assert!(ok, "{err}");
    assert_eq!(out, format!("{word}\n"));
}

/// The gate at `addr` still answers a new client, with the exact 404 status line.
pub(crate) fn assert_still_answers(addr: std::net::SocketAddr) {
    let answer = raw_tls(
        addr,
        &upgrade_request("/$hc/nobody?sb-hc-action=connect", &[]),
    );
    assert!(
        answer.starts_with("HTTP/1.1 404 Endpoint does not exist\r\n"),
        "the gate still answers: {answer}"
    );
}
