//! The other end of a TLS stream under fuzzing: it sends its bytes a piece at a time, then
//! closes, and takes whatever it is sent. Shared by `tls_server` and `tls_client`.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A peer that sends `data` in pieces of `piece` bytes.
pub struct Peer<'a> {
    data: &'a [u8],
    piece: usize,
}

impl<'a> Peer<'a> {
    /// The first byte chooses the piece size (1 to 3,844 bytes: records split every which
    /// way); the rest is what the peer sends. `None` for no input.
    pub fn from_input(input: &'a [u8]) -> Option<Peer<'a>> {
        let (&first, data) = input.split_first()?;
        Some(Peer {
            data,
            piece: usize::from(first % 64) * 61 + 1,
        })
    }
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Reads `tls` to its end or first error.
pub async fn drain(mut tls: impl AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// A current-thread runtime running `work` to its end.
pub fn run(work: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(work);
}
