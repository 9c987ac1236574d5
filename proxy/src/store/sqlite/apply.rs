//! Applying writes inside the writer's transaction. Only the writer thread runs this
//! code, so every check-then-act here (dedup, status transitions, the pixel/S2S merge)
//! is free of races by construction.

use crate::store::decide::{pick_twin, relays_new, twin_origin, Action, Existing};
use crate::store::{
    ClickRecord, ConversionCandidate, DeliveryResult, OutboundRecord, PostbackCommit,
    PostbackOutcome, PostbackWrite, Verdict,
};
use rusqlite::{params, OptionalExtension, Transaction};

pub(super) fn insert_click(tx: &Transaction<'_>, c: &ClickRecord) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO clicks (click_id, ts_ms, campaign_id, source_id, source_click_id, cost,
            sub1, sub2, sub3, sub4, sub5, ip, user_agent, referrer, entry, source_click_param,
            quality, quality_reasons, excluded, excluded_reason, lander, country, device, os, browser, route)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
    )?;
    let [s1, s2, s3, s4, s5] = &c.sub_ids;
    let p = &c.profile;
    stmt.execute(params![
        c.click_id.to_hex(),
        c.ts_ms as i64,
        c.campaign_id,
        c.source_id,
        c.source_click_id,
        c.cost,
        s1,
        s2,
        s3,
        s4,
        s5,
        c.ip,
        c.user_agent,
        c.referrer,
        c.entry,
        c.source_click_param,
        p.quality,
        p.quality_reasons,
        p.excluded.is_some(),
        p.excluded,
        p.lander,
        p.country,
        p.device,
        p.os,
        p.browser,
        p.route,
    ])?;
    Ok(())
}

pub(super) fn insert_outbound(tx: &Transaction<'_>, o: &OutboundRecord) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbound_clicks (click_id, ts_ms, seq, campaign_id, offer_id) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![o.click_id.to_hex(), o.ts_ms as i64, next_seq(), o.campaign_id, o.offer_id])?;
    Ok(())
}

/// A process-wide increasing number that keeps outbound clicks of one click within one
/// millisecond apart in the key, without a lookup. Seeded from the clock so a restart
/// never reuses a value within the same millisecond.
fn next_seq() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::OnceLock;
    static SEQ: OnceLock<AtomicI64> = OnceLock::new();
    let seq = SEQ.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        AtomicI64::new(nanos)
    });
    seq.fetch_add(1, Ordering::Relaxed)
}

fn find_existing(
    tx: &Transaction<'_>,
    c: &ConversionCandidate,
) -> rusqlite::Result<Option<Existing>> {
    let row = |r: &rusqlite::Row<'_>| {
        Ok(Existing {
            id: r.get(0)?,
            status: r.get(1)?,
            origin: r.get(2)?,
            txid: r.get(3)?,
        })
    };
    // Every lookup is a seek in `conversions_by_click_key` (click, event, origin, key); the
    // candidate's event is already normalised, as the dedup key normalises it. Within an
    // origin the dedup key decides; across origins `may_be_same_conversion` does
    // (LIFECYCLE.md, "The pixel/S2S merge").
    let own_origin_sql = if c.origin == "s2s" {
        // S2S: its own key among S2S conversions (a duplicate or a status change); a
        // pixel conversion with the same key is its twin, found below, and upgraded.
        "SELECT id, status, origin, txid FROM conversions
         WHERE click_id = ?1 AND event = ?2 AND origin = 's2s' AND dedup_key = ?3"
    } else {
        // Pixel: its own key under either origin is a duplicate (an S2S conversion with
        // the same txid has the same key).
        "SELECT id, status, origin, txid FROM conversions
         WHERE click_id = ?1 AND event = ?2 AND dedup_key = ?3 ORDER BY origin = 's2s' DESC, id LIMIT 1"
    };
    let own = tx
        .prepare_cached(own_origin_sql)?
        .query_row(params![c.click_id, c.event, c.dedup_key], row)
        .optional()?;
    if own.is_some() {
        return Ok(own);
    }
    let mut stmt = tx.prepare_cached(
        "SELECT id, status, origin, txid FROM conversions
         WHERE click_id = ?1 AND event = ?2 AND origin = ?3 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![c.click_id, c.event, twin_origin(c)], row)?;
    pick_twin(rows, c)
}

