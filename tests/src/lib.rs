//! Harness for clickstamp's end-to-end tests: builds and boots the real `clickstamp`
//! binary on free loopback ports with a config written to a fresh directory, and talks
//! to it over real HTTP.

pub mod browser;
pub mod clickhouse;
pub mod fake_source;
pub mod http;
pub mod instance;
pub mod mmdb;
pub mod origin;
pub mod platforms;
pub mod postgres;
pub mod store;

pub use self::postgres::PgCluster;
pub use fake_source::{FakeSource, Mode};
pub use http::{get, request, Response};
pub use instance::{binary, Instance, TempDir};
pub use origin::{OriginServer, Reply};
pub use store::{backend, skip_on_postgres, Backend, Row};

/// True when running under CI (`CI=true`): a missing system program is then a failure,
/// not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Locate a system program; if absent, fail under CI and skip loudly elsewhere.
/// Returns `None` to mean "skip this test".
pub fn require_program(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if in_ci() {
            panic!("{name} is required under CI=true but is not installed");
        }
        eprintln!("\n*** SKIPPING: {name} is not installed (install it to run this test) ***\n");
    }
    found
}

/// A helper process (a test's own server) killed and reaped when dropped, so a failing
/// assertion never leaves it running.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
