//! One delivery attempt over HTTP, and how its result is classified.

use std::time::Duration;

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivered: bool,
    /// Worth retrying: connection error, timeout, 5xx or 429.
    pub retryable: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Attempt {
    /// A transport failure (retryable).
    pub fn failed(error: String) -> Self {
        Attempt {
            delivered: false,
            retryable: true,
            status: None,
            error: Some(error),
        }
    }
}

/// Classify an HTTP status: 2xx and 3xx are delivered (a source that redirects has
/// received the request); 429 and 5xx are retried; any other 4xx is final.
pub fn classify(status: u16) -> Attempt {
    let delivered = (200..400).contains(&status);
    let retryable = status == 429 || status >= 500;
    Attempt {
        delivered,
        retryable: !delivered && retryable,
        status: Some(status),
        error: (!delivered).then(|| format!("the source answered HTTP {status}")),
    }
}

/// The HTTP agent: one global timeout per attempt, redirects not followed (a redirect
/// already proves receipt), statuses returned rather than turned into errors.
///
/// Relays are small GETs with small answers: buffers are sized for that (the library's
/// default is 128 KiB each way, zeroed per connection), and as many idle keep-alive
/// connections per source are kept as deliveries may run at once, so a busy source is
/// not reconnected to for every relay.
pub fn agent(timeout: Duration, concurrency: usize) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("clickstamp-relay/0.1")
        .input_buffer_size(16 * 1024)
        .output_buffer_size(8 * 1024)
        .max_idle_connections_per_host(concurrency.max(1))
        .max_idle_connections(concurrency.max(1) * 4)
        .build()
        .new_agent()
}

/// Most of a source's answer that is read (and thrown away) so that its connection
/// can be used again.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// GET `url` once.
pub fn attempt(agent: &ureq::Agent, url: &str) -> Attempt {
    match agent.get(url).call() {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            // An unread answer would cost the connection; a failure to read it does
            // not change what the status already said.
            let _ = resp
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_vec();
            classify(status)
        }
        Err(e) => Attempt::failed(e.to_string().chars().take(300).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn classification() {
        assert!(classify(200).delivered && classify(204).delivered && classify(302).delivered);
        assert!(classify(500).retryable && classify(503).retryable && classify(429).retryable);
        let refused = classify(400);
        assert!(!refused.delivered && !refused.retryable);
        assert!(!classify(404).retryable);
    }
}
