//! `/px`: browser conversions from the pixel SDK, the image pixel and `<noscript>`.
//!
//! A pixel hit runs the same pipeline as a postback with origin `pixel`, under
//! DESIGN.md's rules: S2S is authoritative; a pixel conversion and an S2S conversion
//! for the same (click, event) that may be one conversion
//! ([`clickstamp_plugins::dedup::may_be_same_conversion`]: the same txid, or one side
//! without a txid) are one conversion whichever comes first; a pixel-only conversion
//! is relayed only after `pixel.grace_period` passes without its S2S twin. The store
//! applies these rules (`store/sqlite/apply.rs`, `store/LIFECYCLE.md`); this module
//! checks the sending page's origin, parses, validates, rate-limits and builds the
//! candidate.

pub mod rate;
pub mod sdk;
pub mod serve;

use crate::config::PixelConfig;
use crate::postback::Refusal;
use crate::store::{JournalEntry, PostbackOutcome, PostbackWrite, Verdict, WriteOp, WriteResult};
use crate::tracker::{Pinned, Tracker};
use clickstamp_plugins::query::{first_value, parse_query_strict};
use clickstamp_plugins::ParsedPostback;
use serde_json::json;

/// The network label pixel hits are counted and journalled under.
pub const PIXEL_NETWORK: &str = "pixel";

/// A 1×1 transparent GIF.
pub const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// A pixel hit as received.
#[derive(Debug, Clone, Default)]
pub struct PixelHit {
    pub method: String,
    pub raw_query: String,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub remote_ip: Option<String>,
    /// The `Cookie` header: a same-site image pixel without `cid=` falls back to the
    /// visitor's click cookie.
    pub cookies: String,
    /// The origin of the page that sent the hit ([`page_origin`]), if it names one.
    pub page_origin: Option<String>,
    /// The `Host` the hit was sent to (`host[:port]`): a page on the tracker's own
    /// host is same-origin and needs no entry in `pixel.allowed_origins`.
    pub host: Option<String>,
    pub received_ms: u64,
}

/// The origin of the page a hit comes from: the `Origin` header (sent with every POST
/// and CORS request), else the `scheme://host[:port]` of the `Referer` (an `<img>`
/// sends no `Origin`). `None` when neither names one — curl, a same-origin request
/// without either, a page whose referrer policy sends none.
pub fn page_origin(origin: Option<&str>, referer: Option<&str>) -> Option<String> {
    if let Some(origin) = origin.map(str::trim).filter(|o| !o.is_empty()) {
        return Some(origin.to_string());
    }
    let referer = referer?.trim();
    let (scheme, rest) = referer.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    (!scheme.is_empty() && !authority.is_empty()).then(|| {
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            authority.to_ascii_lowercase()
        )
    })
}

/// Whether hits from `origin` may be recorded: any origin under `allowed_origins = ["*"]`
/// (the default), a listed origin, or the tracker's own host (`host`, the request's
/// `Host`). Anything else — including `null`, a sandboxed or local page — is refused:
/// CORS alone would only hide the answer from the page, not stop the conversion.
pub fn origin_allowed(pixel: &PixelConfig, origin: &str, host: Option<&str>) -> bool {
    if pixel.cors_origin(Some(origin)).is_some() {
        return true;
    }
    let authority = origin.split_once("://").map(|(_, a)| a);
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h.trim()))
}

/// A refused beacon (400 `malformed_beacon`).
fn malformed(message: &str) -> Refusal {
    Refusal {
        reason: "malformed_beacon",
        status: 400,
        message: message.to_string(),
        click_id: None,
    }
}

/// The answer to a pixel hit.
#[derive(Debug, Clone)]
pub struct PixelReply {
    pub status: u16,
    pub body: serde_json::Value,
    pub outcome: &'static str,
}

/// The fields of a beacon, from the JSON body or the query.
#[derive(Debug, Clone, Default, PartialEq)]
struct Beacon {
    /// `None`: the hit named no click; the click cookie may.
    cid: Option<String>,
    event: Option<String>,
    txid: Option<String>,
    value: Option<f64>,
    currency: Option<String>,
}

