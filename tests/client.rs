//! The clients' edges: `arcgate ssh-config` used by real `ssh`, an HTTP CONNECT proxy
//! (tinyproxy), and one clear line and a distinct exit code for every kind of failure.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::common::*;

#[test]
fn ssh_config_block_works_with_spaces_and_quotes_in_paths() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let dir = private_dir();
    // The binary, the token and the CA all live under awkward names.
    let bin_dir = dir.path().join("arc gate's bin");
    std::fs::create_dir(&bin_dir).unwrap();
    let exe = bin_dir.join("arcgate");
    std::fs::copy(arcgate(), &exe).unwrap();
    let token = dir.path().join("my token 100%");
    std::fs::write(&token, gate.token(&[])).unwrap();
    let ca = dir.path().join("ca $dir.pem");
    std::fs::copy(repo("certs-dev/ca.pem"), &ca).unwrap();

    let out = Command::new(&exe)
        .args(["ssh-config", "through-gate"])
        .arg(gate.url())
        .args([
            "-p",
            &sshd.port.to_string(),
            "--user",
            &sshd.user,
            "--token-file",
        ])
        .arg(&token)
        .arg("--ca")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let block = String::from_utf8(out.stdout).unwrap();
    assert!(block.starts_with("Host through-gate\n"), "{block}");
    assert!(block.contains("-p %p"), "{block}");
    let config = dir.path().join("ssh_config");
    std::fs::write(&config, &block).unwrap();

    let mut ssh = Command::new("ssh");
    clean_env(&mut ssh).arg("-F").arg(&config);
    let out = quiet_ssh_options(&mut ssh, &sshd.client_key)
        .args(["through-gate", "echo", "configured"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{block}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"configured\n");
}

fn connect_with(gate_url: &str, port: u16, token: &std::path::Path) -> Command {
    let mut cmd = arcgate_cmd();
    cmd.arg("connect")
        .arg(gate_url)
        .args(["-p", &port.to_string(), "--connect-timeout", "10s", "--ca"])
        .arg(repo("certs-dev/ca.pem"))
        .arg("--token-file")
        .arg(token)
        .stdin(Stdio::null());
    cmd
}

#[test]
fn connect_goes_through_an_http_connect_proxy_unless_bypassed() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let proxy = Tinyproxy::start("");
    let token = gate.token_file(&[]);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let proxied = proxy_command(&gate, &token, "");
    let (ok, out, err) =
        run(ssh(&sshd, &proxied, &["echo", "via-proxy"]).env("HTTPS_PROXY", &proxy_url));
    assert!(ok, "{err}");
    assert_eq!(out, "via-proxy\n");
    let connect = format!("CONNECT localhost:{}", gate.addr.port());
    proxy.running.log.expect(&[&connect]);

    // NO_PROXY names the gate's host: the connection goes direct, the proxy sees nothing new.
    let connects = || {
        proxy
            .running
            .log
            .lines()
            .iter()
            .filter(|l| l.contains(&connect))
            .count()
    };
    let seen = connects();
    let (ok, out, err) = run(ssh(&sshd, &proxied, &["echo", "direct"])
        .env("HTTPS_PROXY", &proxy_url)
        .env("NO_PROXY", "example.com,localhost"));
    assert!(ok, "{err}");
    assert_eq!(out, "direct\n");
    assert_eq!(connects(), seen, "a bypassed host went through the proxy");

    // A proxy that refuses CONNECT (tinyproxy limited to port 443) is reported as such.
    let strict = Tinyproxy::start("ConnectPort 443\n");
    let out = connect_with(&gate.url(), sshd.port, &token)
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", strict.port))
        .output()
        .unwrap();
    let err = exit_stderr(&out, 9);
    assert!(
        err.contains("refused CONNECT") && err.contains("403"),
        "{err}"
    );
}

