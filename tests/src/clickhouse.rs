//! A throwaway ClickHouse server (Debian's `clickhouse-server` 18.16) on free loopback
//! ports, in a temp directory: for tests that export to ClickHouse and for tests that
//! kill or restart it underneath the exporter.
//!
//! It talks to the server over its HTTP interface with the crate's own small client, so
//! a test sees exactly the status and body the server wrote.

use crate::http::{request, Response};
use crate::instance::{free_addr, TempDir};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The second account in the server's users file, with a password, for tests of the
/// exporter's credentials. (`default` has no password.)
pub const EXPORTER_USER: &str = "exporter";
/// [`EXPORTER_USER`]'s password.
pub const EXPORTER_PASSWORD: &str = "s3cret-pw";

/// Where packages put the server when it is not on `PATH` (Debian: `/usr/sbin`, which
/// a non-login shell's `PATH` may lack).
const SERVER_LOCATIONS: &[&str] = &["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"];
/// Where the upstream packages put their single multi-call binary (`clickhouse server`).
const MULTI_CALL_LOCATIONS: &[&str] = &["/usr/bin/clickhouse"];

/// How long the server may take to answer `/ping` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`ClickHouseServer::stop`] waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running server. Killed, and its directory removed, on drop.
#[derive(Debug)]
pub struct ClickHouseServer {
    /// Holds `config.xml`, `users.xml`, `data/` and the logs.
    root: TempDir,
    /// The server program and the arguments that come before `--config-file=`.
    program: PathBuf,
    leading_args: &'static [&'static str],
    http_port: u16,
    tcp_port: u16,
    /// The server process this harness spawned, while it runs. Behind a lock so that a
    /// shared `&ClickHouseServer` can still be stopped and started.
    process: Mutex<Option<Child>>,
}

impl ClickHouseServer {
    /// Write a config and start a server, waiting until it answers `/ping`. `None`
    /// (after saying so loudly) when ClickHouse is not installed here, so the caller
    /// skips; under CI a missing server fails.
    pub fn start() -> Option<ClickHouseServer> {
        let Some((program, leading_args)) = find_server_program() else {
            if crate::in_ci() {
                panic!(
                    "clickhouse-server is required under CI=true but is not installed \
                     (looked on PATH and in {SERVER_LOCATIONS:?} and {MULTI_CALL_LOCATIONS:?})"
                );
            }
            eprintln!(
                "\n*** SKIPPING: clickhouse-server is not installed \
                 (install clickhouse-server to run this test) ***\n"
            );
            return None;
        };
        let server = ClickHouseServer {
            root: TempDir::new("clickhouse"),
            program,
            leading_args,
            http_port: free_addr().port(),
            tcp_port: free_addr().port(),
            process: Mutex::new(None),
        };
        server.write_config();
        server.start_again();
        Some(server)
    }

