//! Readiness and stopping reported to systemd (`Type=notify`), so that `systemctl start
//! arcgate` returns once the gate listens and a unit ordered after it finds it there.
//!
//! The protocol is one datagram per state to the socket named by `NOTIFY_SOCKET` (a path, or
//! an abstract name after `@`); with no such variable (not started by systemd) nothing is
//! sent. A failure to send is logged, never fatal: the gate serves either way, and systemd
//! reports a start that never said ready on its own.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`) to systemd's notification socket, if there is one.
pub(crate) fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|datagram| {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(socket.as_os_str());
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                datagram.send_to_addr(state.as_bytes(), &addr)
            }
            None => datagram.send_to(state.as_bytes(), &socket),
        }
    });
    if let Err(error) = sent {
        tracing::warn!(%error, state, socket = ?socket, "cannot notify systemd");
    }
}
