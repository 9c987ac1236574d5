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
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent("clickstamp-relay/0.1")
        .build()
        .new_agent()
}

/// GET `url` once.
pub fn attempt(agent: &ureq::Agent, url: &str) -> Attempt {
    match agent.get(url).call() {
        Ok(resp) => classify(resp.status().as_u16()),
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
