//! The gate's TLS stream (`ServerTls`) fed arbitrary client bytes, delivered in pieces of a
//! size the first byte chooses (see `peer.rs`). Invariants: no panic, no hang: every
//! connection ends, with an error unless it was a clean TLS session.
#![no_main]

mod peer;

use std::sync::{Arc, OnceLock};

use arcgate::transport::server_tls::ServerTls;
use libfuzzer_sys::fuzz_target;

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
    let Some(client) = peer::Peer::from_input(data) else {
        return;
    };
    peer::run(async {
        if let Ok(tls) = ServerTls::accept(config(), client).await {
            peer::drain(tls).await;
        }
    });
});
