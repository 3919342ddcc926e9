//! The files in force.

pub mod live;
pub mod store;