/// Every failure: one line on stderr, naming what happened, and its own exit code.
#[test]
fn every_failure_has_one_clear_line_and_its_exit_code() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port, 1], &[]);
    let token = gate.token_file(&[]);
    let dir = private_dir();
    // A token the client cannot tell is bad (its signature): the gate's 401.
    let bad_token = dir.path().join("bad");
    let good = gate.token(&[]);
    let (head, rest) = good.split_once("sig=").unwrap();
    let forged = format!(
        "{head}sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&{}",
        rest.split_once('&').unwrap().1
    );
    std::fs::write(&bad_token, forged).unwrap();
    let host_wide = gate.token_file(&["--resource", "http://localhost/"]);
    // Tokens the client can tell are bad: said before dialling.
    let expired_token = dir.path().join("expired");
    std::fs::write(&expired_token, gate.token_until(unix_now() - 600)).unwrap();
    let other_token = dir.path().join("other");
    std::fs::write(
        &other_token,
        gate.token(&["--resource", "http://localhost/otherhost/"]),
    )
    .unwrap();
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // 127.0.0.2 is loopback too, but not a name the development certificate covers.
    let other_addr = Gate::start_at("127.0.0.2:0", private_dir(), &[]);
    let gate_port = gate.addr.port();
    let url = gate.url();
    let cases: Vec<(&str, Command, i32, Vec<String>)> = vec![
        (
            "DNS",
            connect_with("wss://no-such-host.invalid/$hc/testhost", 22, &token),
            9,
            vec!["cannot reach no-such-host.invalid:443".into()],
        ),
        (
            "refused",
            connect_with(&format!("wss://localhost:{closed_port}/$hc/testhost"), 22, &token),
            9,
            vec![format!("cannot reach localhost:{closed_port}"), "refused".into()],
        ),
        (
            "name mismatch",
            connect_with(&format!("wss://127.0.0.2:{}/$hc/testhost", other_addr.addr.port()), 22, &token),
            8,
            vec!["TLS with 127.0.0.2 failed".into(), "not valid for this host name".into()],
        ),
        (
            "401",
            connect_with(&url, sshd.port, &bad_token),
            4,
            vec!["testhost refused the connection: 401 Unauthorized".into(), "arcgate token".into()],
        ),
        (
            "expired",
            connect_with(&url, sshd.port, &expired_token),
            4,
            vec![
                "token: the token expired at ".into(),
                "(10m ago by this machine's clock); mint a new one on the host with `arcgate token`".into(),
            ],
        ),
        (
            "another gate's",
            connect_with(&url, sshd.port, &other_token),
            4,
            vec!["token: the token is for http://localhost/otherhost/, not for 'testhost'".into()],
        ),
        (
            "403",
            connect_with(&url, 2, &token),
            3,
            vec!["403 connection not allowed (port 2 is not in incomingconnections.ports on the host)".into()],
        ),
        (
            "404",
            // A host-wide token, for every name: the gate itself answers that it has none.
            connect_with(&format!("wss://localhost:{gate_port}/$hc/elsewhere"), 22, &host_wide),
            5,
            vec!["elsewhere refused the connection: 404 Endpoint does not exist".into()],
        ),
        (
            "503",
            connect_with(&url, 1, &token),
            6,
            vec!["503 connection to localhost:1 failed: Connection refused".into()],
        ),
        (
            "bad URL",
            connect_with("https://localhost/$hc/x", 22, &token),
            2,
            vec!["the scheme must be wss://".into()],
        ),
    ];
    for (what, mut cmd, code, needles) in cases {
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one line, got {err:?}");
        assert!(err.starts_with("arcgate: "), "{what}: {err}");
        for n in needles {
            assert!(err.contains(&n), "{what}: {err:?} lacks {n:?}");
        }
        assert!(
            out.stdout.is_empty(),
            "{what}: stdout carries tunnel bytes only"
        );
    }
}

#[test]
fn insecure_warns_and_still_connects() {
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    let mut child = spawn_piped(
        arcgate_cmd()
            .arg("connect")
            .arg(gate.url())
            .args(["-p", &sshd.port.to_string(), "--insecure", "--token-file"])
            .arg(&token),
    );
    let mut banner = [0u8; 8];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WARNING: --insecure"), "{err}");
}

