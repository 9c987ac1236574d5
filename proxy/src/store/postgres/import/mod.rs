//! `clickstamp migrate --from-sqlite FILE`: copy an embedded (SQLite) store into the
//! PostgreSQL database of the config, so an operator who started on the demo keeps its
//! history when moving to many nodes.
//!
//! - Ids are kept: history, outbox and journal refer to conversions by id. Before the
//!   first row is copied every id sequence is moved past the file's largest id, so a
//!   node writing meanwhile takes ids the file does not hold; afterwards once more past
//!   every id copied.
//! - The file is read in one read transaction (a consistent snapshot however long the
//!   copy takes), each table in key order, and written in chunks of [`CHUNK_ROWS`] rows
//!   (or 16 MiB of text): one transaction and one statement each (the rows as arrays,
//!   unnested). Memory holds one chunk, whatever the size of the store.
//! - `ON CONFLICT (key) DO NOTHING`: a second run, or a run after one that was killed,
//!   copies only what is missing. The rows found already there are checked against the
//!   file on the columns no later write changes, so a row that merely has the same id
//!   is an error, never counted as "already there".
//! - Every run is recorded in `sqlite_imports` under the store's fingerprint
//!   (`SourceStore::fingerprint`). A database whose journal, conversions, history or
//!   outbox hold rows while no import of this store is recorded is refused: nodes wrote
//!   there, and the file's ids would collide with theirs.

use super::schema;
use crate::config::{PostgresConfig, StoreBackend, StoreConfig};
use crate::store::StoreError;
use clickstamp_plugins::normalize_event;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

mod error;
mod source;
mod tables;
use error::pg;
pub use error::ImportError;
use source::*;
use tables::*;

/// Rows per chunk: one transaction, one statement.
pub const CHUNK_ROWS: usize = 5_000;
/// A chunk is sent early once its text and bytes reach this size: journal entries can
/// hold bodies of up to `postbacks.max_body_bytes` each.
const CHUNK_BYTES: usize = 16 << 20;

/// The session advisory lock an import holds ("csimport" in ASCII), so two imports into
/// one database never interleave. Distinct from the migrations' lock.
const IMPORT_LOCK: i64 = 0x6373_696d_706f_7274;

/// How long an import waits for another one's lock before calling the database busy.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How often a long table copy says how far it got (on stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The record of every import run, created by the first import.
const IMPORTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS sqlite_imports (
    id            BIGSERIAL PRIMARY KEY,
    fingerprint   TEXT NOT NULL,          -- SourceStore::fingerprint of the file
    source        TEXT NOT NULL,          -- its canonical path, for people
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,            -- NULL: interrupted (or still running)
    rows_read     BIGINT,
    rows_inserted BIGINT,
    counts        JSONB                   -- per table: read, inserted, already_present
)";

/// What one table's copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    pub read: u64,
    pub inserted: u64,
    /// Rows of the file the database held already (an earlier run of this import).
    pub already_present: u64,
    pub elapsed: Duration,
}

/// What an import did, table by table.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub fingerprint: String,
    pub tables: Vec<TableCopy>,
    /// An earlier import of the same store had been recorded.
    pub resumed: bool,
}

