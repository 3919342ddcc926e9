//! A running `arcgate serve`, its files and commands, `forward` in front of it, tokens.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::*;

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
        let mut cmd = arcgate_cmd();
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
        write_token(self.dir.path(), &self.token(extra))
    }

    /// A token for this gate signed with its `default` key, valid until `expiry` (Unix
    /// seconds, maybe past): what `arcgate token` cannot make.
    pub(crate) fn token_until(&self, expiry: u64) -> String {
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.keys_path()).unwrap()).unwrap();
        let key = file
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "default")
            .expect("the generated default key");
        arcgate::token::mint(
            &format!("http://{GATE_NAME}/{GATE_NAME}/"),
            "default",
            key["key"].as_str().unwrap(),
            expiry,
        )
    }

    /// A token from `arcgate token`.
    pub(crate) fn token(&self, extra: &[&str]) -> String {
        let out = arcgate_cmd()
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
            &serde_json::json!([
                {"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]}
            ])
            .to_string(),
        );
        let mut cmd = relayed_serve_cmd(dir.path(), relay_url, extra);
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

/// `arcgate serve --relay-only --relay URL` for GATE_NAME with the configuration and keys
/// in `dir`, listening with the relay's listen key (`extra` may add to or override that).
pub(crate) fn relayed_serve_cmd(dir: &Path, relay_url: &str, extra: &[&str]) -> Command {
    let mut cmd = arcgate_cmd();
    cmd.arg("serve")
        .args(["--relay-only", "--name", GATE_NAME, "--config"])
        .arg(dir.join("localconfig.json"))
        .args(["--relay", relay_url, "--relay-ca"])
        .arg(repo("certs-dev/ca.pem"));
    if !extra.contains(&"--relay-token-file") && !extra.contains(&"--relay-key") {
        cmd.args(["--relay-key", RELAY_LISTEN_KEY.0]);
    }
    cmd.args(extra)
        // No certificate: relay-only accepts no TLS, so it must not need one (its default
        // path, certs-dev/, is relative and not in this directory).
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy");
    cmd
}

/// `arcgate config --config PATH ARGS`.
pub(crate) fn config_cmd(config: &Path, args: &[&str]) -> Output {
    arcgate_cmd()
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

/// `arcgate serve --listen 127.0.0.1:0 --config CONFIG` with the development certificate,
/// for runs that are expected to stop at once.
pub(crate) fn serve_cmd(config: &Path) -> Command {
    let mut cmd = arcgate_cmd();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--cert")
        .arg(repo("certs-dev/server.pem"))
        .arg("--key")
        .arg(repo("certs-dev/server-key.pem"));
    cmd
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

/// `arcgate forward` in front of a gate, for one target port.
pub(crate) struct Forward {
    pub addr: std::net::SocketAddr,
    pub running: Running,
}

impl Forward {
    pub(crate) fn start(gate: &Gate, port: u16, token_file: &Path, extra: &[&str]) -> Forward {
        let running = Running::spawn(
            arcgate_cmd()
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

/// Writes a file only its owner may read (keys files insist).
pub(crate) fn write_secret(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `arcgate connect URL -p PORT --ca <dev CA> --token-file TOKEN`.
pub(crate) fn connect_cmd(url: &str, port: u16, token: &Path) -> Command {
    let mut cmd = arcgate_cmd();
    cmd.arg("connect")
        .arg(url)
        .args(["-p", &port.to_string(), "--ca"])
        .arg(repo("certs-dev/ca.pem"))
        .arg("--token-file")
        .arg(token);
    cmd
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
