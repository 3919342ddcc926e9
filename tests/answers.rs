//! The answers table of SPEC §2, checked on the wire with exact status lines, while an
//! unrelated SSH session keeps working through the same gate.

use std::io::{BufRead, BufReader, Write};

use crate::common::*;

#[test]
fn every_refusal_has_its_status_line_and_other_sessions_keep_working() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);

    // An interactive session: `cat` echoes each line back.
    let mut session = spawn_piped(&mut ssh(&sshd, &proxy_command(&gate, &token, ""), &["cat"]));
    let mut to_cat = session.stdin.take().unwrap();
    let mut from_cat = BufReader::new(session.stdout.take().unwrap());
    let mut echo = |text: &str| {
        writeln!(to_cat, "{text}").unwrap();
        to_cat.flush().unwrap();
        let mut line = String::new();
        from_cat.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), text);
    };
    echo("before");

    let valid = gate.token(&[]);
    let auth = [("ServiceBusAuthorization", valid.as_str())];
    let path = |q: &str| format!("/$hc/{GATE_NAME}?sb-hc-action=connect{q}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "unknown name",
            upgrade_request("/$hc/otherhost?sb-hc-action=connect", &auth),
            "HTTP/1.1 404 Endpoint does not exist\r\n",
        ),
        (
            "plain GET",
            format!("GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n", path("")).into_bytes(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        (
            "malformed upgrade",
            format!(
                "GET {} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
                path("")
            )
            .into_bytes(),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        ("port 0", upgrade_request(&path("&port=0"), &auth), "HTTP/1.1 400 Bad Request\r\n"),
        ("port 65536", upgrade_request(&path("&port=65536"), &auth), "HTTP/1.1 400 Bad Request\r\n"),
        ("port twice", upgrade_request(&path("&port=22&port=3389"), &auth), "HTTP/1.1 400 Bad Request\r\n"),
        (
            "bad action",
            upgrade_request(&format!("/$hc/{GATE_NAME}?sb-hc-action=listen"), &auth),
            "HTTP/1.1 400 Bad Request\r\n",
        ),
        ("not HTTP at all", b"\x16\x03garbage\r\n\r\n".to_vec(), "HTTP/1.1 400 Bad Request\r\n"),
        (
            "no token",
            upgrade_request(&path(&format!("&port={}", sshd.port)), &[]),
            "HTTP/1.1 401 Unauthorized\r\n",
        ),
        (
            // Read from the query like a header's (the valid one below gets through), and
            // refused like one: a bad signature is 401 whatever the port.
            "a bad token in the query",
            upgrade_request(
                &path("&port=2&sb-hc-token=SharedAccessSignature%20sr%3Dx%26sig%3Dbogus%26se%3D1%26skn%3Dops"),
                &[],
            ),
            "HTTP/1.1 401 Unauthorized\r\n",
        ),
    ];
    for (what, request, want) in &cases {
        let answer = raw_tls(gate.addr, request);
        assert!(answer.starts_with(want), "{what}: {answer:?}");
        echo(what);
    }

    // The token in the query string (URL-encoded) is accepted: a listed port gets through to
    // the policy and the dial.
    let encoded = arcgate::token::url_encode(&valid);
    let answer = raw_tls(
        gate.addr,
        &upgrade_request(&path(&format!("&port=2&sb-hc-token={encoded}")), &[]),
    );
    assert!(
        answer.starts_with("HTTP/1.1 403 connection not allowed\r\n"),
        "{answer}"
    );
    let answer = raw_tls(
        gate.addr,
        &upgrade_request(
            &path(&format!("&port={}&sb-hc-token={encoded}", sshd.port)),
            &[],
        ),
    );
    assert!(
        answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{answer}"
    );

    echo("after");
    drop(to_cat);
    let out = session.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
