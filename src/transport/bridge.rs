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
use tokio::time::Instant;

use crate::transport::keepalive::{Beat, Keepalive};
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
    /// The policy no longer allows it: close 1008 with `close_reason` (`connection not
    /// allowed`, `session time limit reached`, ...); `why` is for the session's record.
    Revoked {
        /// The close frame's reason.
        close_reason: &'static str,
        /// What ended it, for the audit record.
        why: String,
    },
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

/// What the writing half waits for; each has one handler in [`Session`].
enum Wake {
    /// A stop signal from outside.
    Stop(Stop),
    /// A message from the reading half.
    Reader(FromReader),
    /// A read from the local side.
    Local(std::io::Result<usize>),
    /// The idle deadline passed.
    Idle,
    /// The peer did not answer our Close in time.
    CloseTimedOut,
    /// A keepalive tick.
    Beat(Beat),
}

/// What a handler says: go on, or the session ended so.
enum Flow {
    Continue,
    End(ClosedBy),
}

/// The writing half's state: one handler per [`Wake`], and the Close sent and received.
struct Session<'a, W> {
    cfg: &'a BridgeConfig,
    counters: &'a Counters,
    writer: FrameWriter<W>,
    /// The local side's bytes go out of this, starting small and growing while reads fill
    /// it: idle sessions stay cheap.
    buf: Vec<u8>,
    sent: Option<u16>,
    received: Option<CloseFrame>,
    reader_done: bool,
    close_deadline: Instant,
    idle_deadline: Instant,
    last_bytes: u64,
}

impl<W: AsyncWrite + Unpin> Session<'_, W> {
    /// Sends our Close with `code`; `Flow::End(why)` whether or not it could be written.
    async fn close_and_end(&mut self, code: u16, reason: &str, why: ClosedBy) -> Flow {
        let _ = self.writer.send_close(code, reason).await;
        self.sent = Some(code);
        Flow::End(why)
    }

    fn lost(e: std::io::Error) -> Flow {
        Flow::End(ClosedBy::ConnectionLost(e.to_string()))
    }

    async fn on(&mut self, wake: Wake) -> Flow {
        match wake {
            Wake::Stop(why) => self.on_stop(why).await,
            Wake::Reader(message) => self.on_reader(message).await,
            Wake::Local(Ok(0)) => self.on_local_end().await,
            Wake::Local(Ok(n)) => self.on_local_data(n).await,
            Wake::Local(Err(e)) => {
                let why = ClosedBy::LocalError(e.to_string());
                self.close_and_end(close::INTERNAL, "local connection failed", why)
                    .await
            }
            Wake::Idle => self.on_idle().await,
            // The peer never answered our Close: it is done as far as we care.
            Wake::CloseTimedOut => Flow::End(ClosedBy::Local),
            Wake::Beat(beat) => self.on_beat(beat).await,
        }
    }

    async fn on_stop(&mut self, why: Stop) -> Flow {
        let (code, reason) = match &why {
            Stop::Revoked { close_reason, .. } => (close::POLICY, *close_reason),
            Stop::Shutdown => (close::GOING_AWAY, "gate shutting down"),
            Stop::Exiting => (close::NORMAL, "client exiting"),
        };
        self.close_and_end(code, reason, ClosedBy::Stopped(why))
            .await
    }

    async fn on_reader(&mut self, message: FromReader) -> Flow {
        match message {
            // No Pong after our Close (RFC 6455 §5.5.1).
            FromReader::Ping(_) if self.sent.is_some() => Flow::Continue,
            FromReader::Ping(p) => match self.writer.send_pong(&p).await {
                Ok(()) => Flow::Continue,
                Err(e) => Self::lost(e),
            },
            FromReader::Closed(frame) => {
                self.reader_done = true;
                self.received = Some(frame);
                if self.sent.is_some() {
                    Flow::End(ClosedBy::Local)
                } else if self.cfg.peer_close_ends_session {
                    // The gate only closes once the service is gone: nothing more is coming,
                    // so answer and end rather than wait for stdin.
                    self.close_and_end(close::NORMAL, "", ClosedBy::Peer).await
                } else {
                    Flow::Continue
                }
            }
            FromReader::Failed(e) => match e.close_code() {
                Some(code) => {
                    let why = ClosedBy::PeerError(e.to_string());
                    self.close_and_end(code, &e.to_string(), why).await
                }
                None if self.sent.is_some() => Flow::End(ClosedBy::Local),
                None => Flow::End(ClosedBy::ConnectionLost(e.to_string())),
            },
            FromReader::LocalWriteFailed(e) => {
                let why = ClosedBy::LocalError(e.to_string());
                self.close_and_end(close::INTERNAL, "local connection failed", why)
                    .await
            }
        }
    }

    /// The local side ended: our Close, then wait for the peer's (or end, if it came).
    async fn on_local_end(&mut self) -> Flow {
        if let Err(e) = self.writer.send_close(close::NORMAL, "").await {
            // A peer that closed first may be gone by the time our answer is written: its
            // orderly Close already said how it ended.
            return match self.received {
                Some(_) => Flow::End(ClosedBy::Peer),
                None => Self::lost(e),
            };
        }
        self.sent = Some(close::NORMAL);
        if self.received.is_some() {
            return Flow::End(ClosedBy::Peer);
        }
        if let Some(wait) = self.cfg.close_timeout {
            self.close_deadline = Instant::now() + wait;
        }
        Flow::Continue
    }

    async fn on_local_data(&mut self, n: usize) -> Flow {
        let full = n == self.buf.len() - HEADROOM;
        if let Err(e) = self.writer.send_binary(&mut self.buf, n).await {
            return Self::lost(e);
        }
        self.counters.to_peer.fetch_add(n as u64, Ordering::Relaxed);
        let size = self.buf.len() - HEADROOM;
        if full && size < self.cfg.buf_size {
            self.buf
                .resize(HEADROOM + (size * 4).min(self.cfg.buf_size), 0);
        } else if n < size / 16 && size > SMALL_CHUNK {
            // Small reads again (typing, not a transfer): give the room back, so that an
            // idle session waits on a small buffer.
            self.buf.truncate(HEADROOM + (size / 4).max(SMALL_CHUNK));
            self.buf.shrink_to_fit();
        }
        Flow::Continue
    }

    async fn on_idle(&mut self) -> Flow {
        let bytes = self.counters.from_peer.load(Ordering::Relaxed)
            + self.counters.to_peer.load(Ordering::Relaxed);
        if bytes != self.last_bytes {
            self.last_bytes = bytes;
            self.idle_deadline = Instant::now() + self.cfg.idle_timeout.unwrap_or(FAR);
            return Flow::Continue;
        }
        self.close_and_end(close::GOING_AWAY, "idle timeout", ClosedBy::IdleTimeout)
            .await
    }

    async fn on_beat(&mut self, beat: Beat) -> Flow {
        match beat {
            Beat::Heard => Flow::Continue,
            Beat::Gone => Flow::End(ClosedBy::PingTimeout),
            Beat::Ping => match self.writer.send_ping(b"arcgate").await {
                Ok(()) => Flow::Continue,
                Err(e) => Self::lost(e),
            },
        }
    }
}

