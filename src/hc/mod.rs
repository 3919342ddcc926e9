//! The Hybrid Connections wire protocol, pure (no I/O, no clock): what the gate, the relay
//! and the clients say to each other, written once so that every mode reads it alike.
//!
//! - [`request`]: a request head (`connect`, `listen`, `accept`) → typed request, or 400;
//! - [`url`]: gate URLs and exact addresses → what to dial and which path to ask for;
//! - `control`: the control channel's `accept` and `renewToken` messages, rejections;
//! - `answer`: status lines, refusal bodies and `101`.

pub(crate) mod answer;
pub(crate) mod control;
pub mod request;
pub mod url;
