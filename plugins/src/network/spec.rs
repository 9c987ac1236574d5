//! A network described by data: every built-in is one, and so is a network the
//! operator defines in the config.

use super::{is_absolute_http_url, Network, PostbackField, PostbackMacro, StampError};
use crate::postback::ConversionStatus;
use crate::query::set_query_param;
use crate::template::{find_tokens, Template, TokenStyle, UrlTemplateError};

/// One postback parameter: the name we read and the network macro that fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Our parameter name in the postback URL (`cid`, `payout`, ...).
    pub param: String,
    /// The network's macro name, without delimiters (`s2`, `price`).
    pub macro_name: String,
}

impl FieldSpec {
    /// `param` filled by the network's macro `macro_name`.
    pub fn new(param: impl Into<String>, macro_name: impl Into<String>) -> Self {
        FieldSpec {
            param: param.into(),
            macro_name: macro_name.into(),
        }
    }
}

/// Everything a network plugin needs to know, as plain data.
///
/// Our parameter names default to `cid`, `payout`, `currency`, `txid`, `status`,
/// `event`, `sub1`..: the same names appear in [`Network::postback_url`] and are the
/// ones parsed, so the URL an operator pastes always round-trips.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSpec {
    /// Plugin kind (`cake`, or the operator's name for a custom network).
    pub kind: String,
    /// Offer-link query parameter that carries our click ID.
    pub click_id_param: String,
    /// Placeholders replaced by the click ID when an offer URL holds them, written in
    /// full (`{clickID}`); when none is present, [`Self::click_id_param`] is set.
    pub offer_tokens: Vec<String>,
    /// The network's macro delimiter style.
    pub macro_style: TokenStyle,
    /// Where the click ID comes back.
    pub click_id: FieldSpec,
    /// Other parameter names accepted for the click ID when `click_id.param` is absent.
    pub click_id_aliases: Vec<String>,
    /// Payout, if the network sends one.
    pub payout: Option<FieldSpec>,
    /// Currency, if the network sends one.
    pub currency: Option<FieldSpec>,
    /// Transaction ID, if the network sends one.
    pub txid: Option<FieldSpec>,
    /// Status, if the network sends one.
    pub status: Option<FieldSpec>,
    /// Event or goal, if the network sends one.
    pub event: Option<FieldSpec>,
    /// Echoed sub IDs, in order.
    pub sub_ids: Vec<FieldSpec>,
    /// Network-specific status codes (`("2", Pending)`), checked before the word list.
    pub status_map: Vec<(String, ConversionStatus)>,
}

impl NetworkSpec {
    /// A network of `kind` stamping `click_id_param`, sending the click ID back as
    /// `cid=<its macro of the same name>`; no other field. Add fields with the
    /// builder methods or by setting the public fields.
    pub fn new(
        kind: impl Into<String>,
        click_id_param: impl Into<String>,
        macro_style: TokenStyle,
    ) -> Self {
        let click_id_param = click_id_param.into();
        NetworkSpec {
            kind: kind.into(),
            click_id: FieldSpec::new("cid", click_id_param.clone()),
            click_id_param,
            offer_tokens: Vec::new(),
            macro_style,
            click_id_aliases: vec!["clickid".into(), "click_id".into()],
            payout: None,
            currency: None,
            txid: None,
            status: None,
            event: None,
            sub_ids: Vec::new(),
            status_map: Vec::new(),
        }
    }

    /// Read the click ID back from the network macro `macro_name` (default: the
    /// offer parameter's name).
    pub fn click_id_macro(mut self, macro_name: &str) -> Self {
        self.click_id.macro_name = macro_name.into();
        self
    }

    /// Read `payout` from the network macro `macro_name`.
    pub fn payout(mut self, macro_name: &str) -> Self {
        self.payout = Some(FieldSpec::new("payout", macro_name));
        self
    }

    /// Read `currency` from the network macro `macro_name`.
    pub fn currency(mut self, macro_name: &str) -> Self {
        self.currency = Some(FieldSpec::new("currency", macro_name));
        self
    }

    /// Read `txid` from the network macro `macro_name`.
    pub fn txid(mut self, macro_name: &str) -> Self {
        self.txid = Some(FieldSpec::new("txid", macro_name));
        self
    }

    /// Read `status` from the network macro `macro_name`.
    pub fn status(mut self, macro_name: &str) -> Self {
        self.status = Some(FieldSpec::new("status", macro_name));
        self
    }

    /// Read `event` from the network macro `macro_name`.
    pub fn event(mut self, macro_name: &str) -> Self {
        self.event = Some(FieldSpec::new("event", macro_name));
        self
    }

    /// Map the network's status code `code` to `status`.
    pub fn status_code(mut self, code: &str, status: ConversionStatus) -> Self {
        self.status_map.push((code.into(), status));
        self
    }

    /// Replace `token` (written in full) in offer URLs with the click ID.
    pub fn offer_token(mut self, token: &str) -> Self {
        self.offer_tokens.push(token.into());
        self
    }