    /// The server's settings and users, in files of its own: `config.xml` names
    /// `users.xml` relative to itself.
    fn write_config(&self) {
        let dir = |name: &str| xml_text(&format!("{}/", self.root.0.join(name).display()));
        let file = |name: &str| xml_text(&self.root.0.join(name).display().to_string());
        // Memory is kept modest for a shared 2-core test machine. 18.16 has no
        // server-wide memory cap (`max_server_memory_usage` came later, and the server
        // silently ignores top-level keys it does not know), so the caps are the
        // per-query and all-queries settings of the profile.
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{log}</log>
        <errorlog>{errorlog}</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{data}</path>
    <tmp_path>{tmp}</tmp_path>
    <user_files_path>{user_files}</user_files_path>
    <format_schema_path>{format_schemas}</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>64</max_concurrent_queries>
</yandex>
"#,
            log = file("server.log"),
            errorlog = file("error.log"),
            http_port = self.http_port,
            tcp_port = self.tcp_port,
            data = dir("data"),
            tmp = dir("tmp"),
            user_files = dir("user_files"),
            format_schemas = dir("format_schemas"),
        );
        // Unlike top-level keys, an unknown setting in a profile fails every query, so
        // only settings 18.16 has are named here.
        let loopback = "<networks><ip>::1</ip><ip>127.0.0.1</ip></networks>";
        let users = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <max_memory_usage_for_all_queries>4000000000</max_memory_usage_for_all_queries>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            {loopback}
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <{EXPORTER_USER}>
            <password>{password}</password>
            {loopback}
            <profile>default</profile>
            <quota>default</quota>
        </{EXPORTER_USER}>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"#,
            password = xml_text(EXPORTER_PASSWORD),
        );
        for (name, text) in [("config.xml", config), ("users.xml", users)] {
            std::fs::write(self.root.0.join(name), text)
                .unwrap_or_else(|e| panic!("write the server's {name}: {e}"));
        }
    }

    /// The HTTP interface's base URL, `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The HTTP interface's loopback port (the same across restarts).
    pub fn port(&self) -> u16 {
        self.http_port
    }

    /// The native-protocol port (the same across restarts).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// The server's data directory (`<path>` in its config).
    pub fn data_dir(&self) -> PathBuf {
        self.root.0.join("data")
    }

    /// The pid of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process().as_ref().map(Child::id)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// Run `sql` as user `default`; returns the body. Panics, with the body, unless the
    /// server answers 200.
    pub fn query(&self, sql: &str) -> String {
        let response = self.post("/", &[], sql.as_bytes());
        if response.status != 200 {
            panic!(
                "ClickHouse answered {} to {sql:?}:\n{}",
                response.status,
                response.text()
            );
        }
        response.text()
    }

    /// Run `sql` as `user` with `password` (the `X-ClickHouse-User` and
    /// `X-ClickHouse-Key` headers); returns the response whatever its status.
    pub fn query_as(&self, user: &str, password: &str, sql: &str) -> Response {
        self.post(
            "/",
            &[("X-ClickHouse-User", user), ("X-ClickHouse-Key", password)],
            sql.as_bytes(),
        )
    }

    /// POST `body` to `target` (a path and query string, such as
    /// `/?query=INSERT%20INTO%20t%20FORMAT%20RowBinary`); returns the response whatever
    /// its status. Panics only when the server cannot be reached.
    pub fn post(&self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(self.addr(), "POST", target, headers, body).unwrap_or_else(|e| {
            panic!(
                "POST {target} to ClickHouse at {}: {e}\n{}",
                self.http_url(),
                self.diagnostics()
            )
        })
    }

    /// True when the server answers `GET /ping` with `Ok.`.
    pub fn answers_ping(&self) -> bool {
        request(self.addr(), "GET", "/ping", &[], b"")
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "Ok.")
    }

    /// Stop the server cleanly (SIGTERM) and wait until it has exited; SIGKILL it if it
    /// is still running after 20 s. Data is kept.
    pub fn stop(&self) {
        let mut child = self
            .process()
            .take()
            .expect("stop() needs a running server (it was not started or already stopped)");
        let pid = child.id().to_string();
        // The harness stays free of libc, so the signal goes through kill(1). The child
        // is not reaped yet, so its pid still names this very process.
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while signalled && Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("wait for the ClickHouse server {pid}: {e}"),
            }
        }
        eprintln!(
            "ClickHouse server {pid} did not exit within {STOP_TIMEOUT:?} of SIGTERM: killing it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGKILL the server (as in a crash) and wait until it is gone.
    pub fn kill9(&self) {
        let mut child = self
            .process()
            .take()
            .expect("kill9() needs a running server (it was not started or already stopped)");
        child.kill().expect("SIGKILL the ClickHouse server");
        child.wait().expect("reap the killed ClickHouse server");
    }

    /// Start the server (again) with the same config, data and ports, waiting until it
    /// answers `/ping`. After [`ClickHouseServer::kill9`] this is crash recovery.
    pub fn start_again(&self) {
        let mut process = self.process();
        assert!(
            process.is_none(),
            "start_again() with the server still running"
        );
        // What the server prints before its logger is set up (a config it cannot
        // parse, a port in use) goes to its stdout and stderr.
        let console = File::options()
            .create(true)
            .append(true)
            .open(self.console_path())
            .expect("open the server's console log");
        let console_too = console.try_clone().expect("clone the console log handle");
        let config = self.root.0.join("config.xml");
        let mut child = Command::new(&self.program)
            .args(self.leading_args)
            .arg(format!("--config-file={}", config.display()))
            .current_dir(&self.root.0)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console_too)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.program.display()));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_ping() {
                *process = Some(child);
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the ClickHouse server exited ({status}) before it answered /ping\n{}",
                    self.diagnostics()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the ClickHouse server did not answer /ping on port {} within {START_TIMEOUT:?}\n{}",
                    self.http_port,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the server's log (for assertion messages).
    pub fn log(&self) -> String {
        tail(&self.root.0.join("server.log"), 200)
    }

    /// The last lines of the server's error log (warnings and errors only).
    pub fn error_log(&self) -> String {
        tail(&self.root.0.join("error.log"), 100)
    }

    fn console_path(&self) -> PathBuf {
        self.root.0.join("console.log")
    }

    /// What a failure message shows: the error log and the console output.
    fn diagnostics(&self) -> String {
        format!(
            "error log ({}):\n{}\nconsole output:\n{}",
            self.root.0.join("error.log").display(),
            self.error_log(),
            tail(&self.console_path(), 50)
        )
    }

    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        // A test that panicked while holding the lock leaves a usable value behind.
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.process().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The TempDir removes the directory.
    }
}

/// The server program and the arguments before `--config-file=`: `clickhouse-server`
/// on PATH or where packages put it, else the multi-call `clickhouse server`.
fn find_server_program() -> Option<(PathBuf, &'static [&'static str])> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    let at = |locations: &[&str]| locations.iter().map(PathBuf::from).find(|p| p.is_file());
    if let Some(server) = on_path("clickhouse-server").or_else(|| at(SERVER_LOCATIONS)) {
        return Some((server, &[]));
    }
    let multi_call = on_path("clickhouse").or_else(|| at(MULTI_CALL_LOCATIONS))?;
    Some((multi_call, &["server"]))
}

/// `text` escaped for an XML element's content.
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The last `lines` lines of a file; empty if it cannot be read.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
