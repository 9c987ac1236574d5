//! Property tests and a fuzz-style harness (run by `cargo test`): rendering
//! round-trips any value, nothing unescaped leaks, and no parser panics on any input.

use clickstamp_plugins::dedup::dedup_key;
use clickstamp_plugins::lint::{
    has_errors, lint_network, lint_offer_url, lint_source_template, Severity,
};
use clickstamp_plugins::network::{builtin_network, builtin_network_kinds, is_absolute_http_url};
use clickstamp_plugins::postback::{ConversionStatus, PostbackRequest, MAX_AMOUNT};
use clickstamp_plugins::query::{first_value, parse_query};
use clickstamp_plugins::source::{builtin_source, builtin_source_kinds, RelayConversion};
use clickstamp_plugins::template::{find_tokens, find_unreplaced_macro, Template, ALL_STYLES};
use clickstamp_plugins::verify::{CidrError, HmacVerification, IpAllowlist, Verification};
use proptest::prelude::*;

fn any_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "[&=#+% ?/{}!$<>\\[\\]@é漢]{0,20}",
    ]
}

fn any_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        Just("cid".to_string()),
        Just("payout".to_string()),
        Just("currency".to_string()),
        Just("txid".to_string()),
        Just("status".to_string()),
        Just("event".to_string()),
        Just("sig".to_string()),
        Just("ts".to_string()),
        any::<String>(),
    ];
    prop::collection::vec((key, any_value()), 0..8)
}

/// Characters a rendered value may contribute: unreserved or a `%XX` escape.
fn only_safe(encoded: &str) -> bool {
    encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'%'))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn render_then_parse_round_trips_in_every_style(a in any_value(), b in any_value()) {
        for style in ALL_STYLES {
            let template = format!(
                "https://t.example/p?x={}&y={}&z=1",
                style.wrap("first"),
                style.wrap("second")
            );
            let t = Template::parse(&template, style);
            let r = t.render(|n| match n {
                "first" => Some(a.clone()),
                "second" => Some(b.clone()),
                _ => None,
            });
            prop_assert!(r.unresolved.is_empty());
            let q = r.text.split_once('?').unwrap().1;
            prop_assert!(!r.text.contains(' ') && r.text.is_ascii());
            let pairs = parse_query(q);
            prop_assert_eq!(pairs.len(), 3);
            prop_assert_eq!(first_value(&pairs, "x"), Some(a.as_str()));
            prop_assert_eq!(first_value(&pairs, "y"), Some(b.as_str()));
            let extracted = t.extract(&r.text).unwrap();
            prop_assert_eq!(&extracted[0].1, &a);
            prop_assert_eq!(&extracted[1].1, &b);
        }
    }

    #[test]
    fn source_render_leaks_nothing(v in any_value(), payout in any::<f64>()) {
        let src = builtin_source("propellerads").unwrap();
        let mut conv = RelayConversion::new("c", "conversion", "k");
        conv.source_click_id = Some(v.clone());
        conv.payout = Some(payout);
        let out = src
            .render_postback("https://a.example/c?v=${SUBID}&p=${PAYOUT}", &conv)
            .unwrap();
        let q = out.split_once('?').unwrap().1;
        let (v_part, p_part) = q.split_once('&').unwrap();
        prop_assert!(only_safe(v_part.strip_prefix("v=").unwrap()));
        prop_assert!(only_safe(p_part.strip_prefix("p=").unwrap()));
        let pairs = parse_query(q);
        prop_assert_eq!(first_value(&pairs, "v"), Some(v.as_str()));
    }

    #[test]
    fn network_round_trips_any_click_id_payout_and_txid(
        kind_ix in 0usize..10,
        cid in "[0-9a-f]{32}",
        // Payouts beyond MAX_AMOUNT are refused; hostile.rs checks that refusal.
        payout in 0.0f64..=MAX_AMOUNT,
        txid in "[ -~]{1,40}",
    ) {
        let kind = builtin_network_kinds().nth(kind_ix).unwrap();
        let n = builtin_network(kind).unwrap();
        prop_assume!(find_unreplaced_macro(&txid).is_none());
        let url = n.postback_url("https://trk.example", kind);
        let payout_text = format!("{payout}");
        let fired = Template::parse(&url, n.macro_style()).render(|name| {
            n.postback_macros().iter().find(|m| m.macro_name == name).map(|m| {
                match m.field.name().as_str() {
                    "click_id" => cid.clone(),
                    "payout" => payout_text.clone(),
                    "txid" => txid.clone(),
                    _ => String::new(),
                }
            })
        }).text;
        let q = fired.split_once('?').unwrap().1;
        let pairs = parse_query(q);
        let parsed = n.parse_postback(&PostbackRequest::get(q, &pairs)).unwrap();
        prop_assert_eq!(parsed.click_id, cid);
        if n.postback_macros().iter().any(|m| m.param == "payout") {
            prop_assert_eq!(parsed.payout, Some(payout));
        }
        if n.postback_macros().iter().any(|m| m.param == "txid") {
            let want = Some(txid.trim()).filter(|t| !t.is_empty());
            prop_assert_eq!(parsed.txid.as_deref(), want);
        }
    }

    #[test]
    fn dedup_key_is_always_32_lower_hex(c in any::<String>(), e in any::<String>(), t in proptest::option::of(any::<String>())) {
        let k = dedup_key(&c, &e, t.as_deref());
        prop_assert_eq!(k.len(), 32);
        prop_assert!(k.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn status_parsing_ignores_case_and_spacing_and_names_round_trip(
        s in prop_oneof![
            any::<String>(),
            // Words networks send, in the spellings they send them.
            "[ ]{0,2}(Approved|PENDING|on-hold|On Hold|charged_back|Declined|1|true|sale|2)[ ]{0,2}",
        ],
    ) {
        let parsed = ConversionStatus::parse_lenient(&s);
        // Case and surrounding whitespace never change what a status word means.
        prop_assert_eq!(ConversionStatus::parse_lenient(&s.to_ascii_uppercase()), parsed);
        prop_assert_eq!(ConversionStatus::parse_lenient(&s.to_ascii_lowercase()), parsed);
        prop_assert_eq!(ConversionStatus::parse_lenient(&format!(" \t{s} \n")), parsed);
        if let Some(status) = parsed {
            // A status's own name reads back as itself (the relay sends `as_str`).
            prop_assert_eq!(ConversionStatus::parse_lenient(status.as_str()), Some(status));
            // Every status word is ASCII letters, digits, `_`, `-` or spaces inside.
            prop_assert!(s.trim().bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' ')), "{:?}", s);
        }
    }
}

