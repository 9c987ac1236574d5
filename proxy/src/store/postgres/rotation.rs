//! The figures the bandit reads (see `traffic::rotation`), as the embedded store
//! reads them: per routing path and offer, visitors sent and counted conversions of
//! one campaign's counted clicks since a time (a key range of the time-ordered ids).

use super::error;
use crate::report::aggregate::{key_range, COUNTED_STATUSES};
use crate::store::{RotationFigure, StoreError};
use deadpool_postgres::Pool;

pub(super) async fn figures(
    pool: &Pool,
    campaign_id: &str,
    since_ms: u64,
) -> Result<Vec<RotationFigure>, StoreError> {
    let conn = pool.get().await.map_err(super::pool_error)?;
    let (lo, hi) = key_range(Some(since_ms as i64), None);
    let sent = conn
        .query(
            "SELECT c.route, o.offer_id, count(DISTINCT o.click_id) FROM outbound_clicks o
             JOIN clicks c ON c.click_id = o.click_id
             WHERE o.click_id >= $1 AND o.click_id < $2 AND o.campaign_id = $3 AND NOT c.excluded
             GROUP BY c.route, o.offer_id",
            &[&lo, &hi, &campaign_id],
        )
        .await
        .map_err(error)?;
    let mut out: Vec<RotationFigure> = sent
        .iter()
        .map(|r| RotationFigure {
            route: r.get(0),
            offer_id: r.get(1),
            clicks: r.get::<_, i64>(2) as u64,
            conversions: 0,
        })
        .collect();
    let statuses: Vec<&str> = COUNTED_STATUSES.to_vec();
    let converted = conn
        .query(
            "SELECT c.route, v.offer_id, count(*) FROM conversions v
             JOIN clicks c ON c.click_id = v.click_id
             WHERE v.click_id >= $1 AND v.click_id < $2 AND v.campaign_id = $3 AND NOT c.excluded
               AND v.offer_id IS NOT NULL AND v.status = ANY($4)
             GROUP BY c.route, v.offer_id",
            &[&lo, &hi, &campaign_id, &statuses],
        )
        .await
        .map_err(error)?;
    for r in &converted {
        let (route, offer_id): (String, String) = (r.get(0), r.get(1));
        let conversions = r.get::<_, i64>(2) as u64;
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
