//! clickstamp's I/O-free vocabulary: click IDs, URL query handling, and the
//! [`Network`] / [`TrafficSource`] plugin traits with their built-ins.
//!
//! Nothing in this crate performs I/O, reads a clock or draws randomness; it compiles
//! for `wasm32-unknown-unknown` so the pixel SDK runs exactly the server's code.

pub mod clickid;
pub mod network;
pub mod query;
pub mod source;

pub use clickid::{ClickId, ClickIdCodec, ClickIdError};
pub use network::{builtin_network, Network, ParamNetwork, StampError};
pub use source::{LandingParams, ParamSource, TrafficSource};
