//! `clickstamp backup`: a consistent copy of the embedded store, taken while it serves.
//!
//! SQLite's online backup API copies every page in one step, inside one read
//! transaction: the copy is the database as of one commit, and in WAL mode that read
//! never blocks the writer (the checkpointer only waits to restart the WAL until the
//! copy is done). The copy is written beside its destination under a `.partial` name,
//! checked, synced and only then renamed, so a file at `--to` is always complete.
//! Restoring is described in `docs/retention-and-backup.md`.

use crate::config::{StoreBackend, StoreConfig};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why no backup was written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the store is PostgreSQL: back it up with PostgreSQL's own tools, pg_dump (a logical copy) or pg_basebackup with WAL archiving (a physical one, for point-in-time recovery); `clickstamp backup` copies the embedded SQLite store only")]
    SharedStore,
    #[error("{0}")]
    Refused(String),
    #[error("backup of {from} failed: {reason}")]
    Failed { from: String, reason: String },
}

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupDone {
    pub path: PathBuf,
    pub bytes: u64,
    pub took: Duration,
}

/// How long one step waits when the source is locked (a WAL restart) before trying again.
const BUSY_RETRY: Duration = Duration::from_millis(50);
/// Give up after this many locked steps in a row.
const BUSY_RETRIES: u32 = 600;

/// Copy the store `store` configures to `to`.
pub fn run(store: &StoreConfig, to: &Path) -> Result<BackupDone, BackupError> {
    if let StoreBackend::Postgres(_) = store.backend {
        return Err(BackupError::SharedStore);
    }
    let from = &store.path;
    if !from.is_file() {
        return Err(BackupError::Refused(format!(
            "there is no store at {} (store.path): nothing to back up",
            from.display()
        )));
    }
    if same_file(from, to) {
        return Err(BackupError::Refused(format!(
            "--to {} is the store itself: write the backup to another file",
            to.display()
        )));
    }
    let failed = |reason: String| BackupError::Failed {
        from: from.display().to_string(),
        reason,
    };
    let started = Instant::now();
    let partial = partial_path(to);
    let _ = std::fs::remove_file(&partial);
    let result = copy(from, &partial).and_then(|()| finish(&partial, to));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(failed(e));
    }
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(BackupDone {
        path: to.to_path_buf(),
        bytes,
        took: started.elapsed(),
    })
}

/// `to` with `.partial` appended: where the copy is written until it is complete.
fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copy `from` into a fresh file at `partial` and check the copy.
fn copy(from: &Path, partial: &Path) -> Result<(), String> {
    // Read-write (never created) so it can join the serving node's WAL index; nothing
    // is written through it.
    let source = Connection::open_with_flags(
        from,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open the store: {e}"))?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mut copy = Connection::open(partial)
        .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    {
        let backup = Backup::new(&source, &mut copy).map_err(|e| e.to_string())?;
        let mut locked = 0;
        // -1: every page in one step, so the copy is one snapshot. Steps of a few
        // pages would start over at every commit of the serving node.
        loop {
            match backup.step(-1).map_err(|e| e.to_string())? {
                StepResult::Done => break,
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked => {
                    locked += 1;
                    if locked > BUSY_RETRIES {
                        return Err("the store stayed locked; try again".into());
                    }
                    std::thread::sleep(BUSY_RETRY);
                }
                other => return Err(format!("unexpected backup step result {other:?}")),
            }
        }
    }
    // One self-contained file: a node that opens it switches it back to WAL.
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| e.to_string())?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if check != "ok" {
        return Err(format!("the copy failed its check: {check}"));
    }
    copy.close().map_err(|(_, e)| e.to_string())
}

/// Sync the copy and move it into place.
fn finish(partial: &Path, to: &Path) -> Result<(), String> {
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", partial.display()))?;
    std::fs::rename(partial, to)
        .map_err(|e| format!("cannot move the copy to {}: {e}", to.display()))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partial_copy_sits_beside_the_destination() {
        assert_eq!(
            partial_path(Path::new("/backups/store.sqlite")),
            PathBuf::from("/backups/store.sqlite.partial")
        );
    }
}
