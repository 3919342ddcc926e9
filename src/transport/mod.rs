//! Transport.

pub mod accept;
pub mod bridge;
pub mod deadline;
pub mod linger;
pub mod proxy;
pub mod readahead;
pub mod server_tls;
pub mod tls;
pub mod ws;
