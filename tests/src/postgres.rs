//! A throwaway PostgreSQL 15 cluster on a free loopback port, in a temp directory:
//! for the store tests on PostgreSQL and for tests that restart or kill the database
//! under the proxy.

use crate::instance::{free_addr, TempDir};
use crate::store::{create_database, database_url};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where Debian's postgresql-15 puts its server programs.
pub const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The account PostgreSQL runs as when the tests run as root (it refuses root).
const PG_OS_USER: &str = "postgres";
/// The superuser initdb creates; connections trust loopback and the socket.
const PG_SUPERUSER: &str = "postgres";

/// A running cluster. Stopped (immediately) and its directory removed on drop.
#[derive(Debug)]
pub struct PgCluster {
    /// Holds `data/` (the cluster), `sock/` (its Unix socket) and `server.log`.
    root: TempDir,
    port: u16,
    /// Run every PostgreSQL program as [`PG_OS_USER`] through `runuser`.
    as_postgres_user: bool,
}

impl PgCluster {
    /// initdb and start a cluster. `None` (after saying so loudly) when PostgreSQL 15
    /// is not installed here, so the caller skips; under CI a missing server fails.
    pub fn start() -> Option<PgCluster> {
        let as_postgres_user = running_as_root();
        if let Some(missing) = missing_prerequisite(as_postgres_user) {
            if crate::in_ci() {
                panic!("PostgreSQL 15 is required under CI=true: {missing}");
            }
            eprintln!("\n*** SKIPPING: {missing} (install postgresql-15 to run this test) ***\n");
            return None;
        }
        let root = TempDir::new("pg");
        std::fs::create_dir_all(root.0.join("sock")).expect("create the socket directory");
        let cluster = PgCluster {
            root,
            port: free_addr().port(),
            as_postgres_user,
        };
        if as_postgres_user {
            let root = cluster.root.0.display().to_string();
            run_checked(
                Command::new("chown").args(["-R", &format!("{PG_OS_USER}:"), &root]),
                "chown the cluster directory",
            );
        }
        cluster.run(
            "initdb",
            &[
                "--auth=trust",
                "-U",
                PG_SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
                &cluster.data_dir().display().to_string(),
            ],
        );
        cluster.write_settings();
        cluster.start_again();
        Some(cluster)
    }

    /// The server's settings, in its own config file rather than on pg_ctl's command
    /// line, which pg_ctl hands to a shell: a path with a space or quote stays one.
    fn write_settings(&self) {
        let settings = format!(
            "\n# clickstamp e2e\nlisten_addresses = '127.0.0.1'\nport = {}\n\
             unix_socket_directories = '{}'\nfsync = on\nmax_connections = 300\n",
            self.port,
            self.root.0.join("sock").display()
        );
        // Appending keeps the file's owner (the postgres user when running as root).
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .expect("append to postgresql.conf");
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.0.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.0.join("server.log")
    }

    /// The loopback port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the cluster without a database (what `CLICKSTAMP_E2E_PG` takes).
    pub fn base_url(&self) -> String {
        format!("postgres://{PG_SUPERUSER}@127.0.0.1:{}/", self.port)
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        database_url(&self.base_url(), db)
    }

    /// Create a fresh, uniquely named database; returns its URL. It lives as long as
    /// the cluster.
    pub fn create_database(&self) -> String {
        self.url(&create_database(&self.base_url()))
    }

    /// Stop the server cleanly (`pg_ctl stop -m fast`): sessions are ended, data kept.
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// Start the server (again) on the same port and data, waiting until it accepts
    /// connections. After [`PgCluster::kill9`] this is crash recovery.
    pub fn start_again(&self) {
        // A server killed with SIGKILL leaves its lock files behind. PostgreSQL ignores
        // them once that process is gone, but not while it lingers as a zombie that
        // init has yet to reap (signal 0 still reaches it).
        let socket_lock = self
            .root
            .0
            .join("sock")
            .join(format!(".s.PGSQL.{}.lock", self.port));
        for lock in [self.data_dir().join("postmaster.pid"), socket_lock] {
            if lock_owner(&lock).is_some_and(|pid| !process_alive(pid)) {
                let _ = std::fs::remove_file(&lock);
            }
        }
        self.pg_ctl(&[
            "-l",
            &self.log_path().display().to_string(),
            "-t",
            "60",
            "start",
        ]);
    }

