//! The Hybrid Connections wire protocol.

pub mod request;
