//! The bridge: one WebSocket session ⇄ one local byte stream, with exact half-close.
//!
//! Used by the gate (WebSocket ⇄ `127.0.0.1:{port}`) and by `arcgate connect` (WebSocket ⇄
//! stdin/stdout). Owns the session-level rules of SPEC §2: binary frames carry raw bytes; a
//! Close from the peer means "no more bytes from you" and becomes `shutdown(Write)` toward the
//! local side; when the local side ends, we send our own Close; pings keep the peer honest;
//! a stop signal (policy revocation, shutdown) closes with its code. Memory per session is
//! bounded: one read buffer per direction, no queue on the data path.
//!
//! It does not decide policy or know where the local stream goes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use crate::transport::ws::{
    CloseFrame, Event, FrameReader, FrameWriter, HEADROOM, Role, WsError, close,
};

/// How long ending our write side (flushing the last frames, TLS close_notify) may take
/// when the peer does not read: long enough for any live peer, short enough to free the
/// session's resources promptly.
const SHUTDOWN_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The least the local side is read into: a buffer shrinks back to this while reads stay
/// small, which is most of an interactive session's life.
const SMALL_CHUNK: usize = 256;

/// How a bridge behaves; the values come from `serve`/`connect` flags (SPEC §9).
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Which end of the WebSocket we are (masking).
    pub role: Role,
    /// Whether the peer's Close ends the session at once (a client: the gate only closes
    /// when the service is gone) or only our sending half (the gate's half-close: keep
    /// relaying the service's bytes until it ends).
    pub peer_close_ends_session: bool,
    /// Ping the peer after this long without hearing from it; `None` never pings.
    pub ping_interval: Option<Duration>,
    /// Drop the peer after this many unanswered pings.
    pub missed_pongs: u32,
    /// Largest data frame accepted.
    pub max_frame: u64,
    /// Bytes read at a time from either side; also the largest frame we send.
    pub buf_size: usize,
    /// End the session after this long with no data either way (pings do not count);
    /// `None`: never (SSH keeps its own keepalives).
    pub idle_timeout: Option<Duration>,
    /// After we send Close, how long we keep relaying the peer's bytes while waiting for its
    /// Close; `None` waits as long as the peer keeps the connection alive (the client: its
    /// stdin ending must not drop bytes still coming back).
    pub close_timeout: Option<Duration>,
}

/// Why a session is being stopped from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The policy no longer allows it: close 1008 `connection not allowed`.
    Revoked(String),
    /// The process is shutting down: close 1001.
    Shutdown,
    /// A client is exiting on a signal (ssh sends its `ProxyCommand` SIGHUP when it is done):
    /// close 1000, then TLS close_notify, so the gate records an orderly end by the client.
    Exiting,
}

/// Live byte counts, readable while the session runs.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes from the WebSocket peer to the local side.
    pub from_peer: AtomicU64,
    /// Bytes from the local side to the WebSocket peer.
    pub to_peer: AtomicU64,
}

/// Who ended the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosedBy {
    /// The WebSocket peer sent Close first (and, on the gate, the local side then ended).
    Peer,
    /// The local side ended first.
    Local,
    /// A [`Stop`] arrived.
    Stopped(Stop),
    /// The peer stopped answering pings.
    PingTimeout,
    /// No data either way for the idle timeout.
    IdleTimeout,
    /// The peer broke the protocol; we closed with the code in [`Outcome::sent`].
    PeerError(String),
    /// The WebSocket connection failed or ended without a Close.
    ConnectionLost(String),
    /// The local side failed.
    LocalError(String),
}

/// How a session ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Who ended it.
    pub closed_by: ClosedBy,
    /// The Close we sent, if any.
    pub sent: Option<u16>,
    /// The peer's Close, if one arrived.
    pub received: Option<CloseFrame>,
}

/// What the reading half tells the writing half.
enum FromReader {
    Ping(Bytes),
    Closed(CloseFrame),
    Failed(WsError),
    LocalWriteFailed(std::io::Error),
}