fn valid_event(e: &str) -> bool {
    (1..=64).contains(&e.len())
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parse a beacon: a JSON object body (as the SDK sends, typed `text/plain` to avoid a
/// CORS preflight) or the query string (image pixel).
fn parse_beacon(hit: &PixelHit) -> Result<Beacon, Refusal> {
    let bad = malformed;
    let fields: Vec<(String, String)> = if !hit.body.iter().all(u8::is_ascii_whitespace) {
        let value: serde_json::Value = serde_json::from_slice(&hit.body)
            .map_err(|_| bad("the beacon body is not a JSON object"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("the beacon body is not a JSON object"))?;
        obj.iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k.clone(), s.clone())),
                serde_json::Value::Number(n) => Some((k.clone(), n.to_string())),
                _ => None,
            })
            .collect()
    } else {
        // Strictly: two different byte strings must never become the same txid.
        parse_query_strict(hit.raw_query.as_bytes()).map_err(|e| Refusal {
            reason: "invalid_utf8",
            status: 400,
            message: e.to_string(),
            click_id: None,
        })?
    };
    let get = |k: &str| {
        first_value(&fields, k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let cid = get("cid");
    let event = get("event");
    if let Some(e) = &event {
        if !valid_event(e) {
            return Err(bad(
                "event must be 1-64 characters of letters, digits, '_', '.', '-'",
            ));
        }
    }
    let txid = get("txid");
    if txid.as_ref().is_some_and(|t| t.len() > 128) {
        return Err(bad("txid is longer than 128 characters"));
    }
    let value = match get("value") {
        None => None,
        // The same bound as a postback's payout (one definition, in the plugins crate).
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .and_then(|v| {
                    clickstamp_plugins::postback::check_amount(v)
                        .and_then(|v| clickstamp_plugins::postback::check_amount_sign(v, None))
                        .ok()
                })
                .ok_or_else(|| {
                    bad("value must be a non-negative number of at most 1000000 (postback payouts have the same limit)")
                })?,
        ),
    };
    let currency = match get("currency") {
        None => None,
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(c.to_ascii_uppercase())
        }
        Some(_) => return Err(bad("currency must be a three-letter ISO 4217 code")),
    };
    Ok(Beacon {
        cid,
        event,
        txid,
        value,
        currency,
    })
}

