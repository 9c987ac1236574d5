//! `[[networks]]`, `[[traffic_sources]]` and `[[offers]]`: built-in kinds or the config's own specs, verification, macros linted.

use super::*;

pub(super) fn network_spec(
    i: usize,
    n: &RawNetwork,
    kind: &str,
    p: &mut Problems,
) -> Option<NetworkSpec> {
    let builtin = builtin_network_spec(kind);
    let custom_fields = n.macro_style.is_some() || !n.macros.is_empty() || !n.status_map.is_empty();
    let mut spec = match (builtin, &n.click_id_param) {
        (Some(spec), _) => spec,
        (None, Some(param)) => {
            let style = match n.macro_style.as_deref().map(TokenStyle::from_name) {
                Some(Some(s)) => s,
                Some(None) => {
                    p.add(format!("networks[{i}].macro_style"), format!("{:?} is not a macro style", n.macro_style.as_deref().unwrap_or("")), "write an example like \"{x}\", \"#x#\", \"[X]\", \"${X}\", \"{{x}}\", \"!!x!!\" or a style name like \"hash\"");
                    return None;
                }
                None => TokenStyle::Brace,
            };
            NetworkSpec::new(kind, param.clone(), style).click_id_macro(param)
        }
        (None, None) => {
            let known: Vec<&str> = builtin_network_kinds().collect();
            p.add(
                format!("networks[{i}].kind"),
                format!("unknown network kind \"{kind}\""),
                format!("use a built-in kind ({}) or describe a custom network with click_id_param, macro_style and macros", known.join(", ")),
            );
            return None;
        }
    };
    if let (Some(param), true) = (&n.click_id_param, builtin_network_spec(kind).is_some()) {
        spec.click_id_param = param.clone();
    }
    if custom_fields && builtin_network_spec(kind).is_some() && n.macro_style.is_some() {
        if let Some(style) = n.macro_style.as_deref().and_then(TokenStyle::from_name) {
            spec.macro_style = style;
        }
    }
    for (field, macro_name) in &n.macros {
        let f = FieldSpec::new(field.clone(), macro_name.clone());
        match field.as_str() {
            "click_id" | "cid" => spec.click_id = FieldSpec::new("cid", macro_name.clone()),
            "payout" => spec.payout = Some(f),
            "currency" => spec.currency = Some(f),
            "txid" => spec.txid = Some(f),
            "status" => spec.status = Some(f),
            "event" => spec.event = Some(f),
            other => p.add(
                format!("networks[{i}].macros.{other}"),
                format!("unknown postback field \"{other}\""),
                "map one of click_id, payout, currency, txid, status, event to the network's macro name",
            ),
        }
    }
    for (word, status) in &n.status_map {
        if let Some(s) = status_word(&format!("networks[{i}].status_map.{word}"), status, p) {
            spec.status_map.push((word.clone(), s));
        }
    }
    Some(spec)
}

