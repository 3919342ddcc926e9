//! The gate's TLS stream (`ServerTls`) fed arbitrary client bytes, delivered in pieces of a
//! size the first byte chooses (1 to 3,844 bytes: records split every which way). Invariants:
//! no panic, no hang: every connection ends, with an error unless it was a clean TLS session.
#![no_main]

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use arcgate::transport::server_tls::ServerTls;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// A client that sends `data` a piece at a time, then closes, and takes whatever it is sent.
struct Client<'a> {
    data: &'a [u8],
    piece: usize,
}

impl AsyncRead for Client<'_> {
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

impl AsyncWrite for Client<'_> {
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

fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dev = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-dev");
            let store = arcgate::transport::tls::CertStore::load(
                &dev.join("server.pem"),
                &dev.join("server-key.pem"),
            )
            .unwrap();
            arcgate::transport::tls::server_config(store.into())
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let client = Client {
        data: rest,
        piece: usize::from(first % 64) * 61 + 1,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        if let Ok(mut tls) = ServerTls::accept(config(), client).await {
            let mut buf = [0u8; 4096];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }
    });
});