fn insert_journal(
    tx: &Transaction<'_>,
    w: &PostbackWrite,
    outcome: &str,
    conversion_id: Option<i64>,
) -> rusqlite::Result<i64> {
    let j = &w.journal;
    let (reason, message, click_id) = match &w.verdict {
        Verdict::Rejected {
            reason,
            message,
            click_id,
        } => (Some(*reason), Some(message.as_str()), click_id.as_deref()),
        Verdict::Convert(c) => (None, None, Some(c.click_id.as_str())),
    };
    tx.prepare_cached(
        "INSERT INTO postback_journal (ts_ms, network_id, method, remote_ip, raw_query, raw_body, content_type,
            origin, outcome, reason, message, click_id, replay_of, conversion_id, cut)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?
    .execute(params![
        j.ts_ms as i64,
        j.network_id,
        j.method,
        j.remote_ip,
        j.raw_query,
        j.raw_body,
        j.content_type,
        j.origin,
        outcome,
        reason,
        message,
        click_id,
        j.replay_of,
        conversion_id,
        j.cut
            .as_ref()
            .and_then(|cut| serde_json::to_string(cut).ok()),
    ])?;
    Ok(tx.last_insert_rowid())
}

fn history(
    tx: &Transaction<'_>,
    conversion_id: i64,
    ts: u64,
    status: &str,
    payout: Option<f64>,
    origin: &str,
    journal_id: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO conversion_history (conversion_id, ts_ms, status, payout, origin, journal_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![conversion_id, ts as i64, status, payout, origin, journal_id])?;
    Ok(())
}

fn enqueue(
    tx: &Transaction<'_>,
    conversion_id: i64,
    c: &ConversionCandidate,
    url: &str,
    kind: &str,
    now: u64,
) -> rusqlite::Result<()> {
    let due = c.relay_not_before_ms.unwrap_or(now);
    tx.prepare_cached(
        "INSERT INTO outbox (conversion_id, click_id, source_id, kind, url, state, attempts, next_attempt_ms, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7)",
    )?
    .execute(params![conversion_id, c.click_id, c.source_id, kind, url, due as i64, now as i64])?;
    Ok(())
}

/// Dedup and apply a postback, and journal it — all in the caller's transaction, so
/// the raw request is on disk exactly when its effects are, and a postback is never
/// acknowledged without both.
pub(super) fn apply_postback(
    tx: &Transaction<'_>,
    w: &PostbackWrite,
) -> rusqlite::Result<PostbackCommit> {
    let now = w.journal.ts_ms;
    let c = match &w.verdict {
        Verdict::Rejected { .. } => {
            let journal_id = insert_journal(tx, w, PostbackOutcome::Rejected.as_str(), None)?;
            return Ok(PostbackCommit {
                journal_id,
                outcome: PostbackOutcome::Rejected,
                conversion_id: None,
                status: None,
                relayed: false,
            });
        }
        Verdict::Convert(c) => c,
    };
    let action = Action::decide(c, find_existing(tx, c)?);
    let (outcome, conversion_id, status) = match &action {
        Action::New => {
            tx.prepare_cached(
                "INSERT INTO conversions (dedup_key, click_id, campaign_id, source_id, network_id, offer_id, event, txid,
                    payout, currency, status, origin, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)",
            )?
            .execute(params![
                c.dedup_key, c.click_id, c.campaign_id, c.source_id, c.network_id, c.offer_id, c.event, c.txid,
                c.payout, c.currency, c.status, c.origin, now as i64
            ])?;
            (
                PostbackOutcome::Accepted,
                tx.last_insert_rowid(),
                c.status.to_string(),
            )
        }
        Action::UpgradePixel(e) => {
            // S2S is authoritative: the conversion takes the S2S key, payout and status.
            tx.prepare_cached(
                "UPDATE conversions SET dedup_key = ?2, origin = 's2s', txid = COALESCE(?3, txid), network_id = COALESCE(?4, network_id),
                    payout = COALESCE(?5, payout), currency = COALESCE(?6, currency), status = ?7, updated_ms = ?8 WHERE id = ?1",
            )?
            .execute(params![e.id, c.dedup_key, c.txid, c.network_id, c.payout, c.currency, c.status, now as i64])?;
            (PostbackOutcome::StatusChanged, e.id, c.status.to_string())
        }
        Action::Transition(e) => {
            tx.prepare_cached(
                "UPDATE conversions SET status = ?2, payout = COALESCE(?3, payout), currency = COALESCE(?4, currency), updated_ms = ?5 WHERE id = ?1",
            )?
            .execute(params![e.id, c.status, c.payout, c.currency, now as i64])?;
            (PostbackOutcome::StatusChanged, e.id, c.status.to_string())
        }
        Action::Duplicate(e) => {
            let claimed_txid = Action::claimed_txid(c, e);
            tx.prepare_cached(
                "UPDATE conversions SET duplicates = duplicates + 1, txid = COALESCE(txid, ?2) WHERE id = ?1",
            )?
            .execute(params![e.id, claimed_txid])?;
            (PostbackOutcome::Duplicate, e.id, e.status.clone())
        }
    };
    let journal_id = insert_journal(tx, w, outcome.as_str(), Some(conversion_id))?;
    if !matches!(action, Action::Duplicate(_)) {
        // Every status a conversion takes is kept, with the postback that set it. (An
        // upgrade only happens for S2S, so `c.origin` is `s2s` there.)
        history(
            tx,
            conversion_id,
            now,
            c.status,
            c.payout,
            c.origin,
            journal_id,
        )?;
    }
    let relayed = match &action {
        Action::New => match &c.relay_url {
            Some(url) if relays_new(c) => {
                enqueue(tx, conversion_id, c, url, "conversion", now)?;
                true
            }
            _ => false,
        },
        Action::UpgradePixel(e) => relay_upgrade(tx, c, e, now)?,
        Action::Transition(_) => match &c.relay_url {
            Some(url) if c.relay_status_changes => {
                enqueue(tx, conversion_id, c, url, "status", now)?;
                true
            }
            _ => false,
        },
        Action::Duplicate(_) => false,
    };
    let relayed =
        super::destinations::after_postback(tx, &action, c, conversion_id, now)? || relayed;
    Ok(PostbackCommit {
        journal_id,
        outcome,
        conversion_id: Some(conversion_id),
        status: Some(status),
        relayed,
    })
}

