//! The benchmark: `cargo run --release --example bench [-- --quick]`.
//!
//! Starts everything on loopback (an `arcgate serve`, `arcgate forward`, `arcgate relay`, a
//! real sshd, sinks and echo servers), runs each case against its baseline in the same run
//! (bulk cases three times, SSH bulk five, alternating with the baseline; medians), and
//! prints one table: case, figure, baseline, and the ratio. Absolute figures on shared
//! machines vary from run to run; compare the ratios. Bounded in time: under 5 minutes,
//! `--quick` under one.
//!
//! `--only CASE[,CASE]` runs some cases: bulk, tunnel, idle, ssh, relay (for profiling one
//! path; `--bytes MIB` sets the bulk size).
//!
//! Peers: when `WSTUNNEL_BIN` or `WEBSOCAT_BIN` names a binary, the bulk (one stream, each
//! way, with the CPU time of both tunnel processes per GiB), new-tunnel (p50, p99) and
//! idle-session (server and client memory) cases also run through that tool over wss with
//! the same dev certificate, arcgate and the peer in turn, and the table gives arcgate's
//! figure, the peer's, and arcgate/peer; a case the peer cannot do is a row that says so.
//! `--only` applies to these rows too. The bulk case sends its length (and which way) first
//! and needs no TCP half-close. `CARGO_TARGET_DIR` is honoured; `ARCGATE_BIN` runs a given
//! arcgate binary instead of building this checkout (to compare two builds).
//! `cargo install websocat` installs websocat (its TLS server needs a PKCS#12 file, made with
//! `openssl pkcs12`); wstunnel is not on crates.io (build it from its public source).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Settings {
    bulk_bytes: u64,
    tunnels: usize,
    idle_sessions: usize,
    idle_hold: Duration,
    ssh_runs: usize,
    ssh_bytes: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let only = value("--only");
    let run = |case: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|c| c == case))
    };
    let mut s = if quick {
        Settings {
            bulk_bytes: 128 << 20,
            tunnels: 100,
            idle_sessions: 500,
            idle_hold: Duration::from_secs(2),
            ssh_runs: 5,
            ssh_bytes: 32 << 20,
        }
    } else {
        Settings {
            bulk_bytes: 1 << 30,
            tunnels: 500,
            idle_sessions: 5000,
            idle_hold: Duration::from_secs(30),
            ssh_runs: 50,
            ssh_bytes: 256 << 20,
        }
    };
    if let Some(mib) = value("--bytes") {
        s.bulk_bytes = mib.parse::<u64>().expect("--bytes takes MiB") << 20;
    }
    let arcgate = build_arcgate();
    let work = tempdir();
    let mut rows: Vec<Row> = Vec::new();

    let sink = sink_server();
    let echo = echo_server();
    let sshd = run("ssh").then(|| Sshd::start(&work));
    let mut ports = vec![sink.port(), echo.port()];
    ports.extend(sshd.as_ref().map(|s| s.port));
    let gate = Proc::gate(&arcgate, &work, "gate", &ports);
    let token = gate.token_file(&arcgate);
    let fwd_sink = Proc::forward(&arcgate, &gate.url(), sink.port(), &token);
    let fwd_echo = Proc::forward(&arcgate, &gate.url(), echo.port(), &token);
    // The direct-mode tunnel figure the relay row compares with (bulk is measured in turn).
    let mut direct_p50 = None;
    // Per idle session: the gate's KiB, and forward's.
    let mut direct_idle: [Option<f64>; 2] = [None, None];

    if run("bulk") {
        // Each figure is the median of BULK_RUNS, raw and tunnelled alternating, so that a
        // burst of other load on the machine lands on both.
        for way in [Way::Up, Way::Down] {
            let (fwd_before, gate_before) = (cpu_secs(fwd_sink.pid()), cpu_secs(gate.pid()));
            let (raw, via) = alternate(
                || bulk(sink.addr(), s.bulk_bytes, 1, way),
                || bulk(fwd_sink.addr, s.bulk_bytes, 1, way),
            );
            let gib = (BULK_RUNS as u64 * s.bulk_bytes) as f64 / (1u64 << 30) as f64;
            let fwd = (cpu_secs(fwd_sink.pid()) - fwd_before) / gib;
            let serve = (cpu_secs(gate.pid()) - gate_before) / gib;
            let mut row = Row::higher(
                &format!("bulk {}, 1 stream (MB/s)", way.arrow()),
                via,
                raw,
                "raw loopback",
            );
            row.note = format!(
                "CPU s/GiB: forward {fwd:.2} + serve {serve:.2} = {:.2}",
                fwd + serve
            );
            rows.push(row);
        }
        let (raw4, via4) = alternate(
            || bulk(sink.addr(), s.bulk_bytes, 4, Way::Up),
            || bulk(fwd_sink.addr, s.bulk_bytes, 4, Way::Up),
        );
        rows.push(Row::higher(
            "bulk, 4 streams (MB/s total)",
            via4,
            raw4,
            "raw loopback x4",
        ));
    }

    if run("tunnel") {
        let (raw50, raw99) = tunnels(echo.addr(), s.tunnels);
        let (via50, via99) = tunnels(fwd_echo.addr, s.tunnels);
        direct_p50 = Some(via50);
        rows.push(Row::lower(
            "new tunnel p50 (ms)",
            via50,
            raw50,
            "raw connect+echo",
        ));
        rows.push(Row::lower(
            "new tunnel p99 (ms)",
            via99,
            raw99,
            "raw connect+echo",
        ));
    }

    if run("idle") {
        // Gate memory per session, on a gate of its own: one that has just moved gigabytes
        // keeps freed memory for reuse, and sessions opened into it would look free.
        let gate = Proc::gate(&arcgate, &work, "idle-gate", &ports);
        let token = gate.token_file(&arcgate);
        let fwd_echo = Proc::forward(&arcgate, &gate.url(), echo.port(), &token);
        let pids = [gate.pid(), fwd_echo.pid()];
        let (before, during, all_echo) =
            hold_idle(fwd_echo.addr, s.idle_sessions, s.idle_hold, || {
                pids.map(our_rss_kib)
            });
        for (i, end) in ["gate KiB/session", "forward KiB/tunnel"]
            .into_iter()
            .enumerate()
        {
            let case = format!("{} idle sessions: {end}", s.idle_sessions);
            let row = Row::memory(&case, before[i], during[i], s.idle_sessions, all_echo);
            direct_idle[i] = Some(row.figure);
            rows.push(row);
        }
    }

    if let Some(sshd) = &sshd {
        // SSH through connect versus direct.
        let proxy = format!(
            "'{}' connect '{}' -p %p --ca '{}' --token-file '{}'",
            arcgate.display(),
            gate.url(),
            repo("certs-dev/ca.pem").display(),
            token.display()
        );
        let direct = ssh_true(sshd, None, s.ssh_runs);
        let through = ssh_true(sshd, Some(&proxy), s.ssh_runs);
        rows.push(Row::lower(
            "ssh host true p50 (ms)",
            through,
            direct,
            "direct to sshd",
        ));
        // One transfer each swings by a third between runs here; alternate and take medians.
        // How busy the machine's cores were tells whether the gate's CPU is taken from ssh's.
        let (mut direct, mut through) = (Vec::new(), Vec::new());
        let (mut direct_busy, mut through_busy, mut gate_cpu) =
            (Busy::default(), Busy::default(), 0.0);
        for _ in 0..5 {
            let look = Busy::now();
            direct.push(ssh_bulk(sshd, None, s.ssh_bytes));
            direct_busy.add_since(&look);
            let (look, gate_before) = (Busy::now(), cpu_secs(gate.pid()));
            through.push(ssh_bulk(sshd, Some(&proxy), s.ssh_bytes));
            through_busy.add_since(&look);
            gate_cpu += cpu_secs(gate.pid()) - gate_before;
        }
        let (direct_bulk, through_bulk) = (median(direct), median(through));
        let mut row = Row::higher(
            &format!("{} MiB through ssh (MB/s)", s.ssh_bytes >> 20),
            through_bulk,
            direct_bulk,
            "direct to sshd",
        );
        let gib = (5 * s.ssh_bytes) as f64 / (1u64 << 30) as f64;
        row.note = format!(
            "cores busy: direct {:.0}%, through {:.0}%; serve CPU {:.2} s/GiB",
            direct_busy.percent(),
            through_busy.percent(),
            gate_cpu / gib
        );
        rows.push(row);
    }

    if run("relay") {
        // Relay mode against direct mode (measured here when the direct cases did not run).
        let via50 = direct_p50.unwrap_or_else(|| tunnels(fwd_echo.addr, s.tunnels).0);
        let relay = Proc::relay(&arcgate, &work);
        let relayed = Proc::relayed_gate(&arcgate, &work, &relay, &[sink.port(), echo.port()]);
        let sender = relay.sender_token(&work);
        let relay_url = format!("wss://localhost:{}/$hc/benchhost", relay.addr.port());
        let rfwd_sink = Proc::forward(&arcgate, &relay_url, sink.port(), &sender);
        let rfwd_echo = Proc::forward(&arcgate, &relay_url, echo.port(), &sender);
        // Idle relayed sessions first, while the relay and the relayed gate are fresh: a
        // process that has just carried gigabytes keeps freed memory for reuse, and sessions
        // opened into it would look free.
        let mut idle_rows = Vec::new();
        if run("idle") {
            let n = s.idle_sessions / 5;
            let pids = [relayed.pid(), relay.pid()];
            let (before, during, all_echo) =
                hold_idle(rfwd_echo.addr, n, s.idle_hold, || pids.map(our_rss_kib));
            for (i, end) in ["relayed gate", "relay"].into_iter().enumerate() {
                let case = format!("relay: {n} idle sessions: {end} KiB/session");
                idle_rows.push(Row::memory(&case, before[i], during[i], n, all_echo));
            }
        }
        let pids = [rfwd_sink.pid(), relay.pid(), relayed.pid()];
        // Direct and relayed in turn, so that drift lands on both; CPU of the relayed runs.
        let (mut direct, mut relayed_runs) = (Vec::new(), Vec::new());
        let mut cpu = vec![0.0; pids.len()];
        let (mut direct_busy, mut relayed_busy) = (Busy::default(), Busy::default());
        for _ in 0..BULK_RUNS {
            let look = Busy::now();
            direct.push(bulk(fwd_sink.addr, s.bulk_bytes, 1, Way::Up));
            direct_busy.add_since(&look);
            let before: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
            let look = Busy::now();
            relayed_runs.push(bulk(rfwd_sink.addr, s.bulk_bytes, 1, Way::Up));
            relayed_busy.add_since(&look);
            for (c, (p, b)) in cpu.iter_mut().zip(pids.iter().zip(&before)) {
                *c += cpu_secs(*p) - b;
            }
        }
        let (via, r_bulk) = (median(direct), median(relayed_runs));
        let gib = (BULK_RUNS as u64 * s.bulk_bytes) as f64 / (1u64 << 30) as f64;
        let cpu: Vec<f64> = cpu.iter().map(|c| c / gib).collect();
        let mut row = Row::higher("relay: bulk, 1 stream (MB/s)", r_bulk, via, "direct mode");
        row.note = format!(
            "CPU s/GiB: forward {:.2} + relay {:.2} + serve {:.2}; cores busy: direct {:.0}%, relayed {:.0}%",
            cpu[0],
            cpu[1],
            cpu[2],
            direct_busy.percent(),
            relayed_busy.percent()
        );
        rows.push(row);
        let (r50, _) = tunnels(rfwd_echo.addr, s.tunnels / 2);
        rows.push(Row::lower(
            "relay: new tunnel p50 (ms)",
            r50,
            via50,
            "direct mode",
        ));
        rows.append(&mut idle_rows);
        drop((rfwd_sink, rfwd_echo, relayed, relay));
    }

    for kind in [PeerKind::Wstunnel, PeerKind::Websocat] {
        let Some(bin) = std::env::var_os(kind.variable()) else {
            continue;
        };
        let peer = match Peer::start(kind, Path::new(&bin), &work, sink.port(), echo.port()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("bench: {} not run: {e}", kind.variable());
                continue;
            }
        };
        let name = kind.name();
        // Interleaved, arcgate and the peer in turn, so that drift lands on both; CPU is
        // that of the two tunnel processes (client and server ends) over the same bytes.
        let ours_pids = [fwd_sink.pid(), gate.pid()];
        let theirs_pids = peer.sink_pids();
        let ways = if run("bulk") {
            &[Way::Up, Way::Down][..]
        } else {
            &[]
        };
        for &way in ways {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let (mut ours_use, mut theirs_use) = (Usage::default(), Usage::default());
            let mut failed = None;
            for _ in 0..BULK_RUNS {
                let before = Look::of(&ours_pids);
                ours.push(bulk(fwd_sink.addr, s.bulk_bytes, 1, way));
                ours_use.add_since(&before, &ours_pids);
                let before = Look::of(&theirs_pids);
                match try_bulk(peer.sink, s.bulk_bytes, 1, way) {
                    Ok(v) => theirs.push(v),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                theirs_use.add_since(&before, &theirs_pids);
            }
            let case = format!("vs {name}: bulk {} (MB/s)", way.arrow());
            let Some(e) = failed else {
                let gib = (theirs.len() as u64 * s.bulk_bytes) as f64 / (1u64 << 30) as f64;
                rows.push(Row::higher(&case, median(ours), median(theirs), name));
                let mib = gib * 1024.0;
                let mut row = Row::lower(
                    &format!("vs {name}: CPU s/GiB {}, both ends", way.arrow()),
                    ours_use.cpu / gib,
                    theirs_use.cpu / gib,
                    name,
                );
                row.note = format!(
                    "context switches per MiB, client+server: {} vs {}",
                    ours_use.switches_per(mib),
                    theirs_use.switches_per(mib),
                );
                rows.push(row);
                continue;
            };
            rows.push(Row::failed(&case, median(ours), name, &e));
        }
        // New tunnels, in rounds alternating arcgate and the peer.
        let (mut ours, mut theirs, mut failed) = (Vec::new(), Vec::new(), None);
        let rounds = if run("tunnel") { TUNNEL_ROUNDS } else { 0 };
        let (ours_pids, theirs_pids) = ([fwd_echo.pid(), gate.pid()], peer.echo_pids());
        let (mut ours_use, mut theirs_use) = (Usage::default(), Usage::default());
        let per_round = s.tunnels / TUNNEL_ROUNDS;
        for _ in 0..rounds {
            let before = Look::of(&ours_pids);
            ours.extend(try_tunnel_times(fwd_echo.addr, per_round).unwrap());
            ours_use.add_since(&before, &ours_pids);
            let before = Look::of(&theirs_pids);
            match try_tunnel_times(peer.echo, per_round) {
                Ok(t) => theirs.extend(t),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            theirs_use.add_since(&before, &theirs_pids);
        }
        ours.sort_by(f64::total_cmp);
        theirs.sort_by(f64::total_cmp);
        let percentiles = if run("tunnel") {
            &[("p50", 0.50), ("p99", 0.99)][..]
        } else {
            &[]
        };
        for &(label, p) in percentiles {
            let case = format!("vs {name}: new tunnel {label} (ms)");
            rows.push(match &failed {
                None => Row::lower(&case, percentile(&ours, p), percentile(&theirs, p), name),
                Some(e) => Row::failed(&case, percentile(&ours, p), name, e),
            });
        }
        if run("tunnel") && failed.is_none() {
            let n = (rounds * per_round) as f64;
            let mut row = Row::lower(
                &format!("vs {name}: CPU ms per new tunnel, both ends"),
                ours_use.cpu * 1000.0 / n,
                theirs_use.cpu * 1000.0 / n,
                name,
            );
            row.note = format!(
                "context switches per tunnel, client+server: {} vs {}",
                ours_use.switches_per(n),
                theirs_use.switches_per(n)
            );
            rows.push(row);
        }
        if !run("idle") {
            continue;
        }
        let pids = [peer.echo_server_pid(), peer.echo_client_pid()];
        let (before, during, all_echo) = hold_idle(peer.echo, s.idle_sessions, s.idle_hold, || {
            pids.map(rss_kib)
        });
        for (i, end) in ["server", "client"].into_iter().enumerate() {
            let case = format!("vs {name}: idle KiB/session ({end})");
            let ours = direct_idle[i].unwrap_or(f64::NAN);
            let (Some(before), Some(during)) = (before[i], during[i]) else {
                rows.push(Row::failed(&case, ours, name, "its process exited"));
                continue;
            };
            let per = during.saturating_sub(before) as f64 / s.idle_sessions as f64;
            let mut row = Row::lower(&case, ours, per, name);
            row.note = if all_echo {
                format!("{name}: all echo")
            } else {
                format!("{name}: SOME FAILED")
            };
            rows.push(row);
        }
    }

    print_table(&rows);
}

