//! Socket helpers shared by the three listeners (the gate, `forward`, the admin endpoint).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long to wait after a failed accept: out of file descriptors (EMFILE) or memory is
/// usually momentary, and retrying at once would spin a core while changing nothing.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts the next connection; accept errors are logged and retried after a back-off,
/// never returned: one bad moment must not end a listener. Cancel-safe.
pub async fn accept(listener: &TcpListener, what: &'static str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}
