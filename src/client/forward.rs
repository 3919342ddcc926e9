//! `arcgate forward`: a local TCP listener whose every accepted connection becomes one tunnel
//! through the gate — how RDP clients (and anything else that wants a TCP port) reach a host.
//!
//! Owns the accept loop, per-connection tunnels, and stopping: on shutdown the listener
//! closes at once and open tunnels get a grace period to finish. A refused tunnel closes
//! only its own local connection; the listener keeps serving.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::client::{Connector, TokenSource};

/// What `forward` needs besides the listener.
#[derive(Debug)]
pub struct Forwarder {
    /// Opens tunnels to the gate.
    pub connector: Connector,
    /// Where each tunnel's token comes from (read per tunnel).
    pub token: TokenSource,
    /// Ping the gate after this long without hearing from it.
    pub ping_interval: Option<Duration>,
    /// After shutdown begins, how long open tunnels may continue.
    pub grace: Duration,
}

/// Serves `listener` until `shutdown` resolves, then waits up to the grace period for open
/// tunnels and returns how many were still open when it gave up.
pub async fn run(
    listener: TcpListener,
    forwarder: Arc<Forwarder>,
    shutdown: impl Future<Output = ()>,
) -> usize {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tunnels = JoinSet::new();
    loop {
        // Reap finished tunnels so the set holds only live ones.
        while tunnels.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = crate::transport::accept::accept(&listener, "forward") => accepted,
        };
        let span = tracing::info_span!("tunnel", %peer);
        tunnels.spawn(tunnel(tcp, forwarder.clone()).instrument(span));
    }
    drop(listener);
    // Only live tunnels count: refused ones ended already, and were only not reaped yet.
    while tunnels.try_join_next().is_some() {}
    let open = tunnels.len();
    if open > 0 {
        tracing::info!(open, grace = ?forwarder.grace, "listener closed; letting open tunnels finish");
        let all_done = async { while tunnels.join_next().await.is_some() {} };
        if tokio::time::timeout(forwarder.grace, all_done)
            .await
            .is_err()
        {
            tracing::warn!(
                open = tunnels.len(),
                "grace period over; closing open tunnels"
            );
        }
    }
    let left = tunnels.len();
    tunnels.shutdown().await;
    left
}

async fn tunnel(tcp: TcpStream, forwarder: Arc<Forwarder>) {
    let _ = tcp.set_nodelay(true);
    let token = match forwarder.token.read() {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "no token; closing the local connection");
            return;
        }
    };
    // Boxed: the dial's state (5 KiB: TLS, hyper's handshake) is freed once it is done,
    // instead of sizing this task's future, which an idle tunnel holds, for it.
    let tunnel = match Box::pin(forwarder.connector.open(token.as_deref())).await {
        Ok(t) => t,
        Err(e) => {
            // The local client sees its connection closed; this line says why.
            tracing::warn!(error = %e, "tunnel refused; closing the local connection");
            return;
        }
    };
    tracing::info!("tunnel open");
    let (local_r, local_w) = tcp.into_split();
    let never = std::future::pending();
    match tunnel
        .run(local_r, local_w, forwarder.ping_interval, never)
        .await
    {
        Ok(()) => tracing::info!("tunnel closed"),
        Err(e) => tracing::warn!(error = %e, "tunnel ended abnormally"),
    }
}