// ---- cases -------------------------------------------------------------------------------

/// How many times each bulk figure is measured (the median is reported).
const BULK_RUNS: usize = 3;

/// Runs `a` and `b` in turn [`BULK_RUNS`] times; their medians.
fn alternate(mut a: impl FnMut() -> f64, mut b: impl FnMut() -> f64) -> (f64, f64) {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..BULK_RUNS {
        xs.push(a());
        ys.push(b());
    }
    (median(xs), median(ys))
}

/// Which way a bulk case moves its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    /// From the bench (the client side) to the service: the sink reads them.
    Up,
    /// From the service to the bench: the sink writes them.
    Down,
}

impl Way {
    fn arrow(self) -> &'static str {
        match self {
            Way::Up => "client -> service",
            Way::Down => "service -> client",
        }
    }
}

/// Moves `total` bytes split over `streams` connections through the sink, `way`; MB/s.
fn bulk(addr: SocketAddr, total: u64, streams: usize, way: Way) -> f64 {
    try_bulk(addr, total, streams, way).unwrap_or_else(|e| panic!("bulk through {addr}: {e}"))
}

/// [`bulk`], or why it failed (a peer that cannot carry the case gets a failed row).
fn try_bulk(addr: SocketAddr, total: u64, streams: usize, way: Way) -> Result<f64, String> {
    let per = total / streams as u64;
    let started = Instant::now();
    let workers: Vec<_> = (0..streams)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<()> {
                // Only the read timeout below is a stall; a connect that times out says so.
                let mut s = TcpStream::connect(addr)
                    .map_err(|e| std::io::Error::other(format!("connecting: {e}")))?;
                let _ = s.set_nodelay(true);
                s.set_read_timeout(Some(Duration::from_secs(60)))?;
                let header = match way {
                    Way::Up => per,
                    Way::Down => per | DOWN,
                };
                s.write_all(&header.to_be_bytes())?;
                let mut chunk = vec![0x5au8; 256 * 1024];
                let mut left = per;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    match way {
                        Way::Up => s.write_all(&chunk[..n])?,
                        Way::Down => match s.read(&mut chunk[..n])? {
                            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                            got => left -= got as u64,
                        },
                    }
                    if way == Way::Up {
                        left -= n as u64;
                    }
                }
                // The sink answers one byte once it has read everything; after a download
                // the bench answers it.
                match way {
                    Way::Up => s.read_exact(&mut [0u8; 1]),
                    Way::Down => s.write_all(b"k"),
                }
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "a stream's thread panicked".to_string())?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    "stalled: nothing came for 60 s".to_string()
                }
                _ => e.to_string(),
            })?;
    }
    Ok((per * streams as u64) as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// The sink's header bit that asks it to send the length instead of reading it.
const DOWN: u64 = 1 << 63;

/// How many rounds the new-tunnel comparison with a peer alternates in.
const TUNNEL_ROUNDS: usize = 5;

/// Opens `n` connections in a row, each: connect, 1-byte echo, close. (p50, p99) in ms.
fn tunnels(addr: SocketAddr, n: usize) -> (f64, f64) {
    let mut times =
        try_tunnel_times(addr, n).unwrap_or_else(|e| panic!("tunnels through {addr}: {e}"));
    times.sort_by(f64::total_cmp);
    (percentile(&times, 0.50), percentile(&times, 0.99))
}

/// Each of `n` connections' time to connect and echo one byte, in ms; or why one failed.
fn try_tunnel_times(addr: SocketAddr, n: usize) -> Result<Vec<f64>, String> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let once = || -> std::io::Result<()> {
            let mut s = TcpStream::connect(addr)?;
            let _ = s.set_nodelay(true);
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
        };
        once().map_err(|e| e.to_string())?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Opens `n` tunnels and proves each with an echo; returns them, still open.
fn idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            assert!(echo_once(&s), "an idle session failed to open");
            s
        })
        .collect()
}

