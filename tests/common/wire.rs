//! Talking to a gate by hand: raw TLS requests, WebSocket frames, plain HTTP, dev TLS.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A TLS client configuration that trusts only the development CA.
pub(crate) fn dev_ca_client_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in arcgate::transport::tls::load_certs(&repo("certs-dev/ca.pem")).unwrap() {
        roots.add(cert).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// The gate's TLS configuration with the development certificate, for servers the tests
/// script by hand (a relay, an endpoint that never answers).
pub(crate) fn dev_server_config() -> Arc<rustls::ServerConfig> {
    let certs = Arc::new(
        arcgate::transport::tls::CertStore::load(
            &repo("certs-dev/server.pem"),
            &repo("certs-dev/server-key.pem"),
        )
        .unwrap(),
    );
    arcgate::transport::tls::server_config(certs)
}

/// Sends raw bytes over TLS (trusting the dev CA) and returns everything the gate answers
/// until it closes (bounded at 64 KiB).
pub(crate) fn raw_tls(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use rustls::pki_types::ServerName;
    let config = dev_ca_client_config();
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The gate may answer (431, 400) and close before a huge request is all written.
    let _ = tls.write_all(request).and_then(|()| tls.flush());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 65536 {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends a request over TLS (trusting the dev CA) and returns the answer's head only, up to
/// its blank line; the connection is dropped after (a `101` session ends with it).
pub(crate) fn answer_head(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let conn = rustls::ClientConnection::new(
        dev_ca_client_config(),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && tls.read_exact(&mut byte).is_ok() {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A WebSocket upgrade request head for `path` with `headers`.
pub(crate) fn upgrade_request(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// `GET path` over plain HTTP; returns the status code and body.
pub(crate) fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_get_as(addr, path, &addr.to_string())
}

/// `GET path` over plain HTTP with `host` as the `Host` header.
pub(crate) fn http_get_as(addr: std::net::SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Bodies here are small and sent whole (Content-Length), never chunked.
    (code, body.to_string())
}

/// A WebSocket session opened by hand over TLS, for sending frames no real client would.
pub(crate) struct RawWs {
    pub tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl RawWs {
    /// Upgrades to a session to `port` through `gate`; fails unless the answer is 101.
    pub(crate) fn open(gate: &Gate, port: u16) -> RawWs {
        let conn = rustls::ClientConnection::new(
            dev_ca_client_config(),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let tcp = std::net::TcpStream::connect(gate.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let token = gate.token(&[]);
        tls.write_all(&upgrade_request(
            &format!("/$hc/{GATE_NAME}?sb-hc-action=connect&port={port}"),
            &[("ServiceBusAuthorization", &token)],
        ))
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tls.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        RawWs { tls }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).unwrap();
        self.tls.flush().unwrap();
    }

    /// Reads frames until a Close; its code, or `None` if the connection ends first.
    pub(crate) fn close_code(&mut self) -> Option<u16> {
        loop {
            let mut h = [0u8; 2];
            self.tls.read_exact(&mut h).ok()?;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                self.tls.read_exact(&mut l).ok()?;
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.tls.read_exact(&mut l).ok()?;
                len = u64::from_be_bytes(l);
            }
            let mut payload = vec![0u8; len as usize];
            self.tls.read_exact(&mut payload).ok()?;
            if h[0] & 0x0f == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    }
}

/// A client frame: `first` is the FIN/RSV/opcode byte; masked unless `masked` is false.
pub(crate) fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let mask = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}
