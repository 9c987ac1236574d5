//! The `Network` extension point: an affiliate network that sends postbacks to us.
//!
//! Every built-in is a [`NetworkSpec`] (one module each below) run by [`SpecNetwork`];
//! a network described in the config is the same thing built from config values
//! ([`CustomNetwork`]), so built-ins and config-defined networks behave identically.

mod affise;
mod awin;
mod cake;
mod clickbank;
mod everflow;
mod hasoffers;
mod impact;
mod monetizer;
mod scaleo;
mod shareasale;
pub(crate) mod spec;

pub use spec::{CustomNetwork, CustomNetworkSpec, FieldSpec, NetworkSpec, SpecError, SpecNetwork};

use crate::postback::{
    check_amount_sign, parse_amount, ConversionStatus, ParsedPostback, PostbackError,
    PostbackRequest, MAX_FIELD_LEN,
};
use crate::query::{encode_query_value, set_query_param};
use crate::template::{find_unreplaced_macro, TokenStyle};
use crate::verify::Verification;
use std::fmt;

/// Why an offer URL could not be stamped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The offer URL is not an absolute http(s) URL.
    #[error("offer URL {0:?} is not an absolute http(s) URL")]
    NotHttpUrl(String),
    /// The offer URL's click-ID token cannot take the value where it sits (in the host).
    #[error("offer URL: {0}")]
    UnsafeUrl(#[from] crate::template::UrlTemplateError),
}

/// Which conversion field a postback parameter carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostbackField {
    /// Our click ID, echoed back.
    ClickId,
    /// Payout amount.
    Payout,
    /// ISO 4217 currency.
    Currency,
    /// The network's transaction ID.
    TxId,
    /// Conversion status.
    Status,
    /// Event or goal name.
    Event,
    /// An echoed sub ID, by 0-based position.
    SubId(usize),
}

impl PostbackField {
    /// Stable lower-case name (`click_id`, `payout`, ..., `sub1`).
    pub fn name(self) -> String {
        match self {
            PostbackField::ClickId => "click_id".into(),
            PostbackField::Payout => "payout".into(),
            PostbackField::Currency => "currency".into(),
            PostbackField::TxId => "txid".into(),
            PostbackField::Status => "status".into(),
            PostbackField::Event => "event".into(),
            PostbackField::SubId(i) => format!("sub{}", i + 1),
        }
    }
}

/// One parameter of our postback URL: the parameter we read, and the network macro
/// that fills it, in the network's own syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostbackMacro {
    /// What the parameter carries.
    pub field: PostbackField,
    /// Our parameter name (`cid`).
    pub param: String,
    /// The network's macro name, without delimiters (`s2`).
    pub macro_name: String,
    /// The macro as the network writes it (`#s2#`).
    pub macro_text: String,
}

/// An affiliate network (CAKE, TUNE, Everflow, ... or one described in the config).
///
/// Implementations are pure: no I/O, no clock, no randomness. They are shared across
/// request threads, hence `Send + Sync`.
pub trait Network: Send + Sync + fmt::Debug {
    /// The plugin kind (`"cake"`, `"hasoffers"`, ... or `"custom"`). Stable: it names the
    /// plugin in configs and logs.
    fn kind(&self) -> &str;

    /// The offer-link query parameter that carries our click ID (CAKE `s2`,
    /// HasOffers `aff_sub`, Everflow `sub1`, ...).
    fn click_id_param(&self) -> &str;

    /// Return `offer_url` with `click_id` stamped where this network reads it.
    ///
    /// Guarantees: only the click-ID parameter changes (replaced if present, appended
    /// otherwise, always before any `#fragment`); every other byte of the URL is kept;
    /// the value is percent-encoded exactly once.
    fn stamp_offer_url(&self, offer_url: &str, click_id: &str) -> Result<String, StampError> {
        if !is_absolute_http_url(offer_url) {
            return Err(StampError::NotHttpUrl(offer_url.to_string()));
        }
        Ok(set_query_param(offer_url, self.click_id_param(), click_id))
    }

    /// The delimiter style of this network's postback macros.
    fn macro_style(&self) -> TokenStyle {
        TokenStyle::Brace
    }

