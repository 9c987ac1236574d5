//! What crosses the proxy hop besides the page: who the visitor is (for the click row
//! and for the origin), the `X-Forwarded-*` / `Forwarded` headers the origin gets, and
//! the hop-by-hop headers and framing the visitor must never receive from the origin.
//!
//! One trust rule ([`client::TrustRule`]) decides the visitor's address for everything:
//! the click row, postback IP allowlists, the pixel's rate limit and the headers sent to
//! the origin. A header the visitor wrote is believed only when the connection came from
//! a configured trusted proxy.

pub mod client;
pub mod request;
pub mod response;

pub use client::{ClientAddress, TrustRule};
pub use request::ForwardedHeaders;
