//! The forwarding headers an origin gets: who the visitor is, which scheme and host
//! they asked for (`X-Forwarded-For/-Proto/-Host`, optionally RFC 7239 `Forwarded`).
//!
//! What a visitor wrote in these headers is never passed on unless the connection came
//! from a trusted proxy ([`super::TrustRule`]): a direct visitor's `X-Forwarded-For:
//! 6.6.6.6` is replaced by their real address, so a landing page that geo-targets,
//! rate-limits or logs by it cannot be lied to through clickstamp.

use super::ClientAddress;
use http::HeaderName;
use pingora::http::RequestHeader;
use std::net::IpAddr;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Which forwarding headers a campaign's origin gets (`origin.forwarded_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeaders {
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` (the default).
    #[default]
    XForwarded,
    /// RFC 7239 `Forwarded` only.
    Forwarded,
    /// Both families.
    Both,
    /// None added (untrusted ones are still removed).
    Off,
}

impl ForwardedHeaders {
    /// The config spelling, for errors and docs.
    pub const CHOICES: &'static str = "\"x-forwarded\", \"forwarded\", \"both\" or \"off\"";

    /// Parse the config value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "x-forwarded" => ForwardedHeaders::XForwarded,
            "forwarded" => ForwardedHeaders::Forwarded,
            "both" => ForwardedHeaders::Both,
            "off" => ForwardedHeaders::Off,
            _ => return None,
        })
    }

    fn x_forwarded(self) -> bool {
        matches!(self, ForwardedHeaders::XForwarded | ForwardedHeaders::Both)
    }

    fn rfc7239(self) -> bool {
        matches!(self, ForwardedHeaders::Forwarded | ForwardedHeaders::Both)
    }
}

/// Headers a client can use to claim an address or scheme; dropped unless a trusted
/// proxy sent them.
const CLAIMS: [&str; 5] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-real-ip",
];

/// The request as the visitor made it to us.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// `http` or `https`: the scheme of the connection the request came on.
    pub proto: &'static str,
    /// The `Host` the visitor asked for.
    pub host: Option<&'a str>,
}

/// Set the forwarding headers on the request to the origin.
pub fn apply(
    upstream: &mut RequestHeader,
    mode: ForwardedHeaders,
    client: &ClientAddress,
    hop: Hop<'_>,
) -> pingora::Result<()> {
    if !client.via_trusted_proxy {
        // One pass over the names present; a visitor rarely sends any of them.
        let claimed: Vec<HeaderName> = upstream
            .headers
            .keys()
            .filter(|name| CLAIMS.contains(&name.as_str()))
            .cloned()
            .collect();
        for name in &claimed {
            upstream.remove_header(name);
        }
    }
    if mode.x_forwarded() {
        set_x_forwarded(upstream, client, hop)?;
    }
    if mode.rfc7239() {
        set_forwarded(upstream, client, hop)?;
    }
    Ok(())
}

/// What a trusted proxy already put in `name` (nothing, for any other peer: its claims
/// were removed).
fn existing(upstream: &RequestHeader, client: &ClientAddress, name: &HeaderName) -> Option<String> {
    if !client.via_trusted_proxy {
        return None;
    }
    let values: Vec<&str> = upstream
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn set_x_forwarded(
    upstream: &mut RequestHeader,
    client: &ClientAddress,
    hop: Hop<'_>,
) -> pingora::Result<()> {
    // Through a trusted proxy the chain it sent is extended with the proxy's own address
    // (the hop we saw); otherwise the chain starts afresh with the visitor.
    let chain = match (existing(upstream, client, &X_FORWARDED_FOR), client.peer) {
        (Some(chain), Some(peer)) => Some(format!("{chain}, {peer}")),
        (None, Some(peer)) => Some(peer.to_string()),
        (chain, None) => chain.or_else(|| client.visitor.map(|ip| ip.to_string())),
    };
    if let Some(chain) = chain {
        upstream.insert_header("X-Forwarded-For", chain)?;
    }
    if existing(upstream, client, &X_FORWARDED_PROTO).is_none() {
        upstream.insert_header("X-Forwarded-Proto", hop.proto)?;
    }
    if let Some(host) = hop.host {
        if existing(upstream, client, &X_FORWARDED_HOST).is_none() {
            upstream.insert_header("X-Forwarded-Host", host)?;
        }
    }
    Ok(())
}

/// An RFC 7239 node: IPv6 addresses are bracketed and the pair quoted.
fn node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// A `host` value as an RFC 7239 token or quoted string.
fn host_value(host: &str) -> String {
    let token = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'*+^`|".contains(&b));
    if token {
        host.to_string()
    } else {
        format!("\"{}\"", host.replace(['"', '\\'], ""))
    }
}

