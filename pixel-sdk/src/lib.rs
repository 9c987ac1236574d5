//! The browser pixel core of clickstamp, compiled to WASM for the JS loader
//! (`js/clickstamp.js`) and linked natively for tests.
//!
//! Everything that decides whether two conversions are the same runs the server's own
//! code from `clickstamp-plugins`: the click-ID parser and the dedup key. The MAC key
//! that authenticates click IDs is secret, so the browser can only check their shape;
//! the server verifies the MAC when the beacon arrives.
//!
//! Modules follow the pixel's flow: [`shape`] (is this text a click ID?), [`find`]
//! (where is the visitor's click ID?), [`payload`] (validate a conversion, compute its
//! event ID, render the beacon body), [`js`] (the thin wasm-bindgen layer).

#![warn(missing_docs)]

pub mod find;
pub mod js;
pub mod payload;
pub mod shape;

pub use find::{find_click_id, CLICK_ID_PARAMS, COOKIE_PREFIX};
pub use payload::{build_payload, event_id, Conversion, PayloadError};
pub use shape::normalize_click_id;
