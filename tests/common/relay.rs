//! A running `arcgate relay` and `ssh` through it.

use std::path::{Path, PathBuf};

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

    fn spawn(listen: &str, dir: tempfile::TempDir, extra: &[&str]) -> RelayServer {
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
