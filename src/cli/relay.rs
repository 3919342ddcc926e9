//! `arcgate relay`: the embedded relay and its keys file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use arcgate::client::LogFormat;
use arcgate::state::live::{self};
use arcgate::transport::tls::CertStore;

use super::{
    CliError, Status, at_least_one, init_logging, on_workers, parse_duration,
    reload_on_change_or_hup, shutdown_signal,
};

/// `arcgate relay`.
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Address to listen on (port 0 picks a free one). The default is beside the gate's
    /// 8443, away from the admin endpoints' 9443 in the README's examples.
    #[arg(long, default_value = "127.0.0.1:8444", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long, default_value = "certs-dev/server.pem", value_name = "PEM")]
    pub cert: PathBuf,
    /// Private key (PEM).
    #[arg(long, default_value = "certs-dev/server-key.pem", value_name = "PEM")]
    pub key: PathBuf,
    /// Keys file: SAS keys with "rights": ["send"] (the default) or ["listen"], and optional
    /// "ports" a sender key may reach.
    #[arg(long, value_name = "PATH")]
    pub keys: PathBuf,
    /// The host tokens must name in their resource (http://HOST/NAME/); without it, any.
    #[arg(long, value_name = "HOST")]
    pub public_host: Option<String>,
    /// TLS and the HTTP request head must arrive within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Largest request head, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Largest WebSocket frame relayed, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_frame_bytes: u64,
    /// Ping listeners' control channels this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Concurrent connections (listeners, senders, rendezvous).
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Connections in their TLS or HTTP handshake from one source (an IPv4 address or an
    /// IPv6 /64); more are closed unanswered. The same rule as `serve`'s.
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    pub max_handshakes_per_ip: usize,
    /// Serve /metrics and /healthz over plain HTTP on this loopback address.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
}

pub(super) fn relay(args: RelayArgs) -> Result<Status, CliError> {
    init_logging(args.log_format, "info");
    if let Some(admin) = &args.admin {
        arcgate::transport::admin::check_address(admin)
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    if !args.keys.exists() {
        return Err(CliError::Usage(format!(
            "{} does not exist",
            args.keys.display()
        )));
    }
    // Armed before the first read: a change written at any moment after this line is either
    // in that read or wakes the watcher (the gate's rule, SPEC §4.4).
    let mut watch =
        live::FileWatch::start(&[args.keys.as_path()]).context("cannot watch the keys file")?;
    // As one line: the error's text already holds its cause.
    let keys = live::load_keys(&args.keys).map_err(|e| anyhow::anyhow!("{e}"))?;
    let certs = Arc::new(CertStore::load(&args.cert, &args.key)?);
    let tls = arcgate::transport::tls::server_config(certs.clone());
    let relay = arcgate::relay::Relay::new(
        arcgate::relay::RelayOptions {
            handshake_timeout: args.handshake_timeout,
            max_header_bytes: args.max_header_bytes,
            max_frame: args.max_frame_bytes,
            ping_interval: args.ping_interval,
            max_connections: args.max_connections,
            max_handshakes_per_ip: args.max_handshakes_per_ip,
            public_host: args.public_host.clone(),
        },
        keys,
    );
    on_workers(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr()?;
        {
            let relay = relay.clone();
            let path = args.keys.clone();
            tokio::spawn(async move {
                while watch.next().await.is_some() {
                    match live::load_keys(&path) {
                        // In force before the line that says so (tests and people act on it).
                        Ok(keys) => {
                            let names = format!("{:?}", keys.names());
                            relay.set_keys(Ok(keys));
                            tracing::info!(keys = %names, "relay keys reloaded");
                        }
                        Err(e) => {
                            relay.set_keys(Err(e.to_string()));
                            tracing::error!(error = %e, "relay keys reload FAILED; no token is accepted until the keys file is valid again");
                        }
                    }
                }
            });
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let cert_watch =
            live::FileWatch::start(&certs.paths()).context("cannot watch the certificate files")?;
        tokio::spawn(reload_on_change_or_hup(
            Some((cert_watch, certs)),
            || {},
            stopped(),
        ));
        // The line tests and scripts wait for: the address actually bound.
        eprintln!("arcgate: relay listening on {local}");
        if let Some(addr) = args.admin {
            let admin = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on --admin {addr}"))?;
            eprintln!("arcgate: admin endpoint on http://{}/", admin.local_addr()?);
            tokio::spawn(arcgate::relay::admin::serve(
                admin,
                relay.clone(),
                stopped(),
            ));
        }
        tokio::spawn(shutdown_signal(stop_tx));
        super::notify::notify("READY=1");
        arcgate::relay::run(listener, tls, relay, stopped()).await;
        Ok::<_, CliError>(0)
    })?
}
