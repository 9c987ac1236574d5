//! What a request path means.

use crate::config::Config;

/// The fixed set of route labels (used in metrics; never derived from input).
pub mod label {
    pub const LANDING: &str = "landing";
    pub const GO: &str = "go";
    pub const POSTBACK: &str = "postback";
    pub const PIXEL: &str = "px";
    pub const SDK: &str = "sdk";
    pub const NOT_FOUND: &str = "not_found";
}

/// A routed request on the main listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/go/{target}`: `target` is an offer or campaign id (or garbage, refused later).
    Go(String),
    /// `/px`: a pixel hit.
    Pixel,
    /// `/sdk/{file}`: the pixel SDK.
    Sdk(String),
    /// `/postback/{network}`: the segment as sent (checked against configured ids later).
    Postback(String),
    /// A campaign's landing path; `rest` is the path below the campaign prefix
    /// (always starting with `/`).
    Landing { campaign: usize, rest: String },
    /// Nothing answers here.
    NotFound,
}

/// Route `path` on `host` (lowercase, without port).
pub fn route(config: &Config, host: Option<&str>, path: &str) -> Route {
    if let Some(target) = path.strip_prefix("/go/") {
        return Route::Go(target.to_string());
    }
    if path == "/px" {
        return Route::Pixel;
    }
    if let Some(file) = path.strip_prefix("/sdk/") {
        return Route::Sdk(file.to_string());
    }
    if let Some(network) = path.strip_prefix("/postback/") {
        return Route::Postback(network.trim_end_matches('/').to_string());
    }
    let mut best: Option<(usize, usize, bool)> = None; // (campaign, prefix len, host-specific)
    for (i, c) in config.campaigns.iter().enumerate() {
        let host_ok = match (&c.host, host) {
            (None, _) => true,
            (Some(h), Some(req)) => h == req,
            (Some(_), None) => false,
        };
        if !host_ok {
            continue;
        }
        let matches = c.path == "/"
            || path == c.path
            || (path.starts_with(&c.path) && path.as_bytes().get(c.path.len()) == Some(&b'/'));
        if !matches {
            continue;
        }
        let candidate = (i, c.path.len(), c.host.is_some());
        let better = match best {
            None => true,
            Some((_, len, specific)) => (candidate.2, candidate.1) > (specific, len),
        };
        if better {
            best = Some(candidate);
        }
    }
    match best {
        Some((campaign, _, _)) => {
            let prefix = &config.campaigns[campaign].path;
            let rest = if prefix == "/" {
                path
            } else {
                &path[prefix.len()..]
            };
            let rest = if rest.is_empty() {
                "/".to_string()
            } else {
                rest.to_string()
            };
            Route::Landing { campaign, rest }
        }
        None => Route::NotFound,
    }
}
