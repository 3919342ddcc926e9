//! The `arcgate` binary: parses the command line and turns errors into exit codes.

use std::process::ExitCode;

mod cli;

use clap::Parser as _;
use cli::{Cli, CliError};

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
            if err.unprinted() {
                // `{:#}` prints the whole chain of causes on one line, as ripgrep does.
                match &err {
                    CliError::Other(e) => eprintln!("arcgate: {e:#}"),
                    e => eprintln!("arcgate: {e}"),
                }
            }
            ExitCode::from(err.exit_code())
        }
    }
}