/// Opens `n` idle sessions through `addr` and holds them for `hold` (holding them is the
/// measurement): what `look` saw before and while they were held, and whether each still
/// echoed at the end.
fn hold_idle<T>(
    addr: SocketAddr,
    n: usize,
    hold: Duration,
    look: impl Fn() -> [T; 2],
) -> ([T; 2], [T; 2], bool) {
    let before = look();
    let held = idle(addr, n);
    std::thread::sleep(hold);
    let during = look();
    let all_echo = held.iter().all(echo_once);
    (before, during, all_echo)
}

fn echo_once(mut s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    s.write_all(b"i").is_ok() && s.read_exact(&mut b).is_ok() && b[0] == b'i'
}

fn ssh_cmd(sshd: &Sshd, proxy: Option<&str>) -> Command {
    let mut c = Command::new("ssh");
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ])
    .args([
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "LogLevel=ERROR",
        "-i",
    ])
    .arg(&sshd.key)
    .args(["-p", &sshd.port.to_string()]);
    if let Some(p) = proxy {
        c.arg("-o").arg(format!("ProxyCommand={p}"));
    }
    c.arg(format!("{}@127.0.0.1", sshd.user));
    c
}

/// `ssh host true`, `runs` times; p50 ms.
fn ssh_true(sshd: &Sshd, proxy: Option<&str>, runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let out = ssh_cmd(sshd, proxy)
                .arg("true")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    percentile(&times, 0.5)
}

