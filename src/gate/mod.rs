//! The gate.

pub mod admin;
pub mod audit;
pub mod metrics;
pub mod relay_listener;
pub mod server;
pub mod sessions;