    /// SIGKILL the postmaster (only it: its backends notice and exit by themselves, as
    /// after a crash) and wait until it and they are gone.
    pub fn kill9(&self) {
        let pid = self
            .postmaster_pid()
            .expect("kill9 needs a running server (no postmaster.pid)");
        let backends = children_of(pid);
        run_checked(
            Command::new("kill").args(["-9", &pid.to_string()]),
            "kill -9 the postmaster",
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while process_alive(pid) || backends.iter().any(|&b| process_alive(b)) {
            assert!(
                Instant::now() < deadline,
                "the killed postmaster {pid} or its backends {backends:?} are still running"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A streaming standby of this cluster (`pg_basebackup -R` on a new port), started,
    /// and this cluster made to wait for it on every commit (`synchronous_standby_names`),
    /// so a commit acknowledged by the primary is on the standby too. Returns once the
    /// standby is the primary's synchronous one.
    pub fn start_synchronous_standby(&self) -> PgCluster {
        let root = TempDir::new("pg-standby");
        std::fs::create_dir_all(root.0.join("sock")).expect("create the socket directory");
        let standby = PgCluster {
            root,
            port: free_addr().port(),
            as_postgres_user: self.as_postgres_user,
        };
        if standby.as_postgres_user {
            let root = standby.root.0.display().to_string();
            run_checked(
                Command::new("chown").args(["-R", &format!("{PG_OS_USER}:"), &root]),
                "chown the standby directory",
            );
        }
        standby.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                PG_SUPERUSER,
                "-D",
                &standby.data_dir().display().to_string(),
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
            ],
        );
        // The copied settings name the primary's port and socket: the later lines win.
        standby.write_settings();
        standby.start_again();
        let mut primary = crate::store::connect(&self.url("postgres"));
        // Two statements: ALTER SYSTEM refuses to run in the implicit transaction of a
        // multi-statement batch.
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            primary
                .batch_execute(sql)
                .expect("make the standby synchronous");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sync: i64 = primary
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                    &[],
                )
                .expect("read pg_stat_replication")
                .get(0);
            if sync > 0 {
                return standby;
            }
            assert!(
                Instant::now() < deadline,
                "the standby never became synchronous; its log:\n{}",
                standby.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Serve TLS with `cert` and `key` (PEM files; copied into the data directory, where
    /// the server accepts a key only if it alone may read it), then restart.
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        let data = self.data_dir();
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            std::fs::copy(from, data.join(to)).expect("copy a TLS file into the cluster");
        }
        let key_path = data.join("server.key").display().to_string();
        run_checked(
            Command::new("chmod").args(["600", &key_path]),
            "chmod the key",
        );
        if self.as_postgres_user {
            for f in ["server.crt", "server.key"] {
                let path = data.join(f).display().to_string();
                run_checked(
                    Command::new("chown").args([&format!("{PG_OS_USER}:"), &path]),
                    "chown a TLS file",
                );
            }
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| {
                f.write_all(
                    b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
                )
            })
            .expect("append to postgresql.conf");
        self.stop();
        self.start_again();
    }

    /// Promote a standby to primary (`pg_ctl promote`), waiting until it accepts writes.
    pub fn promote(&self) {
        self.pg_ctl(&["promote"]);
    }

    /// Everything the server logged so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The postmaster's pid, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        lock_owner(&self.data_dir().join("postmaster.pid"))
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data_dir().display().to_string();
        let mut full = vec!["-D", &data, "-w"];
        full.extend_from_slice(args);
        self.run("pg_ctl", &full);
    }

    /// Run a PostgreSQL program to completion; panics, with its output and the server
    /// log, if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program, args).output();
        if let Err(problem) = check(out, &format!("{program} {args:?}")) {
            panic!("{problem}\nserver log:\n{}", self.log());
        }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = Path::new(PG_BIN_DIR).join(program);
        let mut cmd = if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", PG_OS_USER, "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        };
        // The postgres user may not be allowed into the tests' working directory.
        cmd.args(args).current_dir(&self.root.0);
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let pid = self.postmaster_pid();
        let stopped = self
            .command(
                "pg_ctl",
                &[
                    "-D",
                    &self.data_dir().display().to_string(),
                    "-w",
                    "stop",
                    "-m",
                    "immediate",
                ],
            )
            .output();
        let stopped = stopped.is_ok_and(|o| o.status.success());
        // pg_ctl returns once the lock file is gone, a moment before the process.
        if let (true, Some(pid)) = (stopped, pid) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // The TempDir removes the directory.
    }
}

/// What is missing to run a cluster here, if anything.
fn missing_prerequisite(as_postgres_user: bool) -> Option<String> {
    for program in ["initdb", "pg_ctl", "postgres"] {
        let path = Path::new(PG_BIN_DIR).join(program);
        if !path.is_file() {
            return Some(format!("{} is not installed", path.display()));
        }
    }
    if as_postgres_user {
        if crate::require_program("runuser").is_none() {
            return Some("runuser (to run PostgreSQL as a non-root user) is missing".into());
        }
        let user_known = Command::new("id")
            .args(["-u", PG_OS_USER])
            .output()
            .is_ok_and(|o| o.status.success());
        if !user_known {
            return Some(format!(
                "running as root, and there is no {PG_OS_USER:?} user to run PostgreSQL as"
            ));
        }
    }
    None
}

/// True when this process runs as root (by `id -u`; the harness stays free of libc).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    })
}

/// The pid on the first line of a PostgreSQL lock file.
fn lock_owner(lock_file: &Path) -> Option<u32> {
    std::fs::read_to_string(lock_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// True while `pid` runs: it exists and is not a zombie nobody has reaped yet.
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pids whose parent is `parent` (a postmaster's backends and workers).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn run_checked(cmd: &mut Command, what: &str) {
    if let Err(problem) = check(cmd.output(), what) {
        panic!("{problem}");
    }
}

fn check(out: std::io::Result<Output>, what: &str) -> Result<(), String> {
    match out {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("{what}: {e}")),
    }
}