/// One message from the reading half to the writing half (both run in the session's task).
/// A later Ping replaces one not yet answered — RFC 6455 §5.5.3 lets an endpoint answer only
/// the most recent — so a peer flooding pings costs nothing held; the reading half's last
/// message (Closed, Failed…) is the last it posts. Lighter than a channel, whose first
/// block of slots was 1.8 KiB of every idle session (massif).
#[derive(Default)]
struct Mailbox {
    slot: std::sync::Mutex<Option<FromReader>>,
    posted: Notify,
}

impl Mailbox {
    fn post(&self, message: FromReader) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
        self.posted.notify_one();
    }

    async fn take(&self) -> FromReader {
        loop {
            if let Some(m) = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return m;
            }
            self.posted.notified().await;
        }
    }
}

/// Runs a session to its end. `stop` resolves when the session must end from outside; it is
/// `Unpin` (the gate boxes its signal once) so that the session's state holds a pointer to
/// it, not the whole future in each of the nested futures it passes through.
pub async fn run<S, LR, LW, F>(
    ws_io: S,
    leftover: &[u8],
    mut local_r: LR,
    local_w: LW,
    cfg: &BridgeConfig,
    stop: F,
    counters: &Counters,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
    LR: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
    F: Future<Output = Stop> + Unpin,
{
    let (ws_r, ws_w) = tokio::io::split(ws_io);
    let mut reader =
        FrameReader::new(ws_r, cfg.role, cfg.max_frame, cfg.buf_size).with_leftover(leftover);
    // A peer that takes no bytes for as long as it may go without answering pings is gone.
    let stall = cfg.ping_interval.map(|p| p * (cfg.missed_pongs + 1));
    let mut writer = FrameWriter::new(ws_w, cfg.role).with_stall_limit(stall);
    let mailbox = Mailbox::default();
    let heard = AtomicU64::new(0);

    let reading = async {
        let mut local_w = local_w;
        let last = loop {
            match reader.next().await {
                Ok(Event::Data(d)) => {
                    heard.fetch_add(1, Ordering::Relaxed);
                    let n = d.len() as u64;
                    let written = match local_w.write_all(d).await {
                        Ok(()) => local_w.flush().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = written {
                        break FromReader::LocalWriteFailed(e);
                    }
                    counters.from_peer.fetch_add(n, Ordering::Relaxed);
                }
                Ok(Event::Ping(p)) => {
                    heard.fetch_add(1, Ordering::Relaxed);
                    mailbox.post(FromReader::Ping(p));
                }
                Ok(Event::Pong) => {
                    heard.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Close(frame)) => {
                    // Half-close: the peer sends no more; the local side hears EOF.
                    let _ = local_w.shutdown().await;
                    break FromReader::Closed(frame);
                }
                Err(e) => break FromReader::Failed(e),
            }
        };
        mailbox.post(last);
    };

    let writing = async {
        // Starts small and grows while reads fill it: idle sessions stay cheap.
        let mut buf = vec![0u8; HEADROOM + SMALL_CHUNK.min(cfg.buf_size)];
        let mut stop = stop;
        let mut sent: Option<u16> = None;
        let mut received: Option<CloseFrame> = None;
        let mut reader_done = false;
        let far_future = Instant::now() + Duration::from_secs(86400 * 365);
        let mut close_deadline = far_future;
        let period = cfg.ping_interval.unwrap_or(Duration::from_secs(86400));
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle = cfg.idle_timeout.unwrap_or(Duration::from_secs(86400));
        let mut idle_deadline = Instant::now() + idle;
        let mut last_bytes = 0u64;
        let (mut last_heard, mut missed) = (0u64, 0u32);

        let outcome = |closed_by, sent, received| Outcome {
            closed_by,
            sent,
            received,
        };
        loop {
            tokio::select! {
                biased;
                why = &mut stop, if sent.is_none() => {
                    let (code, reason) = match &why {
                        Stop::Revoked(_) => (close::POLICY, "connection not allowed"),
                        Stop::Shutdown => (close::GOING_AWAY, "gate shutting down"),
                        Stop::Exiting => (close::NORMAL, "client exiting"),
                    };
                    let _ = writer.send_close(code, reason).await;
                    return (outcome(ClosedBy::Stopped(why), Some(code), received), writer);
                }
                msg = mailbox.take(), if !reader_done => match msg {
                    FromReader::Ping(p) => {
                        // No Pong after our Close (RFC 6455 §5.5.1).
                        if sent.is_some() {
                            continue;
                        }
                        if let Err(e) = writer.send_pong(&p).await {
                            let lost = ClosedBy::ConnectionLost(e.to_string());
                            return (outcome(lost, sent, received), writer);
                        }
                    }
                    FromReader::Closed(frame) => {
                        reader_done = true;
                        received = Some(frame);
                        if sent.is_some() {
                            return (outcome(ClosedBy::Local, sent, received), writer);
                        }
                        if cfg.peer_close_ends_session {
                            // The gate only closes once the service is gone: nothing more is
                            // coming, so answer and end rather than wait for stdin.
                            let _ = writer.send_close(close::NORMAL, "").await;
                            return (outcome(ClosedBy::Peer, Some(close::NORMAL), received), writer);
                        }
                    }
                    FromReader::Failed(e) => {
                        let code = e.close_code();
                        if let Some(code) = code {
                            let _ = writer.send_close(code, &e.to_string()).await;
                            let why = ClosedBy::PeerError(e.to_string());
                            return (outcome(why, Some(code), received), writer);
                        }
                        let why = if sent.is_some() {
                            ClosedBy::Local
                        } else {
                            ClosedBy::ConnectionLost(e.to_string())
                        };
                        return (outcome(why, sent, received), writer);
                    }
                    FromReader::LocalWriteFailed(e) => {
                        let _ = writer.send_close(close::INTERNAL, "local connection failed").await;
                        let why = ClosedBy::LocalError(e.to_string());
                        return (outcome(why, Some(close::INTERNAL), received), writer);
                    }
                },
                r = local_r.read(&mut buf[HEADROOM..]), if sent.is_none() => match r {
                    Ok(0) => {
                        if let Err(e) = writer.send_close(close::NORMAL, "").await {
                            // A peer that closed first may be gone by the time our answer
                            // is written: its orderly Close already said how it ended.
                            let why = match received {
                                Some(_) => ClosedBy::Peer,
                                None => ClosedBy::ConnectionLost(e.to_string()),
                            };
                            return (outcome(why, sent, received), writer);
                        }
                        sent = Some(close::NORMAL);
                        if received.is_some() {
                            return (outcome(ClosedBy::Peer, sent, received), writer);
                        }
                        if let Some(wait) = cfg.close_timeout {
                            close_deadline = Instant::now() + wait;
                        }
                    }
                    Ok(n) => {
                        let full = n == buf.len() - HEADROOM;
                        if let Err(e) = writer.send_binary(&mut buf, n).await {
                            let lost = ClosedBy::ConnectionLost(e.to_string());
                            return (outcome(lost, sent, received), writer);
                        }
                        counters.to_peer.fetch_add(n as u64, Ordering::Relaxed);
                        let size = buf.len() - HEADROOM;
                        if full && size < cfg.buf_size {
                            buf.resize(HEADROOM + (size * 4).min(cfg.buf_size), 0);
                        } else if n < size / 16 && size > SMALL_CHUNK {
                            // Small reads again (typing, not a transfer): give the room back,
                            // so that an idle session waits on a small buffer.
                            buf.truncate(HEADROOM + (size / 4).max(SMALL_CHUNK));
                            buf.shrink_to_fit();
                        }
                    }
                    Err(e) => {
                        let _ = writer.send_close(close::INTERNAL, "local connection failed").await;
                        let why = ClosedBy::LocalError(e.to_string());
                        return (outcome(why, Some(close::INTERNAL), received), writer);
                    }
                },
                _ = tokio::time::sleep_until(idle_deadline), if cfg.idle_timeout.is_some() && sent.is_none() => {
                    let bytes = counters.from_peer.load(Ordering::Relaxed)
                        + counters.to_peer.load(Ordering::Relaxed);
                    if bytes != last_bytes {
                        last_bytes = bytes;
                        idle_deadline = Instant::now() + idle;
                    } else {
                        let _ = writer.send_close(close::GOING_AWAY, "idle timeout").await;
                        let why = ClosedBy::IdleTimeout;
                        return (outcome(why, Some(close::GOING_AWAY), received), writer);
                    }
                }
                _ = tokio::time::sleep_until(close_deadline), if sent.is_some() => {
                    // The peer never answered our Close: it is done as far as we care.
                    return (outcome(ClosedBy::Local, sent, received), writer);
                }
                _ = ticker.tick(), if cfg.ping_interval.is_some() && !reader_done => {
                    let now_heard = heard.load(Ordering::Relaxed);
                    if now_heard != last_heard {
                        (last_heard, missed) = (now_heard, 0);
                    } else {
                        if missed >= cfg.missed_pongs {
                            return (outcome(ClosedBy::PingTimeout, sent, received), writer);
                        }
                        missed += 1;
                        if let Err(e) = writer.send_ping(b"arcgate").await {
                            let lost = ClosedBy::ConnectionLost(e.to_string());
                            return (outcome(lost, sent, received), writer);
                        }
                    }
                }
            }
        }
    };

    let reading = async {
        reading.await;
        std::future::pending::<()>().await
    };
    let (outcome, mut writer) = tokio::select! {
        done = writing => done,
        () = reading => unreachable!("the reading half never completes"),
    };
    // Best effort: flush our Close and end the write side (TLS close_notify); a peer that
    // does not read cannot hold the session open past the close timeout.
    let _ = tokio::time::timeout(SHUTDOWN_WRITE_TIMEOUT, writer.shutdown()).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_ping_flood_is_not_queued_and_data_still_flows() {
        let (peer, gate_side) = tokio::io::duplex(1 << 20);
        let (local, mut service) = tokio::io::duplex(1 << 16);
        let (local_r, local_w) = tokio::io::split(local);
        let cfg = BridgeConfig {
            role: Role::Server,
            peer_close_ends_session: false,
            ping_interval: None,
            missed_pongs: 3,
            max_frame: 1 << 20,
            buf_size: 64 * 1024,
            idle_timeout: None,
            close_timeout: Some(Duration::from_secs(5)),
        };
        let counters = Counters::default();
        let (peer_r, peer_w) = tokio::io::split(peer);
        let pings = 1000;
        let client = async move {
            let mut w = FrameWriter::new(peer_w, Role::Client);
            for _ in 0..pings {
                w.send_ping(b"p").await.unwrap();
            }
            let mut frame = vec![0u8; HEADROOM + 5];
            frame[HEADROOM..].copy_from_slice(b"hello");
            w.send_binary(&mut frame, 5).await.unwrap();
            w.send_close(close::NORMAL, "").await.unwrap();
            let mut r = FrameReader::new(peer_r, Role::Client, 1 << 20, 4096);
            let mut pongs = 0;
            loop {
                match r.next().await.unwrap() {
                    Event::Pong => pongs += 1,
                    Event::Close(c) => return (pongs, c.code),
                    other => panic!("unexpected {other:?}"),
                }
            }
        };
        let service_side = async move {
            let mut got = Vec::new();
            service.read_to_end(&mut got).await.unwrap();
            drop(service); // the service ends: the gate closes
            got
        };
        let stop = std::future::pending();
        let (outcome, (pongs, code), got) = tokio::join!(
            run(gate_side, &[], local_r, local_w, &cfg, stop, &counters),
            client,
            service_side
        );
        assert_eq!(got, b"hello", "the data arrives whole behind the flood");
        assert_eq!(code, close::NORMAL);
        assert_eq!(outcome.closed_by, ClosedBy::Peer);
        assert!(
            pongs < pings / 2,
            "{pongs} pongs for {pings} pings: unanswered pings must be replaced, not queued"
        );
    }
}