/// The relay of a pixel conversion that S2S just upgraded is not repeated: a relay still
/// held in the grace period is rewritten with the S2S figures and released now; one
/// already sent is followed only by a status change, where the source takes those.
fn relay_upgrade(
    tx: &Transaction<'_>,
    c: &ConversionCandidate,
    existing: &Existing,
    now: u64,
) -> rusqlite::Result<bool> {
    let Some(url) = &c.relay_url else {
        return Ok(false);
    };
    let held = tx
        .prepare_cached("UPDATE outbox SET url = ?2, next_attempt_ms = ?3 WHERE conversion_id = ?1 AND state = 'pending' AND attempts = 0 AND destination_id IS NULL")?
        .execute(params![existing.id, url, now as i64])?;
    if held > 0 {
        return Ok(true);
    }
    if existing.status != c.status && c.relay_status_changes {
        enqueue(
            tx,
            existing.id,
            &ConversionCandidate {
                relay_not_before_ms: None,
                ..c.clone()
            },
            url,
            "status",
            now,
        )?;
        return Ok(true);
    }
    Ok(false)
}

pub(super) fn record_delivery(tx: &Transaction<'_>, d: &DeliveryResult) -> rusqlite::Result<()> {
    let state = match (d.delivered, d.next_attempt_ms) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "dead",
    };
    tx.prepare_cached(
        "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_ms = COALESCE(?3, next_attempt_ms),
            last_status = ?4, last_error = ?5, delivered_ms = CASE WHEN ?2 = 'delivered' THEN ?6 ELSE delivered_ms END
         WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![d.outbox_id, state, d.next_attempt_ms.map(|t| t as i64), d.http_status, d.error, d.ts_ms as i64])?;
    Ok(())
}

/// Requeue dead letters as if new: attempts from 0 and `outbox.max_age` counted from
/// now (`replayed_ms`), so an old entry gets a full run of retries again rather than
/// dying after its first failed one. `created_ms` is kept for the record.
pub(super) fn replay_dead(
    tx: &Transaction<'_>,
    outbox_id: Option<i64>,
    now: u64,
) -> rusqlite::Result<u64> {
    let n = match outbox_id {
        Some(id) => tx
            .prepare_cached("UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?2, replayed_ms = ?2 WHERE id = ?1 AND state = 'dead'")?
            .execute(params![id, now as i64])?,
        None => tx
            .prepare_cached("UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?1, replayed_ms = ?1 WHERE state = 'dead'")?
            .execute(params![now as i64])?,
    };
    Ok(n as u64)
}
