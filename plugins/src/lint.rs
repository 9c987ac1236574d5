//! The macro linter behind `clickstamp check`: it finds, before any traffic flows,
//! the template mistakes that would otherwise lose conversions silently.

use crate::network::{is_absolute_http_url, Network, PostbackField};
use crate::source::{lookup_token, TrafficSource};
use crate::template::{find_tokens, CaseRule, Template, TokenMatch};

/// How bad a finding is: `check` fails on any error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Works, but probably not as intended.
    Warning,
    /// Would lose or corrupt conversions.
    Error,
}

/// One problem, naming the token and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    /// Error or warning.
    pub severity: Severity,
    /// Stable snake_case code (`unknown_token`, `foreign_token`, `wrong_case`,
    /// `no_click_id_token`, `not_http_url`, `duplicate_param`, `round_trip`).
    pub code: &'static str,
    /// The token concerned, as written, if any.
    pub token: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl LintFinding {
    fn error(code: &'static str, token: Option<String>, message: String) -> Self {
        LintFinding {
            severity: Severity::Error,
            code,
            token,
            message,
        }
    }
}

/// True when any finding is an error.
pub fn has_errors(findings: &[LintFinding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Lint a traffic-source postback template against the source that will fill it.
///
/// Errors: the template is not an absolute http(s) URL; a token of the source's style
/// that it cannot fill (`unknown_token`) or that only differs in case on a
/// case-sensitive source (`wrong_case`); a token in another platform's syntax, which
/// would be sent literally (`foreign_token`, e.g. `{clickid}` in a PropellerAds
/// template, or a vendor's `<goal>` placeholder); no token carrying the source's click
/// ID (`no_click_id_token`).
pub fn lint_source_template(source: &dyn TrafficSource, template: &str) -> Vec<LintFinding> {
    let mut out = Vec::new();
    let style = source.token_style();
    let tokens = source.postback_tokens();
    let kind = source.kind();
    if !is_absolute_http_url(template) {
        out.push(LintFinding::error(
            "not_http_url",
            None,
            format!("{kind} postback template must be an absolute http(s) URL"),
        ));
    }
    let click_token = tokens
        .iter()
        .find(|t| t.field.is_source_click_id())
        .map(|t| style.wrap(&t.name));
    let mut has_click = false;
    for m in find_tokens(template) {
        let text = m.text();
        if m.style == style {
            match lookup_token(&tokens, source.token_case(), &m.name) {
                Some(t) => has_click |= t.field.carries_source_click_id(),
                None => match lookup_token(&tokens, CaseRule::Insensitive, &m.name) {
                    Some(t) => out.push(LintFinding::error(
                        "wrong_case",
                        Some(text.clone()),
                        format!(
                            "{kind} token names are case-sensitive: write {} instead of {text}",
                            style.wrap(&t.name)
                        ),
                    )),
                    None => out.push(LintFinding::error(
                        "unknown_token",
                        Some(text.clone()),
                        format!(
                            "{kind} cannot fill {text}: use one of {}, or replace it with a literal value",
                            known_list(source)
                        ),
                    )),
                },
            }
        } else {
            out.push(foreign(source, &m, click_token.as_deref()));
        }
    }
    if !has_click {
        out.push(LintFinding::error(
            "no_click_id_token",
            None,
            format!(
                "{kind} postback template carries no click id, so {kind} cannot attribute the conversion: add {}",
                click_token.unwrap_or_else(|| "the source's click-id token".into())
            ),
        ));
    }
    out
}

fn known_list(source: &dyn TrafficSource) -> String {
    let style = source.token_style();
    source
        .postback_tokens()
        .iter()
        .map(|t| style.wrap(&t.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A token in another platform's syntax: say what it most likely meant.
fn foreign(source: &dyn TrafficSource, m: &TokenMatch, click_token: Option<&str>) -> LintFinding {
    let kind = source.kind();
    let style = source.token_style();
    let text = m.text();
    let lower = m.name.to_ascii_lowercase();
    let fix = if let Some(t) =
        lookup_token(&source.postback_tokens(), CaseRule::Insensitive, &m.name)
    {
        format!("write it as {}", style.wrap(&t.name))
    } else if ["click", "subid", "cid", "visitor", "tag"]
        .iter()
        .any(|k| lower.contains(k))
    {
        match click_token {
            Some(c) => format!("it looks like another platform's click-id macro: {kind}'s is {c}"),
            None => "it looks like another platform's click-id macro".into(),
        }
    } else {
        format!(
            "if it is a placeholder from {kind}'s docs, replace it with your literal value (e.g. your goal or event id); {kind} fills only {}",
            known_list(source)
        )
    };
    LintFinding::error(
        "foreign_token",
        Some(text.clone()),
        format!(
            "{text} is written in {} syntax, but {kind} tokens are written {style} and nothing would fill it: {fix}",
            m.style
        ),
    )
}

/// Lint a network's configuration: our postback URL must round-trip (each parameter we
/// read is bound to exactly one of the network's macros), parameter names distinct,
/// and a click-ID field present.
pub fn lint_network(network: &dyn Network) -> Vec<LintFinding> {
    let mut out = Vec::new();
    let kind = network.kind();
    let macros = network.postback_macros();
    if !macros.iter().any(|m| m.field == PostbackField::ClickId) {
        out.push(LintFinding::error(
            "no_click_id_token",
            None,
            format!(
                "network {kind} reads no click id from its postback: configure the click-id macro"
            ),
        ));
    }
    for (i, m) in macros.iter().enumerate() {
        if macros[..i].iter().any(|o| o.param == m.param) {
            out.push(LintFinding::error(
                "duplicate_param",
                Some(m.macro_text.clone()),
                format!(
                    "network {kind} reads `{}` for two fields: give {} its own parameter",
                    m.param,
                    m.field.name()
                ),
            ));
        }
    }
    let url = network.postback_url("https://clickstamp.invalid", "n");
    let bindings = Template::parse(&url, network.macro_style()).query_bindings();
    for m in &macros {
        if !bindings
            .iter()
            .any(|(p, n)| *p == m.param && *n == m.macro_name)
        {
            out.push(LintFinding::error(
                "round_trip",
                Some(m.macro_text.clone()),
                format!(
                    "network {kind}: {} does not come back as `{}=` in the postback URL: use a plain macro name of [A-Za-z0-9_.-]",
                    m.macro_text, m.param
                ),
            ));
        }
    }
    out
}

/// Lint an offer URL configured for `network`: it must be an absolute http(s) URL, and
/// any token left in it that the network plugin does not fill is reported (it would
/// reach the network literally).
pub fn lint_offer_url(network: &dyn Network, offer_url: &str) -> Vec<LintFinding> {
    let mut out = Vec::new();
    let kind = network.kind();
    let stamped = match network.stamp_offer_url(offer_url, "00000000000000000000000000000000") {
        Ok(s) => s,
        Err(e) => {
            out.push(LintFinding::error("not_http_url", None, e.to_string()));
            return out;
        }
    };
    for m in find_tokens(&stamped) {
        out.push(LintFinding {
            severity: Severity::Warning,
            code: "foreign_token",
            token: Some(m.text()),
            message: format!(
                "offer URL for {kind} holds {} which clickstamp does not fill (it stamps {}=): replace it with a literal value or remove it",
                m.text(),
                network.click_id_param()
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::builtin_network;
    use crate::network::PostbackMacro;
    use crate::source::builtin_source;

    fn codes(f: &[LintFinding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn propellerads_template_findings() {
        let p = builtin_source("propellerads").unwrap();
        let ok = "http://ad.example/conversion.php?aid=1&visitor_id=${SUBID}&payout=${PAYOUT}";
        assert!(lint_source_template(p.as_ref(), ok).is_empty());

        let f = lint_source_template(p.as_ref(), "http://ad.example/c?visitor_id={clickid}");
        assert_eq!(codes(&f), vec!["foreign_token", "no_click_id_token"]);
        assert!(f[0].message.contains("${SUBID}"), "{}", f[0].message);
        assert_eq!(f[0].token.as_deref(), Some("{clickid}"));

        let f = lint_source_template(p.as_ref(), "http://ad.example/c?v=${subid}&x=${FOO}");
        assert_eq!(
            codes(&f),
            vec!["wrong_case", "unknown_token", "no_click_id_token"]
        );
    }

    #[test]
    fn exoclick_goal_placeholder_is_flagged() {
        let e = builtin_source("exoclick").unwrap();
        let f = lint_source_template(
            e.as_ref(),
            "https://s.exoclick.com/tag.php?goal=<goal>&tag={conversions_tracking}",
        );
        assert_eq!(codes(&f), vec!["foreign_token"]);
        assert!(f[0].message.contains("literal value"), "{}", f[0].message);
    }

    #[test]
    fn builtin_networks_lint_clean() {
        for kind in crate::network::builtin_network_kinds() {
            let n = builtin_network(kind).unwrap();
            assert!(lint_network(n.as_ref()).is_empty(), "{kind}");
        }
        let cake = builtin_network("cake").unwrap();
        assert!(lint_offer_url(cake.as_ref(), "https://n.example/o?a=1").is_empty());
        let f = lint_offer_url(cake.as_ref(), "https://n.example/o?s3={subid}");
        assert_eq!(codes(&f), vec!["foreign_token"]);
        assert_eq!(
            codes(&lint_offer_url(cake.as_ref(), "ftp://x")),
            vec!["not_http_url"]
        );
    }

    /// A network whose postback macros are whatever the test says.
    #[derive(Debug)]
    struct Macros(Vec<PostbackMacro>);

    impl Network for Macros {
        fn kind(&self) -> &str {
            "custom"
        }

        fn click_id_param(&self) -> &str {
            "s2"
        }

        fn postback_macros(&self) -> Vec<PostbackMacro> {
            self.0.clone()
        }
    }

    fn field(field: PostbackField, param: &str, name: &str) -> PostbackMacro {
        PostbackMacro {
            field,
            param: param.into(),
            macro_name: name.into(),
            macro_text: format!("{{{name}}}"),
        }
    }

    #[test]
    fn a_network_without_a_click_id_or_with_a_reused_parameter_is_an_error() {
        let no_click = Macros(vec![field(PostbackField::Payout, "payout", "amount")]);
        let f = lint_network(&no_click);
        assert_eq!(codes(&f), vec!["no_click_id_token"]);
        assert!(has_errors(&f));
        assert!(
            f[0].message.contains("network custom reads no click id"),
            "{}",
            f[0].message
        );

        let reused = Macros(vec![
            field(PostbackField::ClickId, "cid", "s2"),
            field(PostbackField::Payout, "cid", "amount"),
        ]);
        let f = lint_network(&reused);
        assert!(codes(&f).contains(&"duplicate_param"), "{f:?}");
        let dup = f.iter().find(|f| f.code == "duplicate_param").unwrap();
        assert_eq!(dup.token.as_deref(), Some("{amount}"));
        assert!(
            dup.message.contains("give payout its own"),
            "{}",
            dup.message
        );

        // A macro whose name is not plain does not come back as its parameter.
        let odd = Macros(vec![
            field(PostbackField::ClickId, "cid", "s2"),
            field(PostbackField::Payout, "payout", "pay out"),
        ]);
        let f = lint_network(&odd);
        assert_eq!(codes(&f), vec!["round_trip"]);
        assert_eq!(f[0].token.as_deref(), Some("{pay out}"));

        // The parameter comes back, but filled from another macro than the one meant
        // (its text names `amount`, its name says `cur`).
        let mut shifted = vec![
            field(PostbackField::ClickId, "cid", "s2"),
            field(PostbackField::Payout, "payout", "amount"),
            field(PostbackField::Currency, "cur", "cur"),
        ];
        shifted[2].macro_text = "{amount}".into();
        let f = lint_network(&Macros(shifted));
        assert_eq!(codes(&f), vec!["round_trip"], "{f:?}");
        assert_eq!(f[0].token.as_deref(), Some("{amount}"));

        let fine = Macros(vec![
            field(PostbackField::ClickId, "cid", "s2"),
            field(PostbackField::Payout, "payout", "amount"),
        ]);
        assert!(lint_network(&fine).is_empty());
    }

    #[test]
    fn only_errors_fail_a_check() {
        let warning = LintFinding {
            severity: Severity::Warning,
            code: "x",
            token: None,
            message: String::new(),
        };
        assert!(!has_errors(&[]));
        assert!(!has_errors(std::slice::from_ref(&warning)));
        let error = LintFinding::error("y", None, String::new());
        assert!(has_errors(&[warning, error]));
    }

    #[test]
    fn a_foreign_placeholder_lists_the_tokens_the_source_fills() {
        let e = builtin_source("exoclick").unwrap();
        let f = lint_source_template(
            e.as_ref(),
            "https://s.exoclick.com/tag.php?goal=<goal>&tag={conversions_tracking}",
        );
        let style = e.token_style();
        let listed: Vec<String> = e
            .postback_tokens()
            .iter()
            .map(|t| style.wrap(&t.name))
            .collect();
        assert!(!listed.is_empty());
        assert!(
            f[0].message
                .ends_with(&format!("fills only {}", listed.join(", "))),
            "{}",
            f[0].message
        );
    }
}
