//! The admin endpoint's HTTP serving, shared by the gate and the relay: plain HTTP on a
//! loopback address only (answering only to loopback host names) or on a Unix socket only its
//! owner and root can open ([`SocketListener`]), GET only, one request per connection, at most
//! [`MAX_CONNECTIONS`] at once. What each page says is the role's; the client side is
//! [`fetch`].

use std::fs;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

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

/// Where an admin endpoint listens: a loopback TCP address or a Unix socket.
#[derive(Debug)]
pub enum Listener {
    /// `--admin ADDR`.
    Tcp(TcpListener),
    /// The local socket `arcgate status` finds by default.
    Unix(SocketListener),
}

/// One admin request, as a page sees it.
#[derive(Debug)]
pub struct Asked<'a> {
    /// GET, or POST (over the admin socket only: a change).
    pub method: &'a Method,
    /// The path.
    pub path: &'a str,
    /// The query, if any.
    pub query: Option<&'a str>,
    /// The connecting user, over the admin socket (from the kernel, not from the request).
    pub peer_uid: Option<u32>,
    /// The request's headers.
    pub headers: &'a hyper::http::HeaderMap,
}

/// Serves the admin endpoint on `listener` until `shutdown` resolves: at most
/// [`MAX_CONNECTIONS`] connections at once, one request each; `pages` answers a request once
/// the host name (over TCP) and the method have been checked: GET anywhere, POST only over
/// the admin socket, where the kernel says who is asking.
pub(crate) async fn serve<P>(listener: Listener, pages: P, shutdown: impl Future<Output = ()>)
where
    P: Fn(&Asked<'_>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let pages = Arc::new(pages);
    let mut shutdown = std::pin::pin!(shutdown);
    // Over TCP the Host header must name our port on a loopback name; a Unix socket cannot
    // be reached from a browser, and its file's mode already said who may connect.
    let port = match &listener {
        Listener::Tcp(tcp) => Some(tcp.local_addr().map(|a| a.port()).unwrap_or(0)),
        Listener::Unix(_) => None,
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // The permit is taken before accepting: over the cap, connections wait unaccepted.
        let permit = tokio::select! {
            () = &mut shutdown => return,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let pages = pages.clone();
        match &listener {
            Listener::Tcp(tcp) => {
                let (conn, _) = tokio::select! {
                    () = &mut shutdown => return,
                    accepted = crate::transport::accept::accept(tcp, "admin") => accepted,
                };
                let answer = move |req: &Request<hyper::body::Incoming>| {
                    checked(req, Some(port.unwrap_or(0)), None, &*pages)
                };
                tokio::spawn(connection(conn, answer, permit));
            }
            Listener::Unix(unix) => {
                let (conn, uid) = tokio::select! {
                    () = &mut shutdown => return,
                    accepted = unix.accept() => accepted,
                };
                let answer = move |req: &Request<hyper::body::Incoming>| {
                    checked(req, None, Some(uid), &*pages)
                };
                tokio::spawn(connection(conn, answer, permit));
            }
        }
    }
}

/// One admin connection, one request.
async fn connection<IO, A>(io: IO, answer: A, permit: tokio::sync::OwnedSemaphorePermit)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: Fn(&Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let response = answer(&req);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // One request per connection: nothing idles between scrapes holding a permit.
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false);
    let conn = http.serve_connection(TokioIo::new(io), service);
    // A client that sends its request and then never reads the answer is bounded too.
    let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, conn).await;
    drop(permit);
}

/// A Unix socket for the admin endpoint, mode 0600: only the gate's own user and root can
/// connect. The file is removed when this is dropped, if it is still ours.
#[derive(Debug)]
pub struct SocketListener {
    listener: UnixListener,
    path: PathBuf,
    inode: u64,
}

