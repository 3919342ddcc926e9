//! The clients' TLS stream (`ClientTls`, used by `connect`, `forward` and the relayed gate's
//! dial-out) fed arbitrary server bytes, delivered in pieces of a size the first byte chooses
//! (see `peer.rs`). Certificates are not checked (`--insecure`'s configuration). What it
//! reaches: the handshake's plaintext part (ServerHello, HelloRetryRequest, TLS 1.2's
//! Certificate, alerts, record framing) and how the stream ends on each failure. Not past
//! it: the client's random and key share are fresh each run, so a recorded flight cannot
//! decrypt (TLS 1.3) or verify (TLS 1.2's signed key exchange), and the stream's reads after
//! a handshake are covered by `transport::server_tls::tests` instead. Invariants: no panic,
//! no hang: every connection ends, with an error unless it was a clean TLS session.
#![no_main]

mod peer;

use std::sync::{Arc, OnceLock};

use arcgate::transport::server_tls::ClientTls;
use libfuzzer_sys::fuzz_target;

fn config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            arcgate::transport::tls::client_config(&arcgate::transport::tls::ClientTrust {
                ca_files: Vec::new(),
                insecure: true,
                ca_flag: "--ca",
            })
            .unwrap()
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some(server) = peer::Peer::from_input(data) else {
        return;
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    peer::run(async {
        if let Ok(tls) = ClientTls::connect(config(), name, server).await {
            peer::drain(tls).await;
        }
    });
});