/// The statement that writes one chunk of `table` and says what it did: rows inserted,
/// rows already there that differ from the file's on an identity column, and the first
/// of those. The main query reads the table as it was before the insert (a statement
/// does not see its own CTE's writes), so the join finds only rows that were there.
fn insert_sql(table: &Table) -> String {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.kind.array_type()))
        .collect();
    let side = |alias: &str| -> String {
        table
            .identity
            .iter()
            .map(|c| format!("{alias}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let join: Vec<String> = table
        .key
        .iter()
        .map(|k| format!("present.{k} = src.{k}"))
        .collect();
    let key_text: Vec<String> = table.key.iter().map(|k| format!("src.{k}::text")).collect();
    format!(
        "WITH src AS (SELECT * FROM unnest({arrays}) AS src({names})),
         inserted AS (
             INSERT INTO {t} ({names}) SELECT {names} FROM src
             ON CONFLICT ({key}) DO NOTHING RETURNING 1),
         differing AS (
             SELECT concat_ws(', ', {key_text}) AS key FROM src JOIN {t} AS present ON {join}
             WHERE ({src_identity}) IS DISTINCT FROM ({present_identity}))
         SELECT (SELECT count(*) FROM inserted),
                (SELECT count(*) FROM differing),
                (SELECT min(key) FROM differing)",
        arrays = arrays.join(", "),
        names = names.join(", "),
        t = table.name,
        key = table.key.join(", "),
        key_text = key_text.join(", "),
        join = join.join(" AND "),
        src_identity = side("src"),
        present_identity = side("present"),
    )
}

/// Move `table`'s sequence past both `at_least` and every value the table holds, and
/// never back (a node may hold values it has not committed yet).
async fn raise_sequence(client: &Client, table: &Table, at_least: i64) -> Result<(), ImportError> {
    let Some(seq) = &table.sequence else {
        return Ok(());
    };
    let sql = format!(
        "SELECT setval(s, v) FROM (
            SELECT {name}::regclass AS s,
                   GREATEST($1::int8, COALESCE((SELECT max({column}) FROM {table}), 0),
                            COALESCE(pg_sequence_last_value({name}::regclass), 0)) AS v
         ) AS target WHERE v > 0",
        name = seq.name_sql,
        column = seq.column,
        table = table.name,
    );
    client
        .execute(&sql, &[&at_least])
        .await
        .map_err(pg(format!("setting the sequence of {}", table.name)))?;
    Ok(())
}

/// Copy `table` chunk by chunk, telling `progress` (stderr) how far it got on a long one.
async fn copy_table(
    client: &mut Client,
    source: &SourceStore,
    index: usize,
) -> Result<TableCopy, ImportError> {
    let table = &TABLES[index];
    let started = Instant::now();
    let read_error = |e: rusqlite::Error| ImportError::Read {
        table: table.name,
        reason: e.to_string(),
    };
    let insert = client
        .prepare(&insert_sql(table))
        .await
        .map_err(pg(format!("preparing the copy of {}", table.name)))?;
    let mut select = source
        .conn
        .prepare(&format!(
            "SELECT {} FROM {} ORDER BY {}",
            source.select_lists[index],
            table.name,
            table.key.join(", ")
        ))
        .map_err(read_error)?;
    let mut rows = select.query([]).map_err(read_error)?;
    let mut chunk: Vec<Values> = table.columns.iter().map(|c| Values::new(c.kind)).collect();
    let (mut in_chunk, mut chunk_bytes) = (0, 0);
    let mut copy = TableCopy {
        table: table.name,
        read: 0,
        inserted: 0,
        already_present: 0,
        elapsed: Duration::ZERO,
    };
    let total = source.stats[index].rows;
    let mut said = Instant::now();
    loop {
        let row = rows.next().map_err(read_error)?;
        if let Some(row) = row {
            for (i, (column, values)) in table.columns.iter().zip(chunk.iter_mut()).enumerate() {
                let value = row.get_ref(i).map_err(read_error)?;
                chunk_bytes +=
                    values
                        .push(column.kind, value)
                        .map_err(|reason| ImportError::Read {
                            table: table.name,
                            reason: format!(
                                "row {} (in key order), column {}: {reason}",
                                copy.read + in_chunk as u64 + 1,
                                column.name
                            ),
                        })?;
            }
            in_chunk += 1;
            if in_chunk < CHUNK_ROWS && chunk_bytes < CHUNK_BYTES {
                continue;
            }
        }
        if in_chunk > 0 {
            let inserted = write_chunk(client, table, &insert, &chunk).await?;
            copy.read += in_chunk as u64;
            copy.inserted += inserted;
            copy.already_present += in_chunk as u64 - inserted;
            chunk.iter_mut().for_each(Values::clear);
            (in_chunk, chunk_bytes) = (0, 0);
            if said.elapsed() >= PROGRESS_EVERY {
                eprintln!("  {}: {} of {total} rows", table.name, copy.read);
                said = Instant::now();
            }
        }
        if row.is_none() {
            break;
        }
    }
    copy.elapsed = started.elapsed();
    Ok(copy)
}

/// Write one chunk in a transaction of its own; returns the rows inserted.
async fn write_chunk(
    client: &mut Client,
    table: &Table,
    insert: &tokio_postgres::Statement,
    chunk: &[Values],
) -> Result<u64, ImportError> {
    let doing = || format!("copying {}", table.name);
    let tx = client.transaction().await.map_err(pg(doing()))?;
    let params: Vec<&(dyn ToSql + Sync)> = chunk.iter().map(Values::as_param).collect();
    let row = tx.query_one(insert, &params).await.map_err(pg(doing()))?;
    let (inserted, differing, first): (i64, i64, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    if differing > 0 {
        // Dropping the transaction rolls the chunk back.
        return Err(ImportError::Collision {
            table: table.name,
            key: first.unwrap_or_default(),
        });
    }
    tx.commit().await.map_err(pg(doing()))?;
    Ok(inserted as u64)
}

/// Tables whose rows mean someone wrote into the database, with their row counts.
async fn occupied_tables(client: &Client) -> Result<Vec<(&'static str, i64)>, ImportError> {
    let mut occupied = Vec::new();
    for table in TABLES.iter().filter(|t| t.numbered) {
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .await
            .map_err(pg(format!("counting {}", table.name)))?
            .get(0);
        if rows > 0 {
            occupied.push((table.name, rows));
        }
    }
    Ok(occupied)
}

/// The latest recorded import of the store `fingerprint`: when it started and finished
/// (UTC), if one is recorded.
async fn earlier_import(
    client: &Client,
    fingerprint: &str,
) -> Result<Option<(String, Option<String>)>, ImportError> {
    let row = client
        .query_opt(
            "SELECT to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
                    to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
             FROM sqlite_imports WHERE fingerprint = $1
             ORDER BY finished_at IS NULL, id DESC LIMIT 1",
            &[&fingerprint],
        )
        .await
        .map_err(pg("reading sqlite_imports"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Copy the SQLite store at `sqlite_path` into the PostgreSQL database of `store`,
/// writing what it does to `out`. Builds its own small runtime: call it from a plain
/// thread (the CLI), not from async code.
pub fn run(
    store: &StoreConfig,
    sqlite_path: &Path,
    out: &mut dyn Write,
) -> Result<ImportReport, ImportError> {
    let StoreBackend::Postgres(pg_config) = &store.backend else {
        return Err(ImportError::NotPostgres);
    };
    if !sqlite_path.exists() {
        return Err(ImportError::SourceMissing(sqlite_path.to_path_buf()));
    }
    let canonical = std::fs::canonicalize(sqlite_path).map_err(|e| ImportError::NotAStore {
        path: sqlite_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !canonical.is_file() {
        return Err(ImportError::NotAStore {
            path: canonical,
            reason: "it is not a file".into(),
        });
    }
    let source = SourceStore::open(&canonical)?;
    let fingerprint = source.fingerprint();
    let _ = writeln!(
        out,
        "source: {} (store fingerprint {})",
        canonical.display(),
        &fingerprint[..16]
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImportError::Postgres {
            doing: "starting the runtime".into(),
            error: StoreError::Backend(e.to_string()),
        })?;
    runtime.block_on(import(pg_config, &source, &canonical, fingerprint, out))
}

async fn import(
    pg_config: &PostgresConfig,
    source: &SourceStore,
    canonical: &Path,
    fingerprint: String,
    out: &mut dyn Write,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let driver = super::driver_config(pg_config).map_err(|error| ImportError::Postgres {
        doing: "reading store.url".into(),
        error,
    })?;
    let database = driver.get_dbname().map_or_else(
        || "PostgreSQL".to_string(),
        |db| format!("PostgreSQL database {db:?}"),
    );
    let tls = super::tls_connector(pg_config).map_err(|error| ImportError::Postgres {
        doing: "setting up TLS".into(),
        error,
    })?;
    let (mut client, connection) = driver
        .connect(tls)
        .await
        .map_err(pg("connecting to the database"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "import connection ended");
        }
    });
    let migrated = schema::migrate(&mut client)
        .await
        .map_err(|error| ImportError::Postgres {
            doing: "applying the schema migrations".into(),
            error,
        })?;
    let _ = writeln!(
        out,
        "target: {database}, schema at version {}{}",
        migrated.to,
        if migrated.from < migrated.to {
            format!(" (migrated from {})", migrated.from)
        } else {
            String::new()
        }
    );
    // A run killed a moment ago holds the lock until the server notices its connection
    // is gone: give that a few seconds before calling the database busy.
    let lock_deadline = Instant::now() + LOCK_WAIT;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&IMPORT_LOCK])
            .await
            .map_err(pg("taking the import lock"))?
            .get(0);
        if locked {
            break;
        }
        if Instant::now() >= lock_deadline {
            return Err(ImportError::Busy);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .batch_execute(IMPORTS_TABLE)
        .await
        .map_err(pg("creating sqlite_imports"))?;

    let earlier = earlier_import(&client, &fingerprint).await?;
    let occupied = occupied_tables(&client).await?;
    match &earlier {
        None if !occupied.is_empty() => return Err(ImportError::TargetInUse { occupied }),
        None => {
            let _ = writeln!(out, "earlier imports of this store: none");
        }
        Some((started_at, Some(finished_at))) => {
            let _ = writeln!(
                out,
                "earlier import of this store: started {started_at} UTC, finished \
                 {finished_at} UTC; copying only what is missing"
            );
        }
        Some((started_at, None)) => {
            let _ = writeln!(
                out,
                "earlier import of this store: started {started_at} UTC, interrupted; \
                 resuming (copying only what is missing)"
            );
        }
    }
    // Reserved before any row is copied: a node writing meanwhile numbers its rows
    // past the file's.
    for (index, table) in TABLES.iter().enumerate() {
        raise_sequence(&client, table, source.max_sequence_value(index)).await?;
    }
    let run_id: i64 = client
        .query_one(
            "INSERT INTO sqlite_imports (fingerprint, source) VALUES ($1, $2) RETURNING id",
            &[&fingerprint, &canonical.display().to_string()],
        )
        .await
        .map_err(pg("recording the import"))?
        .get(0);

    let _ = writeln!(
        out,
        "{:<20} {:>12} {:>12} {:>14} {:>9}",
        "table", "read", "inserted", "already there", "elapsed"
    );
    let mut tables = Vec::with_capacity(TABLES.len());
    for index in 0..TABLES.len() {
        let copy = copy_table(&mut client, source, index).await?;
        let _ = writeln!(
            out,
            "{:<20} {:>12} {:>12} {:>14} {:>8.2}s",
            copy.table,
            copy.read,
            copy.inserted,
            copy.already_present,
            copy.elapsed.as_secs_f64()
        );
        tables.push(copy);
    }
    for (index, table) in TABLES.iter().enumerate() {
        raise_sequence(&client, table, source.max_sequence_value(index)).await?;
    }

    let read: u64 = tables.iter().map(|t| t.read).sum();
    let inserted: u64 = tables.iter().map(|t| t.inserted).sum();
    let already = read - inserted;
    let counts: serde_json::Map<String, serde_json::Value> = tables
        .iter()
        .map(|t| {
            (
                t.table.to_string(),
                serde_json::json!({
                    "read": t.read,
                    "inserted": t.inserted,
                    "already_present": t.already_present,
                }),
            )
        })
        .collect();
    client
        .execute(
            "UPDATE sqlite_imports SET finished_at = now(), rows_read = $2, rows_inserted = $3,
                 counts = $4::text::jsonb WHERE id = $1",
            &[
                &run_id,
                &(read as i64),
                &(inserted as i64),
                &serde_json::Value::Object(counts).to_string(),
            ],
        )
        .await
        .map_err(pg("recording the finished import"))?;
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&IMPORT_LOCK])
        .await;
    let _ = writeln!(
        out,
        "done in {:.2}s: {read} rows read, {inserted} inserted, {already} already there{}; \
         id sequences set past the copied ids",
        started.elapsed().as_secs_f64(),
        if read > 0 && inserted == 0 {
            " (everything was already there)"
        } else {
            ""
        }
    );
    Ok(ImportReport {
        fingerprint,
        tables,
        resumed: earlier.is_some(),
    })
}

/// Tables of the embedded store that a migration leaves behind, and why: the
/// analytics queue and cursor describe what *that* store exported; the shared store
/// starts its own (and says a backfill is due, since it then holds clicks).
#[cfg(test)]
const NOT_COPIED: [&str; 2] = ["analytics_cursor", "analytics_queue"];

#[cfg(test)]
mod tests {
    use super::*;

    fn store_file() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::sqlite::SCHEMA).unwrap();
        conn
    }

    fn source(conn: Connection) -> Result<SourceStore, String> {
        SourceStore::from_connection(conn)
    }

    #[test]
    fn every_table_of_the_embedded_schema_is_copied_with_every_column() {
        let conn = store_file();
        for table in TABLES {
            let columns: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .unwrap()
                .query_map([table.name], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let copied: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            assert_eq!(columns, copied, "{}", table.name);
        }
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut known: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        known.extend(NOT_COPIED);
        known.sort_unstable();
        assert_eq!(tables, known, "a table of the embedded store is not copied");
    }

    #[test]
    fn every_column_of_the_postgres_schema_is_copied_except_the_leases() {
        let sql = include_str!("../schema_v1.sql");
        for table in TABLES {
            let start = sql
                .find(&format!("CREATE TABLE {} (", table.name))
                .unwrap_or_else(|| panic!("{} not in schema_v1.sql", table.name));
            let body = &sql[start..start + sql[start..].find(");").unwrap()];
            let mut declared: Vec<&str> = body
                .lines()
                .skip(1)
                .map(|line| line.split("--").next().unwrap().trim())
                .filter(|line| !line.starts_with("PRIMARY KEY"))
                .flat_map(|line| line.split(','))
                .filter_map(|part| part.split_whitespace().next())
                .collect();
            // Later migrations add columns with ALTER TABLE ... ADD COLUMN.
            let added = format!("ALTER TABLE {} ADD COLUMN ", table.name);
            for later in &super::super::schema::MIGRATIONS[1..] {
                declared.extend(later.sql.lines().filter_map(|line| {
                    line.trim()
                        .strip_prefix(added.as_str())
                        .and_then(|rest| rest.split_whitespace().next())
                }));
            }
            let mut expected: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            if table.name == "outbox" {
                // The leases came with migration 1, `destination_id` with migration 3.
                let at = expected
                    .iter()
                    .position(|c| *c == "destination_id")
                    .unwrap_or(expected.len());
                expected.splice(at..at, ["lease_owner", "lease_until_ms"]);
            }
            assert_eq!(declared, expected, "{}", table.name);
        }
    }

    #[test]
    fn a_store_from_before_cut_and_replay_times_reads_them_as_null() {
        let conn = store_file();
        conn.execute_batch(
            "ALTER TABLE postback_journal DROP COLUMN cut;
             ALTER TABLE outbox DROP COLUMN replayed_ms;
             DROP INDEX IF EXISTS outbox_due_by_destination;
             ALTER TABLE outbox DROP COLUMN destination_id;",
        )
        .unwrap();
        let store = source(conn).unwrap();
        let journal = TABLES
            .iter()
            .position(|t| t.name == "postback_journal")
            .unwrap();
        assert!(store.select_lists[journal].ends_with("replay_of, NULL"));
        let outbox = TABLES.iter().position(|t| t.name == "outbox").unwrap();
        assert!(store.select_lists[outbox].ends_with("delivered_ms, NULL, NULL"));
    }

    #[test]
    fn a_file_that_is_no_store_is_named_as_such() {
        let empty = Connection::open_in_memory().unwrap();
        assert_eq!(
            source(empty).err().unwrap(),
            "it holds none of the store's tables"
        );
        let partial = store_file();
        partial.execute_batch("DROP TABLE outbox").unwrap();
        assert_eq!(source(partial).err().unwrap(), "it lacks the tables outbox");
        let odd = store_file();
        odd.execute_batch("ALTER TABLE clicks DROP COLUMN referrer")
            .unwrap();
        assert_eq!(
            source(odd).err().unwrap(),
            "its clicks table has no column referrer"
        );
    }

    #[test]
    fn the_fingerprint_is_stable_and_changes_with_any_write() {
        let conn = store_file();
        conn.execute_batch(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, entry)
                 VALUES ('0190aaaa', 1, 'c', 's', 'landing');
             INSERT INTO postback_journal (ts_ms, network_id, method, raw_query, origin, outcome)
                 VALUES (1, 'cake', 'GET', 'q', 's2s', 'rejected');",
        )
        .unwrap();
        let first = source(conn).unwrap();
        let fingerprint = first.fingerprint();
        assert_eq!(fingerprint.len(), 64);
        let journal = TABLES
            .iter()
            .position(|t| t.name == "postback_journal")
            .unwrap();
        assert_eq!(first.max_sequence_value(journal), 1);
        let conn = first.conn;
        assert_eq!(source(conn).unwrap().fingerprint(), fingerprint);

        let conn = store_file();
        conn.execute_batch(
            "INSERT INTO clicks (click_id, ts_ms, campaign_id, source_id, entry)
                 VALUES ('0190aaaa', 1, 'c', 's', 'landing');
             INSERT INTO postback_journal (ts_ms, network_id, method, raw_query, origin, outcome)
                 VALUES (1, 'cake', 'GET', 'q', 's2s', 'rejected'),
                        (2, 'cake', 'GET', 'q', 's2s', 'rejected');",
        )
        .unwrap();
        assert_ne!(source(conn).unwrap().fingerprint(), fingerprint);
    }

    #[test]
    fn values_convert_as_their_column_says() {
        let mut text = Values::new(Kind::Event);
        text.push(Kind::Event, ValueRef::Text(b" Sale ")).unwrap();
        text.push(Kind::Event, ValueRef::Null).unwrap();
        let Values::Text(events) = &text else {
            unreachable!()
        };
        assert_eq!(events, &[Some("sale".to_string()), None]);

        let mut small = Values::new(Kind::Int4);
        small.push(Kind::Int4, ValueRef::Integer(7)).unwrap();
        assert!(small
            .push(Kind::Int4, ValueRef::Integer(1 << 40))
            .unwrap_err()
            .contains("exceeds"));
        assert!(small
            .push(Kind::Int4, ValueRef::Text(b"x"))
            .unwrap_err()
            .contains("where an integer belongs"));

        let mut real = Values::new(Kind::Float8);
        real.push(Kind::Float8, ValueRef::Integer(2)).unwrap();
        let Values::Float8(reals) = &real else {
            unreachable!()
        };
        assert_eq!(reals, &[Some(2.0)]);
    }

    #[test]
    fn the_chunk_statement_names_every_column_once_and_the_key_as_conflict_target() {
        let sql = insert_sql(&TABLES[1]);
        assert!(sql.contains(
            "unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[]) AS src(click_id, ts_ms, seq, campaign_id, offer_id)"
        ));
        assert!(sql.contains("ON CONFLICT (click_id, ts_ms, seq) DO NOTHING"));
        assert!(sql.contains("(src.campaign_id, src.offer_id) IS DISTINCT FROM (present.campaign_id, present.offer_id)"));
    }
}
