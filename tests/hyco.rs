//! Microsoft's Hybrid Connections library for Node (`hyco-ws` 1.0.5, from npm) as a real
//! third party: its listener on `arcgate relay`, its sender through `arcgate relay` to
//! `serve --relay`, and its tokens (`createRelayToken`) accepted everywhere. The harness
//! scripts are in `tests/hyco/` (installed by `.ci/install-test-deps` with `npm ci`); they
//! work around hyco-ws's own bugs, never the relay's, and say how.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// `node tests/hyco/SCRIPT ARGS`, trusting the development CA.
fn node(script: &str, args: &[&str]) -> Command {
    let dir = repo("tests/hyco");
    assert!(
        dir.join("node_modules/hyco-ws").is_dir(),
        "hyco-ws is not installed: run .ci/install-test-deps (npm ci in tests/hyco)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", repo("certs-dev/ca.pem"));
    cmd
}

/// A hyco-ws listener attached to `relay` for GATE_NAME with the relay's listen key.
fn hyco_listener(relay: &RelayServer) -> Running {
    let running = Running::spawn(
        &mut node(
            "listener.js",
            &[
                &relay.url(GATE_NAME),
                RELAY_LISTEN_KEY.0,
                RELAY_LISTEN_KEY.1,
            ],
        ),
        true,
    );
    running
        .wait_ready(
            "the hyco-ws listener",
            "listening",
            &["refused", "error", "timeout"],
        )
        .unwrap_or_else(|l| panic!("hyco-ws listener failed: {l}"));
    running
}

/// Runs the hyco-ws sender; its one line of output.
fn hyco_send(url: &str, port: u16, mode: &str) -> String {
    let out = node(
        "sender.js",
        &[
            url,
            RELAY_SEND_KEY.0,
            RELAY_SEND_KEY.1,
            &port.to_string(),
            mode,
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!(
        "hyco-ws sender ({mode}): {stdout}; {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A token from hyco-ws's createRelayToken for `uri`, in a file.
fn hyco_token_file(dir: &Path, uri: &str, key: (&str, &str)) -> std::path::PathBuf {
    let out = node("token.js", &[uri, key.0, key.1]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write_token(dir, &String::from_utf8(out.stdout).unwrap())
}

#[test]
fn hyco_ws_listens_on_the_relay_and_senders_reach_it_both_ways() {
    // Before: the relay withheld Sec-WebSocket-Key from connectHeaders, so hyco-ws's
    // listener refused every accept (400, or a crash in its reject path), and the relay
    // closed text messages with 1003.
    let relay = RelayServer::start();
    let listener = hyco_listener(&relay);
    let url = relay.url(GATE_NAME);

    // hyco-ws's sender, text and binary: each comes back as what it was.
    assert_eq!(
        hyco_send(&url, 22, "text:{\"hello\":1}"),
        "text {\"hello\":1}"
    );
    assert_eq!(hyco_send(&url, 22, "binary:bytes"), "binary bytes");
    listener.log.expect(&["accept id=", "sec-websocket-key"]);

    // arcgate's own client, with a token hyco-ws minted: bytes both ways through hyco-ws.
    let token = hyco_token_file(relay.dir.path(), &url, RELAY_SEND_KEY);
    let mut client = spawn_piped(&mut connect_cmd(&url, 22, &token));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut stdin = client.stdin.take().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut stdin, &sent).unwrap();
        stdin
    });
    let mut back = vec![0u8; data.len()];
    read_stdout(&mut client, &mut back);
    assert!(back == data, "the bytes changed on the way through hyco-ws");
    drop(writer.join().unwrap());
    let (status, mut client) = wait_with_deadline(client, std::time::Duration::from_secs(10));
    assert!(status.success(), "{}", stderr_of(&mut client));
    relay
        .running
        .log
        .expect(&["sender joined", "key=senders", "listener_key=gates"]);
}

#[test]
fn hyco_ws_senders_reach_sshd_through_the_relay_and_the_gate_decides() {
    let sshd = Sshd::start();
    let relay = RelayServer::start();
    let gate = Gate::start_relayed(&[sshd.port], &relay.url(GATE_NAME), &[]);
    let url = relay.url(GATE_NAME);

    // The SSH banner: sshd speaks first, through the gate and the relay to hyco-ws.
    let banner = hyco_send(&url, sshd.port, "first");
    assert!(banner.starts_with("binary SSH-2.0-"), "{banner}");
    gate.running
        .log
        .expect(&["decision=\"allow\"", &format!("port={}", sshd.port)]);

    // A port the host's policy does not allow: the gate's refusal reaches hyco-ws.
    let refused = hyco_send(&url, 22, "first");
    assert_eq!(refused, "refused 403 connection not allowed");
    gate.running
        .log
        .expect(&["decision=\"deny\"", "port_not_allowed"]);

    // A gate listening with a listen token hyco-ws minted attaches too.
    let token = hyco_token_file(
        relay.dir.path(),
        &format!("{url}?sb-hc-action=listen"),
        RELAY_LISTEN_KEY,
    );
    let second = Gate::start_relayed(
        &[sshd.port],
        &url,
        &["--relay-token-file", token.to_str().unwrap()],
    );
    drop(second);
}
