//! Real third-party services: xrdp, Xvfb and tinyproxy, and an echo service.

use std::process::Command;
use std::time::Duration;

use super::*;

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
