//! The table of live sessions: who is connected to what, since when, how many bytes — and the
//! session limits (total and per source IP), enforced when a slot is taken.
//!
//! Read by the admin endpoint (`/sessions`, `/metrics`) and by shutdown; written only through
//! [`SessionTable::take`] and the [`Slot`] it returns, which gives everything back on drop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::Notify;

use crate::transport::bridge::Counters;

/// One live session.
#[derive(Debug)]
pub struct LiveSession {
    /// Session id.
    pub id: String,
    /// Client address.
    pub peer: SocketAddr,
    /// Gate name.
    pub name: String,
    /// Target port.
    pub port: u16,
    /// Token key name.
    pub key: String,
    /// When it was allowed.
    pub started: SystemTime,
    /// Bytes so far, updated by the bridge.
    pub counters: Counters,
}

/// A live session as `/sessions` lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// Client address.
    pub peer: String,
    /// Gate name.
    pub name: String,
    /// Target port.
    pub port: u16,
    /// Token key name.
    pub key: String,
    /// RFC 3339 start time.
    pub started: String,
    /// Seconds since it started.
    pub age_seconds: u64,
    /// Bytes from the client to the service.
    pub bytes_from_client: u64,
    /// Bytes from the service to the client.
    pub bytes_to_client: u64,
}

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<u64, Arc<LiveSession>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// The live sessions and the limits on them.
#[derive(Debug)]
pub struct SessionTable {
    max_total: usize,
    max_per_ip: usize,
    next: AtomicU64,
    inner: Mutex<Inner>,
    ended_from_client: AtomicU64,
    ended_to_client: AtomicU64,
    all_ended: Notify,
}

/// Which limit refused a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The total.
    Total,
    /// The per-IP limit.
    PerIp,
}

/// A session's place in the table; dropping it ends the session's accounting.
#[derive(Debug)]
pub struct Slot {
    table: Arc<SessionTable>,
    key: u64,
    session: Arc<LiveSession>,
}

impl Slot {
    /// The session's live record.
    pub fn session(&self) -> &Arc<LiveSession> {
        &self.session
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let t = &self.table;
        let now_empty = {
            let mut inner = t.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.live.remove(&self.key);
            let ip = self.session.peer.ip();
            if let Some(n) = inner.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    inner.per_ip.remove(&ip);
                }
            }
            inner.live.is_empty()
        };
        let c = &self.session.counters;
        t.ended_from_client
            .fetch_add(c.from_peer.load(Ordering::Relaxed), Ordering::Relaxed);
        t.ended_to_client
            .fetch_add(c.to_peer.load(Ordering::Relaxed), Ordering::Relaxed);
        if now_empty {
            t.all_ended.notify_waiters();
        }
    }
}

impl SessionTable {
    /// A table allowing `max_total` sessions, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<SessionTable> {
        Arc::new(SessionTable {
            max_total,
            max_per_ip,
            next: AtomicU64::new(1),
            inner: Mutex::default(),
            ended_from_client: AtomicU64::new(0),
            ended_to_client: AtomicU64::new(0),
            all_ended: Notify::new(),
        })
    }

    /// Takes a slot for `session`, or says which limit is full.
    pub fn take(self: &Arc<Self>, session: LiveSession) -> Result<Slot, Limit> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.live.len() >= self.max_total {
            return Err(Limit::Total);
        }
        let ip = session.peer.ip();
        let n = inner.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Limit::PerIp);
        }
        *n += 1;
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let session = Arc::new(session);
        inner.live.insert(key, session.clone());
        Ok(Slot {
            table: self.clone(),
            key,
            session,
        })
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when the last session ends (immediately if there is none).
    pub async fn all_ended(&self) {
        loop {
            let notified = self.all_ended.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// The live sessions, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let sessions: Vec<Arc<LiveSession>> = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.live.values().cloned().collect()
        };
        let now = SystemTime::now();
        let mut out: Vec<SessionInfo> = sessions
            .iter()
            .map(|s| SessionInfo {
                id: s.id.clone(),
                peer: s.peer.to_string(),
                name: s.name.clone(),
                port: s.port,
                key: s.key.clone(),
                started: crate::gate::audit::rfc3339(s.started),
                age_seconds: now
                    .duration_since(s.started)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                bytes_from_client: s.counters.from_peer.load(Ordering::Relaxed),
                bytes_to_client: s.counters.to_peer.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        out
    }
}

impl crate::gate::metrics::LiveView for SessionTable {
    fn sessions_by_port(&self) -> Vec<(u16, u64)> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts: HashMap<u16, u64> = HashMap::new();
        for s in inner.live.values() {
            *counts.entry(s.port).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    fn bytes(&self) -> (u64, u64) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (mut from, mut to) = (
            self.ended_from_client.load(Ordering::Relaxed),
            self.ended_to_client.load(Ordering::Relaxed),
        );
        for s in inner.live.values() {
            from += s.counters.from_peer.load(Ordering::Relaxed);
            to += s.counters.to_peer.load(Ordering::Relaxed);
        }
        (from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(peer: &str, port: u16) -> LiveSession {
        LiveSession {
            id: format!("{peer}-{port}"),
            peer: peer.parse().unwrap(),
            name: "h".into(),
            port,
            key: "k".into(),
            started: SystemTime::now(),
            counters: Counters::default(),
        }
    }

    #[test]
    fn limits_and_accounting() {
        let table = SessionTable::new(3, 2);
        let a = table.take(session("127.0.0.1:1", 22)).unwrap();
        let b = table.take(session("127.0.0.1:2", 22)).unwrap();
        assert_eq!(
            table.take(session("127.0.0.1:3", 22)).err(),
            Some(Limit::PerIp)
        );
        let c = table.take(session("127.0.0.2:1", 3389)).unwrap();
        assert_eq!(
            table.take(session("127.0.0.3:1", 22)).err(),
            Some(Limit::Total)
        );
        a.session().counters.from_peer.store(10, Ordering::Relaxed);
        c.session().counters.to_peer.store(5, Ordering::Relaxed);
        use crate::gate::metrics::LiveView as _;
        let mut by_port = table.sessions_by_port();
        by_port.sort_unstable();
        assert_eq!(by_port, vec![(22, 2), (3389, 1)]);
        drop(a);
        assert_eq!(table.bytes(), (10, 5), "ended sessions still count");
        assert!(
            table.take(session("127.0.0.1:4", 22)).is_ok(),
            "the slot came back"
        );
        assert_eq!(table.list().len(), 2);
        drop((b, c));
    }
}
