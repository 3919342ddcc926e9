//! The connect-request parser: request target and headers → `ConnectRequest` or a 400.
//! Input: the first line is the request target (path and query); each further line is a
//! `Name: value` header. Invariant: no panic; an accepted request has a port in 1..=65535,
//! an id of 1..=64 characters and a name of the allowed characters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut builder = hyper::Request::builder().uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = builder.body(()) else {
        return; // not a request hyper would hand us
    };
    let (head, ()) = request.into_parts();
    if let Ok(r) = arcgate::hc::request::parse(&head) {
        assert!(r.port.get() >= 1);
        assert!(!r.id.is_empty() && r.id.chars().count() <= 64);
        assert!(!r.name.is_empty() && r.name.len() <= 253);
        assert!(r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    }
});
