//! Inbound postbacks: `GET|POST /postback/{network}`.
//!
//! The path of a postback, in order: [`body`] decodes it, the network's plugin verifies
//! and parses it, [`Pinned::attribute`] finds its click and campaign, and the store
//! journals it and applies dedup and status rules in one transaction. Only then is the
//! network answered. Every request is journalled, refused ones included (secrets
//! redacted; an unauthenticated request only in part, and beyond a per-IP rate not at
//! all: see [`journal`]); see `store/LIFECYCLE.md`.

pub mod body;
pub mod journal;

use crate::config::Config;
use crate::store::{
    ConversionCandidate, JournalEntry, PostbackCommit, PostbackOutcome, PostbackWrite, StoredClick,
    Verdict, WriteOp, WriteResult,
};
use crate::tracker::{Pinned, Tracker};
use clickstamp_plugins::query::{parse_query_strict, InvalidUtf8};
use clickstamp_plugins::{
    dedup_key, normalize_event, ClickIdError, ParsedPostback, PostbackError, PostbackRequest,
    RelayConversion,
};
use serde_json::json;
use std::net::IpAddr;

/// A postback as received, independent of the HTTP framework. Also rebuilt from the
/// journal to replay one.
#[derive(Debug, Clone, Default)]
pub struct RawPostback {
    pub method: String,
    /// The query string without `?`.
    pub raw_query: String,
    /// The body, cut at `postbacks.max_body_bytes`.
    pub body: Vec<u8>,
    /// The body was longer than the limit (and `body` holds only its start).
    pub body_truncated: bool,
    /// Bytes of body read from the client (more than `body.len()` when truncated;
    /// 0 means "as many as `body` holds").
    pub body_seen: u64,
    pub content_type: Option<String>,
    pub remote_ip: Option<IpAddr>,
    pub headers: Vec<(String, String)>,
    /// When it arrived (Unix ms). A replay keeps the original time, so signatures,
    /// timestamps and attribution windows are judged as of arrival.
    pub received_ms: u64,
}

impl RawPostback {
    /// Bytes of body received: at least `body.len()`, more when it was cut at the
    /// limit.
    pub fn body_len(&self) -> u64 {
        self.body_seen
            .max(self.body.len() as u64 + u64::from(self.body_truncated))
    }
}

/// Where a postback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Straight from the network.
    Live,
    /// Replayed from journal row `.0` by an operator.
    Replay(i64),
}

/// The answer to a postback.
#[derive(Debug, Clone)]
pub struct PostbackReply {
    pub status: u16,
    pub body: serde_json::Value,
    /// Stable outcome label (`accepted`, `duplicate`, `status_changed`, `rejected`,
    /// `rate_limited`, `store_unavailable`).
    pub outcome: &'static str,
    /// Extra response headers (`Allow` on a 405, `Retry-After` on a 429).
    pub headers: Vec<(&'static str, String)>,
}

/// Methods `/postback/{network}` answers; anything else is refused with 405.
pub const ALLOWED_METHODS: &str = "GET, POST";

/// A decision and whether the request authenticated as its network (verification
/// passed). Unauthenticated requests journal only a bounded prefix.
struct Decision {
    result: Result<ConversionCandidate, Refusal>,
    authenticated: bool,
}

impl Decision {
    fn unauthenticated(r: Refusal) -> Self {
        Decision {
            result: Err(r),
            authenticated: false,
        }
    }
}

/// A refusal before the store: reason label, HTTP status, message.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: &'static str,
    pub status: u16,
    pub message: String,
    pub click_id: Option<String>,
}

impl Refusal {
    fn new(reason: &'static str, status: u16, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            status,
            message: message.into(),
            click_id: None,
        }
    }

    fn from_postback_error(e: &PostbackError) -> Self {
        let status = match e {
            PostbackError::UnauthorizedSecret { .. }
            | PostbackError::MissingSignature { .. }
            | PostbackError::BadSignature
            | PostbackError::MissingTimestamp { .. }
            | PostbackError::StaleTimestamp { .. } => 401,
            PostbackError::IpNotAllowed { .. } => 403,
            _ => 400,
        };
        Refusal::new(e.reason(), status, e.to_string())
    }

    fn from_invalid_utf8(e: &InvalidUtf8) -> Self {
        Refusal::new("invalid_utf8", 400, e.to_string())
    }

    fn from_click_id_error(e: ClickIdError, click_id: &str) -> Self {
        let status = if e == ClickIdError::Expired { 410 } else { 400 };
        Refusal {
            reason: e.reason(),
            status,
            message: e.to_string(),
            click_id: Some(click_id.chars().take(64).collect()),
        }
    }
}

