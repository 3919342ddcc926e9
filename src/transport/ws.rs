//! WebSocket framing (RFC 6455 §5) for the data path, on tungstenite's frame header codec.
//!
//! Why not tungstenite's `WebSocket`: on receiving a Close frame its state machine queues the
//! reply Close at once and refuses every later send (`protocol/mod.rs`, `do_close`), so the
//! half-close of SPEC §2 — a client Close means "no more client bytes" while the gate keeps
//! relaying the service's bytes — cannot be expressed with it. This module keeps tungstenite's
//! [`FrameHeader`] parser and formatter and owns only the session-level rules: which frames a
//! role accepts, masking, size limits, and streaming a data frame's payload in pieces so that a
//! session never holds a whole 1 MiB frame in memory.
//!
//! The contract: frames that tungstenite's codec would accept for the role are read with the
//! same meaning, and tungstenite reads what we write as we meant it (the differential test
//! `frames_read_and_written_mean_the_same_to_tungstenite`; the e2e suite runs real clients), and what is written is standard framing any RFC 6455 peer reads. The
//! choice rests on the half-close above and on memory: a data frame's payload streams in
//! chunks instead of being held whole.
//!
//! It does not know about sessions, policy or the local socket: that is [`crate::transport::bridge`].

use std::io::{self, Cursor};
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The first read size of a session: enough for any handshake-sized exchange; it grows (to
/// the configured chunk) only while reads fill it.
const INITIAL_CHUNK: usize = 4096;

/// Gather more ready input in one fill only while this much room is left: less is not worth
/// another pass through the TLS layer.
const MIN_GATHER: usize = 1024;

/// Room reserved before a payload for the longest frame header (2 + 8 length + 4 mask).
pub const HEADROOM: usize = 14;
/// Longest control-frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Close codes the gate and client send (RFC 6455 §7.4.1; SPEC §2).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away: the gate is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Unsupported data: a text frame.
    pub const UNSUPPORTED: u16 = 1003;
    /// Invalid payload data (a Close reason that is not UTF-8).
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation: the session was revoked by a policy change.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const INTERNAL: u16 = 1011;
}

/// Which end of the WebSocket we are. A server reads masked frames and writes unmasked ones;
/// a client the reverse (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The gate.
    Server,
    /// `arcgate connect`.
    Client,
}

/// A received Close frame's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code (1005, "no status", when the frame had none).
    pub code: u16,
    /// The reason text.
    pub reason: String,
}

/// What kind of data frame a relayed frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// A later frame of a fragmented message.
    Continuation,
}

/// The header of a data frame a relaying reader is about to stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStart {
    /// Its opcode.
    pub kind: DataKind,
    /// Whether it is the last frame of its message.
    pub fin: bool,
    /// Its payload length; exactly that many bytes follow as [`Event::Data`] pieces.
    pub len: u64,
}

/// What the peer sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Bytes of a data frame (binary; text too for a relaying reader), or a piece of one.
    Data(&'a [u8]),
    /// Only from a [relaying](FrameReader::relaying) reader: a data frame begins; its
    /// payload follows as [`Event::Data`] pieces.
    FrameStart(FrameStart),
    /// A Ping with its payload, to be answered with a Pong.
    Ping(Bytes),
    /// A Pong.
    Pong,
    /// A Close: the peer sends no more data.
    Close(CloseFrame),
}

/// A framing error. [`WsError::close_code`] says what to tell the peer, if anything.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The peer sent a text frame; this tunnel carries bytes only.
    #[error("text frame received; this tunnel carries binary frames only")]
    Text,
    /// A frame larger than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    TooBig {
        /// The frame's declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A Close reason that is not UTF-8.
    #[error("close reason is not UTF-8")]
    BadUtf8,
    /// The connection ended without a Close frame.
    #[error("connection closed without a WebSocket Close")]
    Eof,
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code to send the peer for this error; `None` when the connection is gone.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            WsError::Protocol(_) => Some(close::PROTOCOL),
            WsError::Text => Some(close::UNSUPPORTED),
            WsError::TooBig { .. } => Some(close::TOO_BIG),
            WsError::BadUtf8 => Some(close::INVALID_DATA),
            WsError::Eof | WsError::Io(_) => None,
        }
    }
}

