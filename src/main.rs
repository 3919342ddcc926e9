//! The `arcgate` binary: parses the command line and turns errors into exit codes.

use std::process::ExitCode;

mod cli;

use arcgate::client::ClientError;
use arcgate::config::ConfigError;
use arcgate::state::store::UpdateError;
use clap::Parser as _;
use cli::{Cli, ReportedError, UsageError};

/// jemalloc rather than glibc's malloc: rustls allocates a buffer per TLS record and the data
/// path's buffers grow and shrink with the traffic; glibc returned that memory to the kernel
/// and faulted it back in all the time (page faults were 5.5% of the gate's and forward's
/// profiles in the bulk bench), jemalloc keeps it for reuse. Forward+serve CPU per GiB went
/// from about 1.5 s to 1.2 s. The cost: 0.85 KiB more per idle session (14.0 → 14.8 KiB,
/// size-class rounding). mimalloc was tried too: more memory, no gain.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            if err.downcast_ref::<ReportedError>().is_none() {
                eprintln!("arcgate: {err:#}");
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// The one place an error becomes an exit code: 2 for usage and validation errors, the
/// client's documented codes for `connect`, 1 for anything else.
fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(ReportedError(e)) = err.downcast_ref::<ReportedError>() {
        return e.exit_code();
    }
    if let Some(e) = err.downcast_ref::<ClientError>() {
        return e.exit_code();
    }
    let usage = err.downcast_ref::<UsageError>().is_some()
        || err.downcast_ref::<ConfigError>().is_some()
        || matches!(
            err.downcast_ref::<UpdateError>(),
            Some(UpdateError::Invalid(_))
        );
    if usage { 2 } else { 1 }
}
