//! arcgate's TLS streams, both sides: rustls' unbuffered connection (server for the gate and
//! the relay, client for `connect`, `forward` and a relayed gate) over buffers this module
//! owns, so that an idle session holds none.
//!
//! tokio-rustls drives rustls' buffered connection, whose 4 KiB input buffer is never freed:
//! the largest single piece of an idle session's memory (`valgrind --tool=massif`). Here the
//! stream keeps three buffers of its own, each empty (no allocation) while the session is
//! idle:
//!
//! - input read from the socket, decrypted in place by rustls: from `FIRST_AHEAD` up to
//!   [`CHUNK`] while reads keep filling it (one large read takes many records), freed when a
//!   read finds nothing waiting and no partial record is held;
//! - encrypted output not yet taken by the socket: at most about [`SEND_BUFFER`]; a write
//!   waits while that much is queued;
//! - decrypted bytes not yet read: records that arrived while the stream was writing (rustls
//!   hands over queued records before it lets us encrypt), or the rest of a record larger
//!   than the read asking for it.
//!
//! Reading through it costs one copy per byte (rustls decrypts in place; the plaintext is
//! copied out once), where tokio-rustls costs three over a read-ahead buffer. The last
//! flight of the handshake waits for the first write, so that a client's Finished and its
//! request, and a server's session tickets and its answer, each leave in one segment: one
//! wake-up fewer at the other end of every new connection (strace).
//!
//! The stream never holds more than these bounds for a peer: records are at most 16 KiB
//! (rustls refuses larger ones before we would grow past [`CHUNK`]), and nothing is read from
//! the socket while decrypted bytes are waiting to be read.
//!
//! The contract: for any byte script, a reader of this stream sees exactly the plaintext, the
//! end (`Ok(0)` after close_notify, `UnexpectedEof` without one) and the peer sees exactly the
//! replies that `tokio_rustls::server::TlsStream` would give over the same configuration —
//! checked by the differential test `the_same_script_through_our_stream_and_tokio_rustls_*`,
//! with whole records and with records in 7-byte pieces; the client side is checked against
//! a tokio-rustls server both ways. The choice rests on measurement (massif: the 4 KiB
//! buffer per idle session; perf and the bench: the copies); if the library frees its
//! buffers one day, this module should go.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, UnbufferedConnectionCommon, UnbufferedStatus,
};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::{CHUNK, SEND_BUFFER};

/// The first input buffer of a connection. It doubles each time a read fills it, up to
/// [`CHUNK`], so a stream reaches full size within a few reads, while a connection whose
/// reader stops early — a client pipelining bytes behind a request the gate is still
/// deciding, say — holds at most this much here, not 256 KiB for each of the thousands of
/// connections that may be in their handshake at once.
pub(crate) const FIRST_AHEAD: usize = 16 * 1024;

/// The side of a connection a [`TlsStream`] drives: rustls' unbuffered server connection
/// (the gate, the relay) or client connection (`connect`, `forward`, a relayed gate).
pub trait Side:
    std::ops::DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> + Unpin
{
    /// rustls' data for this side.
    type Data;
    /// Who is at the other end, for errors: "client" or "server".
    const PEER: &'static str;
    /// Whether the peer needs what this side queued last in the handshake before it can go
    /// on, so that it must leave with the handshake: a TLS 1.2 server's Finished.
    /// A TLS 1.3 server's last flight is its session tickets, which no client waits for, and
    /// a client speaks first on every connection arcgate makes (HTTP), so its Finished goes
    /// with its request.
    fn peer_waits_for_last_flight(&self) -> bool;
    /// rustls' `process_tls_records` for this side.
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    const PEER: &'static str = "client";
    fn peer_waits_for_last_flight(&self) -> bool {
        self.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
    }
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(input)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    const PEER: &'static str = "server";
    fn peer_waits_for_last_flight(&self) -> bool {
        false
    }
    fn process<'c, 'i>(&'c mut self, input: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(input)
    }
}

/// The gate's and the relay's TLS stream.
pub type ServerTls<IO> = TlsStream<IO, UnbufferedServerConnection>;

/// The clients' TLS stream.
pub type ClientTls<IO> = TlsStream<IO, UnbufferedClientConnection>;

/// The largest TLS record's plaintext: writes are cut into records of at most this much.
const MAX_RECORD: usize = 16 * 1024;

/// Room allowed per record for its header, content type, explicit nonce and tag (TLS 1.3
/// needs 22 bytes, TLS 1.2 with AES-GCM 29); a short estimate only costs a second attempt.
const RECORD_OVERHEAD: usize = 40;

/// Writes of less plaintext than this give the output buffer back once it is sent:
/// interactive and idle sessions hold none; a session streaming data keeps its buffer.
const SMALL_WRITE: usize = 4096;

/// A TLS stream over `IO` (a TCP socket, or an in-memory pipe in tests), for either side.
pub struct TlsStream<IO, C> {
    io: IO,
    conn: C,
    input: Input,
    output: Output,
    /// Decrypted bytes not yet read: `plain[plain_pos..]`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// The peer sent close_notify: reads return end of stream.
    peer_closed: bool,
    /// We queued our close_notify.
    close_sent: bool,
    /// rustls reported an error: the connection is given up and rustls is not called again
    /// (its state refers to input it has not released).
    failed: bool,
    /// The handshake's last flight is still queued, to leave with the first write (the
    /// client's request, the gate's answer) in the same segment: one wake-up fewer at the
    /// other end. Never when the peer waits for it ([`Side::peer_waits_for_last_flight`]).
    flight_held: bool,
}

