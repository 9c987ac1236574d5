//! Hostile input against every parser and renderer in `clickstamp-plugins` that sees
//! request bytes: URL templates filled with adversarial values (source relays, offer
//! links), postback queries, click IDs, landing parameters, shared secrets and the
//! dedup key. Each property says what must hold, not only that nothing panics: a relay
//! URL keeps its template's scheme, host, port and path; a value round-trips through
//! its component; a refusal carries a known reason, and exactly the inputs that must be
//! refused are.
//!
//! Case counts follow proptest's default (256 per property, as CI runs them). A long
//! run: `PROPTEST_CASES=100000 cargo test -p clickstamp-plugins --test hostile`.

use clickstamp_plugins::dedup::{dedup_key, normalize_event};
use clickstamp_plugins::network::{
    builtin_network, builtin_network_kinds, Network, NetworkSpec, SpecNetwork, StampError,
};
use clickstamp_plugins::postback::{
    PostbackRequest, MAX_AMOUNT, MAX_FIELD_LEN, POSTBACK_ERROR_REASONS,
};
use clickstamp_plugins::query::{
    encode_query_bytes, encode_query_value, first_value, parse_query, parse_query_bytes,
    parse_query_strict,
};
use clickstamp_plugins::source::{
    builtin_source, builtin_source_kinds, builtin_source_spec, RelayConversion, SourceSpec,
    SpecSource, TrafficSource,
};
use clickstamp_plugins::template::{
    find_unreplaced_macro, Template, TokenStyle, UrlTemplateError, ALL_STYLES,
};
use clickstamp_plugins::verify::Verification;
use clickstamp_plugins::ClickIdCodec;
use percent_encoding::percent_decode_str;
use proptest::prelude::*;
use url::Url;

/// Values chosen to steer a URL, confuse a parser or collide in a comparison.
const ADVERSARIAL: &[&str] = &[
    "..",
    ".",
    "",
    "...",
    "a/b",
    "/",
    "//evil.example",
    "../../admin",
    "..\\..",
    "a\\b",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2f",
    "%252e",
    "%",
    "%zz",
    "?x=1",
    "#frag",
    "&cid=forged",
    "a=b",
    "+",
    " ",
    " lead and trail ",
    "@evil.example",
    ":8080",
    "http://evil.example/",
    ";jsessionid=1",
    "\r\nX-Injected: 1",
    "\0",
    "é漢\u{202e}",
    "\u{fffd}\u{fffd}",
    "{clickid}",
    "#s2#",
    "${SUBID}",
];

/// Adversarial values, dot-segment spellings, delimiter soup, arbitrary Unicode, plain
/// ids and values well past every length limit.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(ADVERSARIAL).prop_map(String::from),
        2 => "[./\\\\%2eE]{0,6}",
        2 => "[&=#+% ?/\\\\;:@{}$!<>\\[\\]\r\n\t.a]{0,12}",
        2 => any::<String>(),
        1 => "[a-zA-Z0-9._~-]{1,40}",
        1 => "[a-z./]{1000,1100}",
    ]
}

/// Whether a value rendered alone in a path segment must be refused: it would be a dot
/// segment or leave the segment empty, either of which changes the path.
fn changes_the_path(segment: &str) -> bool {
    matches!(segment, "" | "." | "..")
}

fn decode(component: &str) -> String {
    percent_decode_str(component)
        .decode_utf8()
        .expect("rendered values decode to UTF-8")
        .into_owned()
}

/// The token a source fills with its own click ID, as written in its style.
fn click_token(source: &dyn TrafficSource) -> Option<String> {
    source
        .postback_tokens()
        .into_iter()
        .find(|t| t.field.is_source_click_id())
        .map(|t| source.token_style().wrap(&t.name))
}

/// A custom source as the config describes one: `{tsid}` carries its click ID.
fn custom_source() -> SpecSource {
    let spec = SourceSpec::new("custom", vec!["tsid".into()], TokenStyle::Brace);
    SpecSource::new(spec).expect("valid custom source")
}

