//! The figures the bandit reads (see `traffic::rotation`): per routing path and offer,
//! visitors sent and counted conversions, of one campaign's counted clicks since a
//! time. A key range of clicks (time-ordered ids), so it reads only the window.

use crate::report::aggregate::{key_range, COUNTED_STATUSES};
use crate::store::RotationFigure;
use rusqlite::{params, Connection};

pub(super) fn figures(
    conn: &Connection,
    campaign_id: &str,
    since_ms: u64,
) -> rusqlite::Result<Vec<RotationFigure>> {
    let (lo, hi) = key_range(Some(since_ms as i64), None);
    let mut out: Vec<RotationFigure> = Vec::new();
    let mut sent = conn.prepare_cached(
        "SELECT c.route, o.offer_id, count(DISTINCT o.click_id) FROM outbound_clicks o
         JOIN clicks c ON c.click_id = o.click_id
         WHERE o.click_id >= ?1 AND o.click_id < ?2 AND o.campaign_id = ?3 AND c.excluded = 0
         GROUP BY c.route, o.offer_id",
    )?;
    for row in sent.query_map(params![lo, hi, campaign_id], |r| {
        Ok(RotationFigure {
            route: r.get(0)?,
            offer_id: r.get(1)?,
            clicks: r.get::<_, i64>(2)? as u64,
            conversions: 0,
        })
    })? {
        out.push(row?);
    }
    let mut converted = conn.prepare_cached(
        "SELECT c.route, v.offer_id, count(*) FROM conversions v
         JOIN clicks c ON c.click_id = v.click_id
         WHERE v.click_id >= ?1 AND v.click_id < ?2 AND v.campaign_id = ?3 AND c.excluded = 0
           AND v.offer_id IS NOT NULL AND v.status IN (?4, ?5)
         GROUP BY c.route, v.offer_id",
    )?;
    let rows = converted.query_map(
        params![
            lo,
            hi,
            campaign_id,
            COUNTED_STATUSES[0],
            COUNTED_STATUSES[1]
        ],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        },
    )?;
    for row in rows {
        let (route, offer_id, conversions) = row?;
        match out
            .iter_mut()
            .find(|f| f.route == route && f.offer_id == offer_id)
        {
            Some(f) => f.conversions += conversions,
            None => out.push(RotationFigure {
                route,
                offer_id,
                clicks: 0,
                conversions,
            }),
        }
    }
    Ok(out)
}
