//! The embedded store being copied: read in one snapshot, a table at a time in key order.

use super::*;

/// Row count and largest key of one table of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TableStats {
    pub(super) rows: i64,
    /// The largest value of the table's sequence column, or of its key (clicks).
    pub(super) max_key: Option<String>,
}

/// The SQLite file, opened read-only inside one read transaction.
pub(super) struct SourceStore {
    pub(super) conn: Connection,
    /// The SELECT list for each table of [`TABLES`]: columns it lacks read as NULL.
    pub(super) select_lists: Vec<String>,
    pub(super) stats: Vec<TableStats>,
    pub(super) first_click: Option<String>,
}

impl SourceStore {
    pub(super) fn open(path: &Path) -> Result<SourceStore, ImportError> {
        let not_a_store = |reason: String| ImportError::NotAStore {
            path: path.to_path_buf(),
            reason,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| not_a_store(format!("cannot open it as SQLite ({e})")))?;
        // One snapshot for the whole copy, even if an instance still writes to the file.
        conn.execute_batch("BEGIN")
            .map_err(|e| not_a_store(e.to_string()))?;
        Self::from_connection(conn).map_err(not_a_store)
    }

    /// Check the layout and take the statistics the fingerprint and sequences need.
    pub(super) fn from_connection(conn: Connection) -> Result<SourceStore, String> {
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .and_then(|mut s| {
                s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => "not an SQLite database".to_string(),
                _ => e.to_string(),
            })?;
        let missing: Vec<&str> = TABLES
            .iter()
            .map(|t| t.name)
            .filter(|name| !tables.iter().any(|t| t == name))
            .collect();
        if missing.len() == TABLES.len() {
            return Err("it holds none of the store's tables".into());
        }
        if !missing.is_empty() {
            return Err(format!("it lacks the tables {}", missing.join(", ")));
        }
        let mut select_lists = Vec::with_capacity(TABLES.len());
        let mut stats = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let present: Vec<String> = conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .and_then(|mut s| {
                    s.query_map([table.name], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(|e| e.to_string())?;
            let mut list = Vec::with_capacity(table.columns.len());
            for column in table.columns {
                if present.iter().any(|p| p == column.name) {
                    list.push(column.name.to_string());
                } else if table.added_later.contains(&column.name) {
                    list.push(value_before(column.name).to_string());
                } else {
                    return Err(format!(
                        "its {} table has no column {}",
                        table.name, column.name
                    ));
                }
            }
            select_lists.push(list.join(", "));
            let counted = table.sequence.as_ref().map_or(table.key[0], |s| s.column);
            stats.push(
                conn.query_row(
                    &format!(
                        "SELECT count(*), CAST(max({counted}) AS TEXT) FROM {}",
                        table.name
                    ),
                    [],
                    |r| {
                        Ok(TableStats {
                            rows: r.get(0)?,
                            max_key: r.get(1)?,
                        })
                    },
                )
                .map_err(|e| e.to_string())?,
            );
        }
        let first_click = conn
            .query_row("SELECT min(click_id) FROM clicks", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        Ok(SourceStore {
            conn,
            select_lists,
            stats,
            first_click,
        })
    }

    /// What identifies this store's content: its first click (a random, time-ordered
    /// id no other store has) and, per table, the row count and largest key. The same
    /// store wherever the file is copied to; any write to it gives another fingerprint,
    /// so permission to import into a database that holds an earlier import of this
    /// store never extends to rows the store took since (nodes may hold their ids).
    pub(super) fn fingerprint(&self) -> String {
        let mut summary = format!(
            "clickstamp sqlite store; first click {}",
            self.first_click.as_deref().unwrap_or("-")
        );
        for (table, stats) in TABLES.iter().zip(&self.stats) {
            summary.push_str(&format!(
                "; {} {} up to {}",
                table.name,
                stats.rows,
                stats.max_key.as_deref().unwrap_or("-")
            ));
        }
        clickstamp_plugins::verify::sha256_hex(summary.as_bytes())
    }

    /// The largest value of `table`'s sequence column in the file (0 when empty).
    pub(super) fn max_sequence_value(&self, index: usize) -> i64 {
        self.stats[index]
            .max_key
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// One chunk's values of one column, as the array sent for it.
pub(super) enum Values {
    Text(Vec<Option<String>>),
    Int8(Vec<Option<i64>>),
    Int4(Vec<Option<i32>>),
    Float8(Vec<Option<f64>>),
    Bytea(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

impl Values {
    pub(super) fn new(kind: Kind) -> Values {
        match kind {
            Kind::Text | Kind::Event => Values::Text(Vec::with_capacity(CHUNK_ROWS)),
            Kind::Int8 => Values::Int8(Vec::with_capacity(CHUNK_ROWS)),
            Kind::Int4 => Values::Int4(Vec::with_capacity(CHUNK_ROWS)),
            Kind::Float8 => Values::Float8(Vec::with_capacity(CHUNK_ROWS)),
            Kind::Bytea => Values::Bytea(Vec::with_capacity(CHUNK_ROWS)),
            Kind::Bool => Values::Bool(Vec::with_capacity(CHUNK_ROWS)),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Values::Text(v) => v.clear(),
            Values::Int8(v) => v.clear(),
            Values::Int4(v) => v.clear(),
            Values::Float8(v) => v.clear(),
            Values::Bytea(v) => v.clear(),
            Values::Bool(v) => v.clear(),
        }
    }

    pub(super) fn as_param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Values::Text(v) => v,
            Values::Int8(v) => v,
            Values::Int4(v) => v,
            Values::Float8(v) => v,
            Values::Bytea(v) => v,
            Values::Bool(v) => v,
        }
    }

    /// Append one SQLite value, converted as the column's kind says. SQLite keeps any
    /// value in any column; the store's writers put the declared types there, and
    /// anything else is named rather than guessed at. Returns the bytes of text or
    /// bytes it held (for the chunk's size).
    pub(super) fn push(&mut self, kind: Kind, value: ValueRef<'_>) -> Result<usize, String> {
        let wrong = |value: ValueRef<'_>| {
            format!(
                "holds a {} value where {} belongs",
                value.data_type(),
                kind.describe()
            )
        };
        match self {
            Values::Text(v) => v.push(match value {
                ValueRef::Null => None,
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                    let text =
                        std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
                    Some(if kind == Kind::Event {
                        normalize_event(text)
                    } else {
                        text.to_string()
                    })
                }
                ValueRef::Integer(n) => Some(n.to_string()),
                ValueRef::Real(x) => Some(x.to_string()),
            }),
            Values::Int8(v) => v.push(integer(value).ok_or_else(|| wrong(value))?),
            Values::Int4(v) => v.push(match integer(value).ok_or_else(|| wrong(value))? {
                None => None,
                Some(n) => Some(i32::try_from(n).map_err(|_| format!("{n} exceeds an INTEGER"))?),
            }),
            Values::Float8(v) => v.push(match value {
                ValueRef::Null => None,
                ValueRef::Real(x) => Some(x),
                ValueRef::Integer(n) => Some(n as f64),
                other => return Err(wrong(other)),
            }),
            Values::Bytea(v) => v.push(match value {
                ValueRef::Null => None,
                ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Some(bytes.to_vec()),
                other => return Err(wrong(other)),
            }),
            Values::Bool(v) => v.push(integer(value).ok_or_else(|| wrong(value))?.map(|n| n != 0)),
        }
        Ok(match value {
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes.len(),
            _ => 0,
        })
    }
}

/// What a column added later reads as in a file written before it: the value the
/// schema gives such rows (traffic quality: counted, `ok`, traits unknown), else NULL.
pub(super) fn value_before(column: &str) -> &'static str {
    match column {
        "quality" => "'ok'",
        "excluded" => "0",
        "quality_reasons" | "lander" | "country" | "device" | "os" | "browser" | "route" => "''",
        _ => "NULL",
    }
}

/// An integer column's value: `Some(None)` for NULL, `None` when it is no integer.
pub(super) fn integer(value: ValueRef<'_>) -> Option<Option<i64>> {
    match value {
        ValueRef::Null => Some(None),
        ValueRef::Integer(n) => Some(Some(n)),
        // A whole REAL (an integer written through a REAL expression) is that integer.
        ValueRef::Real(x) if x.fract() == 0.0 && x.abs() < 9.0e18 => Some(Some(x as i64)),
        _ => None,
    }
}