    /// The parameters of our postback URL with the network's macros, click ID first.
    ///
    /// Guarantees: exactly one [`PostbackField::ClickId`] entry; parameter names are
    /// distinct. The default reads `cid` from the macro named like the offer parameter.
    fn postback_macros(&self) -> Vec<PostbackMacro> {
        vec![PostbackMacro {
            field: PostbackField::ClickId,
            param: "cid".into(),
            macro_name: self.click_id_param().into(),
            macro_text: self.macro_style().wrap(self.click_id_param()),
        }]
    }

    /// Extra parameter names accepted for the click ID when the configured one is
    /// absent (operators often mix up `cid`, `clickid` and `click_id`).
    fn click_id_aliases(&self) -> &[String] {
        &[]
    }

    /// Network-specific status codes, checked (ASCII case-insensitively) before the
    /// lenient word list of [`ConversionStatus::parse_lenient`].
    fn status_map(&self) -> &[(String, ConversionStatus)] {
        &[]
    }

    /// The URL an operator pastes into the network's dashboard:
    /// `{base}/postback/{network_id}?cid=#s2#&payout=#price#...` — our parameter
    /// names with the network's macros, written raw so the network can find them.
    ///
    /// `base` is our public origin (`https://trk.example`, any trailing `/` ignored);
    /// `network_id` is the configured id, percent-encoded as a path segment.
    fn postback_url(&self, base: &str, network_id: &str) -> String {
        let mut url = format!(
            "{}/postback/{}",
            base.trim_end_matches('/'),
            encode_query_value(network_id)
        );
        for (i, m) in self.postback_macros().iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode_query_value(&m.param));
            url.push('=');
            url.push_str(&m.macro_text);
        }
        url
    }

    /// Read a postback. Does not verify it: see [`Network::accept_postback`].
    ///
    /// Guarantees: never panics; every value returned was present, trimmed, at most
    /// [`MAX_FIELD_LEN`] bytes and holds no unsubstituted macro; an empty optional
    /// value reads as `None`.
    fn parse_postback(&self, req: &PostbackRequest<'_>) -> Result<ParsedPostback, PostbackError> {
        parse_postback_fields(
            &self.postback_macros(),
            self.click_id_param(),
            self.click_id_aliases(),
            self.status_map(),
            req,
        )
    }

    /// Verify then parse: the one call the postback route makes. `now_ms` is the
    /// current Unix time in milliseconds (passed in; nothing here reads a clock).
    fn accept_postback(
        &self,
        req: &PostbackRequest<'_>,
        verification: &Verification,
        now_ms: u64,
    ) -> Result<ParsedPostback, PostbackError> {
        verification.verify(req, now_ms)?;
        self.parse_postback(req)
    }
}

/// [`Network::postback_url`] plus the shared secret parameter, when `verification`
/// has one: the exact URL to paste.
pub fn postback_url_with_secret(
    network: &dyn Network,
    base: &str,
    network_id: &str,
    verification: &Verification,
) -> String {
    let mut url = network.postback_url(base, network_id);
    if let Some((param, secret)) = &verification.secret {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&encode_query_value(param));
        url.push('=');
        url.push_str(&encode_query_value(secret));
    }
    url
}