pub(super) fn verification(
    i: usize,
    n: &RawNetwork,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Verification {
    let mut v = Verification::none();
    let optional_secret = |key: &str,
                           inline: &Option<String>,
                           env_key: &str,
                           env_name: &Option<String>,
                           p: &mut Problems| {
        match (inline, env_name) {
            (None, None) => None,
            _ => secret(key, inline, env_key, env_name, env, p),
        }
    };
    if let Some(secret) = optional_secret(
        &format!("networks[{i}].secret"),
        &n.secret,
        &format!("networks[{i}].secret_env"),
        &n.secret_env,
        p,
    ) {
        if secret.len() < 8 {
            p.add(
                format!("networks[{i}].secret"),
                "the shared secret is shorter than 8 characters",
                "use a long random value, e.g. `openssl rand -hex 16`",
            );
        }
        v = v.with_secret(
            n.secret_param.clone().unwrap_or_else(|| "secret".into()),
            secret,
        );
    }
    if let Some(key) = optional_secret(
        &format!("networks[{i}].hmac_key"),
        &n.hmac_key,
        &format!("networks[{i}].hmac_key_env"),
        &n.hmac_key_env,
        p,
    ) {
        let mut h = HmacVerification::new(key.into_bytes());
        if let Some(sp) = &n.hmac_signature_param {
            h.signature_param = sp.clone();
        }
        h.signature_header = n.hmac_signature_header.clone();
        if let Some(tp) = &n.hmac_timestamp_param {
            h.timestamp_param = tp.clone();
        }
        h.window_secs = duration_field(
            &format!("networks[{i}].hmac_window"),
            &n.hmac_window,
            Duration::from_secs(300),
            p,
        )
        .as_secs();
        v = v.with_hmac(h);
    }
    if !n.allow_ips.is_empty() {
        match IpAllowlist::parse(&n.allow_ips) {
            Ok(list) => v = v.with_allowlist(list),
            Err(e) => p.add(
                format!("networks[{i}].allow_ips"),
                e.to_string(),
                "list IPs or CIDRs like \"203.0.113.7\" or \"10.0.0.0/8\"",
            ),
        }
    }
    v
}

pub(super) fn networks(
    raw: &[RawNetwork],
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
) -> Vec<NetworkConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        check_id("network", &format!("networks[{i}].id"), &n.id, &mut seen, p);
        let kind = n.kind.clone().unwrap_or_else(|| n.id.clone());
        let verification = verification(i, n, env, p);
        let default_status = match &n.default_status {
            None => ConversionStatus::Approved,
            Some(w) => status_word(&format!("networks[{i}].default_status"), w, p)
                .unwrap_or(ConversionStatus::Approved),
        };
        let Some(spec) = network_spec(i, n, &kind, p) else {
            continue;
        };
        let plugin = match SpecNetwork::new(spec) {
            Ok(plugin) => plugin,
            Err(e) => {
                p.add(
                    format!("networks[{i}]"),
                    e.to_string(),
                    "fix the network description (see docs/configuration.md, [[networks]])",
                );
                continue;
            }
        };
        for finding in lint_network(&plugin) {
            if finding.severity == Severity::Error {
                p.add(
                    format!("networks[{i}]"),
                    format!("{} ({})", finding.message, finding.code),
                    "correct the network's macros or parameters",
                );
            }
        }
        out.push(NetworkConfig {
            id: n.id.clone(),
            plugin: Arc::new(plugin),
            verification,
            default_status,
        });
    }
    out
}

pub(super) fn sources(raw: &[RawSource], p: &mut Problems) -> Vec<SourceConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        check_id(
            "traffic source",
            &format!("traffic_sources[{i}].id"),
            &s.id,
            &mut seen,
            p,
        );
        let kind = s.kind.clone().unwrap_or_else(|| "custom".into());
        let mut spec = match builtin_source_spec(&kind) {
            Some(spec) => spec,
            None if kind == "custom" => SourceSpec::new("custom", Vec::new(), TokenStyle::Brace),
            None => {
                let known: Vec<&str> = builtin_source_kinds().collect();
                p.add(
                    format!("traffic_sources[{i}].kind"),
                    format!("unknown traffic source kind \"{kind}\""),
                    format!(
                        "use a built-in kind ({}) or \"custom\" with click_id_params",
                        known.join(", ")
                    ),
                );
                continue;
            }
        };
        if !s.click_id_params.is_empty() {
            spec.click_id_params = s.click_id_params.clone();
        }
        if spec.click_id_params.is_empty() {
            p.add(
                format!("traffic_sources[{i}].click_id_params"),
                "no landing-URL parameter carries the source's click id",
                "list the parameter(s) your campaign URL passes the source's click id in, e.g. [\"tsid\"]",
            );
            continue;
        }
        if let Some(c) = &s.cost_param {
            spec.cost_param = Some(c.clone());
        }
        if !s.sub_id_params.is_empty() {
            spec.sub_id_params = s.sub_id_params.clone();
        }
        if spec.sub_id_params.len() > 5 {
            p.add(
                format!("traffic_sources[{i}].sub_id_params"),
                format!("{} sub id parameters", spec.sub_id_params.len()),
                "keep at most 5 (sub1-sub5)",
            );
        }
        if let Some(style) = &s.token_style {
            match TokenStyle::from_name(style) {
                Some(st) => spec.token_style = st,
                None => p.add(
                    format!("traffic_sources[{i}].token_style"),
                    format!("{style:?} is not a token style"),
                    "write an example like \"${X}\", \"{x}\" or \"[X]\"",
                ),
            }
        }
        for (token, field) in &s.tokens {
            match SourceToken::parse(token, field) {
                Ok(t) => spec.tokens.push(t),
                Err(e) => p.add(
                    format!("traffic_sources[{i}].tokens.{token}"),
                    e.to_string(),
                    "map the token to one of the relay fields listed",
                ),
            }
        }
        if let Some(url) = &s.postback_url {
            spec.postback_template = Some(url.clone());
        }
        if let Some(r) = s.relay_status_changes {
            spec.relays_status_changes = r;
        }
        if let Some(url) = &s.postback_url {
            // A token in the scheme or host would let a relayed value pick the
            // destination: refused here, under the key the operator edits.
            if !is_absolute_http_url(url) {
                p.add(
                    format!("traffic_sources[{i}].postback_url"),
                    format!("{url:?} is not an absolute http(s) URL"),
                    "paste the source's postback URL as its dashboard shows it",
                );
                continue;
            }
            let template = clickstamp_plugins::Template::parse(url, spec.token_style);
            if let Err(e) = template.check_url() {
                p.add(
                    format!("traffic_sources[{i}].postback_url"),
                    e.to_string(),
                    "keep the scheme and host as the source's dashboard writes them; tokens belong in the path or the query",
                );
                continue;
            }
        }
        let plugin = match SpecSource::new(spec) {
            Ok(plugin) => plugin,
            Err(e) => {
                p.add(
                    format!("traffic_sources[{i}]"),
                    e.to_string(),
                    "fix the source description (see docs/configuration.md, [[traffic_sources]])",
                );
                continue;
            }
        };
        if let Some(url) = &s.postback_url {
            for finding in lint_source_template(&plugin, url) {
                if finding.severity == Severity::Error {
                    p.add(
                        format!("traffic_sources[{i}].postback_url"),
                        finding.message.clone(),
                        "use only tokens this source fills, in its own syntax (docs/plugins.md lists them per source)",
                    );
                }
            }
        }
        out.push(SourceConfig {
            id: s.id.clone(),
            plugin: Arc::new(plugin),
        });
    }
    out
}

