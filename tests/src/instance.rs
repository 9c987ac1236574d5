//! Boot the real binary.

use crate::http::{get, Response};
use crate::store::{Row, SqlParam, StoreTarget};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The click-ID key every test instance uses, so tests can mint IDs of their own.
pub const CLICK_ID_KEY: &str = "e2e-click-id-key-0123456789abcdef";
/// The admin token every test instance uses.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path to the `clickstamp` binary, built once per test run with the same profile as
/// the tests (or taken from `CLICKSTAMP_BIN`).
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CLICKSTAMP_BIN") {
            return PathBuf::from(p);
        }
        cargo_build(&["--bin", "clickstamp"], "clickstamp")
    })
}

/// Path to the `embed_landing` example of the `clickstamp` crate, built once per test
/// run with the same profile as the tests.
pub fn embed_landing_example() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| cargo_build(&["--example", "embed_landing"], "examples/embed_landing"))
}

/// `cargo build -p clickstamp <what>` in the tests' profile; returns `output` under the
/// profile's target directory.
fn cargo_build(what: &[&str], output: &str) -> PathBuf {
    let root = workspace_root();
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "-p", "clickstamp"])
        .args(what);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run cargo build {what:?}: {e}"));
    assert!(status.success(), "cargo build {what:?} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join(output)
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Create a new, empty, uniquely named directory.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "clickstamp-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback address nothing listens on, for a server the test is about to start.
///
/// A port released by `bind(":0")` can be handed straight back by the kernel: to the
/// next `free_addr` (a config whose admin and main listeners then clash) or to a fake
/// origin's own `bind(":0")` before clickstamp binds it. So the ports come from below
/// the kernel's ephemeral range, which neither listeners on port 0 nor outgoing
/// connections ever use, and each is handed out once per test process.
pub fn free_addr() -> SocketAddr {
    const LOWEST: u32 = 10_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = ephemeral_range_start().saturating_sub(LOWEST).max(1_000);
    // Concurrent test processes start at different places in the range.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let port = LOWEST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if let Ok(addr) = TcpListener::bind(("127.0.0.1", port as u16)).and_then(|l| l.local_addr())
        {
            return addr;
        }
    }
    panic!(
        "no free loopback port between {LOWEST} and {}",
        LOWEST + span
    );
}

/// The first port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// The campaigns, offers, network and source of the demo, with the landers directory
/// pointing at the repo's demo landers.
pub fn demo_body() -> String {
    let landers = workspace_root().join("config/demo/landers");
    format!(
        r#"
[[networks]]
id = "cake"

[[traffic_sources]]
id = "demo-source"
click_id_params = ["tsid"]
cost_param = "cost"
sub_id_params = ["zone", "creative"]

[[offers]]
id = "demo"
url = "https://network.example/offer?a=1"
network = "cake"

[[campaigns]]
id = "demo-campaign"
path = "/demo"
traffic_source = "demo-source"
offers = [{{ offer = "demo", weight = 1 }}]
origin = {{ landers = "{}" }}
attribution_window = "30d"
cost = 0.01
direct_linking = true
"#,
        landers.display()
    )
}

/// Write a whole config to `path`: `[server]` on `main` and `admin` (plus
/// `server_extra` lines), `[store]` in `data/` beside the file (plus `store_extra`),
/// `[secrets]`, then `body`. Always SQLite: [`write_config_for`] writes the `[store]`
/// of a given target (e.g. [`StoreTarget::for_backend`]). `store_extra` lines with a
/// PostgreSQL-only key are left out (see [`StoreTarget::section`]).
pub fn write_config(
    path: &Path,
    main: SocketAddr,
    admin: SocketAddr,
    server_extra: &str,
    store_extra: &str,
    body: &str,
) {
    write_config_for(
        &StoreTarget::SqliteFile,
        path,
        main,
        admin,
        server_extra,
        store_extra,
        body,
    );
}

/// Like [`write_config`], with the `[store]` section for `store`: on PostgreSQL its
/// URL, and only those `store_extra` lines that apply there.
pub fn write_config_for(
    store: &StoreTarget,
    path: &Path,
    main: SocketAddr,
    admin: SocketAddr,
    server_extra: &str,
    store_extra: &str,
    body: &str,
) {
    let store_section = store.section(store_extra);
    let config = format!(
        "[server]\nlisten = \"{main}\"\nadmin_listen = \"{admin}\"\nthreads = 2\n{server_extra}\n\n\
         {store_section}\n\
         [secrets]\nclick_id_key = \"{CLICK_ID_KEY}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{body}"
    );
    std::fs::write(path, config).expect("write config");
}

