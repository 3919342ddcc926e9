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
use std::time::Duration;

use hyper::http::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::gate::Gate;
use crate::gate::approvals::{Answer, Listing, MAX_STANDING};
use crate::gate::audit;
use crate::gate::sessions::SessionInfo;
use crate::transport::admin::{self, Asked, Listener, json, respond};

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

/// The gate's pages: what it is doing (GET), and the administrator's answers to the
/// sessions that wait for approval (POST, over the admin socket only).
fn route(gate: &Gate, asked: &Asked<'_>) -> Response<Full<Bytes>> {
    if asked.method == Method::POST {
        return answer_approval(gate, asked);
    }
    match asked.path {
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
        "/approvals" => respond(
            StatusCode::OK,
            "application/json",
            json(&gate.approvals.listing()),
        ),
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics, /healthz, /sessions or /approvals\n".into(),
        ),
    }
}

/// The header `arcgate sessions` sends with the name `sudo` ran it for (`SUDO_USER`): the
/// connection itself says root; this says which person.
pub const SUDO_USER_HEADER: &str = "Arcgate-Sudo-User";

/// `POST /approvals/ID/approve[?standing=SECONDS]` or `POST /approvals/ID/deny`.
fn answer_approval(gate: &Gate, asked: &Asked<'_>) -> Response<Full<Bytes>> {
    let mut parts = asked.path.trim_start_matches('/').split('/');
    let (Some("approvals"), Some(id), Some(verb), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; POST /approvals/ID/approve or /approvals/ID/deny\n".into(),
        );
    };
    let by = who(asked);
    let answer = match verb {
        "approve" => {
            let standing = match asked.query {
                None => None,
                Some(q) => match q.strip_prefix("standing=").map(str::parse::<u64>) {
                    Some(Ok(secs)) => Some(Duration::from_secs(secs).min(MAX_STANDING)),
                    _ => {
                        return respond(
                            StatusCode::BAD_REQUEST,
                            "text/plain",
                            "the only query is standing=SECONDS\n".into(),
                        );
                    }
                },
            };
            Answer::Approve {
                by: by.clone(),
                standing,
            }
        }
        "deny" => Answer::Deny { by: by.clone() },
        _ => {
            return respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found; approve or deny\n".into(),
            );
        }
    };
    match gate.approvals.answer(id, answer) {
        Ok(waiting) => {
            gate.audit.approval(&audit::Approval {
                subject: audit::Subject {
                    session: &waiting.session,
                    peer: waiting.peer.clone(),
                    name: gate.name(),
                    port: waiting.port,
                    key: &waiting.key,
                },
                approval: &waiting.id,
                verdict: verb,
                by: &by,
                waited_s: waiting.waiting_seconds,
            });
            respond(StatusCode::OK, "application/json", json(&waiting))
        }
        Err(e) => respond(StatusCode::NOT_FOUND, "text/plain", format!("{e}\n")),
    }
}

/// The local user who answered: the socket's peer (from the kernel), and the person `sudo`
/// ran it for when it says so.
fn who(asked: &Asked<'_>) -> String {
    let uid = asked.peer_uid.unwrap_or(u32::MAX);
    let name = user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    let sudo = asked
        .headers
        .get(SUDO_USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(crate::config::shorten)
        .filter(|s| !s.is_empty());
    match sudo {
        Some(person) if uid == 0 => format!("{name} (sudo from {person})"),
        _ => name,
    }
}

/// The name of `uid` in /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// Serves the gate's admin endpoint on `listener` until `shutdown` resolves.
pub async fn serve(listener: Listener, gate: Arc<Gate>, shutdown: impl Future<Output = ()>) {
    admin::serve(
        listener,
        move |asked: &Asked<'_>| route(&gate, asked),
        shutdown,
    )
    .await;
}

fn human_age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// The table `arcgate status` prints: the gate, its live sessions, and what waits for the
/// administrator's approval.
pub fn render_status(health: &Health, sessions: &[SessionInfo], approvals: &Listing) -> String {
    let mut out = render_sessions(health, sessions);
    if !approvals.waiting.is_empty() {
        let rows: Vec<Vec<String>> = approvals
            .waiting
            .iter()
            .map(|w| {
                vec![
                    w.id.clone(),
                    w.peer.clone(),
                    w.port.to_string(),
                    w.key.clone(),
                    human_age(w.waiting_seconds),
                ]
            })
            .collect();
        out.push_str(&format!(
            "\nWaiting for approval: {} (arcgate sessions approve ID, or deny ID)\n",
            rows.len()
        ));
        out.push_str(&table(
            &["APPROVAL", "PEER", "PORT", "KEY", "WAITING"],
            &rows,
            &[2],
        ));
    }
    for s in &approvals.standing {
        out.push_str(&format!(
            "Standing approval: key '{}' until {} (given by {})\n",
            s.key, s.until, s.by
        ));
    }
    out
}

/// Columns padded to their widest cell; `right` lists the right-aligned (numeric) ones.
fn table(head: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
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
            if right.contains(&i) {
                l.push_str(&format!("{c:>w$}", w = widths[i]));
            } else {
                l.push_str(&format!("{c:<w$}", w = widths[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut out = line(head);
    for r in rows {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        out.push_str(&line(&cells));
    }
    out
}

fn render_sessions(health: &Health, sessions: &[SessionInfo]) -> String {
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
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
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
    out.push('\n');
    // Numbers right-aligned, text left-aligned.
    out.push_str(&table(&head, &rows, &[2, 5, 6]));
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
        let waiting = Listing {
            waiting: vec![crate::gate::approvals::Waiting {
                id: "1a2b3c4d".into(),
                session: "s".into(),
                peer: "127.0.0.1:6000".into(),
                key: "ops".into(),
                port: 22,
                waiting_seconds: 7,
            }],
            standing: vec![],
        };
        let text = render_status(&health, &[s], &waiting);
        assert!(
            text.contains("APPROVAL  PEER            PORT  KEY  WAITING\n")
                && text.contains("1a2b3c4d  127.0.0.1:6000    22  ops  7s\n"),
            "{text}"
        );
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