/// XORs `buf` with `mask`, starting `offset` bytes into the mask's cycle.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let m: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// Reads frames from one side of a WebSocket.
#[derive(Debug)]
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    role: Role,
    max_frame: u64,
    /// The most read from the connection at once.
    read_chunk: usize,
    /// What is read at once now: starts small, grows while reads fill it, so that an idle
    /// session holds a few KiB and a busy one reads in large chunks.
    chunk: usize,
    /// Payload bytes still to come in the current data frame.
    remaining: u64,
    mask: Option<[u8; 4]>,
    mask_offset: usize,
    /// Inside a fragmented message: the next data frame must be a continuation.
    fragmented: bool,
    /// Bytes of `buf` handed out by the last [`Event::Data`], dropped at the next call.
    handed_out: usize,
    /// Relaying (the relay's join): text frames are passed on, and each data frame's header
    /// is reported as an [`Event::FrameStart`].
    relaying: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader for `role`, refusing data frames over `max_frame` bytes, reading from the
    /// connection `read_chunk` bytes at a time.
    pub fn new(io: R, role: Role, max_frame: u64, read_chunk: usize) -> Self {
        FrameReader {
            io,
            buf: BytesMut::new(),
            role,
            max_frame,
            read_chunk,
            chunk: INITIAL_CHUNK.min(read_chunk),
            remaining: 0,
            mask: None,
            mask_offset: 0,
            fragmented: false,
            handed_out: 0,
            relaying: false,
        }
    }

    /// Reads for relaying rather than for a byte stream: text messages are accepted (the
    /// relay carries whatever its two ends speak; they check UTF-8), and each data frame
    /// begins with an [`Event::FrameStart`], so that frames and messages keep their
    /// boundaries when written again.
    pub fn relaying(mut self) -> Self {
        self.relaying = true;
        self
    }

    /// Bytes that arrived with the handshake and belong to the frame stream.
    pub fn with_leftover(mut self, leftover: &[u8]) -> Self {
        self.buf.extend_from_slice(leftover);
        self
    }

    async fn fill(&mut self) -> Result<(), WsError> {
        if self.buf.is_empty() {
            self.wait_for_input().await?;
        }
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        let mut n = self.io.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(WsError::Eof);
        }
        // Take what else is ready now: TLS hands over one record (at most 16 KiB) per read,
        // and each piece becomes one write to the other side, so gathering them here makes
        // fewer, larger writes (and fewer wake-ups of whoever reads them).
        while n < room && self.buf.capacity() - self.buf.len() >= MIN_GATHER {
            match futures_util::FutureExt::now_or_never(self.io.read_buf(&mut self.buf)) {
                Some(Ok(0)) | None => break,
                Some(Ok(more)) => n += more,
                // Hand over what arrived; the next fill meets the error again.
                Some(Err(_)) => break,
            }
        }
        if n >= room {
            self.chunk = (self.chunk * 2).min(self.read_chunk);
        } else if n < self.chunk / 8 {
            self.chunk = (self.chunk / 2).max(INITIAL_CHUNK.min(self.read_chunk));
        }
        Ok(())
    }

    /// Waits until the connection has input, holding no read buffer meanwhile where the
    /// stream allows it: a TLS stream's read into an empty buffer waits for the next record
    /// (arcgate's [`TlsStream`](crate::transport::server_tls::TlsStream), either side, and
    /// tokio-rustls both decrypt it and keep it), so an idle session holds nothing here. A stream whose empty read
    /// returns at once (plain TCP) just goes on to the real read, buffer and all.
    async fn wait_for_input(&mut self) -> io::Result<()> {
        if let Some(ready) = futures_util::FutureExt::now_or_never(empty_read(&mut self.io)) {
            return ready;
        }
        // Nothing waiting: the session is between bursts, or idle. Let the buffer go.
        self.buf = BytesMut::new();
        empty_read(&mut self.io).await
    }

    /// The next event. Data frames are streamed: a large frame arrives as several
    /// [`Event::Data`] pieces. Cancel-safe only between events, like any framed reader.
    pub async fn next(&mut self) -> Result<Event<'_>, WsError> {
        self.buf.advance(std::mem::take(&mut self.handed_out));
        loop {
            if self.remaining > 0 {
                if self.buf.is_empty() {
                    self.fill().await?;
                }
                let n = self
                    .buf
                    .len()
                    .min(self.remaining.min(usize::MAX as u64) as usize);
                if let Some(mask) = self.mask {
                    apply_mask(&mut self.buf[..n], mask, self.mask_offset);
                    self.mask_offset = (self.mask_offset + n) % 4;
                }
                self.remaining -= n as u64;
                self.handed_out = n;
                return Ok(Event::Data(&self.buf[..n]));
            }
            let mut cursor = Cursor::new(&self.buf[..]);
            let parsed = FrameHeader::parse(&mut cursor)
                .map_err(|_| WsError::Protocol("malformed frame header"))?;
            let Some((header, len)) = parsed else {
                self.fill().await?;
                continue;
            };
            let header_len = cursor.position() as usize;
            self.check_header(&header, len)?;
            match header.opcode {
                OpCode::Data(data) => {
                    self.fragmented = !header.is_final;
                    self.buf.advance(header_len);
                    self.remaining = len;
                    self.mask = header.mask;
                    self.mask_offset = 0;
                    if self.relaying {
                        let kind = match data {
                            Data::Text => DataKind::Text,
                            Data::Continue => DataKind::Continuation,
                            _ => DataKind::Binary,
                        };
                        return Ok(Event::FrameStart(FrameStart {
                            kind,
                            fin: header.is_final,
                            len,
                        }));
                    }
                }
                OpCode::Control(control) => {
                    let total = header_len + len as usize;
                    if self.buf.len() < total {
                        self.fill().await?;
                        continue;
                    }
                    let mut payload = self.buf.split_to(total).split_off(header_len);
                    if let Some(mask) = header.mask {
                        apply_mask(&mut payload, mask, 0);
                    }
                    return match control {
                        Control::Ping => Ok(Event::Ping(payload.freeze())),
                        Control::Pong => Ok(Event::Pong),
                        Control::Close => parse_close(&payload).map(Event::Close),
                        Control::Reserved(_) => unreachable!("checked by check_header"),
                    };
                }
            }
        }
    }

    fn check_header(&self, header: &FrameHeader, len: u64) -> Result<(), WsError> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::Protocol(
                "reserved bits set without a negotiated extension",
            ));
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::Protocol("client frame not masked")),
            (Role::Client, true) => return Err(WsError::Protocol("server frame masked")),
            _ => {}
        }
        match header.opcode {
            OpCode::Data(Data::Text) if !self.fragmented && !self.relaying => Err(WsError::Text),
            OpCode::Data(Data::Binary | Data::Text) if self.fragmented => {
                Err(WsError::Protocol("new message inside a fragmented message"))
            }
            OpCode::Data(Data::Continue) if !self.fragmented => Err(WsError::Protocol(
                "continuation frame without a message to continue",
            )),
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                Err(WsError::Protocol("reserved opcode"))
            }
            OpCode::Data(_) if len > self.max_frame => Err(WsError::TooBig {
                size: len,
                limit: self.max_frame,
            }),
            OpCode::Control(_) if !header.is_final || len > MAX_CONTROL_PAYLOAD as u64 => Err(
                WsError::Protocol("control frame fragmented or over 125 bytes"),
            ),
            _ => Ok(()),
        }
    }
}