/// A running clickstamp process. Killed on drop.
#[derive(Debug)]
pub struct Instance {
    pub dir: TempDir,
    pub main: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    child: Option<Child>,
    /// The connection [`Instance::rows`] reads PostgreSQL through, opened on first use.
    /// Declared before `store` so it closes before the database is dropped.
    pg_client: CachedPgClient,
    store: StoreTarget,
    /// Environment variables the process gets (besides the test's own).
    env: Vec<(String, String)>,
}

/// The PostgreSQL connection an [`Instance`] reads through (`postgres::Client` has no
/// `Debug`).
#[derive(Default)]
struct CachedPgClient(Mutex<Option<::postgres::Client>>);

impl std::fmt::Debug for CachedPgClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connected = self
            .0
            .try_lock()
            .map(|client| client.as_ref().map(|c| !c.is_closed()));
        f.debug_tuple("CachedPgClient")
            .field(&connected.ok())
            .finish()
    }
}

impl Instance {
    /// Start clickstamp with `[server]`, `[store]` and `[secrets]` generated (free ports,
    /// a store in a fresh directory) and `body` appended.
    pub fn start(body: &str) -> Instance {
        Self::start_with(body, "")
    }

    /// Like [`Instance::start`], with extra `[store]` lines (e.g. `sync = "full"`). Lines
    /// whose key the run's backend does not have are left out, so one test can tune
    /// both (`sync` for SQLite, `outbox_lease` for PostgreSQL).
    pub fn start_with(body: &str, store_extra: &str) -> Instance {
        Self::start_templated(|_| body.to_string(), store_extra)
    }

    /// Like [`Instance::start_with`], with the body built from the main listener's
    /// address (for offer URLs that point back at the instance).
    pub fn start_templated(body: impl FnOnce(SocketAddr) -> String, store_extra: &str) -> Instance {
        Self::start_full(body, "", store_extra)
    }

    /// Like [`Instance::start`], with extra `[server]` lines (e.g. `client_ip_header`).
    pub fn start_with_server(body: &str, server_extra: &str) -> Instance {
        Self::start_full(|_| body.to_string(), server_extra, "")
    }

    /// A node on the PostgreSQL database at `url`, which other nodes may share: the
    /// database is the test's and outlives the node.
    pub fn start_shared(url: &str, body: &str, store_extra: &str) -> Instance {
        Self::start_on(
            StoreTarget::SharedPostgres(url.to_string()),
            |_| body.to_string(),
            "",
            store_extra,
        )
    }

    fn start_full(
        body: impl FnOnce(SocketAddr) -> String,
        server_extra: &str,
        store_extra: &str,
    ) -> Instance {
        Self::start_on(StoreTarget::for_backend(), body, server_extra, store_extra)
    }

    fn start_on(
        store: StoreTarget,
        body: impl FnOnce(SocketAddr) -> String,
        server_extra: &str,
        store_extra: &str,
    ) -> Instance {
        let dir = TempDir::new("instance");
        let main = free_addr();
        let body = body(main);
        let admin = free_addr();
        let config_path = dir.0.join("clickstamp.toml");
        write_config_for(
            &store,
            &config_path,
            main,
            admin,
            server_extra,
            store_extra,
            &body,
        );
        let mut inst = Instance {
            dir,
            main,
            admin,
            config_path,
            child: None,
            pg_client: CachedPgClient::default(),
            store,
            env: Vec::new(),
        };
        inst.restart();
        inst
    }