/// `bytes` through `ssh host 'cat > /dev/null'`; MB/s.
fn ssh_bulk(sshd: &Sshd, proxy: Option<&str>, bytes: u64) -> f64 {
    let started = Instant::now();
    let mut child = ssh_cmd(sshd, proxy)
        .arg("cat > /dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![0x33u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stdin.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

// ---- results -----------------------------------------------------------------------------

struct Row {
    case: String,
    figure: f64,
    baseline: f64,
    baseline_name: String,
    ratio: Option<f64>,
    note: String,
}

impl Row {
    /// A figure where more is better: ratio = figure / baseline.
    fn higher(case: &str, figure: f64, baseline: f64, baseline_name: &str) -> Row {
        Row {
            case: case.into(),
            figure,
            baseline,
            baseline_name: baseline_name.into(),
            ratio: Some(figure / baseline),
            note: String::new(),
        }
    }

    /// A figure where less is better: ratio = figure / baseline (above 1 is slower).
    fn lower(case: &str, figure: f64, baseline: f64, baseline_name: &str) -> Row {
        Row::higher(case, figure, baseline, baseline_name)
    }

    /// Memory per session of a process that went from `before` to `during` KiB while it
    /// held `n` idle sessions.
    fn memory(case: &str, before: u64, during: u64, n: usize, all_echo: bool) -> Row {
        Row {
            case: case.into(),
            figure: during.saturating_sub(before) as f64 / n as f64,
            baseline: before as f64,
            baseline_name: "RSS before (KiB)".into(),
            ratio: None,
            note: if all_echo {
                "all echo".into()
            } else {
                "SOME FAILED".into()
            },
        }
    }

    /// A case the baseline (a peer) could not do: arcgate's figure, no ratio, and why.
    fn failed(case: &str, figure: f64, baseline_name: &str, why: &str) -> Row {
        Row {
            case: case.into(),
            figure,
            baseline: f64::NAN,
            baseline_name: baseline_name.into(),
            ratio: None,
            note: format!("{baseline_name} FAILED: {why}"),
        }
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<52} {:>9} {:>9}  {:<16} {:>6}  note",
        "case", "figure", "baseline", "baseline is", "ratio"
    );
    for r in rows {
        let ratio = r.ratio.map_or("-".into(), |x| format!("{x:.2}"));
        println!(
            "{:<52} {:>9.2} {:>9.2}  {:<16} {:>6}  {}",
            r.case, r.figure, r.baseline, r.baseline_name, ratio, r.note
        );
    }
}

// ---- peers -------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum PeerKind {
    Wstunnel,
    Websocat,
}

