//! Why an import stopped, in words an operator can act on.

use super::*;

/// Why an import did not run or did not finish. Each says what to do.
#[derive(Debug)]
pub enum ImportError {
    /// The config's store is the embedded one.
    NotPostgres,
    /// The SQLite file is not there.
    SourceMissing(PathBuf),
    /// The file is not a clickstamp store (or not SQLite at all).
    NotAStore { path: PathBuf, reason: String },
    /// The file could not be read midway.
    Read { table: &'static str, reason: String },
    /// Another import into the same database is running.
    Busy,
    /// The database holds rows nodes wrote, and no import of this store is recorded.
    TargetInUse { occupied: Vec<(&'static str, i64)> },
    /// A row of the file has the key of a different row already in the database.
    Collision { table: &'static str, key: String },
    /// PostgreSQL refused or could not be reached.
    Postgres { doing: String, error: StoreError },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::NotPostgres => write!(
                f,
                "the config's store is the embedded SQLite file, so there is nothing to migrate \
                 into (fix: pass a config whose [store] has backend = \"postgres\" and url_env \
                 (or url) naming the database)"
            ),
            ImportError::SourceMissing(path) => write!(
                f,
                "{} does not exist (fix: pass the embedded store's file to --from-sqlite: \
                 store.path of the config it ran with, by default data/clickstamp.sqlite beside \
                 that config)",
                path.display()
            ),
            ImportError::NotAStore { path, reason } => write!(
                f,
                "{} is not a clickstamp store: {reason} (fix: pass the file named by store.path \
                 of the SQLite config, by default data/clickstamp.sqlite beside it; not the \
                 spool, a -wal file or a backup archive)",
                path.display()
            ),
            ImportError::Read { table, reason } => write!(
                f,
                "cannot read {table} from the SQLite file: {reason} (fix: check the file with \
                 sqlite3 FILE 'PRAGMA integrity_check'; rows copied so far stay, and running \
                 the same command again resumes)"
            ),
            ImportError::Busy => write!(
                f,
                "another import into this database is running (fix: wait for it to finish; \
                 running the command again afterwards copies whatever it left out)"
            ),
            ImportError::TargetInUse { occupied } => {
                let held: Vec<String> = occupied
                    .iter()
                    .map(|(table, n)| format!("{n} {table}"))
                    .collect();
                write!(
                    f,
                    "refusing to import: the database already holds rows ({}) and no import of \
                     this SQLite store into it is recorded (sqlite_imports). Nodes (or an import \
                     of another store) wrote them, and the file's journal, conversion and outbox \
                     ids would collide with theirs (fix: import into a new, empty database — \
                     CREATE DATABASE, point store.url_env at it, run this again, then start the \
                     nodes; if this store was imported here before and has taken writes since, \
                     its new rows cannot be merged: import the whole file into an empty database)",
                    held.join(", ")
                )
            }
            ImportError::Collision { table, key } => write!(
                f,
                "{table} row {key} in PostgreSQL is not the file's row with that key: something \
                 other than an import of this store wrote it, so the ids collide; nothing of this \
                 chunk was written (fix: import into a new, empty database, and start nodes on \
                 it only after the import)"
            ),
            ImportError::Postgres { doing, error } => {
                write!(f, "{doing}: {error}")?;
                if let StoreError::Backend(text) = error {
                    if text.starts_with("23505") {
                        write!(
                            f,
                            " (a node recorded the same conversion under another id while \
                             the import ran; fix: stop the nodes, import into a new, empty \
                             database, then start them)"
                        )?;
                    }
                }
                if matches!(error, StoreError::Unavailable(_)) {
                    write!(
                        f,
                        " (fix: check that the database named by store.url / store.url_env \
                         answers; running the command again resumes where this one stopped)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ImportError {}

pub(super) fn pg(doing: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ImportError {
    let doing = doing.into();
    move |e| ImportError::Postgres {
        doing,
        error: crate::store::postgres::error(e),
    }
}
