//! Wrong admin tokens, limited per client address.
//!
//! The admin token is long and random, so guessing it is hopeless; what a limit adds is
//! that a script hammering the admin listener with guesses is stopped early, shows up in
//! the log and the metrics, and costs nothing to serve. Both doors the token opens count
//! against the same limit: the console's `POST /login` and the `/api/` bearer token.
//!
//! The key is the TCP peer address, never a forwarding header (a client can write any
//! `X-Forwarded-For` it likes). An address that sent [`MAX_FAILURES`] wrong tokens
//! within [`WINDOW`] is refused with 429 until that window ends, even with the right
//! token: otherwise a lucky guess inside the lock-out would still get in. Another
//! address is unaffected, so an attacker cannot lock the operator out from elsewhere. A
//! correct token clears its address's count.
//!
//! Behind a reverse proxy every client shares the proxy's address; the limit then
//! applies to all of them together, which is the safe direction to err in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens one address may send within [`WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// How long an address's wrong tokens count against it, from the first of them.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Addresses tracked at most; beyond it expired entries are dropped, then the oldest, so
/// a flood from many addresses cannot grow the map without bound.
const MAX_TRACKED: usize = 10_000;

/// Where an address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It may try a token.
    Allowed,
    /// Too many wrong tokens: refused for this much longer.
    LockedOut { retry_after: Duration },
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    first: Instant,
    count: u32,
}

/// The failed-token counts of the admin listener, shared by the console and the API.
#[derive(Debug, Default)]
pub struct AdminThrottle {
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

impl AdminThrottle {
    /// Whether `addr` may present a token now.
    pub fn standing(&self, addr: Option<IpAddr>) -> Standing {
        self.standing_at(addr, Instant::now())
    }

    /// Count a wrong token from `addr`.
    pub fn failed(&self, addr: Option<IpAddr>) {
        self.failed_at(addr, Instant::now());
    }

    /// A right token from `addr`: its count starts again.
    pub fn succeeded(&self, addr: Option<IpAddr>) {
        if let Some(addr) = addr {
            self.lock().remove(&addr);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // A panic while holding this lock leaves only counters behind: still usable.
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn standing_at(&self, addr: Option<IpAddr>, now: Instant) -> Standing {
        // A connection without a peer address (a Unix socket) is local: not limited.
        let Some(addr) = addr else {
            return Standing::Allowed;
        };
        match self.lock().get(&addr) {
            Some(f) if f.count >= MAX_FAILURES => {
                let ends = f.first + WINDOW;
                if ends > now {
                    Standing::LockedOut {
                        retry_after: ends - now,
                    }
                } else {
                    Standing::Allowed
                }
            }
            _ => Standing::Allowed,
        }
    }

    fn failed_at(&self, addr: Option<IpAddr>, now: Instant) {
        let Some(addr) = addr else {
            return;
        };
        let mut map = self.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, f| f.first + WINDOW > now);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map.iter().min_by_key(|(_, f)| f.first).map(|(a, _)| *a) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(addr).or_insert(Failures {
            first: now,
            count: 0,
        });
        if entry.first + WINDOW <= now {
            *entry = Failures {
                first: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }
}

/// Whole seconds for a `Retry-After` header, rounded up so a client waiting that long
/// is let in.
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_address_is_locked_out_after_the_limit_until_its_window_ends() {
        let t = AdminThrottle::default();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed_at(ip("192.0.2.1"), start);
        }
        assert_eq!(t.standing_at(ip("192.0.2.1"), start), Standing::Allowed);
        t.failed_at(ip("192.0.2.1"), start);
        let later = start + Duration::from_secs(10);
        assert_eq!(
            t.standing_at(ip("192.0.2.1"), later),
            Standing::LockedOut {
                retry_after: WINDOW - Duration::from_secs(10)
            }
        );
        // Another address is not affected.
        assert_eq!(t.standing_at(ip("192.0.2.2"), later), Standing::Allowed);
        // After the window, the address may try again, and its count starts afresh.
        let after = start + WINDOW;
        assert_eq!(t.standing_at(ip("192.0.2.1"), after), Standing::Allowed);
        t.failed_at(ip("192.0.2.1"), after);
        assert_eq!(t.standing_at(ip("192.0.2.1"), after), Standing::Allowed);
    }

    #[test]
    fn a_right_token_clears_the_count_and_local_connections_are_not_limited() {
        let t = AdminThrottle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed_at(ip("::1"), now);
        }
        t.succeeded(ip("::1"));
        t.failed_at(ip("::1"), now);
        assert_eq!(t.standing_at(ip("::1"), now), Standing::Allowed);
        for _ in 0..MAX_FAILURES * 2 {
            t.failed_at(None, now);
        }
        assert_eq!(t.standing_at(None, now), Standing::Allowed);
    }

    #[test]
    fn a_flood_from_many_addresses_stays_bounded() {
        let t = AdminThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 50) {
            t.failed_at(Some(IpAddr::from(i.to_be_bytes())), now);
        }
        assert!(t.lock().len() <= MAX_TRACKED);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
