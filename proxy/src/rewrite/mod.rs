//! Landing-page rewriting: offer links in proxied HTML get the visitor's click ID.
//!
//! Modules follow a response: [`response`] decides whether a response is rewritten and
//! edits its headers, [`decode`] undoes an origin's gzip/br/deflate, [`charset`] finds
//! the page's encoding, [`html`] streams the page through lol-html, [`links`] decides
//! what each link becomes, [`template`] replays a recorded pass for a page seen before. [`hooks`] puts it together for a Pingora `ProxyHttp` —
//! clickstamp's own [`crate::service::MainService`] or anyone else's.
//!
//! See `README.md` beside this file for the config keys and matching rules.

pub mod charset;
pub mod decode;
pub mod hooks;
pub mod html;
pub mod links;
pub mod response;
pub mod template;

pub use hooks::{LandingHooks, LandingPage};
pub use links::LinkMode;

/// `campaigns[].rewrite`: how a campaign's HTML is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteSettings {
    /// Rewrite at all (`rewrite.enabled`, default true). Off: pages pass through
    /// byte-identical (the click is still recorded and the cookie still set).
    pub enabled: bool,
    /// `rewrite.links`: `"stamp"` (default) or `"go"`.
    pub links: LinkMode,
    /// `rewrite.inject_sdk` (default false): insert the pixel SDK tag before `</head>`.
    pub inject_sdk: bool,
    /// `rewrite.sdk_src` (default `/sdk/clickstamp.js`).
    pub sdk_src: String,
    /// `rewrite.max_body_bytes` (default 2 MiB): a page declaring a larger
    /// Content-Length passes through untouched; a chunked page stops being changed
    /// past this many bytes (the rest streams through as is).
    pub max_body_bytes: usize,
    /// `rewrite.max_memory_bytes` (default 256 KiB): lol-html's buffer limit per page
    /// (a single tag larger than this ends rewriting for the page; the page is kept).
    pub max_memory_bytes: usize,
    /// `rewrite.recompress` (default true): gzip/brotli rewritten pages for clients
    /// that accept it (the origin is asked for identity).
    pub recompress: bool,
    /// `rewrite.template_cache_bytes` (default 4 MiB, 0 = off): memory for page
    /// templates (see [`template`]), per campaign.
    pub template_cache_bytes: usize,
}

/// Default SDK script path (served by clickstamp's own `/sdk/` route).
pub const DEFAULT_SDK_SRC: &str = "/sdk/clickstamp.js";

impl Default for RewriteSettings {
    fn default() -> Self {
        RewriteSettings {
            enabled: true,
            links: LinkMode::Stamp,
            inject_sdk: false,
            sdk_src: DEFAULT_SDK_SRC.to_string(),
            max_body_bytes: 2 << 20,
            max_memory_bytes: 256 << 10,
            recompress: true,
            template_cache_bytes: 4 << 20,
        }
    }
}
