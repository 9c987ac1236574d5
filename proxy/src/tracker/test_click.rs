//! Test clicks: the click `clickstamp postback-test` (and the console's "send a test
//! postback") mints so that a network's postback can be tried end to end without a
//! fake conversion in the figures or at the traffic source.
//!
//! The `/go` request carries [`HEADER`] with [`marker`]: a digest of the admin token,
//! so only someone holding the token can mark a click, and the token itself never
//! crosses the main listener. A marked click is recorded like any other, with
//! `excluded_reason = "test"`: it and its conversions are kept out of every report
//! (store and ClickHouse) and never relayed, and the postback's answer says
//! `"relayed": false`. A wrong or missing marker is simply an ordinary click.

use sha2::{Digest, Sha256};

/// The request header that marks a `/go` click as a test.
pub const HEADER: &str = "x-clickstamp-test-click";

/// `clicks.excluded_reason` of a test click.
pub const EXCLUDED_AS_TEST: &str = "test";

/// The header value for the instance whose admin token is `admin_token`.
pub fn marker(admin_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"clickstamp test click\n");
    h.update(admin_token.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `given` (the header's value, if sent) is this instance's marker.
pub fn is_marked(given: Option<&str>, admin_token: &str) -> bool {
    given.is_some_and(|g| {
        crate::console::session::constant_time_eq(
            g.trim().as_bytes(),
            marker(admin_token).as_bytes(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_instances_marker_marks_a_click() {
        let token = "0123456789abcdef0123";
        let m = marker(token);
        assert_eq!(m.len(), 64);
        assert!(!m.contains(token), "the token never travels");
        assert!(is_marked(Some(&m), token));
        assert!(!is_marked(Some(&marker("another-admin-token-xx")), token));
        assert!(!is_marked(Some(""), token));
        assert!(
            !is_marked(Some(token), token),
            "the token itself is not the marker"
        );
        assert!(!is_marked(None, token));
    }
}