    /// Like [`Instance::start`], the process started with `env` set (secrets the
    /// config names by variable).
    pub fn start_with_env(body: &str, env: &[(&str, &str)]) -> Instance {
        let dir = TempDir::new("instance");
        let (main, admin) = (free_addr(), free_addr());
        let config_path = dir.0.join("clickstamp.toml");
        let store = StoreTarget::for_backend();
        write_config_for(&store, &config_path, main, admin, "", "", body);
        let mut inst = Instance {
            dir,
            main,
            admin,
            config_path,
            child: None,
            pg_client: CachedPgClient::default(),
            store,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        inst.restart();
        inst
    }

    /// Rewrite the config with `body` (same ports and store); takes effect at the
    /// next [`Instance::restart`].
    pub fn rewrite_config(&self, body: &str) {
        write_config_for(
            &self.store,
            &self.config_path,
            self.main,
            self.admin,
            "",
            "",
            body,
        );
    }

    /// Run a clickstamp command on this instance's config (`analytics backfill`, ...)
    /// with its environment; returns (exit code, stdout, stderr).
    pub fn command(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(binary())
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run clickstamp");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Run a statement that writes (`INSERT`, `UPDATE`) on the store, whichever
    /// backend it is; placeholders `$1`, `$2`, ... as in [`Instance::rows`]. For
    /// putting history in place that no request could (clicks days ago).
    pub fn execute(&self, sql: &str, params: &[&dyn SqlParam]) {
        if self.store.postgres().is_some() {
            self.rows(sql, params);
            return;
        }
        let db = rusqlite::Connection::open(self.db_path()).expect("open the store to write");
        db.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        crate::store::sqlite_rows(&db, sql, params);
    }

    /// True when this instance stores in PostgreSQL (see [`crate::store::backend`]).
    pub fn is_postgres(&self) -> bool {
        self.store.postgres().is_some()
    }

    /// Where this instance stores: its SQLite file or its PostgreSQL database.
    pub fn store(&self) -> &StoreTarget {
        &self.store
    }

    /// The SQLite file (meaningless on PostgreSQL: see [`Instance::is_postgres`]).
    pub fn db_path(&self) -> PathBuf {
        self.dir.0.join("data/clickstamp.sqlite")
    }

    /// (Re)start the process and wait until `/healthz` answers.
    pub fn restart(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("clickstamp.log")).expect("log file");
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn clickstamp");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = crate::http::request(self.admin, "GET", "/healthz", &[], b"") {
                if r.status == 200
                    && crate::http::request(self.main, "GET", "/__ready", &[], b"").is_ok()
                {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "clickstamp exited during startup ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "clickstamp did not become healthy; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("clickstamp.log")).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process's resident memory in KiB (`VmRSS` from /proc), if it is running.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// SIGKILL the process and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// GET on the main listener.
    pub fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        get(self.main, target, headers)
    }

    /// GET on the admin listener with the bearer token.
    pub fn admin_get(&self, target: &str) -> Response {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        get(self.admin, target, &[("Authorization", &auth)])
    }

    /// Poll `series` until it reaches `at_least` or `timeout` passes; returns the last
    /// value read (metrics that follow a background task lag it a little).
    pub fn metric_at_least(&self, series: &str, at_least: f64, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.metric(series);
            if value >= at_least || Instant::now() >= deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of a metric sample line (`name{labels}`) on /metrics, 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = get(self.admin, "/metrics", &[]).text();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Open the SQLite store read-only. SQLite only: backend-neutral tests read with
    /// [`Instance::rows`].
    pub fn db(&self) -> rusqlite::Connection {
        assert!(
            !self.is_postgres(),
            "inst.db() opens the SQLite file, but this instance stores in PostgreSQL: \
             read with inst.rows() / count() / exists(), or skip the test on postgres"
        );
        rusqlite::Connection::open_with_flags(
            self.db_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the store")
    }

    /// Every row `sql` selects from the store, whichever backend it is. Write the SQL
    /// both SQLite and PostgreSQL accept, with placeholders `$1`, `$2`, ... for
    /// `params`.
    pub fn rows(&self, sql: &str, params: &[&dyn SqlParam]) -> Vec<Row> {
        let Some(url) = self.store.postgres() else {
            return crate::store::sqlite_rows(&self.db(), sql, params);
        };
        let mut cached = self.pg_client.0.lock().unwrap_or_else(|e| e.into_inner());
        // A connection the server closed (PostgreSQL restarted under the test) is
        // replaced once; a second failure is the test's to see.
        let mut reconnected = false;
        loop {
            if cached.as_ref().is_none_or(::postgres::Client::is_closed) {
                *cached = Some(crate::store::connect(url));
            }
            let client = cached.as_mut().expect("connected just above");
            match crate::store::postgres_rows(client, sql, params) {
                Ok(rows) => return rows,
                Err(e) if !reconnected && client.is_closed() => {
                    reconnected = true;
                    eprintln!("reconnecting to {url} after: {e}");
                }
                Err(e) => panic!("run {sql:?} on {url}: {e}"),
            }
        }
    }

    /// The one row `sql` selects (the first, if several); panics if there is none.
    pub fn row(&self, sql: &str, params: &[&dyn SqlParam]) -> Row {
        self.rows(sql, params)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{sql:?} with {} parameter(s) found no row", params.len()))
    }

    /// The first column of the first row `sql` selects, as `T` (`i64`, `f64`,
    /// `String`, or `Option<String>`, which is `None` when there is no row or the
    /// value is NULL). Panics, naming the query, when a required value is missing.
    pub fn value<T: crate::store::FromStoreValue>(&self, sql: &str, params: &[&dyn SqlParam]) -> T {
        let rows = self.rows(sql, params);
        T::from_rows(&rows).unwrap_or_else(|| {
            panic!(
                "{sql:?} with {} parameter(s): no value of the type asked for in {rows:?}",
                params.len()
            )
        })
    }

    /// The integer `sql` selects, e.g. a `count(*)`.
    pub fn count(&self, sql: &str, params: &[&dyn SqlParam]) -> i64 {
        self.row(sql, params).get_i64(0)
    }

    /// True when `sql` selects at least one row.
    pub fn exists(&self, sql: &str, params: &[&dyn SqlParam]) -> bool {
        !self.rows(sql, params).is_empty()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill9();
    }
}
