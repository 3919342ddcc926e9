//! A running `arcgate relay` and `ssh` through it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

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

    /// A relay with extra flags.
    pub(crate) fn start_with(extra: &[&str]) -> RelayServer {
        RelayServer::spawn("127.0.0.1:0", private_dir(), extra)
    }

    pub(crate) fn start_at(listen: &str, dir: tempfile::TempDir) -> RelayServer {
        RelayServer::spawn(listen, dir, &[])
    }

    /// A relay whose keys file holds `keys`, with extra flags.
    pub(crate) fn start_keys(keys: &serde_json::Value, extra: &[&str]) -> RelayServer {
        let dir = private_dir();
        write_secret(&dir.path().join("relay-keys.json"), &keys.to_string());
        RelayServer::spawn("127.0.0.1:0", dir, extra)
    }

    /// Replaces the keys file the way a careful editor does (a new file renamed over the
    /// old), and waits until the relay has read it.
    pub(crate) fn write_keys(&self, content: &str) {
        let from = self.running.log.len();
        let tmp = self.dir.path().join("relay-keys.json.new");
        write_secret(&tmp, content);
        std::fs::rename(&tmp, self.dir.path().join("relay-keys.json")).unwrap();
        self.running
            .log
            .wait_for_from(from, Duration::from_secs(10), |l| {
                l.contains("relay keys reload")
            })
            .unwrap_or_else(|| panic!("no reload in:\n{}", self.running.log.lines().join("\n")));
    }

    /// A token signed with `key` for `resource`, valid for an hour, in a file.
    pub(crate) fn token_file_as(&self, key: (&str, &str), resource: &str) -> PathBuf {
        let token = arcgate::token::mint(resource, key.0, key.1, unix_now() + 3600);
        write_token(self.dir.path(), &token)
    }

    fn spawn(listen: &str, dir: tempfile::TempDir, extra: &[&str]) -> RelayServer {
        let keys = dir.path().join("relay-keys.json");
        if !keys.exists() {
            write_secret(&keys, &relay_keys(&[]).to_string());
        }
        let running = Running::spawn(
            arcgate_cmd()
                .args(["relay", "--listen", listen, "--keys"])
                .arg(&keys)
                .arg("--cert")
                .arg(repo("certs-dev/server.pem"))
                .arg("--key")
                .arg(repo("certs-dev/server-key.pem"))
                .args(extra)
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
        self.token_file_as(RELAY_SEND_KEY, &format!("http://localhost/{name}/"))
    }
}

/// The test relay's two keys (one for senders, one for gates) and `more`.
pub(crate) fn relay_keys(more: &[serde_json::Value]) -> serde_json::Value {
    let mut keys = vec![
        serde_json::json!({"name": RELAY_SEND_KEY.0, "key": RELAY_SEND_KEY.1, "rights": ["send"]}),
        serde_json::json!({"name": RELAY_LISTEN_KEY.0, "key": RELAY_LISTEN_KEY.1, "rights": ["listen"]}),
    ];
    keys.extend(more.iter().cloned());
    serde_json::Value::Array(keys)
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
