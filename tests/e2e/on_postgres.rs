//! The store-neutral suites (analytics too) again, on PostgreSQL: this test binary re-run on a
//! throwaway cluster with `CLICKSTAMP_E2E_STORE=postgres`.

use clickstamp_e2e::store::{on_postgres, PG_ENV, STORE_ENV};
use clickstamp_e2e::PgCluster;

/// The suites that run on either backend. libtest filters by substring, so `pixel::`
/// also picks `hardening_pixel::`, which still reads the SQLite file: skipped below.
const SUITES: &[&str] = &[
    "foundation::",
    "postbacks::",
    "pixel::",
    "reports::",
    "analytics::",
    "outbox_and_bugs::",
    "hardening_proxy::",
    "hardening_postback::",
    "landing::",
    "landing_go_cli::",
    "tls::",
    "sdk_browser::",
    "hardening_relay::",
    "postback_promises::",
    "reload::",
    "retention::",
    "console::",
    "destinations::",
    "traffic_rules::",
];
const NOT_YET_ON_POSTGRES: &[&str] = &[];

/// The `N` of libtest's `test result: ok. N passed; ...` line.
fn passed_count(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        line.strip_prefix("test result: ok. ")?
            .split_once(" passed")?
            .0
            .parse()
            .ok()
    })
}

#[test]
fn foundation_postbacks_pixel_reports_and_analytics_pass_on_postgres() {
    if on_postgres() {
        // This is the child run already: it must not start another.
        return;
    }
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let mut child = std::process::Command::new(std::env::current_exe().expect("own test binary"));
    child
        .args(SUITES)
        .args(NOT_YET_ON_POSTGRES.iter().flat_map(|s| ["--skip", s]))
        .args(["--test-threads", "4"])
        .env(STORE_ENV, "postgres")
        .env(PG_ENV, cluster.base_url())
        // The binary this run already built or was given: the child builds nothing.
        .env("CLICKSTAMP_BIN", clickstamp_e2e::binary());
    let out = child.output().expect("run the e2e binary on postgres");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- e2e on postgres: stdout ---\n{stdout}");
    eprintln!("--- e2e on postgres: stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "the suites failed on postgres ({}); server log:\n{}",
        out.status,
        cluster.log()
    );
    let passed = passed_count(&stdout).expect("a `test result: ok` line");
    assert!(passed > 0, "no test ran on postgres:\n{stdout}");
}

#[test]
fn the_passed_count_is_read_from_the_result_line() {
    let stdout = "running 2 tests\n\ntest result: ok. 37 passed; 0 failed; 1 ignored; \
                  0 measured; 200 filtered out; finished in 3.2s\n";
    assert_eq!(passed_count(stdout), Some(37));
    assert_eq!(
        passed_count("test result: FAILED. 3 passed; 1 failed"),
        None
    );
}
