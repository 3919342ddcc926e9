//! Shared helpers. Here: the binary under test and the one way to run it ([`arcgate_cmd`],
//! with a clean environment), temporary directories, child processes and their logs. Beside
//! it: `gate` (a running `arcgate serve`, its files, tokens, `forward`), `sshd` (a real
//! OpenSSH server and `ssh` through the gate), `relay` (a running `arcgate relay`), `wire`
//! (raw TLS requests, WebSocket frames, plain HTTP) and `services` (xrdp, Xvfb, tinyproxy).
//!
//! Nothing here sleeps to wait for readiness: servers are ready when they print that they
//! listen, and log assertions wait on the log lines themselves (with a deadline).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

mod gate;
mod relay;
mod services;
mod sshd;
mod wire;

pub(crate) use gate::*;
pub(crate) use relay::*;
pub(crate) use services::*;
pub(crate) use sshd::*;
pub(crate) use wire::*;

/// The binary under test (for `ProxyCommand` lines; run it with [`arcgate_cmd`]).
pub(crate) fn arcgate() -> &'static str {
    env!("CARGO_BIN_EXE_arcgate")
}

/// What the environment of the machine running the tests must not change: proxy settings
/// (a CI machine with `HTTPS_PROXY` set would route every client through it), the log level,
/// and the variables arcgate itself reads.
const INHERITED_ENV: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "RUST_LOG",
    "ARCGATE_CONFIG",
    "ARCGATE_TOKEN",
    "ARCGATE_ADMIN",
    "SSHPROXY_RELAY_INFO",
    "NOTIFY_SOCKET",
    "SUDO_USER",
];

/// Removes [`INHERITED_ENV`] from a command: every `arcgate` the tests run, and every `ssh`
/// (whose `ProxyCommand` is an `arcgate connect`), starts from the same environment. A test
/// that wants one of them sets it after this.
pub(crate) fn clean_env(cmd: &mut Command) -> &mut Command {
    for name in INHERITED_ENV {
        cmd.env_remove(name);
    }
    cmd
}

/// The one way the tests build an `arcgate` command: the binary under test with a clean
/// environment.
pub(crate) fn arcgate_cmd() -> Command {
    let mut cmd = Command::new(arcgate());
    clean_env(&mut cmd);
    cmd
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
/// The stdout of a command that must have succeeded; fails the test with both streams.
pub(crate) fn succeeded(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

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

/// Spawns a command with stdin, stdout and stderr piped.
pub(crate) fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command starts")
}

/// Writes `token` to a new file in `dir`; returns its path.
pub(crate) fn write_token(dir: &Path, token: &str) -> PathBuf {
    let path = dir.join(format!("token-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, token.trim()).unwrap();
    path
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

/// Held by the tests that change what the machine has installed (`/var/opt/arcgate`, the
/// Debian package and its user): they run one at a time.
pub(crate) fn machine_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
