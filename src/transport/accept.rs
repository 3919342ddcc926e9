//! Accepting connections: without spinning on errors ([`accept`], for every listener — the
//! gate, the relay, `forward`, the admin endpoint), and within the limits on connections in
//! their handshake ([`Handshakes`]: in all, and per source address, so that one source
//! cannot hold every place), which the gate and the relay share through `transport::serve`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long to wait after a failed accept: out of file descriptors (EMFILE) or memory is
/// usually momentary, and retrying at once would spin a core while changing nothing.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts the next connection; accept errors are logged and retried after a back-off,
/// never returned: one bad moment must not end a listener. Cancel-safe.
pub(crate) async fn accept(listener: &TcpListener, what: &'static str) -> (TcpStream, SocketAddr) {
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

/// The limits on connections in their handshake (TCP accepted, TLS and the HTTP request not
/// yet done): a total, waited for before accepting, and a cap per source address, checked
/// once the address is known.
pub(crate) struct Handshakes {
    total: Arc<Semaphore>,
    max_per_ip: usize,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A connection's place among those in their handshake; dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    _total: OwnedSemaphorePermit,
    _source: SourceCount,
}

#[derive(Debug)]
struct SourceCount {
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for SourceCount {
    fn drop(&mut self) {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl Handshakes {
    /// At most `max_total` connections in their handshake, `max_per_ip` from one address.
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Handshakes {
        Handshakes {
            total: Arc::new(Semaphore::new(max_total)),
            // At least one: a cap of 0 would refuse everyone and leave an entry per source.
            max_per_ip: max_per_ip.max(1),
            per_ip: Arc::default(),
        }
    }

    /// Waits for a place in the total: taken *before* accepting, so that over the limit new
    /// connections wait in the kernel's backlog, not in our memory. Cancel-safe.
    pub(crate) async fn reserve(&self) -> OwnedSemaphorePermit {
        self.total
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Counts an accepted connection from `ip` against its source's cap; `None` (the caller
    /// closes the connection) when that source already has `max_per_ip` in their handshake.
    pub(crate) fn admit(
        &self,
        total: OwnedSemaphorePermit,
        ip: IpAddr,
    ) -> Option<ConnectionPermit> {
        let ip = source(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionPermit {
            _total: total,
            _source: SourceCount {
                per_ip: self.per_ip.clone(),
                ip,
            },
        })
    }

    /// Connections from `ip`'s source now in their handshake.
    #[cfg(test)]
    pub(crate) fn in_handshake_from(&self, ip: IpAddr) -> usize {
        let per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        per_ip.get(&source(ip)).copied().unwrap_or(0)
    }
}

/// The source a handshake is counted against: an IPv4 address (also when it arrives mapped
/// into IPv6 on a dual-stack socket), or an IPv6 address's /64 — one host or LAN is usually
/// given a whole /64, so counting single IPv6 addresses would cap nothing.
pub(crate) fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// A connection's handshake place, shared by its stream (which gives it back when the
/// connection closes or is taken for a session) and the request being answered (a handler
/// that will hold the request a long time, like a relay sender waiting for its listener,
/// gives it back once the head is read and the connection is counted elsewhere).
#[derive(Debug, Clone)]
pub(crate) struct HandshakePlace(Arc<Mutex<Option<ConnectionPermit>>>);

impl HandshakePlace {
    pub(crate) fn new(permit: ConnectionPermit) -> HandshakePlace {
        HandshakePlace(Arc::new(Mutex::new(Some(permit))))
    }

    /// Gives the place back (once; later calls do nothing).
    pub(crate) fn release(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_source_cannot_take_every_handshake_place() {
        let limits = Handshakes::new(10, 2);
        let flooder: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let a = limits.admit(limits.reserve().await, flooder).unwrap();
        let b = limits.admit(limits.reserve().await, flooder).unwrap();
        assert!(limits.admit(limits.reserve().await, flooder).is_none());
        assert_eq!(limits.in_handshake_from(flooder), 2);
        assert_eq!(
            limits.total.available_permits(),
            8,
            "a refused one gives its place back"
        );
        let c = limits.admit(limits.reserve().await, other).unwrap();
        drop(a);
        assert_eq!(limits.in_handshake_from(flooder), 1);
        assert!(limits.admit(limits.reserve().await, flooder).is_some());
        drop((b, c));
        assert_eq!(limits.in_handshake_from(flooder), 0);
        assert!(
            limits.per_ip.lock().unwrap().is_empty(),
            "no entry left behind"
        );
        assert_eq!(limits.total.available_permits(), 10);
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let _one = limits
            .admit(limits.reserve().await, v6("2001:db8:1:2::1"))
            .unwrap();
        let _two = limits
            .admit(limits.reserve().await, v6("2001:db8:1:2::ffff"))
            .unwrap();
        assert!(
            limits
                .admit(limits.reserve().await, v6("2001:db8:1:2:3:4:5:6"))
                .is_none(),
            "one /64 is one source"
        );
        assert!(
            limits
                .admit(limits.reserve().await, v6("2001:db8:1:3::1"))
                .is_some()
        );
        let _m = limits
            .admit(limits.reserve().await, v6("::ffff:192.0.2.8"))
            .unwrap();
        assert_eq!(
            limits.in_handshake_from(other),
            1,
            "a mapped IPv4 address is that address"
        );
    }
}