pub(super) fn offers(
    raw: &[RawOffer],
    networks: &[NetworkConfig],
    declared: &Declared,
    p: &mut Problems,
) -> Vec<Offer> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, o) in raw.iter().enumerate() {
        check_id("offer", &format!("offers[{i}].id"), &o.id, &mut seen, p);
        if !is_absolute_http_url(&o.url) {
            p.add(
                format!("offers[{i}].url"),
                format!("offer URL {:?} is not an absolute http(s) URL", o.url),
                "write the full offer link, e.g. \"https://network.example/offer?a=1\"",
            );
        }
        match networks.iter().position(|n| n.id == o.network) {
            Some(network) => {
                // Stamping a sample click id finds a click-id token the offer URL holds
                // in its host, which no click may fill.
                if let Err(e @ clickstamp_plugins::StampError::UnsafeUrl(_)) = networks[network]
                    .plugin
                    .stamp_offer_url(&o.url, "00000000000000000000000000000000")
                {
                    p.add(
                        format!("offers[{i}].url"),
                        e.to_string(),
                        "keep the scheme and host literal; put the click-id token in the path or the query",
                    );
                }
                if let Some(Err(why)) = o.payout.map(|v| {
                    clickstamp_plugins::postback::check_amount(v)
                        .and_then(|v| clickstamp_plugins::postback::check_amount_sign(v, None))
                }) {
                    p.add(
                        format!("offers[{i}].payout"),
                        format!("the default payout is refused: {why}"),
                        "use the default payout, e.g. 2.5",
                    );
                }
                let currency = o.currency.as_ref().map(|c| c.to_ascii_uppercase());
                if let Some(c) = &currency {
                    if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                        p.add(
                            format!("offers[{i}].currency"),
                            format!("{c:?} is not an ISO 4217 code"),
                            "use a three-letter code such as \"USD\"",
                        );
                    }
                }
                out.push(Offer {
                    id: o.id.clone(),
                    url: o.url.clone(),
                    network,
                    payout: o.payout,
                    currency,
                    multiple_conversions: o.multiple_conversions.unwrap_or(true),
                    match_urls: offer_match_urls(i, &o.match_urls, p),
                })
            }
            None => unknown_reference(
                format!("offers[{i}].network"),
                "network",
                "networks",
                &o.network,
                &declared.networks,
                p,
            ),
        }
    }
    out
}
