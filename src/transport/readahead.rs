//! Read-ahead under TLS: large socket reads while data streams, none held while idle.
//!
//! rustls reads its input 4 KiB at a time (`READ_SIZE` in its deframer), so a stream of
//! 16 KiB TLS records costs four or more `read` system calls per record, each also waking the
//! sender. [`ReadAhead`] sits between the socket and the TLS layer: while the socket has more
//! waiting than the reader asks for, it reads ahead — [`FIRST_AHEAD`] at first, up to
//! [`CHUNK`] while the reader keeps up — and serves the small reads from memory; as soon as
//! one read takes everything the socket had, or the socket has nothing waiting, it frees the
//! buffer, so an idle session holds none. Writes pass straight through.
//!
//! It does not know about TLS or WebSockets; it only changes how reads reach the socket. The
//! clients (`connect`, `forward`) use it under tokio-rustls; the gate's own TLS stream
//! ([`crate::transport::server_tls`]) reads ahead by itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::CHUNK;

/// The first read-ahead of a connection. It doubles each time a read fills it, up to
/// [`CHUNK`], so a stream reaches full size within a few reads, while a connection whose
/// reader stops early — a client pipelining bytes behind a request the gate is still
/// deciding, say — holds at most this much here, not 256 KiB for each of the thousands of
/// connections that may be in their handshake at once.
pub(crate) const FIRST_AHEAD: usize = 16 * 1024;

/// A stream whose small reads are served from one large read while data keeps coming.
#[derive(Debug)]
pub struct ReadAhead<S> {
    io: S,
    /// Empty (no allocation) unless the last socket read left bytes over.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// How much the next read-ahead reads: from [`FIRST_AHEAD`] up to [`CHUNK`].
    size: usize,
}

impl<S> ReadAhead<S> {
    /// Wraps `io`; nothing is allocated until a read finds more waiting than was asked for.
    pub fn new(io: S) -> Self {
        ReadAhead {
            io,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            size: FIRST_AHEAD,
        }
    }

    /// The stream underneath, for shutting it down or draining it. Bytes already read ahead
    /// are not in it.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Copies what is buffered into `out`.
    fn serve(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.end - self.pos);
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.end {
            this.serve(out);
            return Poll::Ready(Ok(()));
        }
        let asked = out.remaining();
        if this.buf.is_empty() || asked >= CHUNK {
            // Direct: a read that fills the reader's whole request suggests more is waiting,
            // so the next read goes through the buffer.
            let before = out.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, out))?;
            let got = out.filled().len() - before;
            if got > 0 && got == asked && asked < CHUNK {
                this.buf = vec![0; this.size];
            }
            return Poll::Ready(Ok(()));
        }
        if this.buf.len() < this.size {
            // Drained, and the last read-ahead was filled: read more at once from now on.
            this.buf = vec![0; this.size];
        }
        let mut fill = ReadBuf::new(&mut this.buf);
        if Pin::new(&mut this.io)
            .poll_read(cx, &mut fill)?
            .is_pending()
        {
            // Nothing waiting: the stream has caught up or gone idle; hold no buffer meanwhile.
            this.buf = Vec::new();
            return Poll::Pending;
        }
        let got = fill.filled().len();
        if got == this.buf.len() {
            this.size = (this.size * 2).min(CHUNK);
        }
        (this.pos, this.end) = (0, got);
        this.serve(out);
        if got <= asked {
            // The socket had no more than the reader wanted: back to direct reads, no buffer.
            this.buf = Vec::new();
            (this.pos, this.end) = (0, 0);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_of_a_stream_see_every_byte_in_order() {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            tx.write_all(&sent).await.unwrap();
        });
        let mut r = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        let mut buffered_at_some_point = false;
        loop {
            let n = r.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            buffered_at_some_point |= !r.buf.is_empty();
            got.extend_from_slice(&piece[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
        assert!(
            buffered_at_some_point,
            "a stream larger than a read is read ahead"
        );
        assert!(
            r.buf.is_empty(),
            "nothing is held once the stream has ended"
        );
    }

    #[tokio::test]
    async fn read_ahead_starts_small_and_grows_only_while_the_reader_keeps_up() {
        let (mut tx, rx) = tokio::io::duplex(2 << 20);
        tx.write_all(&vec![1u8; 1 << 20]).await.unwrap();
        let mut r = ReadAhead::new(rx);
        let mut piece = [0u8; 4096];
        // A reader that stops after two reads has had at most FIRST_AHEAD read ahead for it.
        r.read_exact(&mut piece).await.unwrap();
        r.read_exact(&mut piece).await.unwrap();
        assert_eq!(r.buf.len(), FIRST_AHEAD, "a first read-ahead is small");
        // A reader that keeps up gets the full size.
        let mut total = 2 * piece.len();
        while total < 1 << 20 {
            total += r.read(&mut piece).await.unwrap();
            if r.buf.len() == CHUNK {
                return;
            }
        }
        panic!("never grew to {CHUNK}: at {}", r.buf.len());
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut r = ReadAhead::new(rx);
        let mut piece = [0u8; 4096];
        for round in 0..3u8 {
            tx.write_all(&[round; 10]).await.unwrap();
            let n = r.read(&mut piece).await.unwrap();
            assert_eq!(&piece[..n], &[round; 10]);
            assert!(
                r.buf.is_empty(),
                "round {round}: a short read allocates nothing"
            );
        }
        // A burst larger than the reader's request: buffered while it drains, freed after.
        tx.write_all(&[9u8; 1000]).await.unwrap();
        let mut small = [0u8; 100];
        let mut total = 0;
        while total < 1000 {
            total += r.read(&mut small).await.unwrap();
        }
        tx.write_all(b"x").await.unwrap();
        assert_eq!(r.read(&mut small).await.unwrap(), 1);
        assert!(
            r.buf.is_empty(),
            "the buffer goes once a read takes all there is"
        );
        // Drained exactly, then idle: the read that waits holds no buffer.
        tx.write_all(&[7u8; 300]).await.unwrap();
        for _ in 0..3 {
            assert_eq!(r.read(&mut small).await.unwrap(), 100);
        }
        assert!(!r.buf.is_empty(), "a burst is read ahead");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), r.read(&mut small));
        assert!(waiting.await.is_err(), "nothing more was sent");
        assert!(
            r.buf.is_empty(),
            "a read with nothing waiting frees the buffer"
        );
    }
}
