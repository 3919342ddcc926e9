//! The I/O every role shares, below them: TLS (configurations, our own streams for both
//! sides), WebSocket framing for the data path, the bridge, the one
//! keepalive rule, deadlines, accepting within limits, serving TLS + HTTP, lingering close,
//! HTTP CONNECT proxies and the one outbound dialer. It decides no policy and knows no role.
//!
//! | module | owns |
//! |---|---|
//! | `accept` | accepting without spinning on errors; the limits on connections in their handshake |
//! | `serve` | the accept loop and each connection's TLS + HTTP/1.1, for the gate and the relay |
//! | `linger` | lingering close, so that refusals reach clients that were still sending |
//! | [`tls`] | TLS configurations and certificate reload |
//! | [`server_tls`] | TLS streams (server and client) on rustls' unbuffered API: buffers freed while idle |
//! | [`ws`] | WebSocket framing for the data path |
//! | [`bridge`] | one session: WebSocket ⇄ local stream, half-close, pings, close codes |
//! | `keepalive` | the one ping rule for sessions and control channels |
//! | `dial` | the one outbound dialer: TCP or proxy, TLS, the upgrade |
//! | [`proxy`] | outbound HTTP CONNECT proxies and their bypass rules |
//! | [`deadline`] | named timeouts for every phase; the Unix clock for tokens |

pub(crate) mod accept;
pub mod admin;
pub mod bridge;
pub mod deadline;
pub(crate) mod dial;
pub(crate) mod keepalive;
pub(crate) mod linger;
pub mod proxy;
pub(crate) mod serve;
pub mod server_tls;
pub mod tls;
pub mod ws;

/// The data path's chunk: the most read from a socket at once (a TLS stream's input), the
/// largest data frame the bridge sends (its `buf_size`), so that one
/// read takes a whole frame's records, and what the relay reads from one side at once, so
/// that a frame passes through in one piece.
pub const CHUNK: usize = 256 * 1024;

/// The most encrypted output a TLS stream ([`TlsStream`](server_tls::TlsStream)) queues for
/// the socket: one largest frame plus room for its header and records, so that a frame
/// leaves whole in one write (rustls' buffered connection took 64 KiB at a time, so each
/// 64 KiB frame left as two writes, seen with strace in the bulk bench), and a bound on what
/// a session that is not being read can queue.
pub const SEND_BUFFER: usize = CHUNK + 4096;