/// The shared field reader behind [`Network::parse_postback`].
pub fn parse_postback_fields(
    macros: &[PostbackMacro],
    offer_param: &str,
    click_id_aliases: &[String],
    status_map: &[(String, ConversionStatus)],
    req: &PostbackRequest<'_>,
) -> Result<ParsedPostback, PostbackError> {
    let mut out = ParsedPostback::default();
    let mut saw_click_field = false;
    for m in macros {
        let mut raw = req.param(&m.param);
        if m.field == PostbackField::ClickId {
            saw_click_field = true;
            if raw.is_none_or(|v| v.trim().is_empty()) {
                raw = click_id_aliases
                    .iter()
                    .find_map(|a| req.param(a).filter(|v| !v.trim().is_empty()))
                    .or(raw);
            }
        }
        let value = match raw {
            Some(v) => checked_value(m, offer_param, v)?,
            None => None,
        };
        match m.field {
            PostbackField::ClickId => {
                out.click_id = value.ok_or_else(|| PostbackError::MissingClickId {
                    param: m.param.clone(),
                })?;
            }
            PostbackField::Payout => {
                out.payout = match value {
                    None => None,
                    Some(v) => parse_amount(&v).map_err(|why| PostbackError::BadPayout {
                        param: m.param.clone(),
                        value: v.clone(),
                        why,
                    })?,
                }
            }
            PostbackField::Currency => {
                out.currency = match value {
                    None => None,
                    Some(v) if v.len() == 3 && v.bytes().all(|b| b.is_ascii_alphabetic()) => {
                        Some(v.to_ascii_uppercase())
                    }
                    Some(v) => {
                        return Err(PostbackError::BadCurrency {
                            param: m.param.clone(),
                            value: v,
                        })
                    }
                }
            }
            PostbackField::TxId => out.txid = value,
            PostbackField::Event => out.event = value,
            PostbackField::Status => {
                out.status = match value {
                    None => None,
                    Some(v) => Some(parse_status(&v, status_map).ok_or_else(|| {
                        PostbackError::BadStatus {
                            param: m.param.clone(),
                            value: v.clone(),
                        }
                    })?),
                }
            }
            PostbackField::SubId(i) => {
                if out.sub_ids.len() <= i {
                    out.sub_ids.resize(i + 1, None);
                }
                out.sub_ids[i] = value;
            }
        }
    }
    if !saw_click_field {
        return Err(PostbackError::MissingClickId {
            param: "cid".into(),
        });
    }
    // The sign rule needs the status, which may come after the payout in the URL.
    if let Some(payout) = out.payout {
        check_amount_sign(payout, out.status).map_err(|why| {
            let m = macros.iter().find(|m| m.field == PostbackField::Payout);
            PostbackError::BadPayout {
                param: m.map_or_else(|| "payout".into(), |m| m.param.clone()),
                value: req
                    .param(m.map_or("payout", |m| m.param.as_str()))
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
                why,
            }
        })?;
    }
    Ok(out)
}

/// Trim, bound and macro-check one value; empty reads as `None`.
fn checked_value(
    m: &PostbackMacro,
    offer_param: &str,
    raw: &str,
) -> Result<Option<String>, PostbackError> {
    let v = raw.trim();
    if v.len() > MAX_FIELD_LEN {
        return Err(PostbackError::ValueTooLong {
            param: m.param.clone(),
            max: MAX_FIELD_LEN,
        });
    }
    if let Some(macro_text) = find_unreplaced_macro(v) {
        let fix = if m.field == PostbackField::ClickId {
            format!(
                "check the offer link carries {offer_param}= (clickstamp stamps it there) and the postback URL sends {}={}",
                m.param, m.macro_text
            )
        } else {
            format!(
                "the network has no value for it: use a macro from the network's docs for {}, or remove {}= from the postback URL",
                m.field.name(),
                m.param
            )
        };
        return Err(PostbackError::UnreplacedMacro {
            param: m.param.clone(),
            macro_text,
            fix,
        });
    }
    Ok((!v.is_empty()).then(|| v.to_string()))
}

fn parse_status(v: &str, map: &[(String, ConversionStatus)]) -> Option<ConversionStatus> {
    map.iter()
        .find(|(code, _)| code.trim().eq_ignore_ascii_case(v))
        .map(|(_, s)| *s)
        .or_else(|| ConversionStatus::parse_lenient(v))
}

/// True for `http://host...` and `https://host...` with a non-empty host.
pub fn is_absolute_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..host_end];
    !host.is_empty() && !host.contains(['\\', ' ', '@'])
}

/// A network that takes our click ID in one named query parameter and sends it back
/// as `cid={param}`: the smallest useful network. A thin wrapper over [`SpecNetwork`].
#[derive(Debug, Clone)]
pub struct ParamNetwork(SpecNetwork);

impl ParamNetwork {
    /// A network of `kind` reading our click ID from `click_id_param`, with `{x}` macros.
    pub fn new(kind: impl Into<String>, click_id_param: impl Into<String>) -> Self {
        let param = click_id_param.into();
        ParamNetwork(SpecNetwork::from_trusted(NetworkSpec::new(
            kind,
            param,
            TokenStyle::Brace,
        )))
    }
}

impl Network for ParamNetwork {
    fn kind(&self) -> &str {
        self.0.kind()
    }
    fn click_id_param(&self) -> &str {
        self.0.click_id_param()
    }
    fn stamp_offer_url(&self, offer_url: &str, click_id: &str) -> Result<String, StampError> {
        self.0.stamp_offer_url(offer_url, click_id)
    }
    fn macro_style(&self) -> TokenStyle {
        self.0.macro_style()
    }
    fn postback_macros(&self) -> Vec<PostbackMacro> {
        self.0.postback_macros()
    }
    fn click_id_aliases(&self) -> &[String] {
        self.0.click_id_aliases()
    }
}

