//! The admin endpoint's HTTP serving, shared by the gate and the relay: plain HTTP on a
//! loopback address only, answering only to loopback host names, GET only, one request per
//! connection, at most [`MAX_CONNECTIONS`] at once. What each page says is the role's.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::{HeaderValue, Method, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;

/// How long an admin request may take to arrive: it is a local scrape, not a long poll.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the admin endpoint waits for a request's head: a local scrape sends it in one
/// write, so 2 s is ample, and a connection that sends nothing frees its place quickly.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// Admin connections served at once. A Prometheus scrape and an `arcgate status` need one
/// each; more wait in the kernel's backlog rather than in the gate's memory, so a local user
/// opening connections by the thousand costs the gate at most this many.
pub const MAX_CONNECTIONS: usize = 16;

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

/// A response with a body.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Whether a `Host` header names this endpoint by a loopback name: `localhost`, or a loopback
/// IP address, with our port or none. Anything else is refused, so that a web page that has
/// rebound its own DNS name to 127.0.0.1 cannot read `/sessions` from a browser on the host.
pub(crate) fn loopback_host(host: &str, port: u16) -> bool {
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

/// A value as a JSON body line.
pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes") + "\n"
}

/// Serves the admin endpoint on `listener` until `shutdown` resolves: at most
/// [`MAX_CONNECTIONS`] connections at once, one request each; `pages` answers a GET for a
/// path once the host name has been checked.
pub(crate) async fn serve<P>(listener: TcpListener, pages: P, shutdown: impl Future<Output = ()>)
where
    P: Fn(&str) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let pages = Arc::new(pages);
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
        let pages = pages.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = checked(&req, port, &*pages);
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

/// The host name and method checks, then the page.
fn checked<B>(
    req: &hyper::http::Request<B>,
    port: u16,
    pages: &dyn Fn(&str) -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
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
    pages(req.uri().path())
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
}