impl<IO, C> std::fmt::Debug for TlsStream<IO, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("input", &self.input.buf.capacity())
            .field("output", &self.output.buf.len())
            .field("plain", &self.plain.len())
            .finish_non_exhaustive()
    }
}

/// Socket input: `buf[start..]` is not yet processed by rustls. Read into the vector's spare
/// capacity, so a new buffer costs an allocation and no zeroing.
#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    start: usize,
    /// The size of the next buffer: from [`FIRST_AHEAD`], doubling while reads fill it.
    size: usize,
}

/// Encrypted output: `buf[sent..filled]` is not yet taken by the socket.
#[derive(Default)]
struct Output {
    buf: Vec<u8>,
    sent: usize,
    filled: usize,
}

impl Output {
    fn pending(&self) -> usize {
        self.filled - self.sent
    }

    /// Space for at least `need` bytes after what is queued.
    fn room(&mut self, need: usize) -> &mut [u8] {
        if self.sent == self.filled {
            (self.sent, self.filled) = (0, 0);
        }
        if self.buf.len() - self.filled < need {
            self.buf.copy_within(self.sent..self.filled, 0);
            (self.sent, self.filled) = (0, self.filled - self.sent);
            if self.buf.len() - self.filled < need {
                self.buf.resize(self.filled + need, 0);
            }
        }
        &mut self.buf[self.filled..]
    }

    /// Lets `put` write into the buffer, with `hint` bytes of room and then, if it says
    /// (through `required`) that it needs more, with that much.
    fn put<E>(
        &mut self,
        hint: usize,
        mut put: impl FnMut(&mut [u8]) -> Result<usize, E>,
        required: impl Fn(&E) -> Option<usize>,
    ) -> Result<usize, E> {
        let n = match put(self.room(hint)) {
            Ok(n) => n,
            Err(e) => match required(&e) {
                Some(size) => put(self.room(size))?,
                None => return Err(e),
            },
        };
        self.filled += n;
        Ok(n)
    }

    /// Keeps what is not yet sent in a buffer of its own size.
    fn shrink_to_pending(&mut self) {
        if self.buf.len() > self.pending() {
            let pending = self.buf[self.sent..self.filled].to_vec();
            (self.sent, self.filled) = (0, pending.len());
            self.buf = pending;
        }
    }

    /// Gives the buffer back if everything in it has been sent.
    fn release_if_sent(&mut self) {
        if self.sent == self.filled {
            *self = Output::default();
        }
    }
}

/// What a call into rustls is for.
enum Mode<'a, 'b> {
    /// Run the connection until application data is waiting (left queued) or input is
    /// needed: the handshake, and reads into an empty buffer.
    Wait,
    /// Decrypt waiting records into the buffer.
    Read(&'a mut ReadBuf<'b>),
    /// Encrypt this plaintext.
    Write(&'a [u8]),
    /// Queue close_notify.
    Close,
}

/// Where a call into rustls stopped.
enum Found {
    /// Application data is waiting, or was delivered.
    Data,
    /// Nothing more can happen without more input from the socket.
    NeedInput,
    /// The plaintext was encrypted (or close_notify queued).
    Queued,
    /// The peer sent close_notify.
    PeerClosed,
    /// Both sides have sent close_notify.
    Closed,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ServerTls<IO> {
    /// Performs the server side of a TLS handshake on `io`. Returns once the handshake is
    /// complete (the client's Finished checked), like tokio-rustls' acceptor; the session
    /// tickets rustls then queues leave with the first answer.
    pub async fn accept(config: Arc<ServerConfig>, io: IO) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        TlsStream::handshake(io, conn).await
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> ClientTls<IO> {
    /// Performs the client side of a TLS handshake with `name` on `io`. Returns once the
    /// handshake is complete; the last flight (the client's Finished) is sent with the first
    /// write, so that the server gets it and the request in one segment.
    pub async fn connect(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        io: IO,
    ) -> io::Result<Self> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        TlsStream::handshake(io, conn).await
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Side> TlsStream<IO, C> {
    async fn handshake(io: IO, conn: C) -> io::Result<Self> {
        let mut tls = TlsStream {
            io,
            conn,
            input: Input {
                size: FIRST_AHEAD,
                ..Input::default()
            },
            output: Output::default(),
            plain: Vec::new(),
            plain_pos: 0,
            peer_closed: false,
            close_sent: false,
            failed: false,
            flight_held: false,
        };
        std::future::poll_fn(|cx| tls.poll_handshake(cx)).await?;
        if tls.conn.peer_waits_for_last_flight() {
            std::future::poll_fn(|cx| tls.poll_send(cx)).await?;
        }
        tls.flight_held = tls.output.pending() > 0;
        // The certificate chain went out from here; sessions start with nothing held but
        // the last flight, in a buffer of its size (a few hundred bytes of tickets).
        tls.output.release_if_sent();
        tls.output.shrink_to_pending();
        if tls.input.start == tls.input.buf.len() {
            tls.input = Input {
                size: tls.input.size,
                ..Input::default()
            };
        }
        Ok(tls)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            // Done: what the last step queued stays queued (see `flight_held`).
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            ready!(self.poll_send(cx))?;
            let found = match self.step_or_alert(Mode::Wait) {
                Ok(found) => found,
                Err(e) => {
                    // Best effort: the connection is being given up either way.
                    let _ = self.poll_send(cx);
                    return Poll::Ready(Err(e));
                }
            };
            match found {
                // Our flight goes out before we wait for the peer's answer to it.
                Found::NeedInput if self.output.pending() > 0 => {}
                Found::NeedInput if self.conn.is_handshaking() => {
                    if ready!(self.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "the {} closed the connection during the TLS handshake",
                                C::PEER
                            ),
                        )));
                    }
                }
                Found::NeedInput | Found::Data if !self.conn.is_handshaking() => {}
                Found::PeerClosed | Found::Closed => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the {} closed TLS during the handshake", C::PEER),
                    )));
                }
                _ => {
                    return Poll::Ready(Err(io::Error::other(
                        "application data before the TLS handshake finished",
                    )));
                }
            }
        }
    }
}

