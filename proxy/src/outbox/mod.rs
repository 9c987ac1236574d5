//! The outbox worker: delivers conversions to traffic sources, at least once, with
//! retries, and dead-letters what will not go. See `LIFECYCLE.md` in `store/`.

pub mod backoff;
