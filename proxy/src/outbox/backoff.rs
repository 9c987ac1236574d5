//! Jittered exponential backoff: a small, reusable, deterministic-given-its-inputs piece.

use std::time::Duration;

/// Exponential backoff with jitter: attempt `n` waits `min(max, base · 2ⁿ)`, of which a
/// fraction `jitter` is randomised (so retries of many entries that failed together do
/// not arrive together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    /// 0.0 (no jitter) ..= 1.0 (full jitter).
    pub jitter: f64,
}

impl Backoff {
    /// A backoff from `base` to `max` with half of each delay randomised.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            jitter: 0.5,
        }
    }

    /// The ceiling for attempt `attempt` (0-based): `min(max, base · 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt`, given `unit` drawn uniformly from [0, 1).
    /// Always within `[ceiling · (1 - jitter), ceiling]`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt).as_secs_f64();
        let jitter = self.jitter.clamp(0.0, 1.0);
        let unit = unit.clamp(0.0, 1.0);
        Duration::from_secs_f64(ceiling * (1.0 - jitter) + ceiling * jitter * unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = b();
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(1), Duration::from_millis(200));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(7), Duration::from_secs(10));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b = b();
        for attempt in 0..40 {
            let c = b.ceiling(attempt);
            for unit in [0.0, 0.25, 0.5, 0.999, 1.0, -3.0, 7.0] {
                let d = b.delay(attempt, unit);
                assert!(
                    d <= c && d >= c / 2,
                    "attempt {attempt} unit {unit}: {d:?} vs {c:?}"
                );
            }
        }
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay(2, 0.9), Duration::from_millis(400));
    }

    #[test]
    fn max_below_base_is_raised_to_base() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(5), Duration::from_secs(2));
    }
}
