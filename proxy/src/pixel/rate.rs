//! Per-client rate limiting for `/px`: a token bucket per IP in a bounded LRU, so a
//! flood from many addresses cannot grow memory without bound.

use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// A token bucket per key: `per_minute` requests a minute on average, bursts up to
/// `per_minute`.
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<LruCache<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter tracking at most `max_keys` clients.
    pub fn new(per_minute: u32, max_keys: usize) -> Self {
        let cap = NonZeroUsize::new(max_keys.max(1)).expect("max(1) is non-zero");
        RateLimiter {
            per_minute: per_minute.max(1) as f64,
            buckets: Mutex::new(LruCache::new(cap)),
        }
    }

    /// Take one token for `key` at `now_ms`; false when the bucket is empty.
    pub fn allow(&self, key: &str, now_ms: u64) -> bool {
        let mut buckets = self.buckets.lock();
        let refill_per_ms = self.per_minute / 60_000.0;
        if !buckets.contains(key) {
            // Only a new client costs an allocation for its key.
            buckets.put(
                key.to_string(),
                Bucket {
                    tokens: self.per_minute,
                    last_ms: now_ms,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(key) else {
            // Unreachable (inserted above, under the same lock); let the hit through
            // rather than fail the request.
            return true;
        };
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64;
        bucket.tokens = (bucket.tokens + elapsed * refill_per_ms).min(self.per_minute);
        bucket.last_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A [`RateLimiter`] whose rate comes from the live config: a reload that changes the
/// rate starts a fresh limiter (clients start with a full bucket), an unchanged rate
/// keeps the buckets.
pub struct ReloadableRateLimiter {
    max_keys: usize,
    current: Mutex<(u32, Arc<RateLimiter>)>,
}

impl ReloadableRateLimiter {
    /// A limiter at `per_minute`, tracking at most `max_keys` clients.
    pub fn new(per_minute: u32, max_keys: usize) -> Self {
        ReloadableRateLimiter {
            max_keys,
            current: Mutex::new((per_minute, Arc::new(RateLimiter::new(per_minute, max_keys)))),
        }
    }

    /// The limiter for `per_minute` (the request's config's rate).
    pub fn at_rate(&self, per_minute: u32) -> Arc<RateLimiter> {
        let mut current = self.current.lock();
        if current.0 != per_minute {
            *current = (
                per_minute,
                Arc::new(RateLimiter::new(per_minute, self.max_keys)),
            );
        }
        current.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimiter;

    #[test]
    fn bursts_then_refills() {
        let r = RateLimiter::new(3, 10);
        assert!(r.allow("a", 0) && r.allow("a", 0) && r.allow("a", 0));
        assert!(!r.allow("a", 0));
        assert!(r.allow("b", 0), "keys are independent");
        assert!(
            r.allow("a", 20_000),
            "one token back after a third of a minute"
        );
        assert!(!r.allow("a", 20_000));
    }
}