impl PeerKind {
    fn variable(self) -> &'static str {
        match self {
            PeerKind::Wstunnel => "WSTUNNEL_BIN",
            PeerKind::Websocat => "WEBSOCAT_BIN",
        }
    }

    fn name(self) -> &'static str {
        match self {
            PeerKind::Wstunnel => "wstunnel",
            PeerKind::Websocat => "websocat",
        }
    }
}

/// Another WebSocket tunnel, set up like arcgate: a TLS server on loopback in front of the
/// sink and the echo server, and local listeners (`sink`, `echo`) that tunnel to it.
struct Peer {
    sink: SocketAddr,
    echo: SocketAddr,
    /// Servers first, then clients; the server in front of the echo server is at `echo_server`.
    procs: Vec<Child>,
    echo_server: usize,
}

impl Drop for Peer {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Peer {
    fn echo_server_pid(&self) -> u32 {
        self.procs[self.echo_server].id()
    }

    /// The client that tunnels to the echo target: started right after its server (and,
    /// for wstunnel, one client serves both targets).
    fn echo_client_pid(&self) -> u32 {
        self.procs[self.echo_server + 1].id()
    }

    /// The client and server that carry the echo target's tunnel.
    fn echo_pids(&self) -> [u32; 2] {
        [self.echo_client_pid(), self.echo_server_pid()]
    }

    /// The client and server that carry the sink's tunnel: the first two started.
    fn sink_pids(&self) -> [u32; 2] {
        [self.procs[1].id(), self.procs[0].id()]
    }

