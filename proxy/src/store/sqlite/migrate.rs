//! Bringing a database file written by an earlier version up to the current schema.
//!
//! `schema.sql` is written to be re-run on every open (`IF NOT EXISTS`, `DROP INDEX IF
//! EXISTS`). What it cannot express — a change to a table's columns or constraints —
//! happens here, in the same transaction as the schema, and is detected from the file's
//! own shape rather than a version number, so opening a current file changes nothing
//! and an interrupted upgrade is simply redone on the next open.

use clickstamp_plugins::normalize_event;
use rusqlite::{params, Connection, Transaction, TransactionBehavior};

/// What an upgrade did, for the startup log.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Upgrade {
    /// Conversions copied into the rebuilt table.
    pub conversions_rebuilt: u64,
    /// Of those, conversions whose stored event was not in normalised form.
    pub events_normalised: u64,
}

/// Apply `schema` to the file, upgrading an earlier layout first. One IMMEDIATE
/// transaction: a crash midway leaves the old file as it was.
pub(super) fn apply_schema(conn: &mut Connection, schema: &str) -> rusqlite::Result<Upgrade> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rebuild = conversions_have_unique_key(&tx)?;
    if rebuild {
        // Said before it starts: on a large store the copy takes a while, and a silent
        // startup would look like a hang.
        tracing::info!(
            "store upgrade: rebuilding the conversions table once, around one click-ordered index"
        );
        tx.execute_batch("ALTER TABLE conversions RENAME TO conversions_before_upgrade")?;
    }
    tx.execute_batch(schema)?;
    add_missing_columns(&tx)?;
    tx.execute_batch(super::destinations::INDEX)?;
    let upgrade = if rebuild {
        rebuild_conversions(&tx)?
    } else {
        Upgrade::default()
    };
    tx.commit()?;
    if rebuild {
        tracing::info!(
            conversions = upgrade.conversions_rebuilt,
            events_normalised = upgrade.events_normalised,
            "store upgraded: conversions rebuilt around one click-ordered index"
        );
    }
    Ok(upgrade)
}

/// Versions before this one declared `dedup_key UNIQUE`, which SQLite backs with an
/// automatic index that cannot be dropped on its own: an index on a hash, so one random
/// page written per postback. The table is rebuilt without it.
fn conversions_have_unique_key(tx: &Transaction<'_>) -> rusqlite::Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index'
            AND tbl_name = 'conversions' AND name LIKE 'sqlite_autoindex_conversions_%')",
        [],
        |r| r.get(0),
    )
}

/// Columns later versions added, by table, with their declarations. A file written
/// before them gets them (empty) on open; an `ADD COLUMN` of a nullable column rewrites
/// nothing, so this is instant on any size of table.
const COLUMNS_ADDED: &[(&str, &str, &str)] = &[
    ("postback_journal", "cut", "TEXT"),
    ("outbox", "replayed_ms", "INTEGER"),
    ("clicks", "quality", "TEXT NOT NULL DEFAULT 'ok'"),
    ("clicks", "quality_reasons", "TEXT NOT NULL DEFAULT ''"),
    ("clicks", "excluded", "INTEGER NOT NULL DEFAULT 0"),
    ("clicks", "excluded_reason", "TEXT"),
    ("clicks", "lander", "TEXT NOT NULL DEFAULT ''"),
    ("clicks", "country", "TEXT NOT NULL DEFAULT ''"),
    ("clicks", "device", "TEXT NOT NULL DEFAULT ''"),
    ("clicks", "os", "TEXT NOT NULL DEFAULT ''"),
    ("clicks", "browser", "TEXT NOT NULL DEFAULT ''"),
    ("clicks", "route", "TEXT NOT NULL DEFAULT ''"),
    ("outbox", "destination_id", "TEXT"),
];

fn add_missing_columns(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    for (table, name, decl) in COLUMNS_ADDED {
        let present: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, name],
            |r| r.get(0),
        )?;
        if !present {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {decl}"))?;
        }
    }
    Ok(())
}

