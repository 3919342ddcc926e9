//! The audit trail: one record per decision and one per session end, with stable field
//! names, written to the log (target `arcgate::audit`) and, with `--audit-log FILE`, appended
//! to a file as JSON lines (flushed per line, reopened on `SIGHUP` for logrotate).
//!
//! The field names are an interface (README "Audit records"): add fields, never rename them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// Who and what a record is about: common to both kinds.
#[derive(Debug, Serialize)]
pub struct Subject<'a> {
    /// The session id (`sb-hc-id`, or one the gate made; empty if the request did not parse).
    pub session: &'a str,
    /// The client's address.
    pub peer: String,
    /// The gate name asked for (empty if the request did not parse).
    pub name: &'a str,
    /// The target port (0 if the request did not parse).
    pub port: u16,
    /// The token's key name (empty if no valid token).
    pub key: &'a str,
}

/// A decision on a connect request.
#[derive(Debug, Serialize)]
pub struct Decision<'a> {
    /// Who and what.
    #[serde(flatten)]
    pub subject: Subject<'a>,
    /// `allow`, `deny`, `unauthorized`, `not_found`, `bad_request`, `dial_failed`,
    /// `over_limit` or `unavailable`.
    pub decision: &'a str,
    /// Why, in words (`port_not_allowed`, `expired token`, ...).
    pub reason: &'a str,
    /// From the request's arrival to the decision, milliseconds.
    pub handshake_ms: f64,
}

/// The end of an allowed session.
#[derive(Debug, Serialize)]
pub struct SessionEnd<'a> {
    /// Who and what.
    #[serde(flatten)]
    pub subject: Subject<'a>,
    /// Bytes from the client to the service.
    pub bytes_from_client: u64,
    /// Bytes from the service to the client.
    pub bytes_to_client: u64,
    /// How long the session lasted, milliseconds.
    pub duration_ms: u64,
    /// `client`, `service`, `policy` or `gate`.
    pub closed_by: &'a str,
    /// The close code the gate sent, if any.
    pub close_sent: Option<u16>,
    /// The close code the client sent, if any.
    pub close_received: Option<u16>,
    /// Details: `revoked by policy change: port_not_allowed`, an error, or empty.
    pub reason: &'a str,
}

/// An administrator's answer to a session that waited for approval.
#[derive(Debug, Serialize)]
pub struct Approval<'a> {
    /// Who and what.
    #[serde(flatten)]
    pub subject: Subject<'a>,
    /// What `approve`/`deny` took.
    pub approval: &'a str,
    /// `approve` or `deny`.
    pub verdict: &'a str,
    /// The local user who answered (`root`, `root (sudo from alice)`).
    pub by: &'a str,
    /// How long the session had waited, seconds.
    pub waited_s: u64,
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    time: String,
    event: &'static str,
    #[serde(flatten)]
    record: &'a T,
}

/// Where audit records go besides the log.
#[derive(Debug)]
pub struct Audit {
    file: Option<(PathBuf, Mutex<File>)>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    // 0600: records name peers and keys.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Audit {
    /// Records go to the log, and to `file` when given (created 0600, appended).
    pub fn open(file: Option<&Path>) -> std::io::Result<Audit> {
        let file = match file {
            Some(p) => Some((p.to_path_buf(), Mutex::new(open_append(p)?))),
            None => None,
        };
        Ok(Audit { file })
    }

    /// Reopens the file (after logrotate moved it). On failure the old handle stays.
    pub fn reopen(&self) {
        if let Some((path, file)) = &self.file {
            match open_append(path) {
                Ok(f) => {
                    *file.lock().unwrap_or_else(|p| p.into_inner()) = f;
                    tracing::info!(path = %path.display(), "audit log reopened");
                }
                Err(e) => tracing::error!(path = %path.display(), error = %e,
                    "cannot reopen the audit log; still writing to the old file"),
            }
        }
    }

    fn append<T: Serialize>(&self, event: &'static str, record: &T) {
        let Some((path, file)) = &self.file else {
            return;
        };
        let line = Line {
            time: rfc3339_now(),
            event,
            record,
        };
        let mut bytes = serde_json::to_vec(&line).expect("audit records serialize");
        bytes.push(b'\n');
        // One write per line, under the lock: lines never interleave. A few hundred bytes to
        // a local file; not worth a thread hop.
        let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&bytes).and_then(|()| f.flush()) {
            tracing::error!(path = %path.display(), error = %e, "cannot write the audit log");
        }
    }

    /// Records a decision.
    pub fn decision(&self, d: &Decision<'_>) {
        tracing::info!(
            target: "arcgate::audit",
            event = "decision",
            session = d.subject.session,
            peer = %d.subject.peer,
            name = d.subject.name,
            port = d.subject.port,
            key = d.subject.key,
            decision = d.decision,
            reason = d.reason,
            handshake_ms = d.handshake_ms,
            "{}",
            if d.decision == "allow" { "connection allowed" } else { "connection refused" }
        );
        self.append("decision", d);
    }

    /// Records an administrator's answer.
    pub fn approval(&self, a: &Approval<'_>) {
        tracing::info!(
            target: "arcgate::audit",
            event = "approval",
            session = a.subject.session,
            peer = %a.subject.peer,
            name = a.subject.name,
            port = a.subject.port,
            key = a.subject.key,
            approval = a.approval,
            verdict = a.verdict,
            by = a.by,
            waited_s = a.waited_s,
            "session approval answered"
        );
        self.append("approval", a);
    }

    /// Records a session's end.
    pub fn session_end(&self, e: &SessionEnd<'_>) {
        tracing::info!(
            target: "arcgate::audit",
            event = "session_end",
            session = e.subject.session,
            peer = %e.subject.peer,
            name = e.subject.name,
            port = e.subject.port,
            key = e.subject.key,
            bytes_from_client = e.bytes_from_client,
            bytes_to_client = e.bytes_to_client,
            duration_ms = e.duration_ms,
            closed_by = e.closed_by,
            close_sent = e.close_sent,
            close_received = e.close_received,
            reason = e.reason,
            "session ended"
        );
        self.append("session_end", e);
    }
}

pub use crate::config::rfc3339;

/// Now as `2026-11-29T12:00:00.123Z`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_are_json_with_the_event_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(Some(&path)).unwrap();
        audit.decision(&Decision {
            subject: Subject {
                session: "s1",
                peer: "127.0.0.1:5".into(),
                name: "h",
                port: 22,
                key: "ops",
            },
            decision: "deny",
            reason: "port_not_allowed",
            handshake_ms: 1.5,
        });
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        audit.reopen();
        audit.decision(&Decision {
            subject: Subject {
                session: "s2",
                peer: "127.0.0.1:6".into(),
                name: "h",
                port: 22,
                key: "",
            },
            decision: "unauthorized",
            reason: "no token",
            handshake_ms: 0.1,
        });
        let old = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(old.trim()).unwrap();
        assert_eq!(v["event"], "decision");
        assert_eq!(v["session"], "s1");
        assert_eq!(v["reason"], "port_not_allowed");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        let v: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(v["session"], "s2", "after reopen, lines go to the new file");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