    fn start(
        kind: PeerKind,
        bin: &Path,
        work: &TempDir,
        sink_port: u16,
        echo_port: u16,
    ) -> Result<Peer, String> {
        let spawn = |args: Vec<String>, env: Option<(&str, PathBuf)>| {
            let mut c = Command::new(bin);
            c.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
            if let Some((k, v)) = env {
                c.env(k, v);
            }
            c.spawn()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))
        };
        let mut peer = Peer {
            sink: "127.0.0.1:0".parse().unwrap(),
            echo: "127.0.0.1:0".parse().unwrap(),
            procs: Vec::new(),
            echo_server: 0,
        };
        let cert = repo("certs-dev/server.pem");
        let key = repo("certs-dev/server-key.pem");
        match kind {
            PeerKind::Wstunnel => {
                // One server for both targets; its client does not verify certificates unless
                // told to, so it is told to (like arcgate, against the dev CA).
                let port = free_port();
                peer.procs.push(spawn(
                    vec![
                        "server".into(),
                        format!("wss://127.0.0.1:{port}"),
                        // The level arcgate runs at here (warnings only).
                        "--log-lvl".into(),
                        "WARN".into(),
                        "--tls-certificate".into(),
                        cert.display().to_string(),
                        "--tls-private-key".into(),
                        key.display().to_string(),
                        "--restrict-to".into(),
                        format!("127.0.0.1:{sink_port}"),
                        "--restrict-to".into(),
                        format!("127.0.0.1:{echo_port}"),
                    ],
                    None,
                )?);
                wait_listening(port)?;
                let (ls, le) = (free_port(), free_port());
                peer.procs.push(spawn(
                    vec![
                        "client".into(),
                        "--tls-verify-certificate".into(),
                        // Its own resolver adds ~250 ms to each new tunnel for `localhost`.
                        "--dns-resolver".into(),
                        "system://0.0.0.0".into(),
                        // The level arcgate runs at here (warnings only).
                        "--log-lvl".into(),
                        "WARN".into(),
                        "-L".into(),
                        format!("tcp://127.0.0.1:{ls}:127.0.0.1:{sink_port}"),
                        "-L".into(),
                        format!("tcp://127.0.0.1:{le}:127.0.0.1:{echo_port}"),
                        format!("wss://localhost:{port}"),
                    ],
                    Some(("SSL_CERT_FILE", repo("certs-dev/ca.pem"))),
                )?);
                wait_listening(ls)?;
                wait_listening(le)?;
                (peer.sink, peer.echo) = (loopback(ls), loopback(le));
            }
            PeerKind::Websocat => {
                // websocat's TLS server takes PKCS#12; one server per target.
                let p12 = work.0.join("websocat.p12");
                let made = Command::new("openssl")
                    .args(["pkcs12", "-export", "-passout", "pass:", "-out"])
                    .arg(&p12)
                    .arg("-inkey")
                    .arg(&key)
                    .arg("-in")
                    .arg(&cert)
                    .status()
                    .map_err(|e| format!("openssl (to make websocat's PKCS#12 file): {e}"))?;
                if !made.success() {
                    return Err("openssl pkcs12 -export failed".into());
                }
                let mut locals = Vec::new();
                for target in [sink_port, echo_port] {
                    let port = free_port();
                    if target == echo_port {
                        peer.echo_server = peer.procs.len();
                    }
                    peer.procs.push(spawn(
                        vec![
                            "-b".into(),
                            "--pkcs12-der".into(),
                            p12.display().to_string(),
                            "--pkcs12-passwd".into(),
                            String::new(),
                            format!("wss-listen:127.0.0.1:{port}"),
                            format!("tcp:127.0.0.1:{target}"),
                        ],
                        None,
                    )?);
                    wait_listening(port)?;
                    let local = free_port();
                    // The client verifies against the dev CA through OpenSSL's SSL_CERT_FILE.
                    peer.procs.push(spawn(
                        vec![
                            "-b".into(),
                            format!("tcp-l:127.0.0.1:{local}"),
                            format!("wss://localhost:{port}/"),
                        ],
                        Some(("SSL_CERT_FILE", repo("certs-dev/ca.pem"))),
                    )?);
                    wait_listening(local)?;
                    locals.push(local);
                }
                (peer.sink, peer.echo) = (loopback(locals[0]), loopback(locals[1]));
            }
        }
        Ok(peer)
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A port nothing listens on now (the tool is then told to listen there).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on 127.0.0.1:`port`, read from /proc/net/tcp so that no
/// probe connection reaches the tool (which would open a tunnel).
fn wait_listening(port: u16) -> Result<(), String> {
    let needle = format!("0100007F:{port:04X} 00000000:0000 0A");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if table.contains(&needle) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listened on 127.0.0.1:{port} within 30 s"))
}

// ---- the pieces --------------------------------------------------------------------------

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// The arcgate under test: `ARCGATE_BIN` when set (to compare two builds, one run each),
/// else this checkout's release build.
fn build_arcgate() -> PathBuf {
    if let Some(bin) = std::env::var_os("ARCGATE_BIN") {
        return PathBuf::from(bin);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "arcgate", "--manifest-path"])
        .arg(repo("Cargo.toml"))
        .status()
        .expect("cargo builds arcgate");
    assert!(status.success());
    // Beside this example's own binary (target/release/examples/bench): the same target
    // directory, wherever CARGO_TARGET_DIR puts it.
    let exe = std::env::current_exe().expect("the bench's own path");
    exe.parent()
        .and_then(Path::parent)
        .map(|release| release.join("arcgate"))
        .filter(|p| p.exists())
        .expect("arcgate built beside the bench (target/release/arcgate)")
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Beside the bench binary in the build tree, not in /tmp: the gate refuses configuration
/// under a directory that others may write in (its StrictModes check walks up to `/`).
fn tempdir() -> TempDir {
    let exe = std::env::current_exe().unwrap();
    let beside = exe.parent().expect("the bench binary is in a directory");
    let path = beside.join(format!("arcgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    TempDir(path)
}

/// The machine's CPU time, busy and in all, from `/proc/stat`'s first line (in ticks, every
/// core together): how near the cores were to full while a case ran, which says whether a
/// process's CPU was taken from the others'.
#[derive(Default)]
struct Busy {
    busy: u64,
    total: u64,
}

impl Busy {
    fn now() -> Busy {
        let stat = std::fs::read_to_string("/proc/stat").unwrap();
        let line = stat.lines().next().expect("/proc/stat has a first line");
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse().unwrap())
            .collect();
        let total: u64 = ticks.iter().sum();
        Busy {
            busy: total - ticks[3] - ticks[4],
            total,
        }
    }

    /// Adds what the machine did since `then`.
    fn add_since(&mut self, then: &Busy) {
        // Saturating: the kernel's idle and iowait counts can step back a little.
        let now = Busy::now();
        self.busy += now.busy.saturating_sub(then.busy);
        self.total += now.total.saturating_sub(then.total);
    }

    fn percent(&self) -> f64 {
        100.0 * self.busy as f64 / self.total.max(1) as f64
    }
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

/// What a tunnel's two processes (client, server) have used: CPU seconds together, and
/// each one's context switches (voluntary and not, all its threads).
#[derive(Default)]
struct Usage {
    cpu: f64,
    switches: [f64; 2],
}

/// The CPU seconds of two processes together, and each one's switches per thread id: a
/// thread's count is only in /proc while it runs, so differences are taken per thread (one
/// that exits between two looks loses only what it did in between, not its whole history).
struct Look {
    cpu: f64,
    threads: [std::collections::HashMap<std::ffi::OsString, f64>; 2],
}

impl Look {
    fn of(pids: &[u32; 2]) -> Look {
        Look {
            cpu: pids.iter().map(|&pid| cpu_secs(pid)).sum(),
            threads: pids.map(|pid| {
                let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
                // A thread that exits while it is looked at is left out, not counted as 0
                // (which would take its history off the next difference).
                tasks
                    .flatten()
                    .filter_map(|task| {
                        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                        let count = status_field(&status, "voluntary_ctxt_switches:")?
                            + status_field(&status, "nonvoluntary_ctxt_switches:")?;
                        Some((task.file_name(), count))
                    })
                    .collect()
            }),
        }
    }
}

impl Usage {
    /// "client + server" switches per `unit`.
    fn switches_per(&self, unit: f64) -> String {
        format!(
            "{:.1}+{:.1}",
            self.switches[0] / unit,
            self.switches[1] / unit
        )
    }

    /// Adds what `pids` used since `before` was taken.
    fn add_since(&mut self, before: &Look, pids: &[u32; 2]) {
        let now = Look::of(pids);
        self.cpu += now.cpu - before.cpu;
        for (i, threads) in now.threads.iter().enumerate() {
            for (tid, count) in threads {
                self.switches[i] += count - before.threads[i].get(tid).unwrap_or(&0.0);
            }
        }
    }
}

/// A number in a /proc status file's line `name` (its unit, if any, dropped).
fn status_field(status: &str, name: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A process's resident memory; `None` once it has exited (a zombie has no VmRSS line).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "VmRSS:").map(|kib| kib as u64)
}

/// [`rss_kib`] of arcgate's own processes, which must be running.
fn our_rss_kib(pid: u32) -> u64 {
    rss_kib(pid).unwrap_or_else(|| panic!("arcgate process {pid} exited during the bench"))
}

struct Server(TcpListener);

impl Server {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }
    fn port(&self) -> u16 {
        self.addr().port()
    }
}

/// Reads an 8-byte big-endian length, then that many bytes, then answers one byte: the
/// count arrives in band, so the case needs no TCP half-close (wstunnel ends a whole tunnel
/// on one). With [`DOWN`] set in the length it writes that many bytes instead, and waits for
/// the bench's one byte before it closes.
fn sink_server() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let accept = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for c in accept.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut len = [0u8; 8];
                if c.read_exact(&mut len).is_err() {
                    return;
                }
                let header = u64::from_be_bytes(len);
                let mut left = header & !DOWN;
                let mut buf = vec![0x5au8; 256 * 1024];
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    if header & DOWN != 0 {
                        if c.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        left -= n as u64;
                        continue;
                    }
                    match c.read(&mut buf[..n]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => left -= n as u64,
                    }
                }
                if header & DOWN != 0 {
                    let _ = c.read_exact(&mut [0u8; 1]);
                } else {
                    let _ = c.write_all(b"k");
                }
            });
        }
    });
    Server(l)
}

