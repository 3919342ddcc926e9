//! The admin endpoint (plain HTTP, loopback only, off unless `--admin`): `/metrics`,
//! `/healthz`, `/sessions` — and `arcgate status`, which reads it.
//!
//! It only reads the gate's state; nothing here changes policy or sessions.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use crate::gate::Gate;
use crate::gate::sessions::SessionInfo;

/// How long an admin request may take to arrive: it is a local scrape, not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the admin endpoint waits for a request's head: a local scrape sends it in one
/// write, so 2 s is ample, and a connection that sends nothing frees its place quickly.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Admin connections served at once. A Prometheus scrape and an `arcgate status` need one
/// each; more wait in the kernel's backlog rather than in the gate's memory, so a local user
/// opening connections by the thousand costs the gate at most this many.
pub const MAX_CONNECTIONS: usize = 16;

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
}

/// Whether `addr` may serve the admin endpoint: loopback only, because it has no
/// authentication and lists who is connected.
pub fn check_address(addr: &SocketAddr) -> Result<(), NotLoopback> {
    match addr.ip().is_loopback() {
        true => Ok(()),
        false => Err(NotLoopback(*addr)),
    }
}

/// An admin address that is not loopback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--admin {0}: the admin endpoint has no authentication and must listen on a loopback \
     address, e.g. 127.0.0.1:9443"
)]
pub struct NotLoopback(pub SocketAddr);

fn health(gate: &Gate) -> Health {
    let snapshot = gate.snapshot();
    let ok = snapshot.config.is_ok() && snapshot.keys.is_ok();
    Health {
        status: if ok { "ok" } else { "config_invalid" }.to_string(),
        policy: snapshot.summary(),
        loaded_at: crate::gate::audit::rfc3339(snapshot.loaded_at),
        generation: snapshot.generation,
        sessions: gate.sessions().len(),
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Whether a `Host` header names this endpoint by a loopback name: `localhost`, or a loopback
/// IP address, with our port or none. Anything else is refused, so that a web page that has
/// rebound its own DNS name to 127.0.0.1 cannot read `/sessions` from a browser on the host.
fn loopback_host(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        // `[::1]:9443`, `127.0.0.1:9443`, `localhost:9443`
        Some((name, p)) if !p.contains(']') && (!name.contains(':') || name.ends_with(']')) => {
            (name, Some(p))
        }
        _ => (host, None),
    };
    if given_port.is_some_and(|p| p.parse() != Ok(port)) {
        return false;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn route(gate: &Gate, req: &Request<Incoming>, port: u16) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !loopback_host(host, port) {
        return respond(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain",
            format!(
                "the admin endpoint answers only to loopback names; use \
                 http://127.0.0.1:{port}/ or http://localhost:{port}/\n"
            ),
        );
    }
    if req.method() != Method::GET {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is supported\n".into(),
        );
    }
    match req.uri().path() {
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

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes") + "\n"
}

/// Serves the admin endpoint on `listener` until `shutdown` resolves: at most
/// [`MAX_CONNECTIONS`] connections at once, one request each.
pub async fn serve(listener: TcpListener, gate: Arc<Gate>, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // The permit is taken before accepting: over the cap, connections wait unaccepted.
        let permit = tokio::select! {
            () = &mut shutdown => return,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = crate::transport::accept::accept(&listener, "admin") => accepted,
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = route(&gate, &req, port);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            // One request per connection: nothing idles between scrapes holding a permit.
            http.timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false);
            let conn = http.serve_connection(TokioIo::new(tcp), service);
            // A client that sends its request and then never reads the answer is bounded too.
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, conn).await;
            drop(permit);
        });
    }
}

/// Why `arcgate status` could not ask the admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nothing listens there.
    #[error(
        "cannot reach the admin endpoint at {addr}: {error}; is the gate running with --admin {addr}?"
    )]
    Unreachable {
        /// Where.
        addr: SocketAddr,
        /// Why (in the message, not a `source`, so that it is printed once).
        error: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the admin endpoint at {addr} broke the exchange: {error}")]
    Http {
        /// Where.
        addr: SocketAddr,
        /// Why.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("the admin endpoint at {addr} did not answer within {after:?}")]
    TimedOut {
        /// Where.
        addr: SocketAddr,
        /// The deadline.
        after: Duration,
    },
}

/// `GET path` on the admin endpoint at `addr`.
pub async fn fetch(addr: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), FetchError> {
    let http = |error: Box<dyn std::error::Error + Send + Sync>| FetchError::Http { addr, error };
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|error| FetchError::Unreachable { addr, error })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| http(e.into()))?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| http(e.into()))?;
        let res = sender.send_request(req).await.map_err(|e| http(e.into()))?;
        let status = res.status();
        // Bounded: a table of 10,000 sessions is a few MiB.
        let body = Limited::new(res.into_body(), 64 << 20)
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| FetchError::TimedOut {
            addr,
            after: REQUEST_TIMEOUT,
        })?
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
        "Policy:   {}\nLoaded:   {} (generation {})\nStatus:   {}\nSessions: {}\n",
        health.policy,
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
    fn only_loopback_addresses() {
        assert!(check_address(&"127.0.0.1:9443".parse().unwrap()).is_ok());
        assert!(check_address(&"[::1]:9443".parse().unwrap()).is_ok());
        assert!(check_address(&"0.0.0.0:9443".parse().unwrap()).is_err());
        assert!(check_address(&"192.0.2.1:9443".parse().unwrap()).is_err());
    }

    #[test]
    fn only_loopback_host_names_are_answered() {
        for ok in [
            "127.0.0.1:9443",
            "127.0.0.1",
            "127.1.2.3:9443",
            "localhost:9443",
            "LOCALHOST",
            "[::1]:9443",
            "[::1]",
        ] {
            assert!(loopback_host(ok, 9443), "{ok} refused");
        }
        for bad in [
            "",
            "evil.example:9443",
            "evil.example",
            "localhost.evil.example:9443",
            "127.0.0.1.nip.io:9443",
            "localhost:80",
            "127.0.0.1:9444",
            "192.0.2.1:9443",
            "[::2]:9443",
            "localhost:",
        ] {
            assert!(!loopback_host(bad, 9443), "{bad} accepted");
        }
    }

    #[test]
    fn status_table() {
        let health = Health {
            status: "ok".into(),
            policy: "config.mode=full".into(),
            loaded_at: "2026-11-29T12:00:00.000Z".into(),
            generation: 2,
            sessions: 1,
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