/// Why the admin socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A running gate already answers there.
    #[error("another gate already answers on {0}; stop it, or pass --admin-socket PATH")]
    InUse(PathBuf),
    /// Creating or binding failed.
    #[error("cannot serve the admin socket {path}: {source}")]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl SocketListener {
    /// Binds `path`: under a temporary name first, so that the socket is never reachable
    /// before its mode is 0600, then renamed into place. A socket left by a gate that died is
    /// replaced; one a live gate answers on is not.
    pub fn bind(path: &Path) -> Result<SocketListener, SocketError> {
        let io_err = |source| SocketError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Ok(meta) = fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io_err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                )));
            }
            // Only a refusal means nobody answers; any other error (EACCES, a full backlog)
            // may be a live gate's socket, which is never taken over.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // Short: a socket's path must fit in 108 bytes, the temporary one's too.
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let tmp = dir.join(format!(".{name}.{tag}"));
        let listener = UnixListener::bind(&tmp).map_err(io_err)?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .and_then(|()| fs::rename(&tmp, path))
            .and_then(|()| fs::symlink_metadata(path));
        match placed {
            Ok(meta) => Ok(SocketListener {
                listener,
                path: path.to_path_buf(),
                inode: meta.ino(),
            }),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(io_err(e))
            }
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next connection from root or our own user; errors are logged and retried after a
    /// back-off, as for TCP. The peer's credentials are checked as well as the file's mode,
    /// which another user could have reached in the moment between bind and chmod.
    async fn accept(&self) -> (UnixStream, u32) {
        let me = rustix::process::geteuid().as_raw();
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => match stream.peer_cred() {
                    Ok(cred) if cred.uid() == 0 || cred.uid() == me => {
                        return (stream, cred.uid());
                    }
                    Ok(cred) => {
                        tracing::warn!(
                            uid = cred.uid(),
                            "admin socket: connection from another user refused"
                        );
                    }
                    Err(error) => tracing::warn!(%error, "admin socket: peer unknown; refused"),
                },
                Err(e) => {
                    tracing::warn!(listener = "admin socket", error = %e, "accept failed; backing off");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for SocketListener {
    fn drop(&mut self) {
        // Only our own file: a gate started since may have put its socket there.
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Where an admin endpoint is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `--admin ADDR`.
    Tcp(SocketAddr),
    /// The admin socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "http://{addr}/"),
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why an admin endpoint could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Nothing listens there, or we may not connect.
    #[error("cannot reach the admin endpoint at {at}: {error}; {hint}")]
    Unreachable {
        /// Where.
        at: Endpoint,
        /// Why (in the message, not a `source`, so that it is printed once).
        error: io::Error,
        /// What to do about it.
        hint: String,
    },
    /// The HTTP exchange failed.
    #[error("the admin endpoint at {at} broke the exchange: {error}")]
    Http {
        /// Where.
        at: Endpoint,
        /// Why.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("the admin endpoint at {at} did not answer within {after:?}")]
    TimedOut {
        /// Where.
        at: Endpoint,
        /// The deadline.
        after: Duration,
    },
}

/// `GET path` on the admin endpoint `at`.
pub async fn fetch(at: &Endpoint, path: &str) -> Result<(StatusCode, Bytes), FetchError> {
    ask(at, Method::GET, path, &[]).await
}

/// `method path` with `headers` on the admin endpoint `at`.
pub async fn ask(
    at: &Endpoint,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Bytes), FetchError> {
    let work = async {
        match at {
            Endpoint::Tcp(addr) => {
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|error| unreachable(at, error))?;
                exchange(at, tcp, &addr.to_string(), &method, path, headers).await
            }
            Endpoint::Unix(socket) => {
                let unix = UnixStream::connect(socket)
                    .await
                    .map_err(|error| unreachable(at, error))?;
                exchange(at, unix, "localhost", &method, path, headers).await
            }
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work)
        .await
        .map_err(|_| FetchError::TimedOut {
            at: at.clone(),
            after: REQUEST_TIMEOUT,
        })?
}

fn unreachable(at: &Endpoint, error: io::Error) -> FetchError {
    let hint = match (at, error.kind()) {
        (Endpoint::Unix(_), io::ErrorKind::PermissionDenied) => {
            "only root and the gate's own user may ask it: run this as root".to_string()
        }
        (Endpoint::Unix(_), _) => concat!(
            "is the gate running (systemctl status arcgate)? For a gate with another ",
            "configuration, pass the same --config"
        )
        .to_string(),
        (Endpoint::Tcp(addr), _) => format!("is the gate running with --admin {addr}?"),
    };
    FetchError::Unreachable {
        at: at.clone(),
        error,
        hint,
    }
}

async fn exchange<IO>(
    at: &Endpoint,
    io: IO,
    host: &str,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Bytes), FetchError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |error: Box<dyn std::error::Error + Send + Sync>| FetchError::Http {
        at: at.clone(),
        error,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http(e.into()))?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, host);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
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
}

/// The host name and method checks, then the page.
fn checked<B>(
    req: &hyper::http::Request<B>,
    port: Option<u16>,
    peer_uid: Option<u32>,
    pages: &dyn Fn(&Asked<'_>) -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(port) = port
        && !loopback_host(host, port)
    {
        return respond(
            StatusCode::MISDIRECTED_REQUEST,
            "text/plain",
            format!(
                "the admin endpoint answers only to loopback names; use \
                 http://127.0.0.1:{port}/ or http://localhost:{port}/\n"
            ),
        );
    }
    let allowed = match *req.method() {
        Method::GET => true,
        // A change needs to know who asks: only the admin socket can say.
        Method::POST => peer_uid.is_some(),
        _ => false,
    };
    if !allowed {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET is supported here; changes (arcgate sessions approve/deny) go through \
             the gate's admin socket\n"
                .into(),
        );
    }
    pages(&Asked {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        peer_uid,
        headers: req.headers(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_admin_socket_is_private_replaces_a_dead_one_and_never_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        // A socket file left by a gate that was killed: nothing answers on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let socket = SocketListener::bind(&path).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(matches!(
            SocketListener::bind(&path),
            Err(SocketError::InUse(p)) if p == path
        ));
        let serving = tokio::spawn(serve(
            Listener::Unix(socket),
            |asked: &Asked<'_>| respond(StatusCode::OK, "text/plain", format!("{}\n", asked.path)),
            std::future::pending(),
        ));
        let at = Endpoint::Unix(path.clone());
        let (code, body) = fetch(&at, "/healthz").await.unwrap();
        assert_eq!((code, &body[..]), (StatusCode::OK, &b"/healthz\n"[..]));
        serving.abort();
        let _ = serving.await;
        assert!(!path.exists(), "a gate that stops takes its socket away");
        let err = fetch(&at, "/healthz").await.unwrap_err().to_string();
        assert!(err.contains("is the gate running"), "{err}");
        // Only the gate's own files are ever replaced.
        fs::write(&path, b"not a socket").unwrap();
        assert!(SocketListener::bind(&path).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"not a socket");
    }

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