#[test]
fn every_status_name_round_trips() {
    use ConversionStatus::*;
    for status in [Pending, Approved, Rejected, Chargeback] {
        assert_eq!(
            ConversionStatus::parse_lenient(status.as_str()),
            Some(status)
        );
    }
}

// The fuzz-style harness: arbitrary input into every parser; nothing panics, spans stay
// in bounds, and what comes out keeps the stated properties (round trips, refusals
// with their reason).
proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_template_engine(text in any_value(), style_ix in 0usize..11) {
        for m in find_tokens(&text) {
            prop_assert!(m.start < m.end && m.end <= text.len());
            prop_assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
            let written = m.text();
            prop_assert_eq!(&text[m.start..m.end], written.as_str());
        }
        let _ = find_unreplaced_macro(&text);
        let t = Template::parse(&text, ALL_STYLES[style_ix]);
        let r = t.render(|n| Some(n.to_string()));
        let _ = t.extract(&r.text);
        let _ = t.extract(&text);
        let _ = t.query_bindings();
        let _ = parse_query(&text);
    }

    #[test]
    fn fuzz_postback_parsers(pairs in any_pairs(), body in any_pairs(), raw in any_value(), now in any::<u64>()) {
        let hmac = HmacVerification::new(b"k".to_vec());
        let allow = IpAllowlist::parse(&["10.0.0.0/8", "::1"]).unwrap();
        let v = Verification::none()
            .with_secret("secret", "s")
            .with_hmac(hmac)
            .with_allowlist(allow);
        let parsed_raw = parse_query(&raw);
        for kind in builtin_network_kinds() {
            let n = builtin_network(kind).unwrap();
            let mut req = PostbackRequest::get(&raw, &pairs);
            req.body = &body;
            let _ = n.parse_postback(&req);
            let _ = n.accept_postback(&req, &v, now);
            let _ = n.accept_postback(&req, &Verification::none(), now);
            let req = PostbackRequest::get(&raw, &parsed_raw);
            if let Err(e) = n.parse_postback(&req) {
                prop_assert!(!e.reason().is_empty());
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn fuzz_sources_and_linter(
        query in any_value(),
        template in prop_oneof![any_value(), any_value().prop_map(|t| format!("https://lp.example/o?{t}"))],
        v in any_value(),
    ) {
        let pairs = parse_query(&query);
        let is_url = is_absolute_http_url(&template);
        for kind in builtin_source_kinds() {
            let s = builtin_source(kind).unwrap();
            let _ = s.landing_params(&pairs);
            let findings = lint_source_template(s.as_ref(), &template);
            // A template that is no http(s) URL is refused with that reason.
            prop_assert_eq!(
                is_url,
                !findings.iter().any(|f| f.code == "not_http_url" && f.severity == Severity::Error),
                "{}: {:?} {:?}", kind, template, findings
            );
            prop_assert!(findings.iter().all(|f| !f.message.is_empty()));
            let mut conv = RelayConversion::new(&v, &v, &v);
            conv.source_click_id = Some(v.clone());
            conv.click_time_ms = Some(u64::MAX);
            conv.conversion_time_ms = Some(u64::MAX);
            let _ = s.render_postback(&template, &conv);
            let _ = s.render_postback(&format!("https://x.example/?a={template}"), &conv);
            // The generic vocabulary in the source's style carries any value intact.
            let generic = format!("https://x.example/c?v={}", s.token_style().wrap("source_click_id"));
            let out = s.render_postback(&generic, &conv);
            prop_assert!(out.is_ok(), "{}: {:?}", kind, out);
            let out = out.unwrap();
            let q = out.split_once('?').unwrap().1;
            let pairs = parse_query(q);
            prop_assert_eq!(first_value(&pairs, "v"), Some(v.as_str()), "{}", kind);
        }
        for kind in builtin_network_kinds() {
            let n = builtin_network(kind).unwrap();
            let findings = lint_offer_url(n.as_ref(), &template);
            prop_assert_eq!(is_url, !findings.iter().any(|f| f.code == "not_http_url"), "{:?}", findings);
            match n.stamp_offer_url(&template, &v) {
                Err(_) => prop_assert!(!is_url, "an http(s) URL is always stampable: {:?}", template),
                Ok(stamped) => {
                    prop_assert!(is_url);
                    // The click ID reads back from the network's parameter...
                    let before_fragment = stamped.split('#').next().unwrap();
                    let q = before_fragment.split_once('?').map_or("", |(_, q)| q);
                    let pairs = parse_query(q);
                    prop_assert_eq!(first_value(&pairs, n.click_id_param()), Some(v.as_str()), "{}", stamped);
                    // ...and stamping again changes nothing (no second parameter).
                    prop_assert_eq!(n.stamp_offer_url(&stamped, &v).unwrap(), stamped);
                }
            }
            prop_assert!(!has_errors(&lint_network(n.as_ref())), "builtin {} lints clean", kind);
        }
        match IpAllowlist::parse(&[query.as_str()]) {
            // A network holds its own address.
            Ok(list) => {
                let addr = query.trim().split('/').next().unwrap();
                prop_assert!(list.allows(addr.parse().unwrap()), "{:?}", query);
            }
            Err(CidrError::BadAddress(text)) => {
                prop_assert_eq!(&text, query.trim());
                prop_assert!(text.split('/').next().unwrap().parse::<std::net::IpAddr>().is_err());
            }
            Err(CidrError::BadPrefix(text)) => {
                prop_assert!(text.split('/').next().unwrap().parse::<std::net::IpAddr>().is_ok(), "{:?}", text);
            }
        }
    }

    #[test]
    fn cidrs_hold_their_own_addresses_and_refuse_long_prefixes(a in any::<[u8; 4]>(), prefix in 0u8..=40) {
        let ip = std::net::Ipv4Addr::from(a);
        let text = format!("{ip}/{prefix}");
        match IpAllowlist::parse(&[text.as_str()]) {
            Ok(list) => {
                prop_assert!(prefix <= 32);
                prop_assert!(list.allows(ip.into()));
            }
            Err(e) => prop_assert_eq!(e, CidrError::BadPrefix(text.clone()), "{}", text),
        }
        prop_assert_eq!(IpAllowlist::parse(&[text.as_str()]).is_ok(), prefix <= 32);
    }
}