    fn macros(&self) -> Vec<PostbackMacro> {
        let mut out = Vec::new();
        let mut push = |field, f: &FieldSpec| {
            out.push(PostbackMacro {
                field,
                param: f.param.clone(),
                macro_name: f.macro_name.clone(),
                macro_text: self.macro_style.wrap(&f.macro_name),
            })
        };
        push(PostbackField::ClickId, &self.click_id);
        let optional = [
            (PostbackField::Payout, &self.payout),
            (PostbackField::Currency, &self.currency),
            (PostbackField::TxId, &self.txid),
            (PostbackField::Status, &self.status),
            (PostbackField::Event, &self.event),
        ];
        for (field, spec) in optional {
            if let Some(s) = spec {
                push(field, s);
            }
        }
        for (i, s) in self.sub_ids.iter().enumerate() {
            push(PostbackField::SubId(i), s);
        }
        out
    }
}

/// Why a network or source spec was refused. The message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A required name is empty.
    #[error("{what} is empty: give it a value")]
    Empty {
        /// Which setting.
        what: String,
    },
    /// A parameter name holds characters that cannot appear unescaped in a query key.
    #[error("parameter name {name:?} ({what}) must be letters, digits, '_', '-', '.' or '[]'")]
    BadParam {
        /// Which setting.
        what: String,
        /// The name given.
        name: String,
    },
    /// A macro name the template scanner would not recognise.
    #[error("macro name {name:?} ({what}) must be 1-64 of [A-Za-z0-9_.-] with a letter, written without delimiters")]
    BadMacro {
        /// Which setting.
        what: String,
        /// The name given.
        name: String,
    },
    /// Two fields read the same parameter.
    #[error("parameter {0:?} is used for two fields: give each field its own parameter")]
    DuplicateParam(String),
    /// An offer token that is not one token.
    #[error("offer token {0:?} must be one placeholder with its delimiters, e.g. {{clickid}}")]
    BadOfferToken(String),
    /// A postback template that is not an absolute http(s) URL.
    #[error("postback template {0:?} is not an absolute http(s) URL")]
    NotHttpUrl(String),
    /// A URL template with a token in its scheme or host.
    #[error("{0}")]
    UnsafeTemplate(#[from] UrlTemplateError),
    /// A token mapped to a field name we do not know.
    #[error("token {token:?} maps to unknown field {field:?}: use one of {known}")]
    UnknownField {
        /// The token name.
        token: String,
        /// The field name given.
        field: String,
        /// The accepted field names.
        known: String,
    },
}

/// Check `name` is a plain query parameter name.
pub(crate) fn check_param(what: &str, name: &str) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(SpecError::Empty { what: what.into() });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
    {
        return Err(SpecError::BadParam {
            what: what.into(),
            name: name.into(),
        });
    }
    Ok(())
}

/// Check `name` is a token name the scanner finds when wrapped in `style`.
pub(crate) fn check_macro(what: &str, name: &str, style: TokenStyle) -> Result<(), SpecError> {
    let wrapped = style.wrap(name);
    match find_tokens(&wrapped).as_slice() {
        [m] if m.name == name && m.style == style => Ok(()),
        _ => Err(SpecError::BadMacro {
            what: what.into(),
            name: name.into(),
        }),
    }
}

/// A network run from a [`NetworkSpec`].
#[derive(Debug, Clone)]
pub struct SpecNetwork {
    spec: NetworkSpec,
    macros: Vec<PostbackMacro>,
}

/// A network defined in the config: the same machinery as the built-ins.
pub type CustomNetwork = SpecNetwork;
/// The config's description of a network.
pub type CustomNetworkSpec = NetworkSpec;

impl SpecNetwork {
    /// Validate `spec` and build the network. Fails on an empty kind or parameter,
    /// a parameter or macro name that would not survive a URL, duplicate parameters,
    /// or an offer token that is not exactly one placeholder.
    pub fn new(spec: NetworkSpec) -> Result<SpecNetwork, SpecError> {
        if spec.kind.trim().is_empty() {
            return Err(SpecError::Empty {
                what: "network kind".into(),
            });
        }
        check_param("click_id_param", &spec.click_id_param)?;
        for alias in &spec.click_id_aliases {
            check_param("click_id_aliases", alias)?;
        }
        let macros = spec.macros();
        let mut seen: Vec<&str> = Vec::new();
        for m in &macros {
            let what = m.field.name();
            check_param(&what, &m.param)?;
            check_macro(&what, &m.macro_name, spec.macro_style)?;
            if seen.contains(&m.param.as_str()) {
                return Err(SpecError::DuplicateParam(m.param.clone()));
            }
            seen.push(&m.param);
        }
        for t in &spec.offer_tokens {
            match find_tokens(t).as_slice() {
                [m] if m.start == 0 && m.end == t.len() => {}
                _ => return Err(SpecError::BadOfferToken(t.clone())),
            }
        }
        Ok(SpecNetwork::from_trusted(spec))
    }