/// Built-in network kinds and the offer-link parameter each reads our click ID from
/// (see `shared/reference/networks.md`).
pub const BUILTIN_NETWORKS: &[(&str, &str)] = &[
    ("cake", "s2"),
    ("hasoffers", "aff_sub"),
    ("everflow", "sub1"),
    ("affise", "sub1"),
    ("scaleo", "click_id"),
    ("impact", "subId1"),
    ("clickbank", "tid"),
    ("shareasale", "afftrack"),
    ("awin", "clickref"),
    ("monetizer", "clickID"),
];

/// The built-in network kinds, in [`BUILTIN_NETWORKS`] order.
pub fn builtin_network_kinds() -> impl Iterator<Item = &'static str> {
    BUILTIN_NETWORKS.iter().map(|(k, _)| *k)
}

/// The spec of built-in network `kind` (`"tune"` is accepted for `"hasoffers"`): start
/// from it to override defaults from the config, then build with [`SpecNetwork::new`].
pub fn builtin_network_spec(kind: &str) -> Option<NetworkSpec> {
    Some(match kind {
        "cake" => cake::spec(),
        "hasoffers" | "tune" => hasoffers::spec(),
        "everflow" => everflow::spec(),
        "affise" => affise::spec(),
        "scaleo" => scaleo::spec(),
        "impact" => impact::spec(),
        "clickbank" => clickbank::spec(),
        "shareasale" => shareasale::spec(),
        "awin" => awin::spec(),
        "monetizer" => monetizer::spec(),
        _ => return None,
    })
}

