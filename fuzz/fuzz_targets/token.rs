//! The token parser and verifier. Invariants: no panic; a token accepted by `verify` names
//! a key that exists; minting then verifying any resource for this gate succeeds.
#![no_main]

use arcgate::token::{Audience, KeySet, SasToken, mint, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = KeySet::from_json(
        br#"[{"name":"ops","key":"0123456789abcdef0123"},{"name":"n","key":"fedcba9876543210fedc","ports":[22]}]"#,
    )
    .expect("fixed keys parse");
    let audience = Audience { name: "myhost", host: None };
    let text = String::from_utf8_lossy(data);
    let _ = SasToken::parse(&text);
    if let Ok(grant) = verify(&keys, &text, &audience, 1_800_000_000) {
        assert!(keys.get(&grant.key_name).is_some());
    }
    // Round trip: whatever the bytes, a token we mint for a resource naming this gate verifies.
    let host: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).take(20).collect();
    let host = if host.is_empty() { "h".to_string() } else { host };
    let token = mint(&format!("http://{host}/myhost/"), "ops", "0123456789abcdef0123", 1_800_000_100);
    assert!(verify(&keys, &token, &audience, 1_800_000_000).is_ok(), "{token}");
});