impl<IO, C: Side> TlsStream<IO, C> {
    /// The stream underneath, for shutting it down or draining it after TLS is done.
    pub fn get_mut(&mut self) -> &mut IO {
        &mut self.io
    }

    /// Bytes this stream holds in its buffers (allocated, used or not): what an idle
    /// session costs here.
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.input.buf.capacity() + self.output.buf.len() + self.plain.capacity()
    }

    /// Runs rustls until `mode` is served or it needs something only the caller can give.
    fn step(&mut self, mut mode: Mode<'_, '_>) -> io::Result<Found> {
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS connection failed earlier",
            ));
        }
        let mut delivered = false;
        loop {
            let input = &mut self.input;
            let UnbufferedStatus { mut discard, state } =
                self.conn.process(&mut input.buf[input.start..]);
            let found = match state.map_err(tls_error) {
                Err(e) => {
                    input.start += discard;
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut records)) => match &mut mode {
                    // Left queued in rustls: the next read takes them.
                    Mode::Wait => Some(Found::Data),
                    Mode::Read(buf) => {
                        while buf.remaining() > 0 {
                            let Some(record) = records.next_record() else {
                                break;
                            };
                            let record = record.map_err(tls_error)?;
                            discard += record.discard;
                            let n = buf.remaining().min(record.payload.len());
                            buf.put_slice(&record.payload[..n]);
                            self.plain.extend_from_slice(&record.payload[n..]);
                            delivered |= !record.payload.is_empty();
                        }
                        (buf.remaining() == 0).then_some(Found::Data)
                    }
                    Mode::Write(_) | Mode::Close => {
                        // rustls encrypts nothing while records wait: keep them for reads.
                        while let Some(record) = records.next_record() {
                            let record = record.map_err(tls_error)?;
                            discard += record.discard;
                            self.plain.extend_from_slice(record.payload);
                        }
                        None
                    }
                },
                Ok(ConnectionState::EncodeTlsData(mut message)) => {
                    self.output
                        .put(0, |out| message.encode(out), encode_room)
                        .map_err(io::Error::other)?;
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // Queued in order in `output`; the socket takes it before anything later.
                    transmit.done();
                    None
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match &mode {
                    Mode::Write(data) => {
                        let hint = data.len() + (data.len() / MAX_RECORD + 1) * RECORD_OVERHEAD;
                        self.output
                            .put(hint, |out| traffic.encrypt(data, out), encrypt_room)
                            .map_err(io::Error::other)?;
                        Some(Found::Queued)
                    }
                    Mode::Close => {
                        self.output
                            .put(
                                RECORD_OVERHEAD,
                                |out| traffic.queue_close_notify(out),
                                encrypt_room,
                            )
                            .map_err(io::Error::other)?;
                        Some(Found::Queued)
                    }
                    Mode::Read(_) if delivered || self.plain.len() > self.plain_pos => {
                        Some(Found::Data)
                    }
                    Mode::Read(_) | Mode::Wait => Some(Found::NeedInput),
                },
                Ok(ConnectionState::BlockedHandshake) => Some(Found::NeedInput),
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    match mode {
                        Mode::Write(_) | Mode::Close => None,
                        Mode::Wait | Mode::Read(_) => Some(Found::PeerClosed),
                    }
                }
                Ok(ConnectionState::Closed) => Some(Found::Closed),
                Ok(_) => {
                    // Early data is not enabled; nothing else is known to this version.
                    return Err(io::Error::other("unexpected TLS connection state"));
                }
            };
            input.start += discard;
            if input.start == input.buf.len() {
                input.start = 0;
                input.buf.clear();
            }
            if let Some(found) = found {
                return Ok(found);
            }
        }
    }

    /// [`step`](Self::step), and on a TLS error, the alert rustls prepared is queued (the
    /// handshake and writes send it before they return the error; after a failed read it goes
    /// with the next write, flush or shutdown).
    fn step_or_alert(&mut self, mode: Mode<'_, '_>) -> io::Result<Found> {
        self.step(mode).inspect_err(|_| {
            if self.failed {
                return;
            }
            self.failed = true;
            // rustls hands out a queued alert before it looks at input again (looking again
            // would fail again), and wants the same input it was given: it may still refer
            // to parts of it (fuzz target tls_server found a panic when given none).
            let input = &mut self.input;
            if let Ok(ConnectionState::EncodeTlsData(mut alert)) =
                self.conn.process(&mut input.buf[input.start..]).state
            {
                let _ = self.output.put(64, |out| alert.encode(out), encode_room);
            }
            // No first write will come for the held flight to wait for: the alert goes with
            // the next flush too.
            self.flight_held = false;
        })
    }

    /// Reads from the socket into the input buffer; `Ok(0)` is end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>>
    where
        IO: AsyncRead + Unpin,
    {
        let input = &mut self.input;
        // What is left is at most one unfinished record: move it to the front.
        input.buf.drain(..input.start);
        input.start = 0;
        let capacity = if input.buf.capacity() < input.size {
            input.size
        } else if input.buf.len() == input.buf.capacity() {
            // Full with one record not yet whole: grow (rustls refuses records that would
            // not fit in CHUNK long before they get there).
            if input.buf.len() >= CHUNK {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a TLS message larger than the input buffer",
                )));
            }
            (input.buf.len() * 2).min(CHUNK)
        } else {
            input.buf.capacity()
        };
        input.buf.reserve_exact(capacity - input.buf.len());
        let room = input.buf.capacity() - input.buf.len();
        let read = std::pin::pin!(tokio::io::AsyncReadExt::read_buf(
            &mut self.io,
            &mut input.buf
        ));
        let Poll::Ready(n) = read.poll(cx)? else {
            if input.buf.is_empty() {
                // Idle: hold no buffers while waiting.
                input.buf = Vec::new();
                self.output.release_if_sent();
            }
            return Poll::Pending;
        };
        if n == room {
            input.size = (input.size * 2).min(CHUNK);
        } else if n < room / 8 {
            input.size = (input.size / 2).max(FIRST_AHEAD);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes queued output to the socket until it is all taken.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        IO: AsyncWrite + Unpin,
    {
        let out = &mut self.output;
        while out.sent < out.filled {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &out.buf[out.sent..out.filled]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            out.sent += n;
        }
        (out.sent, out.filled) = (0, 0);
        self.flight_held = false;
        Poll::Ready(Ok(()))
    }

    /// Copies decrypted bytes held back earlier into `buf`.
    fn serve_plain(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.plain.len() - self.plain_pos);
        buf.put_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            self.plain = Vec::new();
            self.plain_pos = 0;
        }
    }
}

