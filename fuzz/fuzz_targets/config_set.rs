//! The `config set` value parser and list edits. Input: `KEY\nVALUE\nMODE` where MODE picks
//! set, add, remove or clear. Invariants: no panic; an accepted change yields a configuration
//! that survives the file round trip; monitor mode's locks hold.
#![no_main]

use arcgate::config::{Change, Config, Key, Mode, Raw};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(key) = Key::from_name(key) else {
        return;
    };
    let raw = Raw::from_cli(key, value);
    let change = match parts.next().and_then(|m| m.bytes().next()).unwrap_or(0) % 4 {
        0 => Change::Set(raw),
        1 => Change::Add(raw),
        2 => Change::Remove(raw),
        _ => Change::Clear,
    };
    for start in [Config::default(), {
        let mut c = Config::default();
        c.mode = Mode::Monitor;
        c
    }] {
        match start.change(key, &change) {
            Ok(next) => {
                assert!(!(start.mode == Mode::Monitor && key.locked_in_monitor()));
                let again = Config::from_json(&next.to_json()).expect("a changed config writes back");
                assert_eq!(again, next);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
