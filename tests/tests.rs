//! The integration tests: one binary, shared helpers in `common`.

mod common;

mod answers;
mod config_cli;
mod sessions;
mod ssh;