/// The room an encoding that did not fit asks for.
fn encode_room(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

/// The room an encryption that did not fit asks for.
fn encrypt_room(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(s) => Some(s.required_size),
        _ => None,
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Side> AsyncRead for TlsStream<IO, C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.plain_pos < this.plain.len() {
            this.serve_plain(buf);
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // A read into an empty buffer waits for data without taking it.
            let mode = if buf.remaining() == 0 {
                Mode::Wait
            } else {
                Mode::Read(buf)
            };
            match this.step_or_alert(mode)? {
                Found::Data | Found::PeerClosed | Found::Closed | Found::Queued => {
                    return Poll::Ready(Ok(()));
                }
                Found::NeedInput => {
                    if ready!(this.poll_fill(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection without a TLS close_notify",
                        )));
                    }
                }
            }
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin, C: Side> AsyncWrite for TlsStream<IO, C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A held flight goes with this write, whenever the socket takes it.
        this.flight_held = false;
        if this.output.pending() >= SEND_BUFFER {
            ready!(this.poll_send(cx))?;
        }
        let take = data.len().min(SEND_BUFFER - this.output.pending());
        let found = match this.step_or_alert(Mode::Write(&data[..take])) {
            Ok(found) => found,
            Err(e) => {
                let _ = this.poll_send(cx);
                return Poll::Ready(Err(e));
            }
        };
        match found {
            Found::Queued => {}
            Found::Closed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            _ => return Poll::Ready(Err(io::Error::other("TLS handshake not finished"))),
        }
        // Sent now if the socket takes it; otherwise by the next write or flush.
        match this.poll_send(cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if take < SMALL_WRITE => this.output.release_if_sent(),
            _ => {}
        }
        Poll::Ready(Ok(take))
    }

    /// Gathers small pieces (a frame header and a short payload) into one record; a piece
    /// of a record's size or more goes on its own, without a copy.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut pieces = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = pieces.next() else {
            return Poll::Ready(Ok(0));
        };
        // Whole pieces after the first that still fit in one record with it.
        let (more, total) = pieces
            .clone()
            .scan(first.len(), |len, piece| {
                *len += piece.len();
                (*len <= MAX_RECORD).then_some(*len)
            })
            .fold((0, first.len()), |(n, _), len| (n + 1, len));
        if more == 0 {
            return self.poll_write(cx, first);
        }
        let mut gathered = Vec::with_capacity(total);
        gathered.extend_from_slice(first);
        for piece in pieces.take(more) {
            gathered.extend_from_slice(piece);
        }
        self.poll_write(cx, &gathered)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Sends what was written. A held last flight of the handshake is not something written:
    /// it waits for the first write (hyper flushes before it has answered anything).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.flight_held {
            ready!(this.poll_send(cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            // A connection already failed has nothing to close cleanly.
            let _ = this.step(Mode::Close);
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio_rustls::client::TlsStream;

    /// A TLS connection over memory with the committed development certificates: our
    /// server's stream and a tokio-rustls client's.
    pub(crate) async fn tls_pair() -> (ServerTls<Trickle>, TlsStream<DuplexStream>) {
        tls_pair_with(None, None).await
    }

    pub(crate) fn dev_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-dev")
    }

    /// The committed development certificate and key.
    pub(crate) fn dev_cert_store() -> crate::transport::tls::CertStore {
        let dev = dev_dir();
        crate::transport::tls::CertStore::load(&dev.join("server.pem"), &dev.join("server-key.pem"))
            .unwrap()
    }

    /// A pipe whose reads return at most `limit` bytes: records reach the server in pieces.
    pub(crate) struct Trickle {
        pipe: DuplexStream,
        limit: Option<usize>,
        /// How many writes the pipe took.
        writes: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let Some(limit) = this.limit.filter(|&l| l < buf.remaining()) else {
                return Pin::new(&mut this.pipe).poll_read(cx, buf);
            };
            let mut part = ReadBuf::new(buf.initialize_unfilled_to(limit));
            ready!(Pin::new(&mut this.pipe).poll_read(cx, &mut part))?;
            let n = part.filled().len();
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let written = ready!(Pin::new(&mut this.pipe).poll_write(cx, data))?;
            this.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(Ok(written))
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().pipe).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().pipe).poll_shutdown(cx)
        }
    }

    /// [`tls_pair`] with the client limited to one protocol version, and the server's reads
    /// to `trickle` bytes at most.
    async fn tls_pair_with(
        version: Option<&'static rustls::SupportedProtocolVersion>,
        trickle: Option<usize>,
    ) -> (ServerTls<Trickle>, TlsStream<DuplexStream>) {
        let dev = dev_dir();
        let config = crate::transport::tls::server_config(dev_cert_store().into());
        let trust = crate::transport::tls::ClientTrust {
            ca_files: vec![dev.join("ca.pem")],
            insecure: false,
            ca_flag: "--ca",
        };
        let mut client = crate::transport::tls::client_config(&trust).unwrap();
        if let Some(version) = version {
            let mut only =
                rustls::ClientConfig::builder_with_provider(client.crypto_provider().clone())
                    .with_protocol_versions(&[version])
                    .unwrap()
                    .with_root_certificates({
                        let mut roots = rustls::RootCertStore::empty();
                        roots.add_parsable_certificates(
                            crate::transport::tls::load_certs(&dev.join("ca.pem")).unwrap(),
                        );
                        roots
                    })
                    .with_no_client_auth();
            only.alpn_protocols = client.alpn_protocols.clone();
            client = Arc::new(only);
        }
        let client = tokio_rustls::TlsConnector::from(client);
        let (a, b) = trickle_pipe(trickle);
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (s, c) = tokio::join!(ServerTls::accept(config, a), client.connect(name, b));
        (s.unwrap(), c.unwrap())
    }

    fn pattern(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    }

    /// Nothing more arrives within a moment: the read is still waiting.
    async fn waits<F: std::future::Future>(f: F) -> bool {
        tokio::time::timeout(Duration::from_millis(30), f)
            .await
            .is_err()
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_whole_and_in_order_and_close_notify_ends_each_side() {
        both_ways(tls_pair().await, 3 << 20).await;
    }

    #[tokio::test]
    async fn records_arriving_in_odd_small_pieces_are_put_together() {
        // 61 bytes at a time: every record arrives split, across many reads.
        both_ways(tls_pair_with(None, Some(61)).await, 200_000).await;
    }

    async fn both_ways<O, P>((ours, peer): (O, P), len: usize)
    where
        O: AsyncRead + AsyncWrite + Send + 'static,
        P: AsyncRead + AsyncWrite + Send + 'static,
    {
        let up = pattern(len, 1);
        let down = pattern(len, 2);
        let (mut our_r, mut our_w) = tokio::io::split(ours);
        let (mut peer_r, mut peer_w) = tokio::io::split(peer);
        let (up2, down2) = (up.clone(), down.clone());
        let client = tokio::spawn(async move {
            let send = async {
                peer_w.write_all(&up2).await.unwrap();
                peer_w.shutdown().await.unwrap();
            };
            let mut got = Vec::new();
            let recv = peer_r.read_to_end(&mut got);
            let ((), n) = tokio::join!(send, recv);
            n.unwrap();
            assert!(got == down2, "the client got the server's bytes whole");
        });
        let send = async {
            // Vectored writes as the frame writer makes them: a header, then the payload.
            let mut at = 0;
            while at < down.len() {
                let end = (at + 70_000).min(down.len());
                let parts = [
                    io::IoSlice::new(&[0xAA][..0]),
                    io::IoSlice::new(&down[at..end]),
                ];
                at += our_w.write_vectored(&parts).await.unwrap();
            }
            our_w.flush().await.unwrap();
        };
        let recv = async {
            // Odd-sized reads: records are split across reads and held back in between.
            let mut got = Vec::new();
            let mut piece = vec![0u8; 1000];
            loop {
                let n = our_r.read(&mut piece).await.unwrap();
                if n == 0 {
                    break got;
                }
                got.extend_from_slice(&piece[..n]);
            }
        };
        let ((), got) = tokio::join!(send, recv);
        assert!(got == up, "the server got the client's bytes whole");
        our_w.shutdown().await.unwrap();
        client.await.unwrap();
    }

    /// Our client over a pipe whose reads return at most `trickle` bytes, and a tokio-rustls
    /// server, the handshake done (the server's end completes with our first write).
    async fn client_pair(
        trickle: Option<usize>,
        version: Option<&'static rustls::SupportedProtocolVersion>,
    ) -> (
        ClientTls<Trickle>,
        tokio_rustls::server::TlsStream<DuplexStream>,
    ) {
        let mut config = (*crate::transport::tls::server_config(dev_cert_store().into())).clone();
        if let Some(version) = version {
            config = rustls::ServerConfig::builder_with_provider(config.crypto_provider().clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(config.cert_resolver.clone());
        }
        let client = dev_client_config();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (a, b) = trickle_pipe(trickle);
        let server = tokio::spawn(tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(b));
        let mut ours = ClientTls::connect(client, name, a).await.unwrap();
        // Our Finished leaves with the first write; an empty frame of ours starts nothing.
        ours.write_all(b"hello").await.unwrap();
        ours.flush().await.unwrap();
        let mut peer = server.await.unwrap().unwrap();
        let mut hello = [0u8; 5];
        peer.read_exact(&mut hello).await.unwrap();
        assert_eq!(&hello, b"hello");
        (ours, peer)
    }

    #[tokio::test]
    async fn our_client_carries_bytes_both_ways_with_a_library_server() {
        for (trickle, version) in [
            (None, None),
            (Some(7), None),
            (None, Some(&rustls::version::TLS12)),
        ] {
            let (ours, peer) = client_pair(trickle, version).await;
            let expected = version.map_or(rustls::ProtocolVersion::TLSv1_3, |v| v.version);
            assert_eq!(ours.conn.protocol_version(), Some(expected));
            both_ways((ours, peer), 300_000).await;
        }
    }

    #[tokio::test]
    async fn the_handshakes_last_flight_leaves_with_the_first_write() {
        use std::sync::atomic::Ordering::SeqCst;
        // The client: ClientHello, then its Finished and the request in one write.
        let config = crate::transport::tls::server_config(dev_cert_store().into());
        let (client, name) = dev_client();
        let (a, b) = trickle_pipe(None);
        let writes = a.writes.clone();
        let server = tokio::spawn(tokio_rustls::TlsAcceptor::from(config.clone()).accept(b));
        let mut ours = ClientTls::connect(dev_client_config(), name.clone(), a)
            .await
            .unwrap();
        assert_eq!(writes.load(SeqCst), 1, "only the ClientHello has gone");
        ours.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        ours.flush().await.unwrap();
        assert_eq!(writes.load(SeqCst), 2, "the Finished went with the request");
        let mut peer = server.await.unwrap().unwrap();
        let mut request = [0u8; 18];
        peer.read_exact(&mut request).await.unwrap();
        assert_eq!(&request, b"GET / HTTP/1.1\r\n\r\n");

        // The server (TLS 1.3): its flight, then its tickets and its answer in one write,
        // even though it read the request and was flushed in between.
        let (a, b) = trickle_pipe(None);
        let writes = a.writes.clone();
        let (ours, peer) = tokio::join!(ServerTls::accept(config, a), client.connect(name, b));
        let (mut ours, mut peer) = (ours.unwrap(), peer.unwrap());
        assert_eq!(writes.load(SeqCst), 1, "only the server's flight has gone");
        peer.write_all(b"req").await.unwrap();
        peer.flush().await.unwrap();
        let mut got = [0u8; 3];
        ours.read_exact(&mut got).await.unwrap();
        ours.flush().await.unwrap();
        assert_eq!(writes.load(SeqCst), 1, "reading and flushing sent nothing");
        ours.write_all(b"answer").await.unwrap();
        ours.flush().await.unwrap();
        assert_eq!(writes.load(SeqCst), 2, "the tickets went with the answer");
        let mut answer = [0u8; 6];
        peer.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
    }

    /// What `forward` does: one client configuration, a tunnel after another. Each handshake
    /// after the first resumes (no certificate sent or checked), on the one ticket each
    /// server handshake gives, which leaves with the server's first answer.
    #[tokio::test]
    async fn a_sequence_of_connections_keeps_resuming() {
        let config = crate::transport::tls::server_config(dev_cert_store().into());
        let client = dev_client_config();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        for round in 0..5 {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let server = tokio::spawn({
                let config = config.clone();
                async move {
                    let mut ours = ServerTls::accept(config, a).await.unwrap();
                    let mut request = [0u8; 3];
                    ours.read_exact(&mut request).await.unwrap();
                    ours.write_all(b"answer").await.unwrap();
                    ours.flush().await.unwrap();
                    ours.conn.handshake_kind()
                }
            });
            let mut peer = ClientTls::connect(client.clone(), name.clone(), b)
                .await
                .unwrap();
            peer.write_all(b"req").await.unwrap();
            peer.flush().await.unwrap();
            let mut answer = [0u8; 6];
            peer.read_exact(&mut answer).await.unwrap();
            let expected = match round {
                0 => rustls::HandshakeKind::Full,
                _ => rustls::HandshakeKind::Resumed,
            };
            assert_eq!(peer.conn.handshake_kind(), Some(expected), "round {round}");
            assert_eq!(server.await.unwrap(), Some(expected), "round {round}");
        }
    }

    #[tokio::test]
    async fn tls_1_2_clients_are_served_too() {
        let (mut ours, mut peer) = tls_pair_with(Some(&rustls::version::TLS12), None).await;
        assert_eq!(
            ours.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        let data = pattern(300_000, 5);
        let (mut up, mut down) = (vec![0u8; data.len()], vec![0u8; data.len()]);
        let (sent, received) = tokio::join!(
            async {
                peer.write_all(&data).await?;
                peer.flush().await?;
                peer.read_exact(&mut down).await
            },
            async {
                ours.read_exact(&mut up).await?;
                ours.write_all(&up).await?;
                ours.flush().await
            }
        );
        sent.unwrap();
        received.unwrap();
        assert!(up == data && down == data, "both ways whole");
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffers() {
        let (mut ours, mut peer) = tls_pair().await;
        // The session tickets, held for the first answer.
        assert!(ours.flight_held);
        let held = ours.buffered_capacity();
        assert!(held > 0 && held <= 512, "after the handshake: {held} bytes");
        for round in 0..3u8 {
            peer.write_all(&[round; 100]).await.unwrap();
            peer.flush().await.unwrap();
            let mut got = [0u8; 100];
            ours.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [round; 100]);
            ours.write_all(&got).await.unwrap();
            ours.flush().await.unwrap();
            peer.read_exact(&mut got).await.unwrap();
            assert!(waits(ours.read(&mut got)).await, "nothing more was sent");
            assert_eq!(ours.buffered_capacity(), 0, "round {round}: idle");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_does_not_take_the_wake_up_of_a_writer_waiting_for_room() {
        let (ours, mut peer) = tls_pair().await;
        let (mut our_r, mut our_w) = tokio::io::split(ours);
        let data = pattern(4 << 20, 6);
        let sent = data.clone();
        // The writer fills the pipe and waits for room, in its own task.
        let writer = tokio::spawn(async move {
            our_w.write_all(&sent).await.unwrap();
            our_w.flush().await.unwrap();
            our_w
        });
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            our_r.read_exact(&mut byte).await.unwrap();
            our_r
        });
        // Once the writer waits, one byte makes the reader run while output is queued.
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.write_all(b"!").await.unwrap();
        peer.flush().await.unwrap();
        let mut got = vec![0u8; data.len()];
        let read = tokio::time::timeout(Duration::from_secs(20), peer.read_exact(&mut got));
        read.await
            .expect("the writer was woken when the pipe had room")
            .unwrap();
        assert!(got == data);
        let (our_r, our_w) = (reader.await.unwrap(), writer.await.unwrap());
        drop(our_r.unsplit(our_w));
    }

    #[tokio::test]
    async fn records_that_arrive_while_writing_are_kept_for_reads() {
        let (mut ours, mut peer) = tls_pair().await;
        peer.write_all(b"first").await.unwrap();
        peer.flush().await.unwrap();
        // A read into an empty buffer returns once data is waiting, and takes none of it.
        assert_eq!(ours.read(&mut []).await.unwrap(), 0);
        // Writing now makes rustls hand the waiting record over: it must not be lost.
        ours.write_all(b"reply").await.unwrap();
        ours.flush().await.unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"reply");
        peer.write_all(b"second").await.unwrap();
        peer.flush().await.unwrap();
        let mut got = [0u8; 11];
        ours.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"firstsecond");
    }

    #[tokio::test]
    async fn a_reader_that_stops_early_holds_little() {
        let (mut ours, mut peer) = tls_pair().await;
        let sender = tokio::spawn(async move {
            let _ = peer.write_all(&pattern(4 << 20, 3)).await;
            peer
        });
        let mut piece = [0u8; 4096];
        ours.read_exact(&mut piece).await.unwrap();
        assert!(waits(std::future::pending::<()>()).await);
        assert!(
            ours.buffered_capacity() <= 2 * FIRST_AHEAD + MAX_RECORD,
            "holds {} bytes for a reader that stopped",
            ours.buffered_capacity()
        );
        sender.abort();
    }

    #[tokio::test]
    async fn a_writer_whose_peer_does_not_read_holds_a_bounded_amount() {
        let (mut ours, _peer) = tls_pair().await;
        let data = pattern(8 << 20, 4);
        assert!(waits(ours.write_all(&data)).await, "the peer reads nothing");
        assert!(
            ours.output.buf.len() <= SEND_BUFFER + 64 * RECORD_OVERHEAD,
            "holds {} bytes of output",
            ours.output.buf.len()
        );
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        // Instead of a ClientHello.
        let config = crate::transport::tls::server_config(dev_cert_store().into());
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        b.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let e = ServerTls::accept(config, a).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // The client was told why, with an alert record.
        let mut alert = [0u8; 1];
        b.read_exact(&mut alert).await.unwrap();
        assert_eq!(alert[0], 0x15, "an alert record");

        // A forged application-data record after the handshake.
        let (mut ours, mut peer) = tls_pair().await;
        let raw = peer.get_mut().0;
        let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        record.extend_from_slice(&[0x5A; 0x40]);
        raw.write_all(&record).await.unwrap();
        let e = ours.read(&mut [0u8; 100]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        // The peer is told why on the next flush, though the tickets were still held for a
        // first write that will now never come.
        ours.flush().await.unwrap();
        let told = tokio::time::timeout(Duration::from_secs(10), peer.read(&mut [0u8; 100]))
            .await
            .expect("the alert was sent by the flush");
        let e = told.unwrap_err();
        assert!(e.to_string().contains("alert"), "{e}");
    }

    /// Found by fuzz target tls_server: handshake records whose message spans records, then
    /// an error; rustls still referred to the failed input when it was asked for its alert.
    #[tokio::test]
    async fn a_failed_handshake_with_a_message_split_across_records_does_not_panic() {
        let hex = concat!(
            "1603010122003e130213031301c02cc030009fcca9cca8ccaac02bc02f009ec024c028006bc023c0270067c0",
            "0ac0140030c009c0130033009d009c003d003c0035002f2294bf9600ff010000ba0000000e000c0000096c6f",
            "63616c686f7374000b000403000102000a00160014001d0017001e0019001801000101010201030104002300",
            "000010000b000908687474702f312e310016000000170000000d002a002804030503060308070808080908ab",
            "43c6280408050806040105010601030303010302040205020602002b0009080304030303020301002d000201",
            "01003300260024001d002083fadc0a0000000000000000000000000000000000000000000000000000000000",
            "00000000000000000000000000000000f09883eff5ca6f6c611d51208e9dd9b4c27889d4f586476db6ed986b",
        );
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let (a, mut b) = tokio::io::duplex(64 * 1024);
        let a = Trickle {
            pipe: a,
            limit: Some(306),
            writes: Arc::default(),
        };
        b.write_all(&bytes).await.unwrap();
        b.shutdown().await.unwrap();
        let config = crate::transport::tls::server_config(dev_cert_store().into());
        assert!(ServerTls::accept(config, a).await.is_err());
    }

    #[tokio::test]
    async fn a_connection_closed_without_close_notify_is_an_unexpected_eof() {
        let (mut ours, peer) = tls_pair().await;
        drop(peer);
        let e = ours.read(&mut [0u8; 100]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    /// What one side saw of a [`SCRIPT`] run: every read's bytes in order (as one stream),
    /// how its input ended.
    #[derive(Debug, PartialEq, Eq)]
    struct Seen {
        server_got: Vec<u8>,
        server_end: Result<(), io::ErrorKind>,
        client_got: Vec<u8>,
    }

    /// The byte script: the client's writes (sizes around record boundaries and past the
    /// read-ahead), each answered by the server with its bytes reversed, then the client's
    /// close_notify (or, with `abrupt`, a dropped connection), then the server's last words.
    const SCRIPT: [usize; 8] = [1, 5, 1000, 16 * 1024, 16 * 1024 + 1, 100_000, 300_000, 7];

    async fn run_script<S>(mut server: S, mut client: TlsStream<DuplexStream>, abrupt: bool) -> Seen
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut seen = Seen {
            server_got: Vec::new(),
            server_end: Ok(()),
            client_got: Vec::new(),
        };
        for (i, &len) in SCRIPT.iter().enumerate() {
            let sent = pattern(len, i as u32);
            let writing = async {
                client.write_all(&sent).await?;
                client.flush().await
            };
            let (wrote, got) = tokio::join!(writing, async {
                let mut got = vec![0u8; len];
                server.read_exact(&mut got).await.map(|_| got)
            });
            wrote.unwrap();
            let mut got = got.unwrap();
            seen.server_got.extend_from_slice(&got);
            got.reverse();
            let (answered, back) = tokio::join!(
                async {
                    server.write_all(&got).await?;
                    server.flush().await
                },
                async {
                    let mut back = vec![0u8; len];
                    client.read_exact(&mut back).await.map(|_| back)
                }
            );
            answered.unwrap();
            seen.client_got.extend_from_slice(&back.unwrap());
        }
        if abrupt {
            drop(client);
            seen.server_end = server
                .read(&mut [0u8; 64])
                .await
                .map(|_| ())
                .map_err(|e| e.kind());
            return seen;
        }
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        seen.server_end = server
            .read_to_end(&mut rest)
            .await
            .map(|_| ())
            .map_err(|e| e.kind());
        seen.server_got.extend_from_slice(&rest);
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut last = Vec::new();
        client.read_to_end(&mut last).await.unwrap();
        seen.client_got.extend_from_slice(&last);
        seen
    }

    /// A pipe whose server end reads at most `trickle` bytes at a time.
    fn trickle_pipe(trickle: Option<usize>) -> (Trickle, DuplexStream) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let a = Trickle {
            pipe: a,
            limit: trickle,
            writes: Arc::default(),
        };
        (a, b)
    }

    /// A tokio-rustls client trusting the development CA, and the name to ask for.
    fn dev_client() -> (
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    ) {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        (tokio_rustls::TlsConnector::from(dev_client_config()), name)
    }

    /// A client configuration trusting the development CA.
    fn dev_client_config() -> Arc<rustls::ClientConfig> {
        let trust = crate::transport::tls::ClientTrust {
            ca_files: vec![dev_dir().join("ca.pem")],
            insecure: false,
            ca_flag: "--ca",
        };
        crate::transport::tls::client_config(&trust).unwrap()
    }

    /// tokio-rustls' server stream over the same configuration and pipe as [`tls_pair_with`].
    async fn library_pair(
        trickle: Option<usize>,
    ) -> (
        tokio_rustls::server::TlsStream<Trickle>,
        TlsStream<DuplexStream>,
    ) {
        let config = crate::transport::tls::server_config(dev_cert_store().into());
        let (client, name) = dev_client();
        let (a, b) = trickle_pipe(trickle);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (s, c) = tokio::join!(acceptor.accept(a), client.connect(name, b));
        (s.unwrap(), c.unwrap())
    }

    /// The differential test that keeps the choice of rustls' unbuffered API honest: the
    /// same byte script through our stream and through tokio-rustls' gives the same
    /// plaintext both ways and the same end — whole records or records in 7-byte pieces, an
    /// orderly close_notify or a dropped connection.
    #[tokio::test]
    async fn the_same_script_through_our_stream_and_tokio_rustls_gives_the_same_plaintext() {
        for trickle in [None, Some(7)] {
            for abrupt in [false, true] {
                let (ours, peer) = tls_pair_with(None, trickle).await;
                let ours = run_script(ours, peer, abrupt).await;
                let (theirs, peer) = library_pair(trickle).await;
                let theirs = run_script(theirs, peer, abrupt).await;
                let case = format!("trickle {trickle:?}, abrupt {abrupt}");
                assert_eq!(ours.server_end, theirs.server_end, "{case}");
                assert!(
                    ours.server_got == theirs.server_got,
                    "{case}: the server read differs"
                );
                assert!(
                    ours.client_got == theirs.client_got,
                    "{case}: the client read differs"
                );
                let total: usize = SCRIPT.iter().sum();
                assert_eq!(ours.server_got.len(), total, "{case}");
                let want_back = total + if abrupt { 0 } else { 3 };
                assert_eq!(ours.client_got.len(), want_back, "{case}");
            }
        }
    }
}