fn echo_server() -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let accept = l.try_clone().unwrap();
    std::thread::spawn(move || {
        for c in accept.incoming() {
            let Ok(mut c) = c else { return };
            let _ = c.set_nodelay(true);
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut r = c.try_clone().unwrap();
                    let _ = std::io::copy(&mut r, &mut c);
                })
                .unwrap();
        }
    });
    Server(l)
}

struct Sshd {
    port: u16,
    key: PathBuf,
    user: String,
    proc: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

impl Sshd {
    fn start(work: &TempDir) -> Sshd {
        let d = work.0.join("sshd");
        std::fs::create_dir_all(&d).unwrap();
        for k in ["host_key", "client_key"] {
            let _ = std::fs::remove_file(d.join(k));
            assert!(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(d.join(k))
                    .status()
                    .unwrap()
                    .success()
            );
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = d.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host_key\nAuthorizedKeysFile {0}/authorized_keys\n\
                 PidFile {0}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\nLogLevel INFO\n",
                d.display()
            ),
        )
        .unwrap();
        let mut p = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stderr(Stdio::piped())
            .spawn()
            .expect("sshd (install openssh-server)");
        wait_line(p.stderr.take().unwrap(), "Server listening");
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        Sshd {
            port,
            key: d.join("client_key"),
            user: user.trim().into(),
            proc: p,
        }
    }
}

