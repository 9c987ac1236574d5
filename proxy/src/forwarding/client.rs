//! Who the visitor is: the peer address, or what a trusted proxy in front of us says.

use crate::tracker::visit::forwarded_client_ip;
use clickstamp_plugins::verify::Cidr;
use http::HeaderMap;
use std::net::IpAddr;

/// When a forwarding header is believed (`server.client_ip_header`,
/// `server.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustRule {
    /// The header a trusted proxy puts the client address in (last hop used).
    pub header: Option<String>,
    /// The peers allowed to set it. Empty with a header configured: any peer (the
    /// listener is reachable only through the operator's load balancer).
    pub proxies: Vec<Cidr>,
}

/// The addresses of one request, resolved by a [`TrustRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress {
    /// The address the TCP connection came from.
    pub peer: Option<IpAddr>,
    /// The visitor: the trusted proxy's word for it, else the peer.
    pub visitor: Option<IpAddr>,
    /// The connection came from a trusted proxy, so its forwarding headers stand.
    pub via_trusted_proxy: bool,
}

impl TrustRule {
    /// Whether `peer` may speak for the visitor.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        if self.header.is_none() {
            return false;
        }
        match peer {
            Some(ip) => self.proxies.is_empty() || self.proxies.iter().any(|c| c.contains(ip)),
            None => self.proxies.is_empty(),
        }
    }

    /// Resolve the visitor's address from the peer and the request headers.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> ClientAddress {
        let via_trusted_proxy = self.trusts(peer);
        let forwarded = self
            .header
            .as_deref()
            .filter(|_| via_trusted_proxy)
            .and_then(|name| headers.get(name))
            .and_then(|v| v.to_str().ok())
            .and_then(forwarded_client_ip)
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        ClientAddress {
            peer,
            visitor: forwarded.or(peer),
            via_trusted_proxy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_a_configured_header_the_peer_is_the_visitor() {
        let rule = TrustRule::default();
        let got = rule.resolve(ip("198.51.100.7"), &headers("6.6.6.6"));
        assert_eq!(got.visitor, ip("198.51.100.7"));
        assert!(!got.via_trusted_proxy);
    }

    #[test]
    fn a_configured_header_is_believed_from_trusted_peers_only() {
        let rule = TrustRule {
            header: Some("x-forwarded-for".into()),
            proxies: vec!["10.0.0.0/8".parse().unwrap()],
        };
        let via_lb = rule.resolve(ip("10.1.2.3"), &headers("6.6.6.6, 203.0.113.9"));
        assert_eq!(via_lb.visitor, ip("203.0.113.9"));
        assert!(via_lb.via_trusted_proxy);
        let direct = rule.resolve(ip("198.51.100.7"), &headers("203.0.113.9"));
        assert_eq!(direct.visitor, ip("198.51.100.7"));
        assert!(!direct.via_trusted_proxy);
    }

    #[test]
    fn an_empty_proxy_list_trusts_any_peer_as_before() {
        let rule = TrustRule {
            header: Some("x-forwarded-for".into()),
            proxies: Vec::new(),
        };
        let got = rule.resolve(ip("127.0.0.1"), &headers("203.0.113.9"));
        assert_eq!(got.visitor, ip("203.0.113.9"));
        let garbage = rule.resolve(ip("127.0.0.1"), &headers("nonsense"));
        assert_eq!(garbage.visitor, ip("127.0.0.1"));
    }
}
