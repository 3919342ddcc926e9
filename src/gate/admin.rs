//! The admin endpoint's pages — `/metrics`, `/healthz`, `/sessions` — on the gate's admin
//! socket (on by default) and on `--admin ADDR` (plain HTTP, loopback only), and the table
//! `arcgate status` prints from them.
//!
//! It only reads the gate's state; nothing here changes policy or sessions. The HTTP
//! serving (loopback names only, GET only, bounded connections) is `transport::admin`.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::gate::Gate;
use crate::gate::sessions::SessionInfo;
use crate::transport::admin::{self, Listener, json, respond};

/// `/healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// `ok`, or `config_invalid` (new connections refused).
    pub status: String,
    /// The policy in force, in one line.
    pub policy: String,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
    /// Reload generation.
    pub generation: u64,
    /// Live sessions.
    pub sessions: usize,
    /// The configuration file the policy came from.
    #[serde(default)]
    pub config: String,
    /// The gate's version and the commit it was built from.
    #[serde(default)]
    pub version: String,
}

fn health(gate: &Gate) -> Health {
    let snapshot = gate.snapshot();
    let ok = snapshot.config.is_ok() && snapshot.keys.is_ok();
    Health {
        status: if ok { "ok" } else { "config_invalid" }.to_string(),
        policy: snapshot.summary(),
        loaded_at: crate::gate::audit::rfc3339(snapshot.loaded_at),
        generation: snapshot.generation,
        sessions: gate.sessions().len(),
        config: gate.config_path().display().to_string(),
        version: gate.version().to_string(),
    }
}

/// The gate's pages.
fn route(gate: &Gate, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => respond(
            StatusCode::OK,
            crate::gate::metrics::CONTENT_TYPE,
            gate.metrics().render(),
        ),
        "/healthz" => {
            let h = health(gate);
            let status = if h.status == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(status, "application/json", json(&h))
        }
        "/sessions" => respond(
            StatusCode::OK,
            "application/json",
            json(&gate.sessions().list()),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics, /healthz or /sessions\n".into(),
        ),
    }
}

/// Serves the gate's admin endpoint on `listener` until `shutdown` resolves.
pub async fn serve(listener: Listener, gate: Arc<Gate>, shutdown: impl Future<Output = ()>) {
    admin::serve(listener, move |path| route(&gate, path), shutdown).await;
}

fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The table `arcgate status` prints.
pub fn render_status(health: &Health, sessions: &[SessionInfo]) -> String {
    let mut out = format!(
        "Version:  {}\nPolicy:   {}\nFrom:     {}\nLoaded:   {} (generation {})\n\
         Status:   {}\nSessions: {}\n",
        health.version,
        health.policy,
        health.config,
        health.loaded_at,
        health.generation,
        health.status,
        sessions.len()
    );
    if sessions.is_empty() {
        return out;
    }
    let rows: Vec<[String; 7]> = sessions
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.peer.clone(),
                s.port.to_string(),
                s.key.clone(),
                human_age(s.age_seconds),
                s.bytes_from_client.to_string(),
                s.bytes_to_client.to_string(),
            ]
        })
        .collect();
    let head = [
        "SESSION",
        "PEER",
        "PORT",
        "KEY",
        "AGE",
        "FROM CLIENT",
        "TO CLIENT",
    ];
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            // Numbers right-aligned, text left-aligned.
            if i >= 5 || i == 2 {
                l.push_str(&format!("{c:>w$}", w = widths[i]));
            } else {
                l.push_str(&format!("{c:<w$}", w = widths[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push('\n');
    out.push_str(&line(&head));
    for r in &rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let health = Health {
            status: "ok".into(),
            policy: "config.mode=full".into(),
            loaded_at: "2026-11-29T12:00:00.000Z".into(),
            generation: 2,
            sessions: 1,
            config: "/var/opt/arcgate/localconfig.json".into(),
            version: "0.1.0 (abc)".into(),
        };
        let s = SessionInfo {
            id: "abc".into(),
            peer: "127.0.0.1:5000".into(),
            name: "h".into(),
            port: 22,
            key: "default".into(),
            started: "2026-11-29T12:00:00.000Z".into(),
            age_seconds: 75,
            bytes_from_client: 1234,
            bytes_to_client: 5,
        };
        let text = render_status(&health, &[s]);
        assert!(text.contains("Policy:   config.mode=full\n"), "{text}");
        assert!(
            text.contains("From:     /var/opt/arcgate/localconfig.json\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "SESSION  PEER            PORT  KEY      AGE    FROM CLIENT  TO CLIENT\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "abc      127.0.0.1:5000    22  default  1m15s         1234          5\n"
            ),
            "{text}"
        );
    }
}
