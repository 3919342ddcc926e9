//! The Debian package as an operator uses it: built by cargo-deb from `Cargo.toml`'s
//! metadata, installed with `dpkg -i`, the gate started exactly as its systemd unit starts it
//! (there is no systemd as PID 1 here: `setpriv` applies the unit's user, group,
//! capabilities, no-new-privileges and umask, and the test makes its RuntimeDirectory), root's
//! commands used on the layout the package made, then removed and purged, leaving the
//! machine as it was. And the completions and man pages it ships are current.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

#[test]
fn the_shipped_completions_and_man_pages_are_what_the_command_line_generates() {
    let dir = tempfile::tempdir().unwrap();
    succeeded(
        &arcgate_cmd()
            .arg("manpages")
            .arg(dir.path())
            .output()
            .unwrap(),
        "manpages",
    );
    let names = |d: &Path| -> BTreeSet<String> {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let fix = "regenerate them: cargo run -- manpages packaging/man; and for each shell, \
               cargo run -- completions bash > packaging/completions/arcgate.bash (zsh: _arcgate, \
               fish: arcgate.fish)";
    let committed = repo("packaging/man");
    assert_eq!(names(dir.path()), names(&committed), "{fix}");
    for name in names(dir.path()) {
        let generated = std::fs::read_to_string(dir.path().join(&name)).unwrap();
        let shipped = std::fs::read_to_string(committed.join(&name)).unwrap();
        assert!(generated == shipped, "packaging/man/{name} is stale; {fix}");
        assert!(generated.contains(".TH arcgate"), "{generated}");
    }
    for (shell, file) in [
        ("bash", "arcgate.bash"),
        ("zsh", "_arcgate"),
        ("fish", "arcgate.fish"),
    ] {
        let generated = succeeded(
            &arcgate_cmd().args(["completions", shell]).output().unwrap(),
            shell,
        );
        let shipped = std::fs::read_to_string(repo("packaging/completions").join(file)).unwrap();
        assert!(
            generated == shipped,
            "packaging/completions/{file} is stale; {fix}"
        );
        assert!(
            generated.contains("relay") && generated.contains("admin-socket"),
            "{generated}"
        );
    }
    // bash accepts what it is given and completes a subcommand from it.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && COMP_WORDS=(arcgate sta) COMP_CWORD=1 && _arcgate arcgate sta arcgate \
             && echo \"${{COMPREPLY[@]}}\"",
            repo("packaging/completions/arcgate.bash").display()
        ))
        .output()
        .unwrap();
    assert_eq!(succeeded(&out, "bash completion").trim(), "status");
}

/// A systemd unit's `[Service]` settings: continuation lines joined, comments dropped.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    settings
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

/// `CAP_NET_BIND_SERVICE CAP_X` as setpriv writes capabilities: `+net_bind_service,+x`.
fn setpriv_caps(caps: &str) -> String {
    caps.split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Everything with `arcgate` in its name where a package and its user leave things, and
/// whether the user and group exist: what "the machine as it was" is compared on. The
/// repository, the build tree and the test's own directory (any of which may live under one
/// of these) are left out.
fn traces(work: &Path) -> BTreeSet<String> {
    let exe = std::env::current_exe().unwrap();
    let build_tree = exe.ancestors().nth(3).unwrap_or(Path::new("/nonexistent"));
    let mut find = Command::new("find");
    find.args([
        "/etc", "/usr", "/var/opt", "/var/log", "/var/lib", "/run", "-xdev",
    ]);
    for skip in [Path::new(env!("CARGO_MANIFEST_DIR")), build_tree, work] {
        find.arg("-path").arg(skip).args(["-prune", "-o"]);
    }
    let out = find
        .args(["-name", "*arcgate*", "-print"])
        .output()
        .unwrap();
    let mut found: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for db in ["passwd", "group"] {
        if Command::new("getent")
            .args([db, "arcgate"])
            .status()
            .unwrap()
            .success()
        {
            found.insert(format!("{db}: arcgate"));
        }
    }
    found
}

/// Takes the package off the machine whatever happens to the test (a failed assertion
/// included), so that no run leaves it installed.
struct Installed {
    gate: Option<Running>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        // Killed on drop; nothing here may panic while a failed test unwinds.
        drop(self.gate.take());
        let _ = Command::new("dpkg").args(["--purge", "arcgate"]).output();
        for f in ["fullchain.pem", "privkey.pem"] {
            let _ = std::fs::remove_file(Path::new("/etc/arcgate/tls").join(f));
        }
        let _ = std::fs::remove_dir("/etc/arcgate/tls");
        let _ = std::fs::remove_dir("/etc/arcgate");
        let _ = std::fs::remove_dir_all("/run/arcgate");
        let _ = std::fs::remove_dir_all("/var/log/arcgate");
    }
}

