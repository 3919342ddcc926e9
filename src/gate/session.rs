//! An admitted session, after `101`: the bridge to the dialled service, the stop signal that
//! ends it when the gate stops or a new snapshot (policy, or the keys file for its grant) no
//! longer allows it, and its end record. Direct and relayed sessions run through the same
//! [`Gate::bridge_session`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::config::{Config, Port};
use crate::gate::Gate;
use crate::gate::admit::Admitted;
use crate::gate::audit;
use crate::policy::{self, Candidate, Denied, Permit};
use crate::token::{Grant, KeySet};
use crate::transport::bridge::{self, BridgeConfig, ClosedBy, Stop};
use crate::transport::serve;

/// What a bridged session is, for its records.
pub(crate) struct SessionMeta {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) port: Port,
}

impl Gate {
    /// A direct session: once the `101` has gone, the upgraded stream, bridged. Spawned as
    /// the session's task itself, taking the pending upgrade rather than awaiting it in a
    /// block around this: an async function keeps room for its arguments for its whole life,
    /// so each layer around the bridge holds its own copy of what it passed on.
    pub(crate) async fn session(
        self: Arc<Self>,
        upgrade: OnUpgrade,
        meta: SessionMeta,
        admitted: Admitted,
    ) {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::warn!(error = %e, "upgrade failed after 101");
                return;
            }
        };
        let cfg = &self.opts.bridge;
        match serve::take_stream(upgraded) {
            Ok((io, leftover)) => {
                self.bridge_session(io, &leftover, cfg, meta, admitted)
                    .await
            }
            Err(upgraded) => {
                let io = Box::new(TokioIo::new(upgraded));
                self.bridge_session(io, &[], cfg, meta, admitted).await
            }
        }
    }

    /// Bridges an admitted session to its dialled service until it ends, then records the
    /// end. Direct and relayed sessions both end here.
    ///
    /// Not an async function: what it is given is taken apart here, before the session's
    /// long wait, so that the future it returns holds only the parts the bridge and the end
    /// record need, not `admitted` whole beside them (an idle session's task is most of its
    /// memory, and jemalloc rounds it up to a size class).
    pub(crate) fn bridge_session<'a, S>(
        &'a self,
        io: S,
        leftover: &'a [u8],
        cfg: &'a BridgeConfig,
        meta: SessionMeta,
        admitted: Admitted,
    ) -> impl Future<Output = ()> + use<'a, S>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'a,
    {
        let Admitted {
            permit,
            grant,
            key,
            service,
            slot,
        } = admitted;
        let started = Instant::now();
        let live = slot.session().clone();
        let _ = service.set_nodelay(true);
        let (service_r, service_w) = service.into_split();
        // Boxed: by value, its 376 bytes were stored twice more in the session's task, which
        // put the task in the allocator's 4 KiB size class instead of 3 KiB (-Zprint-type-sizes).
        let stop = Box::pin(self.stop_signal(permit, grant, live.peer.ip(), live.started));
        async move {
            let counters = &live.counters;
            let outcome =
                bridge::run(io, leftover, service_r, service_w, cfg, stop, counters).await;
            let (closed_by, reason) = match &outcome.closed_by {
                ClosedBy::Peer => ("client", String::new()),
                ClosedBy::Local => ("service", String::new()),
                ClosedBy::Stopped(Stop::Revoked { why, .. }) => ("policy", why.clone()),
                ClosedBy::Stopped(Stop::Shutdown | Stop::Exiting) => {
                    ("gate", "gate shutting down".to_string())
                }
                ClosedBy::PingTimeout => ("gate", "client missed pings".to_string()),
                ClosedBy::IdleTimeout => ("gate", "idle timeout".to_string()),
                ClosedBy::PeerError(e) => ("gate", format!("client protocol error: {e}")),
                ClosedBy::ConnectionLost(e) => ("client", format!("connection lost: {e}")),
                ClosedBy::LocalError(e) => ("service", format!("service connection failed: {e}")),
            };
            // The slot goes first: once the end is recorded, the session is out of every
            // listing.
            drop(slot);
            self.audit.session_end(&audit::SessionEnd {
                subject: audit::Subject {
                    session: &meta.id,
                    peer: live.peer.to_string(),
                    name: &meta.name,
                    port: meta.port.get(),
                    key: &key,
                },
                bytes_from_client: counters.from_peer.load(Ordering::Relaxed),
                bytes_to_client: counters.to_peer.load(Ordering::Relaxed),
                duration_ms: started.elapsed().as_millis() as u64,
                closed_by,
                close_sent: outcome.sent,
                close_received: outcome.received.as_ref().map(|c| c.code),
                reason: &reason,
            });
        }
    }

    /// Resolves when the session must end: the gate stops, or the policy no longer allows it
    /// — a new snapshot (the configuration, or the keys file for the session's grant), or the
    /// moment [`policy::next_change`] names (its access window's end, its time limit), for
    /// which one timer waits: nothing polls.
    fn stop_signal(
        &self,
        permit: Permit,
        grant: Option<Grant>,
        source: std::net::IpAddr,
        started: SystemTime,
    ) -> impl Future<Output = Stop> + use<> {
        let mut live = self.live.clone();
        let mut stopping = self.stopping.subscribe();
        let clock = self.clock.clone();
        let candidate = Candidate {
            port: permit.port,
            key_ports: None,
            source,
            started: Some(started),
        };
        async move {
            let revoked = async {
                // The last valid pair in force. An invalid file refuses new connections but
                // leaves sessions alone (an editor's half-written save must not cut everyone
                // off) — and their window and time limit still run on the last valid one.
                let mut valid = None;
                let mut changes = true;
                loop {
                    if changes {
                        let snapshot = live.borrow_and_update().clone();
                        if let (Ok(config), Ok(keys)) = (&snapshot.config, &snapshot.keys) {
                            valid = Some((config.clone(), keys.clone()));
                        }
                    }
                    let mut due = None;
                    if let Some((config, keys)) = &valid {
                        let now = clock.now();
                        if let Err(stop) = still_allowed(config, keys, &grant, &candidate, now) {
                            return stop;
                        }
                        due = policy::next_change(config, started, now);
                    }
                    let wait = due.map(|t| clock.until(t));
                    tokio::select! {
                        changed = live.changed(), if changes => {
                            // No more snapshots (the gate is stopping): the timers still run.
                            changes = changed.is_ok();
                        }
                        () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
                        () = std::future::pending(), if !changes && wait.is_none() => {}
                    }
                }
            };
            tokio::select! {
                stop = revoked => stop,
                _ = stopping.wait_for(|s| *s) => Stop::Shutdown,
            }
        }
    }
}

/// Whether a live session is still allowed at `now`: its grant still backed by the keys, and
/// the policy's decision; the stop that ends it otherwise.
fn still_allowed(
    config: &Config,
    keys: &KeySet,
    grant: &Option<Grant>,
    candidate: &Candidate<'_>,
    now: SystemTime,
) -> Result<(), Stop> {
    let key_ports = match grant {
        None => None,
        Some(grant) => match keys.still_backs(grant) {
            Ok(key) => key.ports.as_ref(),
            Err(why) => {
                return Err(Stop::Revoked {
                    close_reason: "connection not allowed",
                    why: format!("revoked by policy change: key '{}' {why}", grant.key_name),
                });
            }
        },
    };
    let candidate = Candidate {
        key_ports,
        ..*candidate
    };
    match policy::decide(config, &candidate, now) {
        Ok(_) => Ok(()),
        Err(denied) => Err(Stop::Revoked {
            close_reason: denied.close_reason(),
            why: match denied {
                Denied::SessionTimeLimit { .. } | Denied::AccessWindowClosed { .. } => {
                    denied.close_reason().to_string()
                }
                _ => format!("revoked by policy change: {}", denied.audit_reason()),
            },
        }),
    }
}
