//! The store backend under test, and backend-neutral reads of an instance's rows.
//!
//! The whole suite runs on SQLite unless the environment says otherwise:
//! `CLICKSTAMP_E2E_STORE=postgres` with `CLICKSTAMP_E2E_PG=<base url of a running
//! cluster>` (e.g. `postgres://postgres@127.0.0.1:5999/`) gives every [`Instance`] a
//! fresh database of its own in that cluster.
//!
//! [`Instance`]: crate::Instance

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Selects the backend: `sqlite` (the default) or `postgres`.
pub const STORE_ENV: &str = "CLICKSTAMP_E2E_STORE";
/// In postgres mode, the base URL of the cluster the instances' databases live in.
pub const PG_ENV: &str = "CLICKSTAMP_E2E_PG";

/// The store backend the instances of this test run use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A running PostgreSQL cluster, by base URL (no database, or any: it is replaced).
    Postgres {
        base_url: String,
    },
}

/// The backend chosen by the environment, read once per test process.
pub fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let chosen = std::env::var(STORE_ENV).unwrap_or_default();
            match chosen.as_str() {
                "" | "sqlite" => Backend::Sqlite,
                "postgres" => {
                    let base_url = std::env::var(PG_ENV).unwrap_or_else(|_| {
                        panic!(
                            "{STORE_ENV}=postgres needs {PG_ENV}=<base url of a running \
                             cluster>, e.g. postgres://postgres@127.0.0.1:5999/"
                        )
                    });
                    Backend::Postgres { base_url }
                }
                other => panic!("{STORE_ENV}={other:?}: use \"sqlite\" or \"postgres\""),
            }
        })
        .clone()
}

/// True when this run's instances store in PostgreSQL.
pub fn on_postgres() -> bool {
    matches!(backend(), Backend::Postgres { .. })
}

/// For a test that is inherently about SQLite (its file, WAL, `sync`): true, after
/// saying so loudly, when this run is on PostgreSQL, so the test returns early.
pub fn skip_on_postgres(why: &str) -> bool {
    let skip = on_postgres();
    if skip {
        eprintln!("\n*** SKIPPING on postgres: {why} ***\n");
    }
    skip
}