/// A read into an empty buffer: how [`FrameReader::wait_for_input`] waits.
fn empty_read<R: AsyncRead + Unpin>(io: &mut R) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| Pin::new(&mut *io).poll_read(cx, &mut ReadBuf::new(&mut [])))
}

fn parse_close(payload: &[u8]) -> Result<CloseFrame, WsError> {
    match payload {
        [] => Ok(CloseFrame {
            code: 1005,
            reason: String::new(),
        }),
        [_] => Err(WsError::Protocol("one-byte close payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::BadUtf8)?;
            Ok(CloseFrame {
                code,
                reason: reason.to_string(),
            })
        }
    }
}

/// Writes frames to one side of a WebSocket.
#[derive(Debug)]
pub struct FrameWriter<W> {
    io: W,
    role: Role,
    stall: Option<std::time::Duration>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer for `role`.
    pub fn new(io: W, role: Role) -> Self {
        FrameWriter {
            io,
            role,
            stall: None,
        }
    }

    /// Fails any write the peer does not take within `limit`: a peer that stops reading must
    /// not hold a session (and its buffers) forever.
    pub fn with_stall_limit(mut self, limit: Option<std::time::Duration>) -> Self {
        self.stall = limit;
        self
    }

    async fn write_frame(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_parts(bytes, &[]).await
    }

    /// Writes `head` then `payload` (vectored: a TLS stream seals both into the same records
    /// without our copying them together first) and flushes, within the stall limit.
    async fn write_parts(&mut self, head: &[u8], payload: &[u8]) -> io::Result<()> {
        let io = &mut self.io;
        let write = async move {
            let mut parts = [io::IoSlice::new(head), io::IoSlice::new(payload)];
            let mut left = &mut parts[..];
            io::IoSlice::advance_slices(&mut left, 0);
            while !left.is_empty() {
                let n = io.write_vectored(left).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                io::IoSlice::advance_slices(&mut left, n);
            }
            io.flush().await
        };
        match self.stall {
            None => write.await,
            Some(limit) => tokio::time::timeout(limit, write)
                .await
                .unwrap_or_else(|_| {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the peer accepted no data for {limit:?}"),
                    ))
                }),
        }
    }

    /// Frames `frame[HEADROOM..HEADROOM + len]` as one binary frame and sends it with a single
    /// write: the header goes into the headroom, so the payload is never copied.
    pub async fn send_binary(&mut self, frame: &mut [u8], len: usize) -> io::Result<()> {
        let start = self.frame_in_place(frame, len, OpCode::Data(Data::Binary));
        self.write_frame(&frame[start..HEADROOM + len]).await
    }

    /// Writes a relayed data frame's header; exactly `start.len` payload bytes must follow
    /// through [`FrameWriter::send_piece`]. Servers only: a client would have to mask.
    pub async fn start_frame(&mut self, start: FrameStart) -> io::Result<()> {
        debug_assert_eq!(self.role, Role::Server, "a relay writes as a server");
        let header = FrameHeader {
            is_final: start.fin,
            opcode: OpCode::Data(match start.kind {
                DataKind::Text => Data::Text,
                DataKind::Binary => Data::Binary,
                DataKind::Continuation => Data::Continue,
            }),
            ..FrameHeader::default()
        };
        let mut head = [0u8; HEADROOM];
        let len = header.len(start.len);
        header
            .format(start.len, &mut Cursor::new(&mut head[..len]))
            .expect("a frame header fits in HEADROOM");
        self.write_parts(&head[..len], &[]).await
    }

    /// Writes payload bytes of the frame [`FrameWriter::start_frame`] began.
    pub async fn send_piece(&mut self, piece: &[u8]) -> io::Result<()> {
        self.write_parts(piece, &[]).await
    }

    /// Returns where the frame starts in `frame`.
    fn frame_in_place(&mut self, frame: &mut [u8], len: usize, opcode: OpCode) -> usize {
        let header = FrameHeader {
            opcode,
            mask: match self.role {
                Role::Client => Some(rand::random()),
                Role::Server => None,
            },
            ..FrameHeader::default()
        };
        let header_len = header.len(len as u64);
        let start = HEADROOM - header_len;
        header
            .format(len as u64, &mut Cursor::new(&mut frame[start..HEADROOM]))
            .expect("a frame header fits in HEADROOM");
        if let Some(mask) = header.mask {
            apply_mask(&mut frame[HEADROOM..HEADROOM + len], mask, 0);
        }
        start
    }

    async fn send_control(&mut self, control: Control, payload: &[u8]) -> io::Result<()> {
        let len = payload.len().min(MAX_CONTROL_PAYLOAD);
        let mut frame = [0u8; HEADROOM + MAX_CONTROL_PAYLOAD];
        frame[HEADROOM..HEADROOM + len].copy_from_slice(&payload[..len]);
        let start = self.frame_in_place(&mut frame, len, OpCode::Control(control));
        self.write_frame(&frame[start..HEADROOM + len]).await
    }

    /// Sends a Ping.
    pub async fn send_ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_control(Control::Ping, payload).await
    }

    /// Sends a Pong echoing a Ping's payload.
    pub async fn send_pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send_control(Control::Pong, payload).await
    }

    /// Sends a Close with `code` and `reason` (cut to fit a control frame).
    pub async fn send_close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
        payload.extend_from_slice(&code.to_be_bytes());
        let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        self.send_control(Control::Close, &payload).await
    }

    /// Ends the connection's write side (for TLS, sends close_notify).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames_from(bytes: Vec<u8>, role: Role) -> Vec<String> {
        let mut reader = FrameReader::new(&bytes[..], role, 1024, 16);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Ok(Event::Data(d)) => out.push(format!("data {}", String::from_utf8_lossy(d))),
                Ok(Event::Ping(p)) => out.push(format!("ping {}", p.len())),
                Ok(Event::Pong) => out.push("pong".into()),
                Ok(Event::Close(c)) => out.push(format!("close {} {}", c.code, c.reason)),
                Ok(Event::FrameStart(f)) => out.push(format!("{:?} {} {}", f.kind, f.fin, f.len)),
                Err(e) => {
                    out.push(format!("error {e} {:?}", e.close_code()));
                    return out;
                }
            }
        }
    }

    /// A short client frame (masked, with a zero mask).
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    #[tokio::test]
    async fn a_relaying_reader_keeps_text_and_every_frame_boundary() {
        // What hyco-ws's sample sender sends: JSON as text. The bridge refuses text (1003);
        // the relay passes it on, and an empty final fragment still ends its message.
        let wire = [
            frame(0x01, b"{\"a\":"),
            frame(0x80, b""),
            frame(0x82, b"xyz"),
        ]
        .concat();
        let mut reader = FrameReader::new(&wire[..], Role::Server, 1024, 16).relaying();
        let mut out = Vec::new();
        while let Ok(event) = reader.next().await {
            out.push(match event {
                Event::FrameStart(f) => format!("{:?} {} {}", f.kind, f.fin, f.len),
                Event::Data(d) => format!("data {}", String::from_utf8_lossy(d)),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(
            out,
            [
                "Text false 5",
                "data {\"a\":",
                "Continuation true 0",
                "Binary true 3",
                "data xyz"
            ]
        );
        assert_eq!(
            frames_from(frame(0x81, b"a"), Role::Server).await,
            ["error text frame received; this tunnel carries binary frames only Some(1003)"]
        );
    }

    async fn client_frames(parts: &[(&[u8], Option<u16>)]) -> Vec<u8> {
        // Each part is a binary frame, or a Close with the code.
        let mut wire = Vec::new();
        let mut w = FrameWriter::new(&mut wire, Role::Client);
        for (payload, close) in parts {
            match close {
                Some(code) => {
                    w.send_close(*code, std::str::from_utf8(payload).unwrap())
                        .await
                }
                None => {
                    let mut f = vec![0; HEADROOM + payload.len()];
                    f[HEADROOM..].copy_from_slice(payload);
                    w.send_binary(&mut f, payload.len()).await
                }
            }
            .unwrap();
        }
        wire
    }

    #[tokio::test]
    async fn masked_frames_round_trip_and_stream_in_pieces() {
        let long = vec![b'x'; 40];
        let wire = client_frames(&[(b"hello", None), (&long, None), (b"bye", Some(1000))]).await;
        let got = frames_from(wire, Role::Server).await;
        assert_eq!(got[0], "data hello");
        let data: usize = got[1..got.len() - 2]
            .iter()
            .map(|s| s.len() - "data ".len())
            .sum();
        assert_eq!(data, 40, "{got:?}");
        assert!(
            got.len() > 4,
            "a 40-byte frame read 16 bytes at a time comes in pieces"
        );
        assert_eq!(got[got.len() - 2], "close 1000 bye");
        assert!(
            got.last()
                .unwrap()
                .starts_with("error connection closed without")
        );
    }

    #[tokio::test]
    async fn role_rules_are_enforced() {
        // Unmasked frame to a server; a text frame; reserved bits; reserved opcode; too big;
        // fragmented ping; a continuation out of nowhere.
        let cases: &[(&[u8], Option<u16>)] = &[
            (&[0x82, 0x01, b'a'], Some(1002)),
            (&[0x81, 0x81, 0, 0, 0, 0, b'a'], Some(1003)),
            (&[0xC2, 0x81, 0, 0, 0, 0, b'a'], Some(1002)),
            (&[0x83, 0x81, 0, 0, 0, 0, b'a'], Some(1002)),
            (&[0x82, 0xFE, 0x10, 0x00, 0, 0, 0, 0], Some(1009)),
            (&[0x09, 0x80, 0, 0, 0, 0], Some(1002)),
            (&[0x80, 0x81, 0, 0, 0, 0, b'a'], Some(1002)),
            (&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8], None),
        ];
        for (bytes, code) in cases {
            let got = frames_from(bytes.to_vec(), Role::Server).await;
            let want = format!("{code:?}");
            if code.is_some() {
                assert!(got[0].ends_with(&want), "{bytes:02x?}: {got:?}");
            } else {
                assert_eq!(got[0], "close 1000 ", "{bytes:02x?}");
            }
        }
        let masked_to_client = frames_from(vec![0x82, 0x81, 1, 2, 3, 4, b'a'], Role::Client).await;
        assert!(masked_to_client[0].ends_with("Some(1002)"));
    }

    #[tokio::test]
    async fn a_reader_waiting_on_tls_holds_no_buffer() {
        let (ours, mut peer) = crate::transport::server_tls::tests::tls_pair().await;
        let mut reader = FrameReader::new(ours, Role::Server, 1024, 64 * 1024);
        peer.write_all(&client_frames(&[(b"hi", None)]).await)
            .await
            .unwrap();
        peer.flush().await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Event::Data(b"hi"));
        assert!(reader.buf.capacity() > 0, "a buffer while reading");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reader.next());
        assert!(waiting.await.is_err(), "nothing more was sent");
        assert_eq!(reader.buf.capacity(), 0, "an idle reader holds no buffer");
        peer.write_all(&client_frames(&[(b"again", None)]).await)
            .await
            .unwrap();
        peer.flush().await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Event::Data(b"again"));
    }

    #[test]
    fn mask_is_its_own_inverse_at_any_offset() {
        let data: Vec<u8> = (0..=255).collect();
        for offset in 0..4 {
            let mut buf = data.clone();
            apply_mask(&mut buf[..], [1, 2, 3, 4], offset);
            assert_eq!(buf[0], data[0] ^ [1, 2, 3, 4][offset]);
            apply_mask(&mut buf[..], [1, 2, 3, 4], offset);
            assert_eq!(buf, data);
        }
    }

    /// The framing differential: what tungstenite writes, we read with the same meaning; what
    /// we write, tungstenite reads as we meant it — data across many reads, control frames,
    /// and a Close with its code and reason.
    #[tokio::test]
    async fn frames_read_and_written_mean_the_same_to_tungstenite() {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame as TCloseFrame, Role as TRole};
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let (theirs, ours) = tokio::io::duplex(1 << 20);
        let mut client =
            tokio_tungstenite::WebSocketStream::from_raw_socket(theirs, TRole::Client, None).await;
        for m in [
            Message::binary(b"hello".to_vec()),
            Message::Ping(Bytes::from_static(b"p1")),
            Message::binary(big.clone()),
            Message::Pong(Bytes::new()),
            Message::Close(Some(TCloseFrame {
                code: 1000.into(),
                reason: "bye".into(),
            })),
        ] {
            client.send(m).await.unwrap();
        }
        let (ours_r, ours_w) = tokio::io::split(ours);
        let mut reader = FrameReader::new(ours_r, Role::Server, 1 << 20, 4096);
        let (mut data, mut events) = (Vec::new(), Vec::new());
        loop {
            match reader.next().await.unwrap() {
                Event::Data(d) => data.extend_from_slice(d),
                Event::Ping(p) => events.push(format!("ping {}", String::from_utf8_lossy(&p))),
                Event::Pong => events.push("pong".into()),
                Event::Close(c) => {
                    events.push(format!("close {} {}", c.code, c.reason));
                    break;
                }
                Event::FrameStart(_) => events.push("frame start".into()),
            }
        }
        let mut want = b"hello".to_vec();
        want.extend_from_slice(&big);
        assert!(data == want, "the data bytes differ");
        assert_eq!(events, ["ping p1", "pong", "close 1000 bye"]);

        // Relayed frames: a header, then the payload in pieces; a text message in two frames.
        let mut writer = FrameWriter::new(ours_w, Role::Server);
        let frame = |kind, fin, len: usize| FrameStart {
            kind,
            fin,
            len: len as u64,
        };
        writer
            .start_frame(frame(DataKind::Binary, true, big.len()))
            .await
            .unwrap();
        for piece in big.chunks(7000) {
            writer.send_piece(piece).await.unwrap();
        }
        writer
            .start_frame(frame(DataKind::Text, false, 5))
            .await
            .unwrap();
        writer.send_piece(b"hello").await.unwrap();
        writer
            .start_frame(frame(DataKind::Continuation, true, 6))
            .await
            .unwrap();
        writer.send_piece(" wörl".as_bytes()).await.unwrap();
        writer.send_ping(b"p2").await.unwrap();
        writer.send_pong(b"").await.unwrap();
        writer
            .send_close(close::POLICY, "connection not allowed")
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(m) = client.next().await {
            match m.unwrap() {
                Message::Binary(b) => got.push(format!("binary {}", b.len())),
                Message::Text(t) => got.push(format!("text {}", t.as_str())),
                Message::Ping(p) => got.push(format!("ping {}", String::from_utf8_lossy(&p))),
                Message::Pong(_) => got.push("pong".into()),
                Message::Close(Some(c)) => {
                    got.push(format!("close {} {}", u16::from(c.code), c.reason));
                    break;
                }
                other => got.push(format!("unexpected {other:?}")),
            }
        }
        assert_eq!(
            got,
            [
                "binary 70000",
                "text hello wörl",
                "ping p2",
                "pong",
                "close 1008 connection not allowed"
            ]
        );
    }
}