impl Pinned<'_> {
    /// The newest valid click among the visitor's click cookies, one per campaign (IDs
    /// are time-ordered, so the largest is the latest click). Each cookie is read with
    /// [`Pinned::click_from_cookie`], like every other reader of the click cookie: a
    /// forged or expired one is counted and skipped, never preferred.
    fn newest_cookie_click(&self, cookies: &str, now_ms: u64) -> Option<String> {
        (0..self.config.campaigns.len())
            .filter_map(|c| {
                self.click_from_cookie(cookies, c, now_ms, crate::tracker::route::label::PIXEL)
            })
            .max()
            .map(|id| id.to_hex())
    }

    /// The beacon's click: its `cid`, else the click cookie.
    fn beacon_click(&self, beacon: &Beacon, hit: &PixelHit) -> Result<String, Refusal> {
        beacon
            .cid
            .clone()
            .or_else(|| self.newest_cookie_click(&hit.cookies, hit.received_ms))
            .ok_or_else(|| {
                malformed("no click id: send cid=<click id> (or call from a page that has a valid click cookie)")
            })
    }

    /// Refuse a hit sent by a page whose origin `pixel.allowed_origins` does not allow.
    fn check_origin(&self, hit: &PixelHit) -> Result<(), Refusal> {
        match &hit.page_origin {
            Some(origin) if !origin_allowed(&self.config.pixel, origin, hit.host.as_deref()) => {
                Err(Refusal {
                    reason: "origin_not_allowed",
                    status: 403,
                    message: format!(
                        "pages on {origin:?} may not send pixel hits: add the origin to pixel.allowed_origins"
                    ),
                    click_id: None,
                })
            }
            _ => Ok(()),
        }
    }

    /// Handle one pixel hit.
    pub async fn ingest_pixel(&self, hit: PixelHit) -> PixelReply {
        let journal = JournalEntry {
            ts_ms: hit.received_ms,
            network_id: PIXEL_NETWORK.into(),
            method: hit.method.clone(),
            remote_ip: hit.remote_ip.clone(),
            raw_query: hit.raw_query.clone(),
            raw_body: hit.body.clone(),
            content_type: hit.content_type.clone(),
            origin: "pixel",
            replay_of: None,
            // A beacon is at most 8 KiB (serve.rs) and is kept whole.
            cut: None,
        };
        let beacon = self
            .check_origin(&hit)
            .and_then(|()| parse_beacon(&hit))
            .and_then(|beacon| Ok((self.beacon_click(&beacon, &hit)?, beacon)));
        let decided = match beacon {
            Err(r) => Err(r),
            Ok((cid, beacon)) => match self.attribute(&cid, hit.received_ms).await {
                Err(r) => Err(r),
                Ok((click, campaign)) => {
                    let parsed = ParsedPostback {
                        click_id: click.click_id.clone(),
                        payout: beacon.value,
                        currency: beacon.currency.clone(),
                        txid: beacon.txid.clone(),
                        status: None,
                        event: beacon.event.clone(),
                        sub_ids: Vec::new(),
                    };
                    let mut c =
                        self.candidate(None, campaign, &click, &parsed, "pixel", hit.received_ms);
                    let grace = self.config.pixel.grace_period.as_millis() as u64;
                    c.relay_not_before_ms = Some(hit.received_ms + grace);
                    Ok(c)
                }
            },
        };
        let (verdict, refusal, candidate) = match decided {
            Ok(c) => (Verdict::Convert(Box::new(c.clone())), None, Some(c)),
            Err(r) => (
                Verdict::Rejected {
                    reason: r.reason,
                    message: r.message.clone(),
                    click_id: r.click_id.clone(),
                },
                Some(r),
                None,
            ),
        };
        let commit = match self
            .store
            .write(vec![WriteOp::Postback(Box::new(PostbackWrite {
                journal,
                verdict,
            }))])
            .await
        {
            Ok(mut r) => match r.pop() {
                Some(WriteResult::Postback(c)) => c,
                _ => return unavailable(self),
            },
            Err(e) => {
                tracing::error!(error = %e, "pixel hit not stored");
                return unavailable(self);
            }
        };
        self.metrics
            .postbacks
            .with_label_values(&[PIXEL_NETWORK, commit.outcome.as_str()])
            .inc();
        if let Some(r) = refusal {
            self.metrics
                .postback_rejections
                .with_label_values(&[PIXEL_NETWORK, r.reason])
                .inc();
            tracing::info!(
                reason = r.reason,
                journal_id = commit.journal_id,
                click_id = r.click_id.as_deref().unwrap_or(""),
                "pixel hit refused: {}",
                r.message
            );
            return PixelReply {
                status: r.status,
                body: json!({ "status": "rejected", "error": r.reason, "message": r.message, "journal_id": commit.journal_id }),
                outcome: "rejected",
            };
        }
        let Some(c) = candidate else {
            // A converted verdict always carries its candidate; answer as a store
            // failure rather than panic if that ever stops being true.
            return unavailable(self);
        };
        if commit.outcome == PostbackOutcome::Accepted {
            self.metrics
                .conversions
                .with_label_values(&[&c.campaign_id, &c.source_id, c.status, "pixel"])
                .inc();
            if let Some(p) = c.payout.filter(|p| *p > 0.0) {
                self.metrics
                    .revenue
                    .with_label_values(&[&c.campaign_id, &c.source_id])
                    .inc_by(p);
            }
        }
        tracing::info!(click_id = %c.click_id, event = %c.event, outcome = commit.outcome.as_str(), conversion_id = commit.conversion_id.unwrap_or_default(), "pixel conversion");
        PixelReply {
            status: 200,
            body: json!({
                "status": commit.outcome.as_str(),
                "conversion_id": commit.conversion_id,
                "event": c.event,
                // The key as stored (an offer with `multiple_conversions = false` keys
                // without the txid), so it matches what relays carry.
                "event_id": c.dedup_key,
            }),
            outcome: commit.outcome.as_str(),
        }
    }
}

