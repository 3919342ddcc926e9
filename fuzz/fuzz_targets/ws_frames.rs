//! The WebSocket frame reader, as the gate runs it (server role, 1 MiB limit). Invariants:
//! no panic, no hang, and data handed out never exceeds the bytes given.
#![no_main]

use arcgate::transport::ws::{Event, FrameReader, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut reader = FrameReader::new(data, Role::Server, 1 << 20, 64);
        let mut total = 0usize;
        for _ in 0..data.len() + 2 {
            match reader.next().await {
                Ok(Event::Data(d)) => total += d.len(),
                Ok(_) => {}
                Err(_) => break,
            }
            assert!(total <= data.len());
        }
    });
});