#[test]
fn tokens_are_written_as_secrets_and_lifetimes_have_units() {
    // Before: `--ttl 8` was 8 seconds and `--ttl 0` a token already expired; the only way
    // to keep a token was the shell's `> file`, mode 0644, without a word.
    let gate = Gate::start(&[22], &[]);
    let token = |extra: &[&str]| {
        arcgate_cmd()
            .arg("token")
            .arg("--config")
            .arg(gate.config_path())
            .args(["--name", GATE_NAME])
            .args(extra)
            .output()
            .unwrap()
    };
    for (ttl, says) in [
        ("8", "'8' has no unit; write 8s, 8m, 8h or 8d"),
        ("0s", "at least 1s"),
    ] {
        let out = token(&["--ttl", ttl]);
        let err = exit_stderr(&out, 2);
        assert!(err.contains(says), "--ttl {ttl}: {err}");
    }

    // --out: 0600, also over a file that was readable by others.
    let dir = private_dir();
    let path = dir.path().join("alice.token");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = token(&["--ttl", "8h", "--out", path.to_str().unwrap()]);
    let err = exit_stderr(&out, 0);
    assert!(
        err.contains("written to") && err.contains("(mode 0600)"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "the token is not printed as well");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.starts_with("SharedAccessSignature "), "{written}");

    // A symlink at --out is replaced, never written through.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path().join("link.token");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = token(&["--ttl", "1h", "--out", link.to_str().unwrap()]);
    exit_stderr(&out, 0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the link's target is untouched");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());

    // stdout redirected to a file others can read: a warning.
    let shared = dir.path().join("shared.token");
    let file = std::fs::File::create(&shared).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let out = arcgate_cmd()
        .arg("token")
        .arg("--config")
        .arg(gate.config_path())
        .args(["--name", GATE_NAME])
        .stdout(file)
        .output()
        .unwrap();
    let err = exit_stderr(&out, 0);
    assert!(
        err.contains("WARNING: the token went to a file others can read (mode 0644)"),
        "{err}"
    );
}

#[test]
fn arcgate_ssh_reaches_a_host_by_its_profile() {
    // Before: reaching a host meant a ProxyCommand with a single-quoted '$hc' URL.
    let sshd = Sshd::start();
    let gate = Gate::start(&[sshd.port], &[]);
    let token = gate.token_file(&[]);
    let home = private_dir();
    let with_home = |cmd: &mut Command| {
        cmd.env("XDG_CONFIG_HOME", home.path());
    };
    let mut add = arcgate_cmd();
    with_home(&mut add);
    let out = add
        .args([
            "profile",
            "add",
            GATE_NAME,
            "--url",
            &gate.url(),
            "--token-file",
        ])
        .arg(&token)
        .arg("--ca")
        .arg(repo("certs-dev/ca.pem"))
        .args(["--port", &sshd.port.to_string()])
        .output()
        .unwrap();
    let err = exit_stderr(&out, 0);
    assert!(
        err.contains(&format!("profile '{GATE_NAME}' saved")),
        "{err}"
    );

    // arcgate ssh user@NAME [ssh options] COMMAND: nothing about the gate on the line.
    let mut ssh = arcgate_cmd();
    with_home(&mut ssh);
    ssh.args([
        "ssh",
        &format!("{}@{GATE_NAME}", sshd.user),
        "-F",
        "/dev/null",
    ]);
    quiet_ssh_options(&mut ssh, &sshd.client_key);
    let out = ssh
        .args(["echo", "through-the-profile"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "through-the-profile"
    );

    // ssh-config NAME without a URL: a block that uses the profile, and works.
    let mut config = arcgate_cmd();
    with_home(&mut config);
    let out = config
        .args(["ssh-config", GATE_NAME, "--user", &sshd.user])
        .output()
        .unwrap();
    let block = String::from_utf8(out.stdout).unwrap();
    assert!(
        block.contains(&format!("connect --profile {GATE_NAME} -p %p")),
        "{block}"
    );
    assert!(block.contains(&format!("Port {}", sshd.port)), "{block}");
    let config_file = home.path().join("ssh_config");
    std::fs::write(&config_file, &block).unwrap();
    let mut plain = Command::new("ssh");
    clean_env(&mut plain)
        .env("XDG_CONFIG_HOME", home.path())
        .arg("-F")
        .arg(&config_file);
    let out = quiet_ssh_options(&mut plain, &sshd.client_key)
        .args([GATE_NAME, "echo", "through-ssh-config"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "through-ssh-config"
    );

    // A name with no profile says how to make one.
    let mut unknown = arcgate_cmd();
    with_home(&mut unknown);
    let out = unknown.args(["ssh", "nobody"]).output().unwrap();
    let err = exit_stderr(&out, 2);
    assert!(
        err.contains("no profile named 'nobody'") && err.contains("arcgate profile add"),
        "{err}"
    );
}
