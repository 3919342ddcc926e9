//! The I/O every role shares, below them: TLS (configurations, the gate's own server
//! stream, clients' read-ahead), WebSocket framing for the data path, the bridge, the one
//! keepalive rule, deadlines, accepting within limits, serving TLS + HTTP, lingering close,
//! HTTP CONNECT proxies and the one outbound dialer. It decides no policy and knows no role.
//!
//! | module | owns |
//! |---|---|
//! | `accept` | accepting without spinning on errors; the limits on connections in their handshake |
//! | `serve` | the accept loop and each connection's TLS + HTTP/1.1, for the gate and the relay |
//! | `linger` | lingering close, so that refusals reach clients that were still sending |
//! | [`tls`] | TLS configurations and certificate reload |
//! | [`server_tls`] | the gate's TLS stream on rustls' unbuffered API: buffers freed while idle |
//! | `readahead` | clients' large socket reads under TLS while data streams, none while idle |
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
pub(crate) mod readahead;
pub(crate) mod serve;
pub mod server_tls;
pub mod tls;
pub mod ws;

/// The data path's chunk: the most read from a socket at once (clients' read-ahead, the
/// gate's TLS input), the largest data frame the bridge sends (its `buf_size`), so that one
/// read takes a whole frame's records, and what the relay reads from one side at once, so
/// that a frame passes through in one piece.
pub const CHUNK: usize = 256 * 1024;

/// The most unsent plaintext a connection takes into its TLS buffer (rustls' default is
/// 64 KiB). rustls accepts plaintext only up to this limit, so under the default each 64 KiB
/// data frame (header included, just over 64 KiB) left as one large write and one of 14 bytes
/// (seen with strace in the bulk bench): twice the system calls and wake-ups. One largest
/// frame plus room for its header fits a frame whole, and bounds what a session that is not
/// being read can queue here. The gate's own TLS stream ([`ServerTls`](server_tls::ServerTls)) keeps the same bound
/// on its encrypted output.
pub const SEND_BUFFER: usize = CHUNK + 4096;