/// The reading half: the peer's frames, their bytes written to the local side, everything
/// else posted to the writing half; its last message says how the peer's side ended.
async fn read_peer<R, LW>(
    reader: &mut FrameReader<R>,
    mut local_w: LW,
    mailbox: &Mailbox,
    heard: &AtomicU64,
    counters: &Counters,
) where
    R: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
{
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
            // Only a relaying reader reports frame starts; the bridge's never does.
            Ok(Event::FrameStart(_)) => {}
            Ok(Event::Close(frame)) => {
                // Half-close: the peer sends no more; the local side hears EOF.
                let _ = local_w.shutdown().await;
                break FromReader::Closed(frame);
            }
            Err(e) => break FromReader::Failed(e),
        }
    };
    mailbox.post(last);
}

/// A deadline that never comes, for timers that are off.
const FAR: Duration = Duration::from_secs(86400 * 365);

/// Runs a session to its end. `stop` resolves when the session must end from outside; it is
/// `Unpin` (the gate boxes its signal once) so that the session's state holds a pointer to
/// it, not the whole future in each of the nested futures it passes through.
///
/// Two halves in one task: the reading half takes the peer's frames and writes their bytes
/// to the local side; the writing half (`Session`) reads the local side, answers what the
/// reading half posts, and keeps the timers — one handler per event.
pub async fn run<S, LR, LW, F>(
    ws_io: S,
    leftover: &[u8],
    mut local_r: LR,
    local_w: LW,
    cfg: &BridgeConfig,
    mut stop: F,
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
    let mailbox = Mailbox::default();
    let heard = AtomicU64::new(0);

    let reading = read_peer(&mut reader, local_w, &mailbox, &heard, counters);

    let writing = async {
        let mut s = Session {
            cfg,
            counters,
            writer: FrameWriter::new(ws_w, cfg.role).with_stall_limit(stall),
            buf: vec![0u8; HEADROOM + SMALL_CHUNK.min(cfg.buf_size)],
            sent: None,
            received: None,
            reader_done: false,
            close_deadline: Instant::now() + FAR,
            idle_deadline: Instant::now() + cfg.idle_timeout.unwrap_or(FAR),
            last_bytes: 0,
        };
        let mut keepalive = Keepalive::new(cfg.ping_interval.unwrap_or(FAR), cfg.missed_pongs);
        loop {
            let wake = tokio::select! {
                biased;
                why = &mut stop, if s.sent.is_none() => Wake::Stop(why),
                msg = mailbox.take(), if !s.reader_done => Wake::Reader(msg),
                r = local_r.read(&mut s.buf[HEADROOM..]), if s.sent.is_none() => Wake::Local(r),
                _ = tokio::time::sleep_until(s.idle_deadline), if cfg.idle_timeout.is_some() && s.sent.is_none() => Wake::Idle,
                _ = tokio::time::sleep_until(s.close_deadline), if s.sent.is_some() => Wake::CloseTimedOut,
                beat = keepalive.tick(|| heard.load(Ordering::Relaxed)), if cfg.ping_interval.is_some() && !s.reader_done => Wake::Beat(beat),
            };
            if let Flow::End(closed_by) = s.on(wake).await {
                let outcome = Outcome {
                    closed_by,
                    sent: s.sent,
                    received: s.received,
                };
                return (outcome, s.writer);
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