/// The built-in network of `kind`, if there is one.
pub fn builtin_network(kind: &str) -> Option<Box<dyn Network>> {
    builtin_network_spec(kind).map(|s| Box::new(SpecNetwork::from_trusted(s)) as Box<dyn Network>)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postback::BadAmount;
    use crate::query::parse_query;

    #[test]
    fn cake_stamps_s2_and_keeps_the_rest() {
        let cake = builtin_network("cake").unwrap();
        assert_eq!(
            cake.stamp_offer_url("https://network.example/offer?a=1#x", "c1d")
                .unwrap(),
            "https://network.example/offer?a=1&s2=c1d#x"
        );
    }

    #[test]
    fn non_http_offer_urls_are_refused() {
        let cake = builtin_network("cake").unwrap();
        for bad in [
            "javascript:alert(1)",
            "//evil.example/",
            "ftp://x/",
            "https://",
            "http:///x",
            "https://a\\b",
        ] {
            assert!(cake.stamp_offer_url(bad, "c").is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_kind_is_none() {
        assert!(builtin_network("nope").is_none());
    }

    #[test]
    fn every_builtin_spec_is_valid_and_matches_the_table() {
        for (kind, param) in BUILTIN_NETWORKS {
            let spec = builtin_network_spec(kind).unwrap();
            assert_eq!(spec.click_id_param, *param, "{kind}");
            SpecNetwork::new(spec).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }

    #[test]
    fn cake_postback_url_and_unreplaced_macro() {
        let cake = builtin_network("cake").unwrap();
        let url = cake.postback_url("https://trk.example/", "cake");
        assert_eq!(
            url,
            "https://trk.example/postback/cake?cid=#s2#&payout=#price#&txid=#tid#"
        );
        let q = "cid=%23s2%23&payout=1";
        let pairs = parse_query(q);
        let err = cake
            .parse_postback(&PostbackRequest::get(q, &pairs))
            .unwrap_err();
        assert_eq!(err.reason(), "unreplaced_macro");
        let msg = err.to_string();
        assert!(msg.contains("#s2#") && msg.contains("s2="), "{msg}");
    }

    #[test]
    fn payouts_are_bounded_and_only_reversals_are_negative() {
        let n = SpecNetwork::from_trusted(
            NetworkSpec::new("x", "s2", TokenStyle::Hash)
                .payout("price")
                .status("status"),
        );
        let parse = |q: &str| {
            let pairs = parse_query(q);
            n.parse_postback(&PostbackRequest::get(q, &pairs))
        };
        for (q, why) in [
            ("payout=1e308&cid=c", BadAmount::TooLarge),
            ("payout=1e23&cid=c", BadAmount::TooLarge),
            ("payout=NaN&cid=c", BadAmount::NotANumber),
            ("payout=inf&cid=c", BadAmount::NotANumber),
            ("payout=1,500&cid=c", BadAmount::AmbiguousComma),
            ("payout=-1000&cid=c", BadAmount::Negative),
            ("payout=-1000&status=approved&cid=c", BadAmount::Negative),
        ] {
            match parse(q) {
                Err(PostbackError::BadPayout { why: got, .. }) => assert_eq!(got, why, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        let e = parse("payout=1e23&cid=c").unwrap_err();
        assert!(e.to_string().contains("1000000"), "{e}");
        // A reversal may carry a negative amount, whichever order the fields come in.
        let p = parse("payout=-2.5&cid=c&status=chargeback").unwrap();
        assert_eq!(p.payout, Some(-2.5));
        assert_eq!(
            parse("status=rejected&payout=-1&cid=c").unwrap().payout,
            Some(-1.0)
        );
        assert_eq!(parse("payout=1000000&cid=c").unwrap().payout, Some(1e6));
    }

    /// A network that keeps every default of the trait.
    #[derive(Debug)]
    struct Minimal;

    impl Network for Minimal {
        fn kind(&self) -> &str {
            "minimal"
        }
        fn click_id_param(&self) -> &str {
            "clickref"
        }
    }

    #[test]
    fn the_trait_defaults_stamp_the_offer_parameter_and_read_cid() {
        let n = Minimal;
        assert_eq!(
            n.stamp_offer_url("https://o.example/x?a=1#top", "CID1")
                .unwrap(),
            "https://o.example/x?a=1&clickref=CID1#top"
        );
        assert!(n.stamp_offer_url("javascript:alert(1)", "CID1").is_err());
        assert_eq!(
            n.postback_macros(),
            [PostbackMacro {
                field: PostbackField::ClickId,
                param: "cid".into(),
                macro_name: "clickref".into(),
                macro_text: "{clickref}".into(),
            }]
        );
        assert!(n.click_id_aliases().is_empty());
        assert!(n.status_map().is_empty());
    }

    #[test]
    fn a_param_network_is_its_kind_and_stamps_its_own_parameter() {
        let n = ParamNetwork::new("custom", "sub9");
        assert_eq!((n.kind(), n.click_id_param()), ("custom", "sub9"));
        assert_eq!(
            n.stamp_offer_url("https://o.example/?sub9=old", "NEW")
                .unwrap(),
            "https://o.example/?sub9=NEW"
        );
    }

    #[test]
    fn sub_ids_land_in_their_slot_values_are_bounded_and_a_bad_payout_names_its_parameter() {
        let field = |field, param: &str| PostbackMacro {
            field,
            param: param.into(),
            macro_name: param.into(),
            macro_text: format!("{{{param}}}"),
        };
        let macros = [
            field(PostbackField::ClickId, "cid"),
            field(PostbackField::Payout, "amount"),
            field(PostbackField::SubId(2), "s3"),
        ];
        let parse = |q: &str| {
            let pairs = parse_query(q);
            parse_postback_fields(
                &macros,
                "clickref",
                &[],
                &[],
                &PostbackRequest::get(q, &pairs),
            )
        };
        let parsed = parse("cid=abc&s3=zone7").unwrap();
        assert_eq!(parsed.sub_ids, [None, None, Some("zone7".to_string())]);
        // A value of exactly the limit is kept; one byte more is refused.
        let at_limit = "a".repeat(MAX_FIELD_LEN);
        assert_eq!(
            parse(&format!("cid=abc&s3={at_limit}")).unwrap().sub_ids[2].as_deref(),
            Some(at_limit.as_str())
        );
        assert_eq!(
            parse(&format!("cid=abc&s3={at_limit}a"))
                .unwrap_err()
                .reason(),
            "value_too_long"
        );
        // A negative payout without a reversal status: the error names the payout's
        // own parameter, not the click ID's.
        match parse("cid=abc&amount=-5") {
            Err(PostbackError::BadPayout { param, .. }) => assert_eq!(param, "amount"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn param_network_reads_cid_and_aliases() {
        let n = ParamNetwork::new("x", "sub");
        let q = "clickid=abc";
        let pairs = parse_query(q);
        assert_eq!(
            n.parse_postback(&PostbackRequest::get(q, &pairs))
                .unwrap()
                .click_id,
            "abc"
        );
        let pairs = parse_query("payout=1");
        assert_eq!(
            n.parse_postback(&PostbackRequest::get("", &pairs))
                .unwrap_err()
                .reason(),
            "missing_click_id"
        );
    }
}