/// Reads lines until one contains `needle`; returns it. The rest is drained in a thread.
/// A process that ends first fails the bench with what it printed.
fn wait_line(stream: impl Read + Send + 'static, needle: &str) -> String {
    let (tx, rx) = mpsc::channel();
    let wanted = needle.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut before = Vec::new();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&wanted) {
                let _ = tx.send(Ok(line));
                sent = true;
            } else if !sent {
                before.push(line);
            }
        }
        if !sent {
            let _ = tx.send(Err(before.join("\n")));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(line)) => line,
        Ok(Err(printed)) => panic!("a process ended before printing {needle:?}:\n{printed}"),
        Err(e) => panic!("a process did not print {needle:?}: {e}"),
    }
}

struct Proc {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn addr_after(line: &str, prefix: &str) -> SocketAddr {
    line.trim_start_matches(prefix)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A gate's directory under `work`, with its configuration allowing `ports`.
fn gate_dir(bin: &Path, work: &TempDir, name: &str, ports: &[u16]) -> (PathBuf, PathBuf) {
    let dir = work.0.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("localconfig.json");
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let set = Command::new(bin)
        .args([
            "config",
            "set",
            "incomingconnections.ports",
            &list.join(","),
            "--config",
        ])
        .arg(&cfg)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(set.success());
    (dir, cfg)
}

/// Writes a keys file (mode 0600, as the gate and relay insist).
fn write_secret(path: &Path, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Passes the development certificate and key.
fn with_dev_cert(cmd: &mut Command) -> &mut Command {
    cmd.arg("--cert")
        .arg(repo("certs-dev/server.pem"))
        .arg("--key")
        .arg(repo("certs-dev/server-key.pem"))
}

/// Starts `cmd` with warnings-only logging and waits for the line containing `ready`.
fn spawn_ready(cmd: &mut Command, ready: &str) -> (Child, String) {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = wait_line(child.stderr.take().unwrap(), ready);
    (child, line)
}

impl Proc {
    /// Starts `cmd`; its address is what follows `ready` on its ready line.
    fn start(cmd: &mut Command, ready: &str, dir: PathBuf) -> Proc {
        let (child, line) = spawn_ready(cmd, ready);
        Proc {
            addr: addr_after(&line, ready),
            child,
            dir,
        }
    }

    fn gate(bin: &Path, work: &TempDir, name: &str, ports: &[u16]) -> Proc {
        let (dir, cfg) = gate_dir(bin, work, name, ports);
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "benchhost",
            "--config",
        ])
        .arg(&cfg)
        .args([
            "--max-sessions-per-ip",
            "100000",
            "--max-sessions",
            "100000",
        ]);
        Proc::start(with_dev_cert(&mut cmd), "arcgate: listening on ", dir)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("wss://localhost:{}/$hc/benchhost", self.addr.port())
    }

    /// A token for this gate (forward re-reads it for every tunnel).
    fn token_file(&self, bin: &Path) -> PathBuf {
        let out = Command::new(bin)
            .args(["token", "--name", "benchhost", "--ttl", "2h", "--config"])
            .arg(self.dir.join("localconfig.json"))
            .output()
            .unwrap();
        // Beside the gate's directory, not in it: the gate watches its directory, and a
        // client's token is not kept among the host's files.
        let path = self.dir.with_extension("token");
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    fn forward(bin: &Path, url: &str, port: u16, token: &Path) -> Proc {
        let mut cmd = Command::new(bin);
        cmd.args([
            "forward",
            "127.0.0.1:0",
            url,
            "-p",
            &port.to_string(),
            "--ca",
        ])
        .arg(repo("certs-dev/ca.pem"))
        .arg("--token-file")
        .arg(token);
        Proc::start(&mut cmd, "arcgate: forwarding ", PathBuf::new())
    }

    fn relay(bin: &Path, work: &TempDir) -> Proc {
        let dir = work.0.join("relay");
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("keys.json");
        write_secret(
            &keys,
            r#"[{"name":"send","key":"bench-send-key-0123456789","rights":["send"]},
                {"name":"listen","key":"bench-listen-key-0123456789","rights":["listen"]}]"#,
        );
        let mut cmd = Command::new(bin);
        cmd.args(["relay", "--listen", "127.0.0.1:0", "--keys"])
            .arg(&keys);
        Proc::start(with_dev_cert(&mut cmd), "arcgate: relay listening on ", dir)
    }

    fn relayed_gate(bin: &Path, work: &TempDir, relay: &Proc, ports: &[u16]) -> Proc {
        let (dir, cfg) = gate_dir(bin, work, "relayed-gate", ports);
        let keys = dir.join("keys.json");
        write_secret(
            &keys,
            // `listen` is a right given by name (a key without rights may only send).
            r#"[{"name":"listen","key":"bench-listen-key-0123456789","rights":["listen"]}]"#,
        );
        let url = format!("wss://localhost:{}/$hc/benchhost", relay.addr.port());
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--relay-only", "--name", "benchhost", "--config"])
            .arg(&cfg)
            .args(["--relay", &url, "--relay-key", "listen", "--relay-ca"])
            .arg(repo("certs-dev/ca.pem"))
            .args(["--max-sessions-per-ip", "100000"]);
        let (child, _) = spawn_ready(&mut cmd, "arcgate: attached to relay");
        Proc {
            addr: relay.addr,
            child,
            dir,
        }
    }

    fn sender_token(&self, work: &TempDir) -> PathBuf {
        let expiry = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 7200;
        let token = arcgate::token::mint(
            "http://localhost/benchhost/",
            "send",
            "bench-send-key-0123456789",
            expiry,
        );
        let path = work.0.join("sender-token");
        std::fs::write(&path, token).unwrap();
        path
    }
}