proptest! {
    /// The defect of issue 14: a source click ID in the path of a relay template must
    /// never change the relay's path, and never its host. Every built-in source and a
    /// custom one, the value in path, query and fragment at once.
    #[test]
    fn relay_urls_keep_the_templates_scheme_host_port_and_path(value in hostile_value()) {
        let mut sources: Vec<Box<dyn TrafficSource>> =
            builtin_source_kinds().filter_map(builtin_source).collect();
        sources.push(Box::new(custom_source()));
        for source in &sources {
            let Some(token) = click_token(source.as_ref()) else { continue };
            let template =
                format!("https://src.example:8443/pb/{token}/x?c={token}&k=1#f={token}");
            let mut conv = RelayConversion::new("c1", "conversion", "k1");
            conv.source_click_id = Some(value.clone());
            match source.render_postback(&template, &conv) {
                Ok(rendered) => {
                    prop_assert!(!changes_the_path(&value), "{value:?} was sent: {rendered}");
                    let url = Url::parse(&rendered).expect("a relay URL parses");
                    prop_assert_eq!(url.scheme(), "https");
                    prop_assert_eq!(url.host_str(), Some("src.example"));
                    prop_assert_eq!(url.port(), Some(8443));
                    let segments: Vec<&str> = url.path_segments().unwrap().collect();
                    prop_assert_eq!(segments.len(), 3, "{}", rendered);
                    prop_assert_eq!(segments[0], "pb");
                    prop_assert_eq!(decode(segments[1]), value.clone());
                    prop_assert_eq!(segments[2], "x");
                    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
                    prop_assert_eq!(pairs, vec![("c".into(), value.clone()), ("k".into(), "1".into())]);
                    let fragment = url.fragment().unwrap().strip_prefix("f=").unwrap();
                    prop_assert_eq!(decode(fragment), value.clone());
                }
                Err(e) => {
                    prop_assert!(changes_the_path(&value), "{value:?} refused: {e}");
                    let want = if value.is_empty() { "empty_path_value" } else { "dot_segment_value" };
                    prop_assert_eq!(e.reason(), want);
                }
            }
        }
    }

    /// Any URL template, in any token style, with tokens anywhere in path, query and
    /// fragment: the rendered URL parses to the template's scheme, host, port and
    /// number of path segments, each value decodes back from its component, and a fill
    /// is refused exactly when a path segment would read `.`, `..` or nothing.
    #[test]
    fn any_url_template_keeps_its_structure(
        style_ix in 0..ALL_STYLES.len(),
        path in prop::collection::vec(
            prop_oneof![
                "[a-z0-9]{1,6}".prop_map(PathPart::Literal),
                ("[0-9_-]{0,2}", "[0-9_-]{0,2}").prop_map(|(p, s)| PathPart::Token(p, s)),
            ],
            0..5,
        ),
        query_keys in prop::collection::vec("[a-z]{1,4}", 0..4),
        with_fragment in any::<bool>(),
        values in prop::collection::vec(hostile_value(), 10),
    ) {
        let style = ALL_STYLES[style_ix];
        let mut template = "https://h.example:444".to_string();
        // Each path segment as it must read back: `(true, v)` decodes to v, `(false, l)`
        // is literal text l.
        let mut expect_path: Vec<(bool, String)> = Vec::new();
        let mut refused = false;
        let mut next = 0;
        let mut fill = |template: &mut String| {
            template.push_str(&style.wrap(&format!("t{next}")));
            next += 1;
            values[next - 1].clone()
        };
        for part in &path {
            template.push('/');
            match part {
                PathPart::Literal(l) => {
                    template.push_str(l);
                    expect_path.push((false, l.clone()));
                }
                PathPart::Token(prefix, suffix) => {
                    template.push_str(prefix);
                    let v = fill(&mut template);
                    template.push_str(suffix);
                    let segment = format!("{prefix}{v}{suffix}");
                    refused |= changes_the_path(&segment);
                    expect_path.push((true, segment));
                }
            }
        }
        let mut expect_query = Vec::new();
        for (i, key) in query_keys.iter().enumerate() {
            template.push(if i == 0 { '?' } else { '&' });
            template.push_str(key);
            template.push('=');
            expect_query.push((key.clone(), fill(&mut template)));
        }
        let expect_fragment = with_fragment.then(|| {
            template.push('#');
            fill(&mut template)
        });
        let t = Template::parse(&template, style);
        prop_assert!(t.check_url().is_ok(), "{}", template);
        let mut i = 0;
        let rendered = t.render_url(|_| {
            i += 1;
            Some(values[i - 1].clone())
        });
        let rendered = match rendered {
            Err(e) => {
                prop_assert!(refused, "{template} refused: {e}");
                prop_assert!(matches!(e.reason(), "dot_segment_value" | "empty_path_value"));
                return Ok(());
            }
            Ok(r) => r,
        };
        prop_assert!(!refused, "{} rendered {}", template, rendered.text);
        prop_assert!(rendered.unresolved.is_empty());
        let url = Url::parse(&rendered.text).expect("rendered URL parses");
        prop_assert_eq!(url.scheme(), "https");
        prop_assert_eq!(url.host_str(), Some("h.example"));
        prop_assert_eq!(url.port(), Some(444));
        let segments: Vec<&str> = url.path_segments().unwrap().collect();
        if path.is_empty() {
            prop_assert_eq!(segments, vec![""]);
        } else {
            prop_assert_eq!(segments.len(), path.len(), "{}", rendered.text);
            for (got, (is_value, want)) in segments.iter().zip(&expect_path) {
                if *is_value {
                    prop_assert_eq!(&decode(got), want);
                } else {
                    prop_assert_eq!(got, want);
                }
            }
        }
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        prop_assert_eq!(pairs, expect_query);
        prop_assert_eq!(url.fragment().map(decode), expect_fragment);
    }

    /// No value ever reaches the scheme, user info, host or port: such a template is
    /// refused at config time (`check_url`, `SpecSource::new`), and filling it anyway
    /// fails the same way, whatever the value.
    #[test]
    fn tokens_in_scheme_or_host_are_refused_for_any_value(
        style_ix in 0..ALL_STYLES.len(),
        shape in 0usize..7,
        value in hostile_value(),
    ) {
        let style = ALL_STYLES[style_ix];
        let token = style.wrap("v");
        let template = match shape {
            0 => format!("{token}://s.example/pb"),
            1 => format!("https://{token}/pb"),
            2 => format!("https://{token}.s.example/pb?c=1"),
            3 => format!("https://s.example:{token}/pb"),
            4 => format!("https://{token}@s.example/pb"),
            5 => format!("https://s.example{token}/pb"),
            _ => format!("https://s.example{token}"),
        };
        let t = Template::parse(&template, style);
        let reason = |r: Result<(), UrlTemplateError>| r.err().map(|e| e.reason());
        prop_assert_eq!(reason(t.check_url()), Some("token_in_host"), "{}", template);
        let filled = t.render_url(|_| Some(value.clone())).map(|_| ());
        prop_assert_eq!(reason(filled), Some("token_in_host"));
        let mut spec = SourceSpec::new("custom", vec!["tsid".into()], style);
        spec.postback_template = Some(template.clone());
        prop_assert!(SpecSource::new(spec).is_err(), "{}", template);
    }

    /// Offer links: the click ID lands only in the parameter (or token) the network
    /// reads, decodes back whole, and nothing else of the link changes; a network
    /// token in the host is refused.
    #[test]
    fn offer_links_keep_their_structure(
        click_id in hostile_value(),
        segment in "[a-z0-9]{1,8}",
        existing in "[a-z]{1,4}",
    ) {
        let offer = format!("https://net.example/o/{segment}?{existing}=1#top");
        for kind in builtin_network_kinds() {
            let n = builtin_network(kind).unwrap();
            let stamped = n.stamp_offer_url(&offer, &click_id).expect("an http offer stamps");
            let url = Url::parse(&stamped).expect("stamped offer parses");
            prop_assert_eq!(url.host_str(), Some("net.example"));
            prop_assert_eq!(url.path(), format!("/o/{segment}"));
            prop_assert_eq!(url.fragment(), Some("top"));
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            if existing != n.click_id_param() {
                prop_assert_eq!(first_value(&pairs, &existing), Some("1"));
                prop_assert_eq!(pairs.len(), 2);
            } else {
                prop_assert_eq!(pairs.len(), 1);
            }
            prop_assert_eq!(first_value(&pairs, n.click_id_param()), Some(click_id.as_str()));
        }
        let token_net = SpecNetwork::new(
            NetworkSpec::new("m", "clickID", TokenStyle::Brace).offer_token("{clickID}"),
        )
        .unwrap();
        let in_path = token_net.stamp_offer_url("https://net.example/o/{clickID}/x", &click_id);
        match in_path {
            Ok(s) => {
                prop_assert!(!changes_the_path(&click_id));
                let url = Url::parse(&s).unwrap();
                let segments: Vec<&str> = url.path_segments().unwrap().collect();
                prop_assert_eq!(segments.len(), 3);
                prop_assert_eq!(decode(segments[1]), click_id.clone());
            }
            Err(e) => prop_assert!(changes_the_path(&click_id), "{}", e),
        }
        let in_host = token_net.stamp_offer_url("https://{clickID}.net.example/o", &click_id);
        prop_assert!(matches!(in_host, Err(StampError::UnsafeUrl(_))));
    }

    /// Query parsing: what we encode parses back pair for pair, as text and as bytes;
    /// bytes that are not UTF-8 are refused by the strict parser, never merged; and any
    /// raw query yields one pair per non-empty `&`-separated part.
    #[test]
    fn query_parsing_round_trips_and_never_merges(
        pairs in prop::collection::vec((hostile_value(), hostile_value()), 0..6),
        raw_pairs in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..8), prop::collection::vec(any::<u8>(), 0..8)),
            0..6,
        ),
        raw in any::<String>(),
    ) {
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query_value(k), encode_query_value(v)))
            .collect::<Vec<_>>()
            .join("&");
        prop_assert_eq!(parse_query(&query), pairs.clone());
        prop_assert_eq!(parse_query_strict(query.as_bytes()).unwrap(), pairs);

        let query = raw_pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query_bytes(k), encode_query_bytes(v)))
            .collect::<Vec<_>>()
            .join("&");
        prop_assert_eq!(parse_query_bytes(query.as_bytes()), raw_pairs.clone());
        let all_utf8 = raw_pairs
            .iter()
            .all(|(k, v)| std::str::from_utf8(k).is_ok() && std::str::from_utf8(v).is_ok());
        prop_assert_eq!(parse_query_strict(query.as_bytes()).is_ok(), all_utf8);

        let parts = raw.split('&').filter(|p| !p.is_empty()).count();
        prop_assert_eq!(parse_query(&raw).len(), parts);
        prop_assert_eq!(parse_query_bytes(raw.as_bytes()).len(), parts);
    }

    /// Postbacks: any query into any network either parses to values that were sent
    /// (trimmed, bounded, no unreplaced macro, payout finite and within the limit) or is
    /// refused with one of the documented reasons.
    #[test]
    fn postbacks_parse_or_refuse_with_a_known_reason(
        pairs in prop::collection::vec(
            (
                prop_oneof![
                    proptest::sample::select(&["cid", "clickid", "payout", "currency", "txid", "status", "event", "sub1"][..])
                        .prop_map(String::from),
                    hostile_value(),
                ],
                hostile_value(),
            ),
            0..8,
        ),
    ) {
        let raw = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode_query_value(k), encode_query_value(v)))
            .collect::<Vec<_>>()
            .join("&");
        let parsed_pairs = parse_query(&raw);
        let req = PostbackRequest::get(&raw, &parsed_pairs);
        for kind in builtin_network_kinds() {
            let n = builtin_network(kind).unwrap();
            match n.parse_postback(&req) {
                Ok(p) => {
                    prop_assert!(!p.click_id.is_empty() && p.click_id.len() <= MAX_FIELD_LEN);
                    prop_assert_eq!(p.click_id.trim(), p.click_id.as_str());
                    prop_assert!(find_unreplaced_macro(&p.click_id).is_none());
                    prop_assert!(pairs.iter().any(|(_, v)| v.trim() == p.click_id));
                    if let Some(payout) = p.payout {
                        prop_assert!(payout.is_finite() && payout.abs() <= MAX_AMOUNT);
                    }
                    for v in p.txid.iter().chain(p.event.iter()).chain(p.sub_ids.iter().flatten()) {
                        prop_assert!(v.len() <= MAX_FIELD_LEN && find_unreplaced_macro(v).is_none());
                    }
                }
                Err(e) => prop_assert!(POSTBACK_ERROR_REASONS.contains(&e.reason()), "{}", e.reason()),
            }
        }
    }

    /// A value a network fills into our postback URL comes back exactly (trimmed), or
    /// is refused for the reason that fits it: too long, or still holding a macro.
    #[test]
    fn postback_values_round_trip_or_are_refused_for_a_reason(txid in hostile_value()) {
        let cid = "0123456789abcdef0123456789abcdef";
        let trimmed = txid.trim();
        for kind in builtin_network_kinds() {
            let n = builtin_network(kind).unwrap();
            let macros = n.postback_macros();
            if !macros.iter().any(|m| m.field.name() == "txid") {
                continue;
            }
            let url = n.postback_url("https://trk.example", kind);
            let fired = Template::parse(&url, n.macro_style())
                .render(|name| {
                    macros.iter().find(|m| m.macro_name == name).map(|m| match m.field.name().as_str() {
                        "click_id" => cid.to_string(),
                        "txid" => txid.clone(),
                        _ => String::new(),
                    })
                })
                .text;
            let q = fired.split_once('?').unwrap().1;
            let pairs = parse_query(q);
            let got = n.parse_postback(&PostbackRequest::get(q, &pairs));
            if trimmed.len() > MAX_FIELD_LEN {
                prop_assert_eq!(got.unwrap_err().reason(), "value_too_long");
            } else if find_unreplaced_macro(trimmed).is_some() {
                prop_assert_eq!(got.unwrap_err().reason(), "unreplaced_macro");
            } else {
                let p = got.unwrap();
                prop_assert_eq!(p.click_id, cid);
                prop_assert_eq!(p.txid.as_deref(), Some(trimmed).filter(|t| !t.is_empty()));
            }
        }
    }

    /// Click IDs: what we mint verifies (plain or hyphenated, any case); changing any
    /// one hex digit, or sending arbitrary text, is refused with a reason.
    #[test]
    fn click_ids_verify_only_what_was_minted(
        key in prop::collection::vec(any::<u8>(), 16..40),
        now in 1_600_000_000_000u64..4_000_000_000_000,
        random in any::<[u8; 6]>(),
        flip_at in 0usize..32,
        flip_by in 1u8..16,
        junk in hostile_value(),
    ) {
        let codec = ClickIdCodec::new(&key);
        let window = 30 * 86_400_000;
        let id = codec.mint(now, random);
        let hex = id.to_hex();
        prop_assert_eq!(codec.verify(&hex, now, window), Ok(id));
        let hyphenated = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]
        )
        .to_ascii_uppercase();
        prop_assert_eq!(codec.verify(&hyphenated, now, window), Ok(id));
        let mut changed = hex.clone().into_bytes();
        let digit = u8::from_str_radix(&hex[flip_at..=flip_at], 16).unwrap();
        changed[flip_at] = b"0123456789abcdef"[usize::from((digit + flip_by) % 16)];
        let changed = String::from_utf8(changed).unwrap();
        let refused = codec.verify(&changed, now, window).unwrap_err();
        prop_assert!(refused.reason().starts_with("click_id_"));
        prop_assert!(codec.verify(&junk, now, window).is_err());
    }

    /// The dedup key is 32 lowercase hex and equal exactly when the normalised inputs
    /// are (click ID without hyphens and case, event trimmed and lower-cased, txid
    /// trimmed with empty meaning none).
    #[test]
    fn dedup_keys_are_equal_exactly_when_normalised_inputs_are(
        a in (hostile_value(), hostile_value(), proptest::option::of(hostile_value())),
        other in (hostile_value(), hostile_value(), proptest::option::of(hostile_value())),
        variant in 0u8..4,
        hyphen_at in any::<prop::sample::Index>(),
    ) {
        // Mostly variants of `a` that the definition says are (or are not) the same
        // conversion, so both sides of the equivalence are exercised.
        let b = match variant {
            0 => other,
            1 => {
                let click = a.0.to_ascii_uppercase();
                let at = hyphen_at.index(click.chars().count() + 1);
                let (head, tail) = click.split_at(click.char_indices().nth(at).map_or(click.len(), |(i, _)| i));
                (format!(" {head}-{tail}\t"), format!("  {} ", a.1.to_ascii_uppercase()), a.2.as_ref().map(|t| format!(" {t} ")))
            }
            2 => (a.0.clone(), a.1.clone(), a.2.as_ref().map(|t| t.to_ascii_uppercase())),
            _ => (a.0.clone(), a.1.clone(), if a.2.is_some() { None } else { Some(" ".into()) }),
        };
        let normalise = |(c, e, t): &(String, String, Option<String>)| {
            let click: String = c.trim().chars().filter(|c| *c != '-').map(|c| c.to_ascii_lowercase()).collect();
            let txid = t.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
            (click, normalize_event(e), txid)
        };
        let key = |(c, e, t): &(String, String, Option<String>)| dedup_key(c, e, t.as_deref());
        let ka = key(&a);
        prop_assert_eq!(ka.len(), 32);
        prop_assert!(ka.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(ka == key(&b), normalise(&a) == normalise(&b));
    }

    /// Landing parameters: a source's click ID is the trimmed first filled value of
    /// its click-ID parameters (never a value still holding a macro); a cost is finite
    /// and not negative.
    #[test]
    fn landing_params_read_only_what_was_sent(
        pairs in prop::collection::vec((hostile_value(), hostile_value()), 0..6),
        extra in hostile_value(),
    ) {
        for kind in builtin_source_kinds() {
            let spec = builtin_source_spec(kind).unwrap();
            let source = builtin_source(kind).unwrap();
            let mut query = pairs.clone();
            query.push((spec.click_id_params[0].clone(), extra.clone()));
            if let Some(c) = &spec.cost_param {
                query.push((c.clone(), extra.clone()));
            }
            let p = source.landing_params(&query);
            let want = spec.click_id_params.iter().find_map(|param| {
                first_value(&query, param)
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && find_unreplaced_macro(v).is_none())
            });
            prop_assert_eq!(p.source_click_id.as_deref(), want);
            if let Some(cost) = p.cost {
                prop_assert!(cost.is_finite() && cost >= 0.0);
            }
        }
    }

    /// A shared secret admits a postback exactly when the secret parameter holds it.
    #[test]
    fn a_shared_secret_admits_exactly_the_secret(secret in "[ -~]{1,40}", sent in hostile_value(), same in any::<bool>()) {
        let sent = if same { secret.clone() } else { sent };
        let raw = format!("cid=x&secret={}", encode_query_value(&sent));
        let pairs = parse_query(&raw);
        let v = Verification::none().with_secret("secret", secret.clone());
        match v.verify(&PostbackRequest::get(&raw, &pairs), 0) {
            Ok(()) => prop_assert_eq!(&sent, &secret),
            Err(e) => {
                prop_assert_ne!(&sent, &secret);
                prop_assert_eq!(e.reason(), "unauthorized_secret");
            }
        }
    }
}

/// One path segment of a generated URL template.
#[derive(Debug, Clone)]
enum PathPart {
    /// Plain text.
    Literal(String),
    /// A token between a prefix and a suffix that can never form a token themselves.
    Token(String, String),
}
