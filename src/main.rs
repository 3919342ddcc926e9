//! The `arcgate` binary: parses the command line and turns errors into exit codes.

use std::process::ExitCode;

use arcgate::cli::{self, Cli, ReportedError, UsageError};
use arcgate::client::ClientError;
use arcgate::config::ConfigError;
use arcgate::store::UpdateError;
use clap::Parser as _;

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
