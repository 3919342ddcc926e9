//! The integration tests: one binary, shared helpers in `common`.

mod common;

mod answers;
mod client;
mod config_cli;
mod faults;
mod forward;
mod hostile;
mod hyco;
mod layout;
mod operations;
mod package;
mod policy;
mod promise;
mod relay;
mod relay_trust;
mod sessions;
mod ssh;
