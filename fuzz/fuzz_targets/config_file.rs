//! The configuration file parser. Invariants: no panic; a file that parses writes back to
//! bytes that parse to the same configuration.
#![no_main]

use arcgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = Config::from_json(data) {
        let again = Config::from_json(&config.to_json()).expect("our own output parses");
        assert_eq!(again, config);
    }
});