fn unavailable(tracker: &Tracker) -> PixelReply {
    tracker
        .metrics
        .postbacks
        .with_label_values(&[PIXEL_NETWORK, "store_unavailable"])
        .inc();
    PixelReply {
        status: 503,
        body: json!({ "status": "error", "error": "store_unavailable", "message": "retry later" }),
        outcome: "store_unavailable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(query: &str, body: &str) -> PixelHit {
        PixelHit {
            raw_query: query.into(),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn the_page_origin_comes_from_origin_else_referer() {
        assert_eq!(
            page_origin(
                Some("https://shop.example"),
                Some("https://other.example/x")
            ),
            Some("https://shop.example".into())
        );
        assert_eq!(
            page_origin(None, Some("HTTPS://Shop.Example:8443/thanks?o=1#top")),
            Some("https://shop.example:8443".into())
        );
        assert_eq!(
            page_origin(None, Some("https://shop.example?x")),
            Some("https://shop.example".into())
        );
        assert_eq!(page_origin(Some("null"), None), Some("null".into()));
        assert_eq!(page_origin(None, Some("not a url")), None);
        assert_eq!(page_origin(Some(" "), None), None);
        assert_eq!(page_origin(None, None), None);
    }

    #[test]
    fn only_listed_origins_and_the_own_host_may_send() {
        let pixel = PixelConfig {
            grace_period: std::time::Duration::from_secs(1),
            rate_limit_per_minute: 10,
            allowed_origins: vec!["https://shop.example".into()],
        };
        let host = Some("trk.example:8080");
        assert!(origin_allowed(&pixel, "https://shop.example", host));
        assert!(origin_allowed(&pixel, "HTTPS://SHOP.EXAMPLE", host));
        assert!(origin_allowed(&pixel, "https://trk.example:8080", host));
        assert!(!origin_allowed(&pixel, "https://trk.example", host));
        assert!(!origin_allowed(&pixel, "https://evil.example", host));
        assert!(!origin_allowed(
            &pixel,
            "https://shop.example.evil.example",
            host
        ));
        assert!(!origin_allowed(&pixel, "null", host));
        assert!(!origin_allowed(&pixel, "https://evil.example", None));
        let any = PixelConfig {
            allowed_origins: vec!["*".into()],
            ..pixel
        };
        assert!(origin_allowed(&any, "https://evil.example", None));
        assert!(origin_allowed(&any, "null", None));
    }

    #[test]
    fn beacons_from_json_and_query() {
        let b = parse_beacon(&hit(
            "",
            r#"{"cid":"abc","event":"purchase","value":12.5,"currency":"usd","txid":"T"}"#,
        ))
        .unwrap();
        assert_eq!(
            (b.cid.as_deref(), b.value, b.currency.as_deref()),
            (Some("abc"), Some(12.5), Some("USD"))
        );
        let q = parse_beacon(&hit("cid=abc&event=lead", "")).unwrap();
        assert_eq!(q.event.as_deref(), Some("lead"));
        assert_eq!(parse_beacon(&hit("event=lead", "")).unwrap().cid, None);
    }

    #[test]
    fn bad_beacons_are_refused() {
        for (q, b) in [
            ("", "{"),
            ("", "[1]"),
            ("cid=a&value=-1", ""),
            ("cid=a&currency=dollars", ""),
            ("cid=a&event=no%20spaces", ""),
        ] {
            assert_eq!(
                parse_beacon(&hit(q, b)).unwrap_err().reason,
                "malformed_beacon",
                "{q} {b}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any beacon — random bytes as a body or as a query — is read or refused
            /// as malformed or not UTF-8, never a panic; what is read keeps the bounds.
            #[test]
            fn any_beacon_is_read_within_bounds_or_refused(
                bytes in proptest::collection::vec(any::<u8>(), 0..200),
                as_body in any::<bool>(),
            ) {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let h = if as_body {
                    PixelHit { body: bytes.clone(), ..Default::default() }
                } else {
                    hit(&text, "")
                };
                match parse_beacon(&h) {
                    Ok(b) => {
                        prop_assert!(b.event.as_deref().is_none_or(valid_event));
                        prop_assert!(b.txid.as_ref().is_none_or(|t| t.len() <= 128));
                        prop_assert!(b.value.is_none_or(|v| v.is_finite() && (0.0..=1_000_000.0).contains(&v)));
                        prop_assert!(b.currency.as_ref().is_none_or(|c| c.len() == 3));
                    }
                    Err(r) => {
                        prop_assert!(["malformed_beacon", "invalid_utf8"].contains(&r.reason), "{}", r.reason);
                        prop_assert_eq!(r.status, 400);
                    }
                }
            }

            /// A well-formed beacon's fields come back as sent, as JSON or as a query.
            #[test]
            fn a_beacons_fields_round_trip(
                txid in "[A-Za-z0-9-]{1,40}",
                event in "[a-z_]{1,20}",
                cents in 0u32..100_000_000,
            ) {
                let value = f64::from(cents) / 100.0;
                let json = serde_json::json!({"event": event, "txid": txid, "value": value}).to_string();
                let query = format!("event={event}&txid={txid}&value={value}");
                for h in [hit("", &json), hit(&query, "")] {
                    let b = parse_beacon(&h).unwrap();
                    prop_assert_eq!(b.txid.as_deref(), Some(txid.as_str()));
                    prop_assert_eq!(b.event.as_deref(), Some(event.as_str()));
                    prop_assert_eq!(b.value, Some(value));
                }
            }
        }
    }
}
