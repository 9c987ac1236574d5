//! The origin's response as the visitor gets it: without the origin's hop-by-hop
//! headers, in framing the visitor's HTTP version understands.
//!
//! Pingora hands every relayed origin response — rewritten pages, pass-through assets,
//! the origin's own errors — through one `response_filter`, which calls [`for_visitor`]
//! last, after the rewriter has chosen its framing.

use http::Version;
use pingora::http::ResponseHeader;

/// Hop-by-hop headers of RFC 9110 §7.6.1 (and the obsolete `Proxy-Connection`). They
/// describe the origin's connection to us, not ours to the visitor. `Transfer-Encoding`
/// is framing and handled on its own below.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Names an origin may list in `Connection` without us removing them: the framing of
/// the response we are about to write is ours to decide, and an origin must not be
/// able to strip it.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

/// Make `resp` (an origin's response) fit to send to a visitor who spoke `client`:
/// drop the origin's hop-by-hop headers and the ones its `Connection` names, answer as
/// HTTP/1.1, and use chunked transfer only for an HTTP/1.1 visitor (an HTTP/1.0 one
/// gets the body delimited by closing the connection, which Pingora then does).
pub fn for_visitor(resp: &mut ResponseHeader, client: Version) {
    let upgrading = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    // One pass over the names present (no lookups by string, which would parse and
    // hash each name): most origins send `Connection` and nothing else of the set.
    let mut listed: Vec<String> = Vec::new();
    for value in resp.headers.get_all(http::header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        listed.extend(
            value
                .split(',')
                .map(|name| name.trim().to_ascii_lowercase())
                .filter(|name| !name.is_empty() && !FRAMING.contains(&name.as_str())),
        );
    }
    let doomed: Vec<http::HeaderName> = resp
        .headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            // A 101 answer keeps what the upgrade itself needs.
            let kept_for_upgrade = upgrading && (name == "upgrade" || name == "connection");
            !kept_for_upgrade && (HOP_BY_HOP.contains(&name) || listed.iter().any(|l| l == name))
        })
        .cloned()
        .collect();
    for name in &doomed {
        resp.remove_header(name);
    }
    if resp.version != Version::HTTP_11 {
        resp.set_version(Version::HTTP_11);
    }
    if client != Version::HTTP_11 && !upgrading {
        let chunked = resp
            .headers
            .get(http::header::TRANSFER_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(version: Version, pairs: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.set_version(version);
        for (k, v) in pairs {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    #[test]
    fn hop_headers_and_the_ones_connection_names_are_removed() {
        let mut r = response(
            Version::HTTP_11,
            &[
                ("Connection", "keep-alive, X-Hop"),
                ("Connection", "x-other , Content-Length"),
                ("X-Hop", "secret"),
                ("X-Other", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("Upgrade", "h2c"),
                ("Trailer", "Expires"),
                ("Content-Length", "12"),
                ("X-Kept", "yes"),
            ],
        );
        for_visitor(&mut r, Version::HTTP_11);
        let mut names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-kept"]);
    }

    #[test]
    fn an_http10_origins_page_is_sent_as_http11_and_chunked_only_to_http11_visitors() {
        let mut r = response(Version::HTTP_10, &[("Transfer-Encoding", "chunked")]);
        for_visitor(&mut r, Version::HTTP_11);
        assert_eq!(r.version, Version::HTTP_11);
        assert!(r.headers.contains_key("transfer-encoding"));

        let mut old_client = response(Version::HTTP_10, &[("Transfer-Encoding", "chunked")]);
        for_visitor(&mut old_client, Version::HTTP_10);
        assert_eq!(old_client.version, Version::HTTP_11);
        assert!(!old_client.headers.contains_key("transfer-encoding"));
    }

    #[test]
    fn an_upgrade_keeps_what_it_needs() {
        let mut r = ResponseHeader::build(101, None).unwrap();
        r.append_header("Connection", "Upgrade").unwrap();
        r.append_header("Upgrade", "websocket").unwrap();
        r.append_header("Keep-Alive", "timeout=5").unwrap();
        for_visitor(&mut r, Version::HTTP_11);
        assert!(r.headers.contains_key("upgrade"));
        assert!(r.headers.contains_key("connection"));
        assert!(!r.headers.contains_key("keep-alive"));
    }
}
