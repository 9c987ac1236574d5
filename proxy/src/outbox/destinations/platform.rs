//! The extension point for a destination kind: [`Platform`].

use crate::store::DestinationEntry;
use std::time::Duration;

/// One ad platform's (or the webhook's) conversions API, as the destination worker
/// drives it. The worker owns everything around the request — claiming entries,
/// batching, concurrency, rate limits, retries, dead letters, metrics, logs — and a
/// platform only turns entries into requests and answers into outcomes.
///
/// The life of a batch, in the order the worker calls:
///
/// 1. [`Platform::precheck`] on each claimed entry. An entry the platform would
///    refuse whatever happens (too old, no click id it can attribute to) or has
///    nothing to do with (a status change it cannot express) is settled here and
///    never sent, so it cannot spoil the batch around it.
/// 2. [`Platform::group`] splits the rest into requests of one shape (Google Ads
///    uploads conversions and retractions through different methods).
/// 3. [`Platform::request`] builds the HTTP request for one group. It runs on a
///    blocking thread and may itself call out (an OAuth token refresh); an `Err`
///    retries the whole group later.
/// 4. [`Platform::read_answer`] turns the platform's answer into one
///    [`RowOutcome`] per entry, in order: where the platform reports failures per
///    row, only the failing rows are retried or dead-lettered.
///
/// Implementations must keep secrets out of every message they return: the
/// worker stores messages in the outbox (shown by the API and console) and logs
/// them. [`Platform::secrets`] lists what the worker scrubs as a second line of
/// defence.
pub trait Platform: Send + Sync {
    /// Settle `entry` without sending it, or `None` to send it.
    fn precheck(&self, entry: &DestinationEntry, now_ms: u64) -> Option<RowOutcome> {
        let _ = (entry, now_ms);
        None
    }

    /// Which request `entry` travels in; entries of one group share a request.
    fn group(&self, entry: &DestinationEntry) -> &'static str {
        let _ = entry;
        "events"
    }

    /// The request carrying `entries` (all of one group, at most the batch size).
    fn request(
        &self,
        agent: &ureq::Agent,
        group: &'static str,
        entries: &[&DestinationEntry],
        now_ms: u64,
    ) -> Result<Request, String>;

    /// One outcome per entry of the request, in order.
    fn read_answer(&self, entries: &[&DestinationEntry], answer: &Answer) -> Vec<RowOutcome> {
        whole_batch(entries.len(), answer, |body| {
            String::from_utf8_lossy(body).chars().take(300).collect()
        })
    }

    /// Values to scrub from any text the worker keeps.
    fn secrets(&self) -> Vec<String>;
}

/// An HTTP request to send: always a POST of a JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What the platform answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// How one entry came out of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    Delivered,
    /// Settled as delivered without sending, with why (shown in the outbox).
    Skipped(String),
    /// Worth trying again later (connection error, 5xx, 429, a row the platform
    /// says was throttled).
    Retry(String),
    /// The platform refused it for good: dead-lettered with its message.
    Refused(String),
}

/// The same outcome for every entry, from the HTTP status: 2xx delivered, 429 and
/// 5xx retried, other statuses refused with what `message` reads from the body.
pub fn whole_batch(
    n: usize,
    answer: &Answer,
    message: impl Fn(&[u8]) -> String,
) -> Vec<RowOutcome> {
    let outcome = match answer.status {
        200..=299 => RowOutcome::Delivered,
        429 | 500..=599 => {
            RowOutcome::Retry(format!("HTTP {}: {}", answer.status, message(&answer.body)))
        }
        s => RowOutcome::Refused(format!("HTTP {s}: {}", message(&answer.body))),
    };
    vec![outcome; n]
}

/// Our event name as the platform's: the destination's `event_names`, else `defaults`
/// (pairs of ours → theirs), else our own name.
pub fn event_name(
    mapped: &std::collections::BTreeMap<String, String>,
    defaults: &[(&str, &str)],
    ours: &str,
) -> String {
    if let Some(theirs) = mapped.get(ours) {
        return theirs.clone();
    }
    defaults
        .iter()
        .find(|(o, _)| *o == ours)
        .map_or_else(|| ours.to_string(), |(_, t)| t.to_string())
}

/// The click id `entry`'s click arrived with under landing parameter `param`.
pub fn click_id_from<'a>(
    entry: &'a DestinationEntry,
    params: &[&'a str],
) -> Option<(&'a str, &'a str)> {
    let click = entry.click.as_ref()?;
    let id = click.source_click_id.as_deref()?;
    let param = click.source_click_param.as_deref().unwrap_or(params[0]);
    params.contains(&param).then_some((param, id))
}
