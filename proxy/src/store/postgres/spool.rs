//! The click spool: while PostgreSQL cannot be reached, clicks and outbound clicks are
//! written to a SQLite file on the node instead, so landing pages and `/go` keep
//! working, and every acknowledged click is still on disk. Once the database answers
//! again they are forwarded, oldest first, and removed from the spool only after the
//! transaction holding them has committed.
//!
//! Only clicks are spooled. They are immutable and idempotent (a click inserted twice
//! is one click), so forwarding them late, or twice after a crash, changes nothing.
//! Postbacks are not: their answer is the dedup outcome, which only the database can
//! give, so during an outage a postback is answered 503 and the network retries it.

use crate::store::{ClickRecord, OutboundRecord, StoreError, WriteOp};
use parking_lot::Mutex;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A click as stored: the click ID in its hex form (the spool never needs to verify it
/// again), everything else as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct ClickRow {
    pub click_id: String,
    pub ts_ms: i64,
    pub campaign_id: String,
    pub source_id: String,
    pub source_click_id: Option<String>,
    pub source_click_param: Option<String>,
    pub cost: Option<f64>,
    pub sub_ids: [Option<String>; 5],
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    pub entry: String,
    /// Absent from clicks spooled by a binary before it: they count, traits unknown.
    #[serde(default)]
    pub profile: crate::store::ClickProfile,
}

impl From<&ClickRecord> for ClickRow {
    fn from(c: &ClickRecord) -> Self {
        ClickRow {
            click_id: c.click_id.to_hex(),
            ts_ms: c.ts_ms as i64,
            campaign_id: c.campaign_id.clone(),
            source_id: c.source_id.clone(),
            source_click_id: c.source_click_id.clone(),
            source_click_param: c.source_click_param.clone(),
            cost: c.cost,
            sub_ids: c.sub_ids.clone(),
            ip: c.ip.clone(),
            user_agent: c.user_agent.clone(),
            referrer: c.referrer.clone(),
            entry: c.entry.to_string(),
            profile: c.profile.clone(),
        }
    }
}

/// An outbound click as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct OutboundRow {
    pub click_id: String,
    pub ts_ms: i64,
    pub campaign_id: String,
    pub offer_id: String,
}

impl From<&OutboundRecord> for OutboundRow {
    fn from(o: &OutboundRecord) -> Self {
        OutboundRow {
            click_id: o.click_id.to_hex(),
            ts_ms: o.ts_ms as i64,
            campaign_id: o.campaign_id.clone(),
            offer_id: o.offer_id.clone(),
        }
    }
}

/// One spooled write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Spooled {
    Click(Box<ClickRow>),
    Outbound(OutboundRow),
}

impl Spooled {
    /// The spoolable form of `ops`, if every one of them may be spooled.
    pub fn of(ops: &[WriteOp]) -> Option<Vec<Spooled>> {
        ops.iter()
            .map(|op| match op {
                WriteOp::Click(c) => Some(Spooled::Click(Box::new(ClickRow::from(c.as_ref())))),
                WriteOp::Outbound(o) => Some(Spooled::Outbound(OutboundRow::from(o))),
                _ => None,
            })
            .collect()
    }
}

/// The spool file.
pub(super) struct Spool {
    conn: Mutex<Connection>,
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl Spool {
    /// Open (creating if needed) the spool at `path`.
    pub fn open(path: &Path) -> Result<Spool, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_error(path, e))?;
        }
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        // WAL with NORMAL sync: a spooled click survives kill -9 of the node, as a
        // click committed in the embedded store does.
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|_| conn.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|_| conn.busy_timeout(std::time::Duration::from_secs(5)))
            .and_then(|_| {
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS spooled_writes (
                        id   INTEGER PRIMARY KEY,
                        op   TEXT NOT NULL           -- JSON: {kind: click|outbound, ...}
                    )",
                )
            })
            .map_err(|e| open_error(path, e))?;
        Ok(Spool {
            conn: Mutex::new(conn),
        })
    }

    /// Append `writes` in one transaction: durable when this returns.
    pub fn put(&self, writes: &[Spooled]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(spool_error)?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO spooled_writes (op) VALUES (?1)")
                .map_err(spool_error)?;
            for w in writes {
                let json = serde_json::to_string(w)
                    .map_err(|e| StoreError::Backend(format!("spool: {e}")))?;
                stmt.execute(params![json]).map_err(spool_error)?;
            }
        }
        tx.commit().map_err(spool_error)
    }

    /// Up to `limit` of the oldest spooled writes, with their ids.
    pub fn oldest(&self, limit: usize) -> Result<Vec<(i64, Spooled)>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached("SELECT id, op FROM spooled_writes ORDER BY id LIMIT ?1")
            .map_err(spool_error)?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(spool_error)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(spool_error)?;
            match serde_json::from_str(&json) {
                Ok(w) => out.push((id, w)),
                // Written by this code, so unreadable only if damaged by hand: kept in
                // the file for an operator, skipped here so it cannot block the rest.
                Err(e) => {
                    tracing::error!(spool_id = id, error = %e, "unreadable spooled write skipped")
                }
            }
        }
        Ok(out)
    }

    /// Remove the spooled writes up to and including `last_id` (they are committed).
    pub fn remove_through(&self, last_id: i64) -> Result<(), StoreError> {
        self.conn
            .lock()
            .execute(
                "DELETE FROM spooled_writes WHERE id <= ?1",
                params![last_id],
            )
            .map(|_| ())
            .map_err(spool_error)
    }

    /// How many writes wait in the spool.
    pub fn depth(&self) -> Result<u64, StoreError> {
        self.conn
            .lock()
            .query_row("SELECT count(*) FROM spooled_writes", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(spool_error)
    }
}

fn spool_error(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("spool: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(id: &str) -> Spooled {
        Spooled::Click(Box::new(ClickRow {
            click_id: id.into(),
            ts_ms: 1,
            campaign_id: "camp".into(),
            source_id: "src".into(),
            source_click_id: Some("abc".into()),
            source_click_param: None,
            cost: Some(0.25),
            sub_ids: [Some("z".into()), None, None, None, None],
            ip: None,
            user_agent: Some("ua".into()),
            referrer: None,
            entry: "landing".into(),
            profile: Default::default(),
        }))
    }

    #[test]
    fn spooled_writes_survive_reopening_and_leave_only_once_removed() {
        let dir = std::env::temp_dir().join(format!("clickstamp-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("spool.sqlite");
        let out = Spooled::Outbound(OutboundRow {
            click_id: "c1".into(),
            ts_ms: 2,
            campaign_id: "camp".into(),
            offer_id: "o".into(),
        });
        {
            let spool = Spool::open(&path).unwrap();
            spool.put(&[click("c1"), out.clone()]).unwrap();
            spool.put(&[click("c2")]).unwrap();
        }
        let spool = Spool::open(&path).unwrap();
        assert_eq!(spool.depth().unwrap(), 3);
        let oldest = spool.oldest(2).unwrap();
        assert_eq!(
            oldest.iter().map(|(_, w)| w.clone()).collect::<Vec<_>>(),
            [click("c1"), out]
        );
        spool.remove_through(oldest[1].0).unwrap();
        let rest = spool.oldest(10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1, click("c2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
