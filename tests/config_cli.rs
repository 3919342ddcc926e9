//! `arcgate config` and `arcgate extension check` through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

fn text(out: &std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_key_sets_gets_and_clears() {
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    let cases = [
        ("incomingconnections.enabled", "false", "false", "true"),
        (
            "incomingconnections.ports",
            "22,3389, 5900-5910",
            "[22, 3389, 5900-5910]",
            "[]",
        ),
        (
            "proxy.url",
            "http://proxy.example:8080",
            "http://proxy.example:8080",
            "",
        ),
        ("extensions.allowlist", "A/B,C.D/E", "[A/B, C.D/E]", "[]"),
        ("extensions.blocklist", "X/Y", "[X/Y]", "[]"),
        (
            "proxy.bypass",
            "Arc,.corp.example,10.0.0.0/8",
            "[Arc, .corp.example, 10.0.0.0/8]",
            "[]",
        ),
        ("guestconfiguration.enabled", "false", "false", "true"),
        ("extensions.enabled", "false", "false", "true"),
        (
            "incomingconnections.enableduntil",
            "2026-12-02T18:00:00Z",
            "2026-12-02T18:00:00Z",
            "",
        ),
        ("incomingconnections.maxsessionduration", "90m", "90m", ""),
        (
            "incomingconnections.allowedsources",
            "192.0.2.0/24,2001:db8::/32",
            "[192.0.2.0/24, 2001:db8::/32]",
            "[]",
        ),
        (
            "incomingconnections.approval",
            "required",
            "required",
            "none",
        ),
        // Last: monitor mode locks the incoming connection keys.
        ("config.mode", "monitor", "monitor", "full"),
    ];
    for (key, value, shown, default) in cases {
        let (code, out, err) = text(&config_cmd(&cfg, &["set", key, value]));
        assert_eq!(code, 0, "{key}: {err}");
        assert_eq!(
            out.lines().next().unwrap(),
            format!("Config property {key} set to value {shown} (previously {default})")
        );
        let (_, out, _) = text(&config_cmd(&cfg, &["get", key]));
        assert_eq!(out, format!("{key:<44}: {shown}\n"));
        let (_, out, _) = text(&config_cmd(&cfg, &["get", key, "-j"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["key"], key);
        if key == "config.mode" {
            continue; // cleared below, after the monitor-mode checks
        }
        let (code, out, err) = text(&config_cmd(&cfg, &["clear", key]));
        assert_eq!(code, 0, "{key}: {err}");
        assert_eq!(
            out,
            format!(
                "Config property {key} cleared to its default {default} (previously {shown})\n"
            )
        );
        config_cmd(&cfg, &["set", key, value]);
    }
    let (_, out, _) = text(&config_cmd(&cfg, &["list"]));
    assert!(
        out.starts_with(
            "Local Configuration Settings\nincomingconnections.enabled                 : false\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("config.mode                                 : monitor\n")
            && out.ends_with("incomingconnections.approval                : required\n"),
        "{out}"
    );
    let (_, out, _) = text(&config_cmd(&cfg, &["list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let settings = v["localsettings"].as_array().unwrap();
    assert_eq!(settings.len(), 13);
    assert_eq!(
        settings[1]["value"],
        serde_json::json!([22, 3389, "5900-5910"])
    );
    let (code, out, _) = text(&config_cmd(&cfg, &["clear", "config.mode"]));
    assert_eq!(code, 0);
    assert!(out.contains("(previously monitor)"), "{out}");
}

#[test]
fn invalid_input_is_refused_with_a_clear_error_and_writes_nothing() {
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    config_cmd(&cfg, &["set", "incomingconnections.ports", "22"]);
    let before = std::fs::read(&cfg).unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["set", "bogus.key", "1"],
            &[
                "unknown configuration key 'bogus.key'",
                "incomingconnections.ports",
            ],
        ),
        (
            &["set", "incomingconnections.ports", "0"],
            &["incomingconnections.ports", "'0'", "1 to 65535"],
        ),
        (
            &["set", "incomingconnections.ports", "70000"],
            &["'70000'", "1 to 65535"],
        ),
        (
            &["set", "incomingconnections.enabled", "yes"],
            &["incomingconnections.enabled", "'yes'", "true, false"],
        ),
        (
            &["set", "config.mode", "audit"],
            &["config.mode", "'audit'", "full, monitor"],
        ),
        (
            &["set", "-a", "-r", "incomingconnections.ports", "22"],
            &["cannot be used with"],
        ),
        (
            &["set", "--add", "config.mode", "full"],
            &["config.mode is not a list"],
        ),
        (
            &["set", "extensions.allowlist", "NoSlash"],
            &["Publisher/Type"],
        ),
        (&["set", "proxy.url", "ftp://x"], &["must be http://"]),
        // Relay mode cannot speak TLS to a proxy: refused here rather than accepted and then
        // failing at every reconnect.
        (
            &["set", "proxy.url", "https://proxy.example:3128"],
            &["https:// proxies", "not supported", "plain http://"],
        ),
        (&["set", "proxy.bypass", "*x"], &["not *, a host name"]),
    ];
    for (args, needles) in cases {
        let (code, out, err) = text(&config_cmd(&cfg, args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
        for n in *needles {
            assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
        }
        assert_eq!(
            std::fs::read(&cfg).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
    // A file that is not a configuration: every command says what is wrong, and exits 1.
    std::fs::write(&cfg, b"\x00\x01 not json").unwrap();
    let (code, _, err) = text(&config_cmd(&cfg, &["list"]));
    assert_eq!(code, 1);
    assert!(err.contains("not a valid configuration file"), "{err}");
    std::fs::write(
        &cfg,
        br#"{"incomingconnections.ports":[22],"surprise":true}"#,
    )
    .unwrap();
    let (code, _, err) = text(&config_cmd(
        &cfg,
        &["set", "incomingconnections.ports", "23"],
    ));
    assert_eq!(code, 1);
    assert!(err.contains("unknown field `surprise`"), "{err}");
}

#[test]
fn monitor_mode_locks_keys_until_full() {
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    config_cmd(&cfg, &["set", "incomingconnections.ports", "22"]);
    let (code, _, _) = text(&config_cmd(&cfg, &["set", "config.mode", "monitor"]));
    assert_eq!(code, 0);
    let (_, out, _) = text(&config_cmd(&cfg, &["list"]));
    assert!(
        out.contains("incomingconnections.enabled                 : false"),
        "{out}"
    );
    assert!(
        out.contains("guestconfiguration.enabled                  : false"),
        "{out}"
    );
    assert!(
        out.contains("Microsoft.Azure.Monitor/AzureMonitorLinuxAgent"),
        "{out}"
    );
    for args in [
        &["set", "incomingconnections.enabled", "true"][..],
        &["set", "--add", "incomingconnections.ports", "23"],
        &["clear", "extensions.allowlist"],
        &["set", "extensions.blocklist", "A/B"],
        &["set", "guestconfiguration.enabled", "true"],
    ] {
        let (code, _, err) = text(&config_cmd(&cfg, args));
        assert_eq!(code, 2, "{args:?}");
        assert!(
            err.contains("while config.mode is monitor") && err.contains("config.mode full"),
            "{err}"
        );
    }
    let (code, _, _) = text(&config_cmd(&cfg, &["set", "config.mode", "full"]));
    assert_eq!(code, 0);
    let (_, out, _) = text(&config_cmd(&cfg, &["get", "incomingconnections.enabled"]));
    assert!(
        out.ends_with(": false\n"),
        "switching to full changes no other key: {out}"
    );
    let (code, _, _) = text(&config_cmd(
        &cfg,
        &["set", "incomingconnections.enabled", "true"],
    ));
    assert_eq!(code, 0);
}

#[test]
fn insecure_files_are_refused() {
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    config_cmd(&cfg, &["set", "incomingconnections.ports", "22"]);
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (code, _, err) = text(&config_cmd(&cfg, &["list"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("writable by group or others") && err.contains("chmod go-w"),
        "{err}"
    );
    // serve refuses it too, and says why.
    let out = serve_cmd(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by group or others"), "{err}");
}

/// StrictModes along the whole path: a configuration (or keys file) that is a symlink into a
/// directory anyone may write in — here a private directory inside the system's temporary
/// directory, sticky and world-writable above it — is refused by `config` and by `serve`,
/// since another user could swap what it points to.
#[test]
fn a_file_linked_into_a_world_writable_directory_is_refused() {
    let outside = tempfile::tempdir_in("/tmp").expect("a directory in /tmp");
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let tmp = outside.path().parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&tmp).unwrap().permissions().mode();
    assert!(
        mode & 0o002 != 0,
        "{} is world-writable ({mode:o})",
        tmp.display()
    );
    let real = outside.path().join("localconfig.json");
    std::fs::write(&real, "{}").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    std::os::unix::fs::symlink(&real, &cfg).unwrap();
    let (code, _, err) = text(&config_cmd(&cfg, &["list"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("refusing to use {}", tmp.display())) && err.contains("sticky"),
        "{err}"
    );
    let out = serve_cmd(&cfg).output().unwrap();
    let err = exit_stderr(&out, 1);
    assert!(err.contains("refusing to use"), "{err}");

    // The keys file too: a link from the gate's directory to a secret file in /tmp.
    std::fs::remove_file(&cfg).unwrap();
    // (serve made a keys file of its own before it read the configuration.)
    let _ = std::fs::remove_file(dir.path().join("keys.json"));
    let keys = outside.path().join("keys.json");
    write_secret(&keys, r#"[{"name":"ops","key":"0123456789abcdef0123"}]"#);
    std::os::unix::fs::symlink(&keys, dir.path().join("keys.json")).unwrap();
    let out = arcgate_cmd()
        .args(["token", "--key-name", "ops", "--name", "h", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = exit_stderr(&out, 1);
    assert!(
        err.contains(&format!("refusing to use {}", tmp.display())),
        "{err}"
    );
}

#[test]
fn a_write_that_dies_midway_leaves_the_old_file_intact() {
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    config_cmd(&cfg, &["set", "incomingconnections.ports", "22"]);
    let before = std::fs::read(&cfg).unwrap();
    // A file-size limit of zero blocks makes the first write of the new file fail
    // (SIGXFSZ or EFBIG): the process dies or errors with the new content half-written.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f 0; exec '{}' config set incomingconnections.ports 22,3389,5900-5910 --config '{}'",
            arcgate(),
            cfg.display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the write was expected to fail");
    assert_eq!(
        std::fs::read(&cfg).unwrap(),
        before,
        "the old file is intact"
    );
    let (code, out, _) = text(&config_cmd(&cfg, &["get", "incomingconnections.ports"]));
    assert_eq!(code, 0);
    assert!(out.ends_with(": [22]\n"), "{out}");
}

#[test]
fn extension_check_follows_the_agents_rule() {
    let dir = private_dir();
    let cfg = dir.path().join("localconfig.json");
    let check = |name: &str| {
        let out = arcgate_cmd()
            .args(["extension", "check", name, "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        text(&out)
    };
    let (code, out, _) = check("Pub/Any");
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "Pub/Any is allowed: no extensions.allowlist is set and it is not blocked\n"
        )
    );
    config_cmd(&cfg, &["set", "extensions.blocklist", "Pub/Bad"]);
    assert_eq!(check("pub/bad").0, 1);
    config_cmd(&cfg, &["set", "extensions.allowlist", "Pub/Good"]);
    assert_eq!(check("Pub/Good").0, 0);
    assert_eq!(check("Pub/Other").0, 1);
    config_cmd(&cfg, &["set", "extensions.enabled", "false"]);
    let (code, out, _) = check("Pub/Good");
    assert_eq!(code, 1);
    assert!(out.contains("extensions.enabled is false"), "{out}");
    assert_eq!(check("no-slash").0, 2);
}

/// `/var/opt/arcgate` present for the length of a test: made (and removed after) when the
/// machine has none, left alone when it has one.
struct SystemDir {
    made: bool,
    _machine: std::sync::MutexGuard<'static, ()>,
}

impl SystemDir {
    fn present() -> SystemDir {
        let machine = machine_lock();
        let dir = std::path::Path::new("/var/opt/arcgate");
        let marker = dir.join(".made-by-arcgate-tests");
        // A run killed before its clean-up left the directory with only its marker: ours.
        let ours = marker.exists() && std::fs::read_dir(dir).unwrap().count() == 1;
        let made = ours || !dir.exists();
        if !dir.exists() {
            std::fs::create_dir(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(&marker, "").unwrap();
        }
        SystemDir {
            made,
            _machine: machine,
        }
    }
}

impl Drop for SystemDir {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file("/var/opt/arcgate/.made-by-arcgate-tests");
            let _ = std::fs::remove_dir("/var/opt/arcgate");
        }
    }
}

#[test]
fn a_user_is_not_given_a_file_the_gate_never_reads() {
    // Before: as a non-root user, `config set incomingconnections.enabled false` printed
    // success and wrote ~/.config/arcgate/..., while the root gate kept reading
    // /var/opt/arcgate/... and stayed open.
    let _system = SystemDir::present();
    // nobody's home: in a directory every parent of which passes the file checks and which
    // nobody can traverse (the build tree may be under /tmp, and root's home is 0700).
    let base = tempfile::Builder::new()
        .prefix(".arcgate-test-")
        .tempdir_in("/var/opt")
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = base.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(arcgate())
            .args(args)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin");
        cmd.output().unwrap()
    };
    for args in [
        &["config", "set", "incomingconnections.enabled", "false"][..],
        &["config", "list"],
        &["key", "list"],
        &["token", "--name", "x"],
    ] {
        let out = as_nobody(args);
        let (code, _, err) = text(&out);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("this host's configuration is in /var/opt/arcgate, and you are not root")
                && err.contains("--config FILE"),
            "{args:?}: {err}"
        );
    }
    assert!(
        !home.join(".config").exists(),
        "nothing was written to the user's own directory"
    );
    // With a file of their own, named: it works, and the write names the file.
    let mine = home.join("mine.json");
    let out = as_nobody(&[
        "config",
        "set",
        "incomingconnections.enabled",
        "false",
        "--config",
        mine.to_str().unwrap(),
    ]);
    let (code, stdout, err) = text(&out);
    assert_eq!(code, 0, "{err}");
    assert!(
        stdout.starts_with("Config property incomingconnections.enabled set to value false"),
        "{stdout}"
    );
    assert!(
        err.contains(&format!("arcgate: wrote {}", mine.display())),
        "{err}"
    );
}

#[test]
fn the_command_line_follows_the_conventions() {
    // --version names the commit it was built from.
    let out = arcgate_cmd().arg("--version").output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo("."))
        .output()
        .unwrap();
    assert!(head.status.success(), "the tests run in a git checkout");
    let head = String::from_utf8(head.stdout).unwrap();
    // `-dirty` follows the hash when tracked files differed from it at build time.
    let version = version.trim().replace("-dirty)", ")");
    assert_eq!(
        version,
        format!(
            "arcgate {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            head.trim()
        )
    );

    // serve outside the source directory: how to pass a certificate, and nothing created.
    let dir = private_dir();
    let out = arcgate_cmd()
        .args(["serve", "--config"])
        .arg(dir.path().join("etc/localconfig.json"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (code, _, err) = text(&out);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no certificate at certs-dev/server.pem") && err.contains("--cert"),
        "{err}"
    );
    assert!(
        !dir.path().join("etc").exists(),
        "a start that cannot serve creates nothing"
    );

    // -q moves the log level down one step at a time (-v up), the same for every command;
    // RUST_LOG, when set, decides instead (the helpers set it, so it is removed here).
    let config = dir.path().join("localconfig.json");
    let lines_of = |flags: &[&str]| {
        let mut cmd = serve_cmd(&config);
        cmd.args(flags).env_remove("RUST_LOG");
        let running = Running::spawn(&mut cmd, false);
        let gate = Gate::when_listening(running, private_dir());
        gate.running.log.lines().join("\n")
    };
    let normal = lines_of(&[]);
    assert!(
        normal.contains(" INFO ") && normal.contains(" WARN "),
        "{normal}"
    );
    let quiet = lines_of(&["-q"]);
    assert!(
        !quiet.contains(" INFO ") && quiet.contains(" WARN "),
        "{quiet}"
    );
    let quieter = lines_of(&["-qq"]);
    assert!(!quieter.contains(" WARN "), "{quieter}");

    // Back from monitor to full: what monitor mode left is said.
    assert!(
        config_cmd(&config, &["set", "config.mode", "monitor"])
            .status
            .success()
    );
    let out = config_cmd(&config, &["set", "config.mode", "full"]);
    let (code, _, err) = text(&out);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("incomingconnections.enabled stays false, as monitor mode left it"),
        "{err}"
    );
    assert!(err.contains("extensions.allowlist stays ["), "{err}");
}