/// The URL of database `database` in the cluster at `base_url`: the base's scheme,
/// user and host with the database as its path (its query string kept).
pub fn database_url(base_url: &str, database: &str) -> String {
    let (without_query, query) = match base_url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (base_url, None),
    };
    let authority_start = without_query.find("://").map_or(0, |i| i + 3);
    let authority_end = without_query[authority_start..]
        .find('/')
        .map_or(without_query.len(), |i| authority_start + i);
    let mut url = format!("{}/{database}", &without_query[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Connect to `url` without TLS (every cluster the tests use is on loopback).
pub fn connect(url: &str) -> ::postgres::Client {
    let mut config: ::postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("bad PostgreSQL url {url}: {e}"));
    config.connect_timeout(Duration::from_secs(10));
    config
        .connect(::postgres::NoTls)
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A database created for one test, dropped (with whoever is still connected) when
/// this value is.
#[derive(Debug)]
pub struct PgDatabase {
    base_url: String,
    name: String,
    url: String,
}

/// Create a uniquely named, empty database in the cluster at `base_url`; returns its
/// name.
pub fn create_database(base_url: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // The process id and a counter keep concurrent tests apart; the clock keeps a
    // later run apart from leftovers of an earlier one in a long-lived cluster.
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!(
        "clickstamp_e2e_{}_{started_ms}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = connect(&database_url(base_url, "postgres"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} in {base_url}: {e}"));
    name
}

impl PgDatabase {
    /// Create a uniquely named, empty database in the cluster at `base_url`.
    pub fn create(base_url: &str) -> PgDatabase {
        let name = create_database(base_url);
        PgDatabase {
            base_url: base_url.to_string(),
            url: database_url(base_url, &name),
            name,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Best effort: the cluster may be gone already (a test that stopped it, or the
        // end of the run), and its databases with it.
        let admin_url = database_url(&self.base_url, "postgres");
        let Ok(mut config) = admin_url.parse::<::postgres::Config>() else {
            return;
        };
        config.connect_timeout(Duration::from_secs(5));
        if let Ok(mut admin) = config.connect(::postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// Where an instance keeps its data, and so what its `[store]` section starts with.
#[derive(Debug)]
pub enum StoreTarget {
    /// `data/clickstamp.sqlite` beside the config file.
    SqliteFile,
    Postgres(PgDatabase),
    /// A database this instance shares with others (nodes behind one load balancer);
    /// the test owns it, and it outlives the instance.
    SharedPostgres(String),
}

/// `[store]` keys that only the SQLite backend has: dropped from a test's extra lines
/// when its instance runs on PostgreSQL, which refuses them.
const SQLITE_ONLY_KEYS: &[&str] = &["path", "sync", "wal_max_bytes"];
/// And those only the PostgreSQL backend has, dropped on SQLite: a test can tune the
/// PostgreSQL store (e.g. `outbox_lease`) and still run on both.
const POSTGRES_ONLY_KEYS: &[&str] = &[
    "backend",
    "url",
    "url_env",
    "pool_size",
    "statement_timeout",
    "connect_timeout",
    "outbox_lease",
    "spool_path",
    "writers",
    "tls_ca_file",
];

/// The lines of `store_extra` whose key is not one of `dropped`.
fn store_lines_without(store_extra: &str, dropped: &[&str]) -> String {
    let mut kept = String::new();
    for line in store_extra.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if !dropped.contains(&key) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

impl StoreTarget {
    /// The target this run's backend gives a new instance: on PostgreSQL, a fresh
    /// database.
    pub fn for_backend() -> StoreTarget {
        match backend() {
            Backend::Sqlite => StoreTarget::SqliteFile,
            Backend::Postgres { base_url } => StoreTarget::Postgres(PgDatabase::create(&base_url)),
        }
    }

    /// The whole `[store]` section: the backend's head, then those of `store_extra`'s
    /// lines that apply to the backend.
    pub fn section(&self, store_extra: &str) -> String {
        match self {
            StoreTarget::SqliteFile => format!(
                "[store]\npath = \"data/clickstamp.sqlite\"\n{}",
                store_lines_without(store_extra, POSTGRES_ONLY_KEYS)
            ),
            StoreTarget::Postgres(database) => Self::postgres_section(database.url(), store_extra),
            StoreTarget::SharedPostgres(url) => Self::postgres_section(url, store_extra),
        }
    }

    fn postgres_section(url: &str, store_extra: &str) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n{}",
            store_lines_without(store_extra, SQLITE_ONLY_KEYS)
        )
    }

    /// The URL of the PostgreSQL database, if the target is one.
    pub fn postgres(&self) -> Option<&str> {
        match self {
            StoreTarget::SqliteFile => None,
            StoreTarget::Postgres(database) => Some(database.url()),
            StoreTarget::SharedPostgres(url) => Some(url),
        }
    }
}

/// A query parameter as both backends bind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// What a test passes as a query parameter: strings and integers.
pub trait SqlParam {
    fn to_param(&self) -> Param;
}

impl SqlParam for str {
    fn to_param(&self) -> Param {
        Param::Text(self.to_string())
    }
}

impl SqlParam for String {
    fn to_param(&self) -> Param {
        Param::Text(self.clone())
    }
}

impl SqlParam for i64 {
    fn to_param(&self) -> Param {
        Param::Int(*self)
    }
}

impl<T: SqlParam + ?Sized> SqlParam for &T {
    fn to_param(&self) -> Param {
        (**self).to_param()
    }
}

/// One column value of a row read back, whichever backend it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A row read back. The getters panic, naming the column and what it held, when the
/// value is not of the asked type: a test reading the wrong column should fail loudly.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn new(values: Vec<Value>) -> Row {
        Row { values }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The raw value of column `i`.
    pub fn value(&self, i: usize) -> &Value {
        self.values
            .get(i)
            .unwrap_or_else(|| panic!("column {i} asked of a row of {} columns", self.values.len()))
    }

    fn mismatch(&self, i: usize, wanted: &str) -> ! {
        panic!(
            "column {i} is {:?}, not {wanted} (row: {:?})",
            self.values[i], self.values
        )
    }

    pub fn get_opt_i64(&self, i: usize) -> Option<i64> {
        match self.value(i) {
            Value::Null => None,
            Value::Int(n) => Some(*n),
            _ => self.mismatch(i, "an integer"),
        }
    }

    pub fn get_i64(&self, i: usize) -> i64 {
        self.get_opt_i64(i)
            .unwrap_or_else(|| self.mismatch(i, "a non-null integer"))
    }

    /// A real; an integer reads as one too (SQLite keeps whole amounts of an untyped
    /// expression as integers).
    pub fn get_opt_f64(&self, i: usize) -> Option<f64> {
        match self.value(i) {
            Value::Null => None,
            Value::Real(x) => Some(*x),
            Value::Int(n) => Some(*n as f64),
            _ => self.mismatch(i, "a number"),
        }
    }

    pub fn get_f64(&self, i: usize) -> f64 {
        self.get_opt_f64(i)
            .unwrap_or_else(|| self.mismatch(i, "a non-null number"))
    }

    pub fn get_opt_str(&self, i: usize) -> Option<&str> {
        match self.value(i) {
            Value::Null => None,
            Value::Text(s) => Some(s),
            _ => self.mismatch(i, "text"),
        }
    }

    pub fn get_str(&self, i: usize) -> &str {
        self.get_opt_str(i)
            .unwrap_or_else(|| self.mismatch(i, "non-null text"))
    }

    /// [`Row::get_str`] as an owned string.
    pub fn get_string(&self, i: usize) -> String {
        self.get_str(i).to_string()
    }

    pub fn get_opt_bytes(&self, i: usize) -> Option<&[u8]> {
        match self.value(i) {
            Value::Null => None,
            Value::Blob(b) => Some(b),
            _ => self.mismatch(i, "bytes"),
        }
    }

    pub fn get_bytes(&self, i: usize) -> &[u8] {
        self.get_opt_bytes(i)
            .unwrap_or_else(|| self.mismatch(i, "non-null bytes"))
    }
}

/// What [`crate::Instance::value`] reads out of the first row's first column.
pub trait FromStoreValue: Sized {
    fn from_rows(rows: &[Row]) -> Option<Self>;
}

impl FromStoreValue for i64 {
    fn from_rows(rows: &[Row]) -> Option<Self> {
        rows.first()?.get_opt_i64(0)
    }
}

impl FromStoreValue for f64 {
    fn from_rows(rows: &[Row]) -> Option<Self> {
        rows.first()?.get_opt_f64(0)
    }
}

impl FromStoreValue for String {
    fn from_rows(rows: &[Row]) -> Option<Self> {
        rows.first()?.get_opt_str(0).map(str::to_string)
    }
}

impl FromStoreValue for Option<String> {
    fn from_rows(rows: &[Row]) -> Option<Self> {
        Some(
            rows.first()
                .and_then(|r| r.get_opt_str(0))
                .map(str::to_string),
        )
    }
}

/// Run `sql` (placeholders `$1`, `$2`, ...) on a SQLite connection.
pub fn sqlite_rows(db: &rusqlite::Connection, sql: &str, params: &[&dyn SqlParam]) -> Vec<Row> {
    let mut stmt = db
        .prepare(sql)
        .unwrap_or_else(|e| panic!("prepare {sql:?}: {e}"));
    assert_eq!(
        stmt.parameter_count(),
        params.len(),
        "{sql:?} takes {} parameters, {} given",
        stmt.parameter_count(),
        params.len()
    );
    // SQLite numbers `$N` parameters by first appearance, not by N: bind each by name.
    for (n, param) in params.iter().enumerate() {
        let name = format!("${}", n + 1);
        let index = stmt
            .parameter_index(&name)
            .unwrap_or_else(|e| panic!("{sql:?}: {e}"))
            .unwrap_or_else(|| panic!("{sql:?} has no {name}: write placeholders as $1, $2, ..."));
        let bound = match param.to_param() {
            Param::Text(s) => stmt.raw_bind_parameter(index, s),
            Param::Int(n) => stmt.raw_bind_parameter(index, n),
        };
        bound.unwrap_or_else(|e| panic!("bind {name} of {sql:?}: {e}"));
    }
    let columns = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut read = Vec::new();
    while let Some(row) = rows.next().unwrap_or_else(|e| panic!("run {sql:?}: {e}")) {
        let values = (0..columns)
            .map(|i| {
                use rusqlite::types::ValueRef;
                match row.get_ref(i).expect("column in range") {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Real(x) => Value::Real(x),
                    ValueRef::Text(t) => Value::Text(
                        String::from_utf8(t.to_vec())
                            .unwrap_or_else(|e| panic!("{sql:?}: column {i} is not UTF-8: {e}")),
                    ),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                }
            })
            .collect();
        read.push(Row::new(values));
    }
    read
}

/// Run `sql` (placeholders `$1`, `$2`, ...) on a PostgreSQL connection. Each parameter
/// is sent as the type the server infers for its placeholder, so one test's SQL reads
/// the same on both backends.
pub fn postgres_rows(
    client: &mut ::postgres::Client,
    sql: &str,
    params: &[&dyn SqlParam],
) -> Result<Vec<Row>, ::postgres::Error> {
    use ::postgres::types::{ToSql, Type};
    let stmt = client.prepare(sql)?;
    assert_eq!(
        stmt.params().len(),
        params.len(),
        "{sql:?} takes {} parameters, {} given",
        stmt.params().len(),
        params.len()
    );
    let bound: Vec<Box<dyn ToSql + Sync>> = stmt
        .params()
        .iter()
        .zip(params)
        .enumerate()
        .map(|(n, (ty, param))| -> Box<dyn ToSql + Sync> {
            match (param.to_param(), ty) {
                (Param::Int(v), &Type::INT8) => Box::new(v),
                (Param::Int(v), &Type::INT4) => Box::new(
                    i32::try_from(v).unwrap_or_else(|_| panic!("${} = {v} overflows int4", n + 1)),
                ),
                (Param::Int(v), &Type::INT2) => Box::new(
                    i16::try_from(v).unwrap_or_else(|_| panic!("${} = {v} overflows int2", n + 1)),
                ),
                (Param::Int(v), &Type::FLOAT8) => Box::new(v as f64),
                // SQLite compares an integer with a TEXT column as text.
                (Param::Int(v), _) => Box::new(v.to_string()),
                (Param::Text(s), &Type::INT8) => Box::new(
                    s.parse::<i64>()
                        .unwrap_or_else(|_| panic!("${} = {s:?} for a bigint", n + 1)),
                ),
                (Param::Text(s), _) => Box::new(s),
            }
        })
        .collect();
    let refs: Vec<&(dyn ToSql + Sync)> = bound.iter().map(|b| b.as_ref()).collect();
    let rows = client.query(&stmt, &refs)?;
    Ok(rows.iter().map(|row| postgres_row(sql, row)).collect())
}

fn postgres_row(sql: &str, row: &::postgres::Row) -> Row {
    use ::postgres::types::Type;
    let values = row
        .columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            let failed = |e: ::postgres::Error| -> ! { panic!("{sql:?}: read column {i}: {e}") };
            let value = match *ty {
                Type::BOOL => row
                    .try_get::<_, Option<bool>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(|b| Value::Int(i64::from(b))),
                Type::INT2 => row
                    .try_get::<_, Option<i16>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(|n| Value::Int(n.into())),
                Type::INT4 => row
                    .try_get::<_, Option<i32>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(|n| Value::Int(n.into())),
                Type::INT8 => row
                    .try_get::<_, Option<i64>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(Value::Int),
                Type::OID => row
                    .try_get::<_, Option<u32>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(|n| Value::Int(n.into())),
                Type::FLOAT4 => row
                    .try_get::<_, Option<f32>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(|x| Value::Real(x.into())),
                Type::FLOAT8 => row
                    .try_get::<_, Option<f64>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(Value::Real),
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => row
                    .try_get::<_, Option<String>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(Value::Text),
                Type::BYTEA => row
                    .try_get::<_, Option<Vec<u8>>>(i)
                    .unwrap_or_else(|e| failed(e))
                    .map(Value::Blob),
                _ => panic!(
                    "{sql:?}: column {i} ({}) is of type {ty}, which the harness does not read; \
                     cast it in the query (e.g. ::float8 or ::text)",
                    column.name()
                ),
            };
            value.unwrap_or(Value::Null)
        })
        .collect();
    Row::new(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_replace_the_path_and_keep_the_query() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5999/", "d1"),
            "postgres://postgres@127.0.0.1:5999/d1"
        );
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5999", "d1"),
            "postgres://postgres@127.0.0.1:5999/d1"
        );
        assert_eq!(
            database_url("postgres://u@h:1/other?sslmode=disable", "d1"),
            "postgres://u@h:1/d1?sslmode=disable"
        );
    }

    #[test]
    fn each_store_section_drops_the_other_backends_keys() {
        let target = StoreTarget::Postgres(PgDatabase {
            base_url: String::new(),
            name: "d".into(),
            url: "postgres://postgres@127.0.0.1:1/d".into(),
        });
        let section = target.section("sync = \"full\"\nbatch_max = 8\nwal_max_bytes = 1048576");
        assert_eq!(
            section,
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:1/d\"\n\
             batch_max = 8\n"
        );
        // Dropping it tries the (unreachable) cluster and gives up quietly.
        drop(target);
        assert_eq!(
            StoreTarget::SqliteFile.section("outbox_lease = \"2s\"\nsync = \"full\""),
            "[store]\npath = \"data/clickstamp.sqlite\"\nsync = \"full\"\n"
        );
    }

    #[test]
    fn sqlite_binds_dollar_placeholders_by_number_not_by_appearance() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let rows = sqlite_rows(&db, "SELECT $2, $1, $2 || 'x'", &[&"one", &2_i64]);
        assert_eq!(
            rows,
            vec![Row::new(vec![
                Value::Int(2),
                Value::Text("one".into()),
                Value::Text("2x".into())
            ])]
        );
        assert_eq!(rows[0].get_f64(0), 2.0);
    }
}
