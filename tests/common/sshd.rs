//! A real OpenSSH server, `ssh` through the gate, and checks made with it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::*;

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

/// The options every test's `ssh` runs with, after its own `-F`: no host-key prompts or
/// files, no passwords, only `key`, quiet.
pub(crate) fn quiet_ssh_options<'a>(cmd: &'a mut Command, key: &Path) -> &'a mut Command {
    cmd.args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ])
    .args([
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
    ])
    .arg("-i")
    .arg(key)
}

/// An `ssh` command through the gate to `sshd`, running `remote` there.
pub(crate) fn ssh(sshd: &Sshd, proxy: &str, remote: &[&str]) -> Command {
    ssh_to(sshd.port, &sshd.client_key, &sshd.user, proxy, remote)
}

/// An `ssh` command through the gate to `port`, as `user` with `key`.
pub(crate) fn ssh_to(port: u16, key: &Path, user: &str, proxy: &str, remote: &[&str]) -> Command {
    let mut cmd = Command::new("ssh");
    clean_env(&mut cmd)
        .args(["-F", "/dev/null"])
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

/// `ssh ... echo WORD` through `proxy` must succeed and print WORD.
pub(crate) fn assert_ssh_echo(sshd: &Sshd, proxy: &str, word: &str) {
    let (ok, out, err) = run(&mut ssh(sshd, proxy, &["echo", word]));
    assert!(ok, "{err}");
    assert_eq!(out, format!("{word}\n"));
}