    /// Build without validation: for built-in specs, which tests validate.
    pub(crate) fn from_trusted(spec: NetworkSpec) -> SpecNetwork {
        let macros = spec.macros();
        SpecNetwork { spec, macros }
    }

    /// The spec this network runs.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }
}

impl Network for SpecNetwork {
    fn kind(&self) -> &str {
        &self.spec.kind
    }

    fn click_id_param(&self) -> &str {
        &self.spec.click_id_param
    }

    /// Replaces every configured offer token present in the URL, the value encoded
    /// once for the part of the URL the token sits in ([`Template::render_url`]: a
    /// token in the host is refused); otherwise sets the click-ID parameter, as the
    /// trait's default does.
    fn stamp_offer_url(&self, offer_url: &str, click_id: &str) -> Result<String, StampError> {
        if !is_absolute_http_url(offer_url) {
            return Err(StampError::NotHttpUrl(offer_url.to_string()));
        }
        let present: Vec<&String> = self
            .spec
            .offer_tokens
            .iter()
            .filter(|t| offer_url.contains(t.as_str()))
            .collect();
        if present.is_empty() {
            return Ok(set_query_param(
                offer_url,
                &self.spec.click_id_param,
                click_id,
            ));
        }
        let mut out = offer_url.to_string();
        for t in present {
            // Validation made each offer token exactly one token of one style.
            let Some(token) = find_tokens(t).into_iter().next() else {
                continue;
            };
            out = Template::parse(&out, token.style)
                .render_url(|name| (name == token.name).then(|| click_id.to_string()))?
                .text;
        }
        Ok(out)
    }

    fn macro_style(&self) -> TokenStyle {
        self.spec.macro_style
    }

    fn postback_macros(&self) -> Vec<PostbackMacro> {
        self.macros.clone()
    }

    fn click_id_aliases(&self) -> &[String] {
        &self.spec.click_id_aliases
    }

    fn status_map(&self) -> &[(String, ConversionStatus)] {
        &self.spec.status_map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let base = || NetworkSpec::new("mynet", "sub", TokenStyle::Hash);
        assert!(SpecNetwork::new(base()).is_ok());
        let mut s = base();
        s.click_id_param = "a b".into();
        assert!(matches!(
            SpecNetwork::new(s),
            Err(SpecError::BadParam { .. })
        ));
        let s = base().payout("pay out");
        assert!(matches!(
            SpecNetwork::new(s),
            Err(SpecError::BadMacro { .. })
        ));
        let mut s = base().txid("t");
        s.txid.as_mut().unwrap().param = "cid".into();
        assert!(matches!(
            SpecNetwork::new(s),
            Err(SpecError::DuplicateParam(_))
        ));
        let s = base().offer_token("{a}{b}");
        assert!(matches!(
            SpecNetwork::new(s),
            Err(SpecError::BadOfferToken(_))
        ));
    }

    #[test]
    fn a_macro_name_must_scan_back_as_itself_in_its_own_style() {
        assert!(check_macro("m", "payout", TokenStyle::Brace).is_ok());
        assert!(check_macro("m", "PAYOUT", TokenStyle::DollarBrace).is_ok());
        // `{x}}` scans as the brace token `x`: the right style, another name.
        assert!(matches!(
            check_macro("m", "x}", TokenStyle::Brace),
            Err(SpecError::BadMacro { .. })
        ));
        // `{{x}}` scans as the double-brace token `x`: neither matches.
        assert!(matches!(
            check_macro("m", "{x}", TokenStyle::Brace),
            Err(SpecError::BadMacro { .. })
        ));
    }

    #[test]
    fn offer_tokens_are_replaced_once_encoded() {
        let n = SpecNetwork::new(
            NetworkSpec::new("m", "clickID", TokenStyle::Brace).offer_token("{clickID}"),
        )
        .unwrap();
        assert_eq!(
            n.stamp_offer_url("https://m.example/o?x={clickID}", "a b")
                .unwrap(),
            "https://m.example/o?x=a%20b"
        );
        assert_eq!(
            n.stamp_offer_url("https://m.example/o", "ab").unwrap(),
            "https://m.example/o?clickID=ab"
        );
    }

    #[test]
    fn offer_tokens_are_encoded_for_their_position() {
        let n = SpecNetwork::new(
            NetworkSpec::new("m", "clickID", TokenStyle::Brace).offer_token("{clickID}"),
        )
        .unwrap();
        assert_eq!(
            n.stamp_offer_url("https://m.example/o/{clickID}/x?y={clickID}", "a/b")
                .unwrap(),
            "https://m.example/o/a%2Fb/x?y=a%2Fb"
        );
        assert_eq!(
            n.stamp_offer_url("https://m.example/o/{clickID}", "..")
                .unwrap_err()
                .to_string(),
            "offer URL: the value of {clickID} would make the path segment \"..\", a dot segment that changes the path; the request is refused rather than sent to another path"
        );
        assert!(matches!(
            n.stamp_offer_url("https://{clickID}.m.example/o", "ab"),
            Err(StampError::UnsafeUrl(_))
        ));
    }
}