/// Copy every conversion (ids kept: history, outbox and journal refer to them) into the
/// table the schema just created, then normalise stored events the way the dedup key
/// does. Normalising cannot make two rows collide: their keys were already unique.
fn rebuild_conversions(tx: &Transaction<'_>) -> rusqlite::Result<Upgrade> {
    const COLUMNS: &str =
        "id, dedup_key, click_id, campaign_id, source_id, network_id, offer_id, event, txid,
        payout, currency, status, origin, duplicates, created_ms, updated_ms";
    let copied = tx.execute(
        &format!(
            "INSERT INTO conversions ({COLUMNS}) SELECT {COLUMNS} FROM conversions_before_upgrade"
        ),
        [],
    )?;
    let events: Vec<(i64, String)> = tx
        .prepare("SELECT id, event FROM conversions")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut normalised = 0;
    let mut update = tx.prepare("UPDATE conversions SET event = ?2 WHERE id = ?1")?;
    for (id, event) in events {
        let want = normalize_event(&event);
        if want != event {
            update.execute(params![id, want])?;
            normalised += 1;
        }
    }
    drop(update);
    tx.execute_batch("DROP TABLE conversions_before_upgrade")?;
    Ok(Upgrade {
        conversions_rebuilt: copied as u64,
        events_normalised: normalised,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversions table as the previous version created it.
    const PREVIOUS: &str = "
        CREATE TABLE conversions (
            id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL UNIQUE, click_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL, source_id TEXT NOT NULL, network_id TEXT, offer_id TEXT,
            event TEXT NOT NULL, txid TEXT, payout REAL, currency TEXT, status TEXT NOT NULL,
            origin TEXT NOT NULL, duplicates INTEGER NOT NULL DEFAULT 0,
            created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
        CREATE INDEX conversions_by_click_event ON conversions (click_id, event, origin);
        INSERT INTO conversions VALUES
            (7, 'k7', 'c1', 'camp', 'src', 'cake', 'o', ' Sale ', 'T1', 2.5, 'USD', 'approved', 's2s', 3, 1, 2),
            (9, 'k9', 'c2', 'camp', 'src', NULL, 'o', 'lead', NULL, NULL, NULL, 'pending', 'pixel', 0, 5, 5);";

    fn indexes(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'conversions' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_previous_file_is_rebuilt_once_and_keeps_every_conversion() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(PREVIOUS).unwrap();
        let schema = super::super::SCHEMA;

        let upgrade = apply_schema(&mut conn, schema).unwrap();
        assert_eq!(
            upgrade,
            Upgrade {
                conversions_rebuilt: 2,
                events_normalised: 1
            }
        );
        assert_eq!(indexes(&conn), ["conversions_by_click_key"]);
        let rows: Vec<(i64, String, String, i64)> = conn
            .prepare("SELECT id, event, dedup_key, duplicates FROM conversions ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (7, "sale".to_string(), "k7".to_string(), 3),
                (9, "lead".to_string(), "k9".to_string(), 0)
            ]
        );
        // The key stays unique within its click, now through the one index.
        let again = conn.execute(
            "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, event, status, origin, created_ms, updated_ms)
             VALUES ('k7', 'c1', 'camp', 'src', 'sale', 'approved', 's2s', 1, 1)",
            [],
        );
        assert!(again.is_err(), "a second row with key k7 was accepted");

        // Opening the upgraded file again changes nothing.
        assert_eq!(apply_schema(&mut conn, schema).unwrap(), Upgrade::default());
        let count: i64 = conn
            .query_row("SELECT COUNT(*) FROM conversions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 2);
    }

    #[test]
    fn a_journal_from_before_cut_entries_gains_the_column_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE postback_journal (
                id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, network_id TEXT NOT NULL,
                method TEXT NOT NULL, remote_ip TEXT, raw_query TEXT NOT NULL, raw_body BLOB,
                content_type TEXT, origin TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT,
                message TEXT, click_id TEXT, conversion_id INTEGER, replay_of INTEGER);
             INSERT INTO postback_journal (ts_ms, network_id, method, raw_query, origin, outcome)
                VALUES (1, 'cake', 'GET', 'cid=x', 's2s', 'rejected');",
        )
        .unwrap();
        apply_schema(&mut conn, super::super::SCHEMA).unwrap();
        let (query, cut): (String, Option<String>) = conn
            .query_row("SELECT raw_query, cut FROM postback_journal", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((query.as_str(), cut), ("cid=x", None));
        // Opening again adds nothing twice.
        apply_schema(&mut conn, super::super::SCHEMA).unwrap();
    }

    #[test]
    fn an_outbox_from_before_replay_times_gains_the_column_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE outbox (
                id INTEGER PRIMARY KEY, conversion_id INTEGER NOT NULL, click_id TEXT NOT NULL,
                source_id TEXT NOT NULL, kind TEXT NOT NULL, url TEXT NOT NULL,
                state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                last_status INTEGER, last_error TEXT, delivered_ms INTEGER);
             INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, next_attempt_ms, created_ms)
                VALUES (1, 'c', 'src', 'conversion', 'http://s/', 'dead', 5, 7);",
        )
        .unwrap();
        apply_schema(&mut conn, super::super::SCHEMA).unwrap();
        let (created, replayed): (i64, Option<i64>) = conn
            .query_row("SELECT created_ms, replayed_ms FROM outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((created, replayed), (7, None));
        apply_schema(&mut conn, super::super::SCHEMA).unwrap();
    }

    #[test]
    fn a_new_file_gets_the_current_layout_without_an_upgrade() {
        let mut conn = Connection::open_in_memory().unwrap();
        let upgrade = apply_schema(&mut conn, super::super::SCHEMA).unwrap();
        assert_eq!(upgrade, Upgrade::default());
        assert_eq!(indexes(&conn), ["conversions_by_click_key"]);
    }
}
