//! clickstamp: a conversion-tracking edge on Pingora.
//!
//! A library first: [`service::MainService`] is a Pingora `ProxyHttp`, [`admin::AdminApp`]
//! the admin listener, and [`tracker::Tracker`] the framework-independent core that an
//! existing server can call. The `clickstamp` binary is a thin shell over [`cli`].

pub mod admin;
pub mod admin_throttle;
pub mod analytics;
pub mod cli;
pub mod config;
pub mod conn;
pub mod console;
pub mod forwarding;
pub mod landers;
pub mod metrics;
pub mod outbox;
pub mod pixel;
pub mod postback;
pub mod reload;
pub mod report;
pub mod rewrite;
pub mod service;
pub mod store;
pub mod tls;
pub mod tracker;
pub mod traffic;
