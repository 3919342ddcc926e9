//! `arcgate connect`'s standard input and output.
//!
//! OpenSSH runs a `ProxyCommand` with pipes for both. A pipe can be made non-blocking and
//! driven by the runtime like a socket, so each chunk of an SSH session is read and written
//! on the session's own thread. Anything else — a terminal, a file, a socket — goes through
//! tokio's `stdin()`/`stdout()`, which hand every read and write to a blocking thread (and
//! copy through that thread's buffer).
//!
//! It does not know about tunnels; [`crate::client`] bridges whatever it is given.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;

/// Standard input: a non-blocking pipe when it is one.
#[derive(Debug)]
pub enum Stdin {
    /// A pipe, read without a blocking thread.
    Pipe(pipe::Receiver),
    /// Anything else.
    Other(tokio::io::Stdin),
}

/// Standard output: a non-blocking pipe when it is one.
#[derive(Debug)]
pub enum Stdout {
    /// A pipe, written without a blocking thread.
    Pipe(pipe::Sender),
    /// Anything else.
    Other(tokio::io::Stdout),
}

/// How much a pipe holds (Linux's default is 64 KiB). ssh fills the ProxyCommand's stdin in
/// writes as large as its channel window; a larger pipe takes them in fewer rounds of ssh
/// blocking and us waking. Linux allows up to /proc/sys/fs/pipe-max-size (1 MiB by default)
/// without privileges; failing to grow is harmless.
const PIPE_SIZE: usize = 1 << 20;

/// This process's standard input. Must be called inside the runtime.
pub fn stdin() -> Stdin {
    match as_pipe(io::stdin().as_fd(), pipe::Receiver::from_owned_fd) {
        Some(p) => Stdin::Pipe(p),
        None => Stdin::Other(tokio::io::stdin()),
    }
}

/// This process's standard output. Must be called inside the runtime.
pub fn stdout() -> Stdout {
    match as_pipe(io::stdout().as_fd(), pipe::Sender::from_owned_fd) {
        Some(p) => Stdout::Pipe(p),
        None => Stdout::Other(tokio::io::stdout()),
    }
}

/// `fd` as a non-blocking pipe end grown to [`PIPE_SIZE`], when it is a pipe (`open` refuses
/// anything else).
fn as_pipe<T: AsFd>(fd: BorrowedFd<'_>, open: fn(OwnedFd) -> io::Result<T>) -> Option<T> {
    let pipe = fd.try_clone_to_owned().and_then(open).ok()?;
    let _ = rustix::pipe::fcntl_setpipe_size(&pipe, PIPE_SIZE);
    Some(pipe)
}

impl AsyncRead for Stdin {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdin::Pipe(p) => Pin::new(p).poll_read(cx, buf),
            Stdin::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stdout::Pipe(p) => Pin::new(p).poll_write(cx, buf),
            Stdout::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdout::Pipe(p) => Pin::new(p).poll_flush(cx),
            Stdout::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stdout::Pipe(p) => Pin::new(p).poll_shutdown(cx),
            Stdout::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