/// The network label for metrics: a configured id, or `unknown`.
fn network_label(config: &Config, network: Option<usize>) -> &str {
    network.map_or("unknown", |n| config.networks[n].id.as_str())
}

impl Tracker {
    /// Handle one postback for the network whose id is `network_segment` (the path
    /// segment as sent), under the live config.
    pub async fn ingest_postback(
        &self,
        network_segment: &str,
        raw: RawPostback,
        arrival: Arrival,
    ) -> PostbackReply {
        self.pin()
            .ingest_postback(network_segment, raw, arrival)
            .await
    }
}

impl Pinned<'_> {
    /// Handle one postback for the network whose id is `network_segment` (the path
    /// segment as sent), under this request's config.
    pub async fn ingest_postback(
        &self,
        network_segment: &str,
        raw: RawPostback,
        arrival: Arrival,
    ) -> PostbackReply {
        let network = self
            .config
            .networks
            .iter()
            .position(|n| n.id == network_segment);
        let mut raw = raw;
        if let (Arrival::Replay(_), Some(n)) = (arrival, network) {
            self.restore_redacted_secret(n, &mut raw);
        }
        let network_id: String = network_segment.chars().take(64).collect();
        let label = network_label(&self.config, network).to_string();
        let decision = if !matches!(raw.method.as_str(), "GET" | "POST") {
            Decision::unauthenticated(Refusal::new(
                "method_not_allowed",
                405,
                format!(
                    "method {} is not accepted: send the postback as {ALLOWED_METHODS}",
                    raw.method.chars().take(16).collect::<String>()
                ),
            ))
        } else {
            match network {
                None => Decision::unauthenticated(Refusal::new(
                    "unknown_network",
                    404,
                    format!(
                        "no network is configured with id {network_id:?}: check the postback URL's path"
                    ),
                )),
                Some(n) => self.decide(n, &raw).await,
            }
        };
        if !decision.authenticated && arrival == Arrival::Live {
            let client = raw
                .remote_ip
                .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
            if !self.journal_limiter.allow(&client, raw.received_ms) {
                return self.journal_rate_limited(&label, &decision);
            }
        }
        let (raw_query, mut raw_body) = journal::redact_secrets(
            &self.config.secrets.click_id_key,
            &self.secret_params(),
            &raw.raw_query,
            raw.content_type.as_deref(),
            &raw.body,
        );
        let mut raw_query = raw_query;
        let cut = if decision.authenticated {
            None
        } else {
            journal::cut(&mut raw_query, &mut raw_body, raw.body_len()).map(
                |(record, query_out, body_out)| {
                    let m = &self.metrics.journal_bytes_cut;
                    m.with_label_values(&["query"]).inc_by(query_out as u64);
                    m.with_label_values(&["body"]).inc_by(body_out as u64);
                    record
                },
            )
        };
        let journal = JournalEntry {
            ts_ms: raw.received_ms,
            network_id,
            method: raw.method.chars().take(16).collect(),
            remote_ip: raw.remote_ip.map(|ip| ip.to_string()),
            raw_query,
            raw_body,
            content_type: raw.content_type.clone(),
            origin: match arrival {
                Arrival::Live => "s2s",
                Arrival::Replay(_) => "replay",
            },
            replay_of: match arrival {
                Arrival::Live => None,
                Arrival::Replay(id) => Some(id),
            },
            cut,
        };
        let (verdict, refusal) = match decision.result {
            Ok(candidate) => (Verdict::Convert(Box::new(candidate)), None),
            Err(r) => (
                Verdict::Rejected {
                    reason: r.reason,
                    message: r.message.clone(),
                    click_id: r.click_id.clone(),
                },
                Some(r),
            ),
        };
        let candidate = match &verdict {
            Verdict::Convert(c) => Some((**c).clone()),
            Verdict::Rejected { .. } => None,
        };
        let write = WriteOp::Postback(Box::new(PostbackWrite { journal, verdict }));
        let commit = match self.store.write(vec![write]).await {
            Ok(mut results) => match results.pop() {
                Some(WriteResult::Postback(c)) => c,
                _ => {
                    return self.store_unavailable(&label, "the store returned no postback result")
                }
            },
            Err(e) => return self.store_unavailable(&label, &e.to_string()),
        };
        if commit.relayed {
            self.outbox_wake.notify_one();
        }
        self.metrics
            .postbacks
            .with_label_values(&[&label, commit.outcome.as_str()])
            .inc();
        match refusal {
            Some(r) => {
                self.metrics
                    .postback_rejections
                    .with_label_values(&[&label, r.reason])
                    .inc();
                tracing::info!(network = %label, reason = r.reason, journal_id = commit.journal_id, click_id = r.click_id.as_deref().unwrap_or(""), "postback refused: {}", r.message);
                let headers = if r.status == 405 {
                    vec![("Allow", ALLOWED_METHODS.to_string())]
                } else {
                    Vec::new()
                };
                PostbackReply {
                    status: r.status,
                    body: json!({ "status": "rejected", "error": r.reason, "message": r.message, "journal_id": commit.journal_id }),
                    outcome: "rejected",
                    headers,
                }
            }
            None => self.accepted_reply(&label, &commit, candidate.as_ref()),
        }
    }

    fn store_unavailable(&self, label: &str, error: &str) -> PostbackReply {
        tracing::error!(
            network = label,
            error,
            "postback not stored; the network will retry"
        );
        self.metrics
            .postbacks
            .with_label_values(&[label, "store_unavailable"])
            .inc();
        PostbackReply {
            status: 503,
            body: json!({ "status": "error", "error": "store_unavailable", "message": "the postback could not be stored; retry later" }),
            outcome: "store_unavailable",
            headers: Vec::new(),
        }
    }

    /// An unauthenticated request beyond its IP's journal rate: counted and logged,
    /// not journalled (that is what the limit protects), answered 429.
    fn journal_rate_limited(&self, label: &str, decision: &Decision) -> PostbackReply {
        let refused_for = decision.result.as_ref().err().map_or("", |r| r.reason);
        self.metrics
            .postbacks
            .with_label_values(&[label, "rate_limited"])
            .inc();
        self.metrics
            .postback_rejections
            .with_label_values(&[label, "journal_rate_limited"])
            .inc();
        tracing::warn!(
            network = label,
            refused_for,
            "unauthenticated postback over the per-IP journal rate: not journalled"
        );
        PostbackReply {
            status: 429,
            body: json!({
                "status": "rejected",
                "error": "journal_rate_limited",
                "message": format!(
                    "too many unauthenticated postbacks from this address (more than {} a minute): fix the postback URL's network or secret; this one was {refused_for}",
                    journal::UNAUTHENTICATED_JOURNAL_PER_MINUTE
                ),
            }),
            outcome: "rate_limited",
            headers: vec![("Retry-After", "60".to_string())],
        }
    }

    /// Every configured secret parameter name: redacted from every journal entry,
    /// whichever network (known or not) the request names.
    fn secret_params(&self) -> Vec<&str> {
        let mut params: Vec<&str> = self
            .config
            .networks
            .iter()
            .filter_map(|n| n.verification.secret.as_ref().map(|(p, _)| p.as_str()))
            .collect();
        params.sort_unstable();
        params.dedup();
        params
    }

    /// For a replay: restore network `n`'s secret where the journal holds its marker.
    fn restore_redacted_secret(&self, n: usize, raw: &mut RawPostback) {
        if let Some((param, secret)) = &self.config.networks[n].verification.secret {
            journal::restore_secret(
                &self.config.secrets.click_id_key,
                param,
                secret,
                &mut raw.raw_query,
                raw.content_type.as_deref(),
                &mut raw.body,
            );
        }
    }

    fn accepted_reply(
        &self,
        label: &str,
        commit: &PostbackCommit,
        candidate: Option<&ConversionCandidate>,
    ) -> PostbackReply {
        let Some(c) = candidate else {
            return self.store_unavailable(label, "accepted postback without a candidate");
        };
        match commit.outcome {
            // A conversion is counted once, when it is new; later status changes
            // (and S2S upgrading a pixel conversion) are counted apart.
            PostbackOutcome::Accepted => {
                let status = commit.status.as_deref().unwrap_or(c.status);
                self.metrics
                    .conversions
                    .with_label_values(&[&c.campaign_id, &c.source_id, status, c.origin])
                    .inc();
                if let Some(p) = c.payout.filter(|p| *p > 0.0) {
                    self.metrics
                        .revenue
                        .with_label_values(&[&c.campaign_id, &c.source_id])
                        .inc_by(p);
                }
            }
            PostbackOutcome::StatusChanged => {
                let status = commit.status.as_deref().unwrap_or(c.status);
                self.metrics
                    .status_changes
                    .with_label_values(&[&c.campaign_id, &c.source_id, status])
                    .inc();
            }
            _ => {}
        }
        tracing::info!(
            network = label,
            click_id = %c.click_id,
            event = %c.event,
            outcome = commit.outcome.as_str(),
            conversion_id = commit.conversion_id.unwrap_or_default(),
            journal_id = commit.journal_id,
            relayed = commit.relayed,
            "postback"
        );
        PostbackReply {
            status: 200,
            body: json!({
                "status": commit.outcome.as_str(),
                "conversion_id": commit.conversion_id,
                "conversion_status": commit.status,
                "click_id": c.click_id,
                "event": c.event,
                "relayed": commit.relayed,
                "journal_id": commit.journal_id,
            }),
            outcome: commit.outcome.as_str(),
            headers: Vec::new(),
        }
    }

    /// Verify, parse and attribute a postback for network `n`.
    ///
    /// Verification runs on the bytes as sent (the query is read raw; a body must be
    /// UTF-8 to be decoded at all), before anything is decoded to text. Only then are
    /// the query's values decoded, strictly: invalid UTF-8 is refused, never replaced,
    /// so two different values cannot become one.
    async fn decide(&self, n: usize, raw: &RawPostback) -> Decision {
        let max = self.config.postbacks.max_body_bytes;
        if raw.body_truncated {
            let e = body::BodyError::TooLarge { max };
            return Decision::unauthenticated(Refusal::new(e.reason(), e.status(), e.to_string()));
        }
        let body_pairs = match body::decode(raw.content_type.as_deref(), &raw.body) {
            Ok(pairs) => pairs,
            Err(e) => {
                return Decision::unauthenticated(Refusal::new(
                    e.reason(),
                    e.status(),
                    e.to_string(),
                ))
            }
        };
        let network = &self.config.networks[n];
        let mut req = PostbackRequest {
            method: &raw.method,
            // Verification reads the query from `raw_query`'s bytes, not from pairs.
            query: &[],
            body: &body_pairs,
            remote_ip: raw.remote_ip,
            headers: &raw.headers,
            raw_query: &raw.raw_query,
            raw_body: &raw.body,
        };
        if let Err(e) = network.verification.verify(&req, raw.received_ms) {
            return Decision::unauthenticated(Refusal::from_postback_error(&e));
        }
        let query = match parse_query_strict(raw.raw_query.as_bytes()) {
            Ok(q) => q,
            Err(e) => {
                return Decision {
                    result: Err(Refusal::from_invalid_utf8(&e)),
                    authenticated: true,
                }
            }
        };
        req.query = &query;
        let result = match network.plugin.parse_postback(&req) {
            Err(e) => Err(Refusal::from_postback_error(&e)),
            Ok(parsed) => self.attribute_to_network(n, &parsed, raw.received_ms).await,
        };
        Decision {
            result,
            authenticated: true,
        }
    }

    /// Attribute a parsed postback of network `n` and build its candidate, refusing a
    /// click that went to another network's offer (see [`Pinned::offer_for_network`]).
    async fn attribute_to_network(
        &self,
        n: usize,
        parsed: &ParsedPostback,
        received_ms: u64,
    ) -> Result<ConversionCandidate, Refusal> {
        let (click, campaign) = self.attribute(&parsed.click_id, received_ms).await?;
        let offer = self.offer_for_network(n, campaign, &click)?;
        Ok(self.candidate_with_offer(Some(n), campaign, &click, parsed, "s2s", received_ms, offer))
    }

    /// The offer a postback of network `n` converts for this click: the latest offer
    /// of that network the click went to through `/go`; without any `/go`, the
    /// campaign's only offer (none when it has several), provided the campaign has an
    /// offer of network `n`. When
    /// the click went only to other networks' offers (or, without a `/go`, the
    /// campaign has no offer of network `n`), the postback is refused with
    /// `network_mismatch` unless `postbacks.allow_cross_network` is set.
    pub fn offer_for_network(
        &self,
        n: usize,
        campaign: usize,
        click: &StoredClick,
    ) -> Result<Option<usize>, Refusal> {
        let config = &self.config;
        let of_network = |o: &usize| config.offers[*o].network == n;
        let sent_to: Vec<usize> = click
            .outbound_offer_ids
            .iter()
            .filter_map(|id| config.offer_index(id))
            .collect();
        // The offer any postback of the click gets: its latest `/go`, or the campaign's
        // only offer.
        let usual = || {
            click
                .last_offer_id
                .as_deref()
                .and_then(|o| config.offer_index(o))
                .or_else(|| {
                    let offers = &config.campaigns[campaign].offers;
                    (offers.len() == 1).then(|| offers[0].0)
                })
        };
        let found = if sent_to.is_empty() {
            // No `/go`: fine when the campaign has an offer of this network; which one
            // converted is known only when the campaign has a single offer.
            config.campaigns[campaign]
                .offers
                .iter()
                .any(|(o, _)| of_network(o))
                .then(usual)
        } else {
            // The latest offer of this network the click went to (usually its last).
            let last = click
                .last_offer_id
                .as_deref()
                .and_then(|o| config.offer_index(o));
            last.filter(of_network)
                .or_else(|| sent_to.iter().rev().copied().find(of_network))
                .map(Some)
        };
        match found {
            Some(offer) => Ok(offer),
            None if config.postbacks.allow_cross_network => Ok(usual()),
            None => {
                let went_to = if sent_to.is_empty() {
                    format!(
                        "campaign {:?} has no offer of network {:?}",
                        click.campaign_id, config.networks[n].id
                    )
                } else {
                    let networks: Vec<&str> = sent_to
                        .iter()
                        .map(|o| config.networks[config.offers[*o].network].id.as_str())
                        .collect();
                    format!(
                        "the click was sent to offers of network {:?}",
                        networks.join(", ")
                    )
                };
                Err(Refusal {
                    reason: "network_mismatch",
                    status: 409,
                    message: format!(
                        "postback through network {:?}, but {went_to}: check which network's postback URL carries this click id, or set postbacks.allow_cross_network = true",
                        config.networks[n].id
                    ),
                    click_id: Some(click.click_id.clone()),
                })
            }
        }
    }

    /// Find the click of a conversion and its campaign (an index into the config), and
    /// check it is inside the campaign's attribution window.
    pub async fn attribute(
        &self,
        click_id_text: &str,
        at_ms: u64,
    ) -> Result<(StoredClick, usize), Refusal> {
        let id = self
            .verify(click_id_text, at_ms)
            .map_err(|e| Refusal::from_click_id_error(e, click_id_text))?;
        let click = match self.store.click(&id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(Refusal {
                    reason: "unknown_click",
                    status: 404,
                    message: "the click id is genuine but no such click is stored (a postback before its click reached this store, or a different clickstamp instance); replay it from the journal once the click exists".into(),
                    click_id: Some(id.to_hex()),
                })
            }
            Err(e) => return Err(Refusal::new("store_unavailable", 503, e.to_string())),
        };
        let Some(campaign) = self.config.campaign_index(&click.campaign_id) else {
            return Err(Refusal {
                reason: "unknown_campaign",
                status: 404,
                message: format!(
                    "the click belongs to campaign {:?}, which is no longer configured",
                    click.campaign_id
                ),
                click_id: Some(id.to_hex()),
            });
        };
        let window = self.config.campaigns[campaign]
            .attribution_window
            .as_millis() as u64;
        if at_ms.saturating_sub(click.ts_ms) > window {
            return Err(Refusal {
                reason: "expired",
                status: 410,
                message: format!(
                    "the click is older than campaign {:?}'s attribution window",
                    click.campaign_id
                ),
                click_id: Some(id.to_hex()),
            });
        }
        Ok((click, campaign))
    }

    /// Build the conversion candidate: defaults from the offer, the relay rendered with
    /// the traffic source's template.
    pub fn candidate(
        &self,
        network: Option<usize>,
        campaign: usize,
        click: &StoredClick,
        parsed: &ParsedPostback,
        origin: &'static str,
        now_ms: u64,
    ) -> ConversionCandidate {
        let campaign_cfg = &self.config.campaigns[campaign];
        let offer = click
            .last_offer_id
            .as_deref()
            .and_then(|o| self.config.offer_index(o))
            .or_else(|| (campaign_cfg.offers.len() == 1).then(|| campaign_cfg.offers[0].0));
        self.candidate_with_offer(network, campaign, click, parsed, origin, now_ms, offer)
    }

    /// [`Pinned::candidate`] for a known offer (its defaults apply), or none.
    #[allow(clippy::too_many_arguments)]
    fn candidate_with_offer(
        &self,
        network: Option<usize>,
        campaign: usize,
        click: &StoredClick,
        parsed: &ParsedPostback,
        origin: &'static str,
        now_ms: u64,
        offer: Option<usize>,
    ) -> ConversionCandidate {
        let config = &self.config;
        let campaign_cfg = &config.campaigns[campaign];
        let source = &config.sources[campaign_cfg.source];
        let offer_cfg = offer.map(|o| &config.offers[o]);
        let event = parsed.event_or_default().to_string();
        let multiple = offer_cfg.is_none_or(|o| o.multiple_conversions);
        let key_txid = if multiple {
            parsed.txid.as_deref()
        } else {
            None
        };
        let key = dedup_key(&click.click_id, &event, key_txid);
        let status = parsed.status.unwrap_or_else(|| {
            network.map_or(clickstamp_plugins::ConversionStatus::Approved, |n| {
                config.networks[n].default_status
            })
        });
        let payout = parsed.payout.or(offer_cfg.and_then(|o| o.payout));
        let currency = parsed
            .currency
            .clone()
            .or_else(|| offer_cfg.and_then(|o| o.currency.clone()));
        let relay_url = source.plugin.postback_template().and_then(|template| {
            let mut conv = RelayConversion::new(click.click_id.clone(), event.clone(), key.clone());
            conv.source_click_id = click.source_click_id.clone();
            conv.source_click_id_param = click.source_click_param.clone();
            conv.click_time_ms = Some(click.ts_ms);
            conv.conversion_time_ms = Some(now_ms);
            conv.payout = payout;
            conv.currency = currency.clone();
            conv.txid = parsed.txid.clone();
            conv.status = status;
            conv.cost = click.cost;
            conv.sub_ids = click.sub_ids.to_vec();
            match source.plugin.render_postback(template, &conv) {
                Ok(url) => Some(url),
                Err(e) => {
                    self.metrics.relay_render_failures.with_label_values(&[&source.id, e.reason()]).inc();
                    tracing::warn!(source = %source.id, click_id = %click.click_id, error = %e, "relay not rendered; the conversion is kept");
                    None
                }
            }
        });
        ConversionCandidate {
            dedup_key: key,
            click_id: click.click_id.clone(),
            campaign_id: click.campaign_id.clone(),
            source_id: source.id.clone(),
            network_id: network.map(|n| config.networks[n].id.clone()),
            offer_id: offer_cfg.map(|o| o.id.clone()),
            // Stored as the dedup key sees it, so "Sale" and "sale" find one conversion;
            // the relay above keeps the network's spelling.
            event: normalize_event(&event),
            txid: parsed.txid.clone(),
            payout,
            currency,
            status: status.as_str(),
            origin,
            // An excluded click's conversion is recorded, never relayed (nor sent to a
            // destination below): see `traffic::withhold_relay`.
            relay_url: self.withhold_relay(click, &source.id, relay_url),
            relay_status_changes: source.plugin.relays_status_changes(),
            relay_not_before_ms: None,
            destinations: config
                .destinations
                .iter()
                .filter(|d| d.source == source.id && click.profile.excluded.is_none())
                .map(|d| crate::store::DestinationTarget {
                    id: d.id.clone(),
                    status_changes: d.takes_status_changes(),
                })
                .collect(),
        }
    }
}