/// `arcgate` as root, installed, from a clean environment and no `--config`: as an
/// administrator types it.
fn installed(args: &[&str]) -> Output {
    let mut cmd = Command::new("/usr/bin/arcgate");
    clean_env(&mut cmd).args(args).output().unwrap()
}

fn mode_owner(path: &str) -> (u32, String, String) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let name = |db: &str, id: u32| {
        let out = Command::new("getent")
            .args([db, &id.to_string()])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        line.split(':').next().unwrap_or("").to_string()
    };
    (
        meta.mode() & 0o7777,
        name("passwd", meta.uid()),
        name("group", meta.gid()),
    )
}

#[test]
fn the_package_installs_runs_as_its_unit_says_and_purges_to_the_machine_it_found() {
    let _machine = machine_lock();
    // A directory a killed run of config_cli left holds only its marker: not the host's.
    let marker = Path::new("/var/opt/arcgate/.made-by-arcgate-tests");
    if marker.exists() && std::fs::read_dir("/var/opt/arcgate").unwrap().count() == 1 {
        std::fs::remove_file(marker).unwrap();
        std::fs::remove_dir("/var/opt/arcgate").unwrap();
    }
    let dpkg_knows = Command::new("dpkg")
        .args(["-s", "arcgate"])
        .output()
        .unwrap();
    assert!(
        !dpkg_knows.status.success() && !Path::new("/var/opt/arcgate").exists(),
        "arcgate is already installed here (or /var/opt/arcgate exists); this test installs \
         and purges the package and would take the host's configuration with it: remove it \
         first (dpkg --purge arcgate)"
    );
    // The unit's ExecStart listens on 0.0.0.0:443.
    if let Err(e) = std::net::TcpListener::bind("0.0.0.0:443") {
        panic!(
            "port 443 is not free here ({e}): the package's unit listens on it; stop what holds it"
        );
    }
    let work = private_dir();
    let before = traces(work.path());

    // Build: cargo-deb from Cargo.toml's metadata, around the binary under test (the same
    // code as `cargo deb`'s release build, without a second build of the crate here).
    let target = work.path().join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(arcgate(), target.join("release/arcgate")).unwrap();
    let deb = work.path().join("arcgate.deb");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["deb", "--no-build", "--fast", "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    succeeded(
        &built,
        "cargo deb (cargo install cargo-deb, or .ci/install-test-deps)",
    );
    let listing = succeeded(
        &Command::new("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap(),
        "dpkg-deb -c",
    );
    for shipped in [
        "./usr/bin/arcgate",
        "./usr/lib/systemd/system/arcgate.service",
        "./usr/share/man/man1/arcgate.1.gz",
        "./usr/share/man/man1/arcgate-serve.1.gz",
        "./usr/share/bash-completion/completions/arcgate",
        "./usr/share/zsh/vendor-completions/_arcgate",
        "./usr/share/fish/vendor_completions.d/arcgate.fish",
        "./etc/logrotate.d/arcgate",
        "./usr/share/doc/arcgate/README.md",
    ] {
        assert!(listing.contains(shipped), "{shipped} missing:\n{listing}");
    }

    // Install.
    let mut guard = Installed { gate: None };
    let out = Command::new("dpkg").arg("-i").arg(&deb).output().unwrap();
    succeeded(&out, "dpkg -i");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("created /var/opt/arcgate/keys.json") && !said.contains("WARNING"),
        "{said}"
    );
    assert_eq!(
        mode_owner("/var/opt/arcgate"),
        (0o2750, "root".into(), "arcgate".into())
    );
    assert_eq!(
        mode_owner("/var/opt/arcgate/keys.json"),
        (0o600, "arcgate".into(), "arcgate".into())
    );

    // logrotate reads its file (as the service user, in the service user's directory).
    let rotate = Command::new("logrotate")
        .args(["--debug", "/etc/logrotate.d/arcgate"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rotate.stderr);
    assert!(rotate.status.success() && !said.contains("error"), "{said}");

    // The administrator's part: a certificate pair the service user can read, and a port.
    for (from, to, mode) in [
        ("certs-dev/server.pem", "fullchain.pem", 0o644),
        ("certs-dev/server-key.pem", "privkey.pem", 0o640),
    ] {
        let to = Path::new("/etc/arcgate/tls").join(to);
        std::fs::copy(repo(from), &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&to, Some(0), Some(gid_of("arcgate"))).unwrap();
    }
    let sshd = Sshd::start();
    let port = sshd.port.to_string();
    let out = installed(&["config", "set", "incomingconnections.ports", &port]);
    succeeded(&out, "config set as root");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wrote /var/opt/arcgate/localconfig.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The installed unit verifies, the man pages it names included.
    let unit_path = "/usr/lib/systemd/system/arcgate.service";
    let verified = Command::new("systemd-analyze")
        .args(["verify", unit_path])
        .output()
        .unwrap();
    succeeded(&verified, "systemd-analyze verify");
    let warned = String::from_utf8_lossy(&verified.stderr);
    assert!(warned.trim().is_empty(), "{warned}");

    // Start the gate as the installed unit says.
    let unit = std::fs::read_to_string(unit_path).unwrap();
    let unit = unit_settings(&unit);
    assert_eq!(setting(&unit, "Type"), "notify");
    let (user, group) = (setting(&unit, "User"), setting(&unit, "Group"));
    // What systemd makes at start and gives to the unit's user.
    for (dir, under) in [("RuntimeDirectory", "/run"), ("LogsDirectory", "/var/log")] {
        let path = Path::new(under).join(setting(&unit, dir));
        std::fs::create_dir_all(&path).unwrap();
        let mode = u32::from_str_radix(setting(&unit, &format!("{dir}Mode")), 8).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        std::os::unix::fs::chown(&path, Some(uid_of(user)), Some(gid_of(group))).unwrap();
    }
    let runtime = Path::new("/run").join(setting(&unit, "RuntimeDirectory"));
    let exec: Vec<&str> = setting(&unit, "ExecStart").split_whitespace().collect();
    assert!(
        exec.iter().all(|w| !w.contains(['"', '\'', '$'])),
        "the test splits ExecStart on spaces: {exec:?}"
    );
    assert_eq!(setting(&unit, "NoNewPrivileges"), "yes");
    // systemd's notification socket, in /run as systemd's is: one the service user reaches.
    let perm = |path: &Path, mode| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    let notify_dir = tempfile::tempdir_in("/run").unwrap();
    perm(notify_dir.path(), 0o711);
    let notify = notify_dir.path().join("notify");
    let systemd = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    perm(&notify, 0o777);
    systemd
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut cmd = Command::new("sh");
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NOTIFY_SOCKET", &notify)
        .arg("-c")
        .arg(format!("umask {} && exec \"$@\"", setting(&unit, "UMask")))
        .arg("sh")
        .arg("setpriv")
        .arg(format!("--reuid={user}"))
        .arg(format!("--regid={group}"))
        .arg("--init-groups")
        .arg(format!(
            "--inh-caps={}",
            setpriv_caps(setting(&unit, "AmbientCapabilities"))
        ))
        .arg(format!(
            "--ambient-caps={}",
            setpriv_caps(setting(&unit, "AmbientCapabilities"))
        ))
        .arg(format!(
            "--bounding-set=-all,{}",
            setpriv_caps(setting(&unit, "CapabilityBoundingSet"))
        ))
        .arg("--no-new-privs")
        .arg("--")
        .args(&exec);
    let gate = guard.gate.insert(Running::spawn(&mut cmd, false));
    let mut buf = [0u8; 64];
    let n = systemd.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "the gate never said READY=1 ({e}):\n{}",
            gate.log.lines().join("\n")
        )
    });
    assert_eq!(&buf[..n], b"READY=1");
    let listening = gate.log.expect(&["arcgate: listening on 0.0.0.0:443"]);
    let name = listening
        .rsplit(" as '")
        .next()
        .unwrap()
        .trim_end_matches('\'');

    // Root's token, from the service user's keys file; a real ssh through the gate.
    let token = work.path().join("token");
    succeeded(
        &installed(&["token", "--ttl", "10m", "--out", token.to_str().unwrap()]),
        "token as root",
    );
    let proxy = format!(
        "'/usr/bin/arcgate' connect 'wss://localhost:443/$hc/{name}' -p %p --ca '{}' \
         --token-file '{}'",
        repo("certs-dev/ca.pem").display(),
        token.display()
    );
    let (ran, out, err) = run(&mut ssh_to(
        sshd.port,
        &sshd.client_key,
        &sshd.user,
        &proxy,
        &["echo", "ok"],
    ));
    assert!(
        ran && out.trim() == "ok",
        "{err}\n{}",
        gate.log.lines().join("\n")
    );

    // `arcgate status`, no flags, as root: the unit's admin socket.
    let status = succeeded(&installed(&["status"]), "status as root");
    assert!(
        status.contains("From:     /var/opt/arcgate/localconfig.json")
            && status.contains(&format!("Version:  {}", env!("CARGO_PKG_VERSION")))
            && status.contains(&format!("incomingconnections.ports=[{port}]")),
        "{status}"
    );

    // An upgrade (the package installed again) keeps the policy, the keys and their owners.
    let kept = |p: &str| (std::fs::read(p).unwrap(), mode_owner(p));
    let files = [
        "/var/opt/arcgate/localconfig.json",
        "/var/opt/arcgate/keys.json",
    ];
    let before_upgrade: Vec<_> = files.iter().map(|p| kept(p)).collect();
    let out = Command::new("dpkg").arg("-i").arg(&deb).output().unwrap();
    succeeded(&out, "dpkg -i again (upgrade)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !said.contains("WARNING") && !said.contains("created"),
        "{said}"
    );
    let after_upgrade: Vec<_> = files.iter().map(|p| kept(p)).collect();
    assert!(
        before_upgrade == after_upgrade,
        "an upgrade changed the policy or the keys"
    );

    // Root's key change keeps the keys the service user's; the gate applies it.
    let seen = gate.log.len();
    succeeded(&installed(&["key", "add", "ops"]), "key add as root");
    assert_eq!(
        mode_owner("/var/opt/arcgate/keys.json"),
        (0o600, "arcgate".into(), "arcgate".into())
    );
    gate.log
        .wait_for_from(seen, Duration::from_secs(10), |l| {
            l.contains("configuration reloaded") && l.contains("\"ops\"")
        })
        .unwrap_or_else(|| panic!("keys not reloaded:\n{}", gate.log.lines().join("\n")));

    // The kill switch, written by root, reaches the running gate and refuses a real ssh.
    let seen = gate.log.len();
    succeeded(
        &installed(&["config", "set", "incomingconnections.enabled", "false"]),
        "config set enabled false",
    );
    gate.log
        .wait_for_from(seen, Duration::from_secs(10), |l| {
            l.contains("configuration reloaded") && l.contains("incomingconnections.enabled=false")
        })
        .unwrap_or_else(|| panic!("not reloaded:\n{}", gate.log.lines().join("\n")));
    let (ran, _, err) = run(&mut ssh_to(
        sshd.port,
        &sshd.client_key,
        &sshd.user,
        &proxy,
        &["echo", "ok"],
    ));
    assert!(!ran && err.contains("403 connection not allowed"), "{err}");
    let audit = std::fs::read_to_string("/var/log/arcgate/audit.jsonl").unwrap();
    assert!(audit.contains("incoming_connections_disabled"), "{audit}");
    assert_eq!(mode_owner("/var/log/arcgate/audit.jsonl").1, "arcgate");

    // Stop as systemd stops it.
    gate.signal("TERM");
    let n = systemd.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(gate.wait_exit(Duration::from_secs(30)).success());
    guard.gate = None;
    std::fs::remove_dir_all(&runtime).unwrap();

    // Remove keeps what the administrator made; purge leaves the machine as it was.
    succeeded(
        &Command::new("dpkg")
            .args(["--remove", "arcgate"])
            .output()
            .unwrap(),
        "dpkg --remove",
    );
    assert!(!Path::new("/usr/bin/arcgate").exists());
    assert!(Path::new("/var/opt/arcgate/localconfig.json").exists());
    assert!(Path::new("/var/opt/arcgate/keys.json").exists());
    succeeded(
        &Command::new("dpkg")
            .args(["--purge", "arcgate"])
            .output()
            .unwrap(),
        "dpkg --purge",
    );
    for f in ["fullchain.pem", "privkey.pem"] {
        std::fs::remove_file(Path::new("/etc/arcgate/tls").join(f)).unwrap();
    }
    // The administrator's certificates were theirs to remove; with them gone, so is the
    // directory.
    std::fs::remove_dir("/etc/arcgate/tls").unwrap();
    std::fs::remove_dir("/etc/arcgate").unwrap();
    drop(notify_dir);
    assert_eq!(traces(work.path()), before, "what the package left behind");
    drop(guard);
}

fn uid_of(user: &str) -> u32 {
    id("-u", user)
}

fn gid_of(group: &str) -> u32 {
    let out = Command::new("getent")
        .args(["group", group])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| panic!("no group {group}"))
}

fn id(flag: &str, user: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no user {user}"))
}
