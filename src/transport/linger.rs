//! Lingering close: after answering a request it did not read whole (a 431 for a megabyte
//! of headers, say), the gate keeps reading and discarding for a moment before closing.
//!
//! Closing a TCP socket with unread input makes the kernel send RST instead of FIN, and a
//! RST makes the client's kernel throw away our answer before the client reads it. So the
//! connection's stream is wrapped; when hyper drops it without it having been taken for a
//! WebSocket session, a task drains the input — bounded in time and bytes — then closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::transport::accept::HandshakePlace;
use crate::transport::server_tls::ServerTls;

/// The gate's (and the relay's) connection stream: TLS over a socket.
pub(crate) type GateStream = ServerTls<TcpStream>;

/// How long a closed connection's input is drained: enough for a client to finish sending
/// a request we refused and read the answer; short enough that it holds little.
const LINGER_FOR: Duration = Duration::from_secs(2);
/// How much input is drained at most; past it the client gets its RST.
const LINGER_BYTES: usize = 2 << 20;

/// A connection's stream that drains on drop unless taken with [`Lingering::into_inner`].
pub(crate) struct Lingering {
    io: Option<GateStream>,
    /// Held until the draining ends, so lingering connections count against the limit on
    /// connections in their handshake.
    permit: Option<HandshakePlace>,
}

impl Lingering {
    /// Wraps a connection; `permit` is released when the connection is fully closed.
    pub(crate) fn new(io: GateStream, permit: HandshakePlace) -> Lingering {
        Lingering {
            io: Some(io),
            permit: Some(permit),
        }
    }

    /// Takes the stream for a WebSocket session: no lingering, and the permit is released.
    pub(crate) fn into_inner(mut self) -> GateStream {
        if let Some(place) = self.permit.take() {
            place.release();
        }
        self.io.take().expect("present until taken")
    }

    fn io(&mut self) -> Pin<&mut GateStream> {
        Pin::new(self.io.as_mut().expect("present until taken"))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(mut io), permit) = (self.io.take(), self.permit.take()) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            // The TLS layer is done (close_notify sent by hyper's shutdown); drain below it.
            let tcp = io.get_mut();
            let _ = tcp.shutdown().await;
            let mut buf = [0u8; 8192];
            let mut drained = 0;
            let drain = async {
                while drained < LINGER_BYTES {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_FOR, drain).await;
            if let Some(place) = permit {
                place.release();
            }
        });
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}
