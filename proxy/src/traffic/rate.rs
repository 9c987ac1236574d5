//! Clicks per IP over a window, and the time since the previous click of the same
//! visitor: in-process state, in a bounded LRU so a flood from many addresses cannot
//! grow memory. With several nodes behind a balancer each node counts the clicks it
//! sees, so a limit holds per node (a visitor spread over N nodes gets N times it).

use lru::LruCache;
use parking_lot::Mutex;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;

/// Addresses (and visitors) tracked at most: about 80 bytes each.
pub const TRACKED_CLIENTS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    clicks: u32,
}

/// What the window says about one new click.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateVerdict {
    /// More than the allowed clicks from this IP within the window.
    pub over_rate: bool,
    /// The same visitor (IP and user agent) clicked again sooner than a person could.
    pub too_fast: bool,
}

/// Per-IP click windows and per-visitor last-click times, keyed by a keyed hash so
/// no key is allocated per click and nobody can aim collisions.
pub struct RateState {
    hasher: RandomState,
    windows: Mutex<LruCache<u64, Window>>,
    last_click: Mutex<LruCache<u64, u64>>,
}

impl Default for RateState {
    fn default() -> Self {
        RateState::new(TRACKED_CLIENTS)
    }
}

impl RateState {
    pub fn new(capacity: usize) -> Self {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        RateState {
            hasher: RandomState::new(),
            windows: Mutex::new(LruCache::new(cap)),
            last_click: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Count a click from `ip` (with `user_agent`) at `now_ms`. `max_clicks` per
    /// `window_ms` (0: no limit); `min_interval_ms` between one visitor's clicks (0:
    /// no check).
    pub fn observe(
        &self,
        ip: &str,
        user_agent: &str,
        now_ms: u64,
        window_ms: u64,
        max_clicks: u32,
        min_interval_ms: u64,
    ) -> RateVerdict {
        let mut verdict = RateVerdict::default();
        if max_clicks > 0 && window_ms > 0 {
            let key = self.hasher.hash_one(ip);
            let mut windows = self.windows.lock();
            let w = windows.get_or_insert_mut(key, || Window {
                start_ms: now_ms,
                clicks: 0,
            });
            if now_ms.saturating_sub(w.start_ms) >= window_ms {
                *w = Window {
                    start_ms: now_ms,
                    clicks: 0,
                };
            }
            w.clicks = w.clicks.saturating_add(1);
            verdict.over_rate = w.clicks > max_clicks;
        }
        if min_interval_ms > 0 {
            let key = self.hasher.hash_one((ip, user_agent));
            let mut last = self.last_click.lock();
            if let Some(previous) = last.put(key, now_ms) {
                verdict.too_fast = now_ms.saturating_sub(previous) < min_interval_ms;
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_over_the_rate_and_the_window_starts_over() {
        let state = RateState::new(16);
        let verdicts: Vec<bool> = (0..5)
            .map(|i| {
                state
                    .observe("192.0.2.1", "ua", 1_000 + i, 60_000, 3, 0)
                    .over_rate
            })
            .collect();
        assert_eq!(verdicts, [false, false, false, true, true]);
        assert!(
            !state
                .observe("192.0.2.2", "ua", 1_010, 60_000, 3, 0)
                .over_rate,
            "per IP"
        );
        assert!(
            !state
                .observe("192.0.2.1", "ua", 61_000, 60_000, 3, 0)
                .over_rate,
            "new window"
        );
    }

    #[test]
    fn a_second_click_sooner_than_a_person_could_is_too_fast() {
        let state = RateState::new(16);
        assert!(!state.observe("192.0.2.1", "a", 0, 0, 0, 500).too_fast);
        assert!(state.observe("192.0.2.1", "a", 100, 0, 0, 500).too_fast);
        assert!(
            !state.observe("192.0.2.1", "b", 150, 0, 0, 500).too_fast,
            "another visitor"
        );
        assert!(!state.observe("192.0.2.1", "a", 700, 0, 0, 500).too_fast);
        let off = RateState::new(16);
        assert_eq!(off.observe("x", "a", 0, 0, 0, 0), RateVerdict::default());
        assert_eq!(off.observe("x", "a", 0, 0, 0, 0), RateVerdict::default());
    }
}
