//! `arcgate sessions`: what waits for the host's administrator, and the answers — approve
//! (optionally for the key's later sessions, for a while) or deny — sent over the gate's
//! admin socket, which tells the gate who answered.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::http::Method;

use arcgate::gate::admin::SUDO_USER_HEADER;
use arcgate::gate::approvals::{Listing, MAX_STANDING, Waiting};
use arcgate::transport::admin::{Endpoint, ask};

use super::admin::GateAt;
use super::{CliError, Status};

/// `arcgate sessions`.
#[derive(Debug, Args)]
pub(crate) struct SessionsArgs {
    #[command(subcommand)]
    pub action: SessionsAction,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub at: GateAt,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub(crate) enum SessionsAction {
    /// List the sessions waiting for approval, and the standing approvals.
    Waiting {
        /// JSON output.
        #[arg(short, long)]
        json: bool,
    },
    /// Let a waiting session in.
    Approve {
        /// Its approval id (arcgate status lists them).
        id: String,
        /// Also let the same key's sessions in without asking, for this long (at most 1d).
        #[arg(long, value_name = "DURATION", value_parser = parse_standing)]
        for_key: Option<std::time::Duration>,
    },
    /// Refuse a waiting session (403, approval_denied).
    Deny {
        /// Its approval id.
        id: String,
    },
}

fn parse_standing(s: &str) -> Result<std::time::Duration, String> {
    let d = arcgate::config::parse_lifetime(s, "a standing approval")?;
    if d > MAX_STANDING {
        return Err("a standing approval lasts at most 1d".into());
    }
    Ok(d)
}

pub(super) fn sessions(args: SessionsArgs) -> Result<Status, CliError> {
    let at = args.at.endpoint();
    if matches!(at, Endpoint::Tcp(_)) && !matches!(args.action, SessionsAction::Waiting { .. }) {
        return Err(CliError::Usage(
            "approvals go through the gate's admin socket, which says who answers; \
             drop --admin (pass --socket PATH or --config FILE for another gate)"
                .into(),
        ));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The person behind `sudo`: recorded beside the socket's own word (root).
    let sudo_user = std::env::var("SUDO_USER").unwrap_or_default();
    let headers: Vec<(&str, &str)> = match sudo_user.is_empty() {
        true => vec![],
        false => vec![(SUDO_USER_HEADER, sudo_user.as_str())],
    };
    let (path, method) = match &args.action {
        SessionsAction::Waiting { .. } => ("/approvals".to_string(), Method::GET),
        SessionsAction::Approve { id, for_key } => (
            match for_key {
                Some(d) => format!("/approvals/{}/approve?standing={}", encode(id), d.as_secs()),
                None => format!("/approvals/{}/approve", encode(id)),
            },
            Method::POST,
        ),
        SessionsAction::Deny { id } => (format!("/approvals/{}/deny", encode(id)), Method::POST),
    };
    let (code, body) = rt
        .block_on(ask(&at, method, &path, &headers))
        .map_err(anyhow::Error::from)?;
    if !code.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(CliError::Usage(arcgate::config::shorten_sentence(
            text.trim(),
        )));
    }
    match args.action {
        SessionsAction::Waiting { json } => {
            let listing: Listing =
                serde_json::from_slice(&body).context("bad /approvals answer")?;
            if json {
                println!("{}", serde_json::to_string(&listing).context("JSON")?);
            } else if listing.waiting.is_empty() {
                println!("No session waits for approval.");
            } else {
                for w in &listing.waiting {
                    println!(
                        "{}  {}  port {}  key {}  waiting {}s",
                        w.id, w.peer, w.port, w.key, w.waiting_seconds
                    );
                }
            }
            if !json {
                for s in &listing.standing {
                    println!("standing: key '{}' until {} (by {})", s.key, s.until, s.by);
                }
            }
        }
        SessionsAction::Approve { for_key, .. } => {
            let w: Waiting = serde_json::from_slice(&body).context("bad answer")?;
            println!(
                "approved {}: {} to port {} with key '{}', after {}s",
                w.id, w.peer, w.port, w.key, w.waiting_seconds
            );
            if let Some(d) = for_key {
                println!(
                    "key '{}' needs no approval for the next {}",
                    w.key,
                    arcgate::config::format_duration(d)
                );
            }
        }
        SessionsAction::Deny { .. } => {
            let w: Waiting = serde_json::from_slice(&body).context("bad answer")?;
            println!(
                "denied {}: {} to port {} with key '{}'",
                w.id, w.peer, w.port, w.key
            );
        }
    }
    Ok(0)
}

/// An id into a path segment: ids are hex, but a typo must not become another path.
fn encode(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}