fn set_forwarded(
    upstream: &mut RequestHeader,
    client: &ClientAddress,
    hop: Hop<'_>,
) -> pingora::Result<()> {
    let mut element = Vec::with_capacity(3);
    if let Some(peer) = client.peer.or(client.visitor) {
        element.push(format!("for={}", node(peer)));
    }
    if let Some(host) = hop.host {
        element.push(format!("host={}", host_value(host)));
    }
    element.push(format!("proto={}", hop.proto));
    let element = element.join(";");
    let value = match existing(upstream, client, &FORWARDED) {
        Some(before) => format!("{before}, {element}"),
        None => element,
    };
    upstream.insert_header("Forwarded", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in pairs {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    fn get(r: &RequestHeader, name: &str) -> Option<String> {
        r.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }

    const HOP: Hop<'static> = Hop {
        proto: "http",
        host: Some("lp.example"),
    };

    fn direct(peer: &str) -> ClientAddress {
        let ip = Some(peer.parse().unwrap());
        ClientAddress {
            peer: ip,
            visitor: ip,
            via_trusted_proxy: false,
        }
    }

    #[test]
    fn a_direct_visitors_forged_headers_are_replaced() {
        let mut r = request(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
        ]);
        apply(
            &mut r,
            ForwardedHeaders::XForwarded,
            &direct("198.51.100.7"),
            HOP,
        )
        .unwrap();
        assert_eq!(get(&r, "x-forwarded-for").as_deref(), Some("198.51.100.7"));
        assert_eq!(get(&r, "x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(get(&r, "x-forwarded-host").as_deref(), Some("lp.example"));
        assert_eq!(get(&r, "forwarded"), None);
        assert_eq!(get(&r, "x-real-ip"), None);
    }

    #[test]
    fn a_trusted_proxys_chain_is_extended_with_its_address() {
        let mut r = request(&[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "for=203.0.113.9;proto=https"),
        ]);
        let client = ClientAddress {
            peer: Some("10.0.0.2".parse().unwrap()),
            visitor: Some("203.0.113.9".parse().unwrap()),
            via_trusted_proxy: true,
        };
        apply(&mut r, ForwardedHeaders::Both, &client, HOP).unwrap();
        assert_eq!(
            get(&r, "x-forwarded-for").as_deref(),
            Some("203.0.113.9, 10.0.0.2")
        );
        assert_eq!(get(&r, "x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            get(&r, "forwarded").as_deref(),
            Some("for=203.0.113.9;proto=https, for=10.0.0.2;host=lp.example;proto=http")
        );
    }

    #[test]
    fn rfc7239_quotes_ipv6_and_off_adds_nothing() {
        let mut r = request(&[]);
        apply(
            &mut r,
            ForwardedHeaders::Forwarded,
            &direct("2001:db8::1"),
            HOP,
        )
        .unwrap();
        assert_eq!(
            get(&r, "forwarded").as_deref(),
            Some("for=\"[2001:db8::1]\";host=lp.example;proto=http")
        );
        assert_eq!(get(&r, "x-forwarded-for"), None);
        let mut off = request(&[("X-Forwarded-For", "6.6.6.6")]);
        apply(
            &mut off,
            ForwardedHeaders::Off,
            &direct("198.51.100.7"),
            HOP,
        )
        .unwrap();
        assert_eq!(get(&off, "x-forwarded-for"), None);
    }
}
