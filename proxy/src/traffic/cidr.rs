//! Sets of IP networks (data-centre and hosting ranges), looked up in a handful of
//! hash probes: one per prefix length the set holds, whatever its size. The AWS
//! list alone has thousands of prefixes; a linear scan would cost microseconds a click.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// IPv4 and IPv6 networks, keyed by prefix length.
#[derive(Debug, Clone, Default)]
pub struct CidrSet {
    v4: HashMap<u8, HashSet<u32>>,
    v6: HashMap<u8, HashSet<u128>>,
    networks: usize,
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network (write it like 203.0.113.0/24, 2001:db8::/32 or a single address)")]
pub struct CidrError(pub String);

fn mask4(bits: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(bits: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    }
}

impl CidrSet {
    /// Add `text`: `addr/len`, or a bare address (a host route).
    pub fn insert(&mut self, text: &str) -> Result<(), CidrError> {
        let bad = || CidrError(text.to_string());
        let (addr, len) = match text.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return Err(bad());
                }
                self.v4.entry(len).or_default().insert(mask4(a.into(), len));
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return Err(bad());
                }
                self.v6.entry(len).or_default().insert(mask6(a.into(), len));
            }
        }
        self.networks += 1;
        Ok(())
    }

    /// Add every network of a list file: one a line, `#` comments and blank lines
    /// skipped. The error carries the 1-based line number.
    pub fn insert_list(&mut self, list: &str) -> Result<(), (usize, CidrError)> {
        for (i, line) in list.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                self.insert(line).map_err(|e| (i + 1, e))?;
            }
        }
        Ok(())
    }

    /// Networks added (duplicates included).
    pub fn len(&self) -> usize {
        self.networks
    }

    pub fn is_empty(&self) -> bool {
        self.networks == 0
    }

    /// Whether `ip` lies in one of the networks. An IPv4-mapped IPv6 address is
    /// looked up as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                self.v4
                    .iter()
                    .any(|(len, set)| set.contains(&mask4(bits, *len)))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                self.v6
                    .iter()
                    .any(|(len, set)| set.contains(&mask6(bits, *len)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let mut set = CidrSet::default();
        set.insert_list("# AWS\n3.5.140.0/22\n\n2600:1f00::/24 # v6\n198.51.100.7\n")
            .unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.contains(ip("3.5.140.1")));
        assert!(set.contains(ip("3.5.143.255")));
        assert!(!set.contains(ip("3.5.144.0")));
        assert!(set.contains(ip("2600:1f00:1::5")));
        assert!(!set.contains(ip("2600:2000::1")));
        assert!(set.contains(ip("198.51.100.7")));
        assert!(!set.contains(ip("198.51.100.8")));
        assert!(set.contains(ip("::ffff:3.5.140.9")), "mapped v4");
    }

    #[test]
    fn bad_networks_are_refused_with_their_line() {
        let mut set = CidrSet::default();
        assert_eq!(
            set.insert_list("10.0.0.0/8\n10.0.0.0/33\n"),
            Err((2, CidrError("10.0.0.0/33".into())))
        );
        assert!(set.insert("nonsense").is_err());
        assert!(set.insert("::/129").is_err());
        assert!(set.insert("0.0.0.0/0").is_ok());
        assert!(set.contains(ip("8.8.8.8")));
    }
}
