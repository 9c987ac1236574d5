//! A traffic source described by data: every built-in is one, and so is a source the
//! operator defines in the config.

use super::relay::RelayField;
use super::{read_landing_params, LandingParams, TrafficSource};
use crate::network::spec::{check_macro, check_param};
use crate::network::{is_absolute_http_url, SpecError};
use crate::template::{CaseRule, Template, TokenStyle};

/// One postback token of a source and the field that fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceToken {
    /// The token name without delimiters (`SUBID`).
    pub name: String,
    /// What fills it.
    pub field: RelayField,
}

impl SourceToken {
    /// Token `name` filled from `field`.
    pub fn new(name: impl Into<String>, field: RelayField) -> Self {
        SourceToken {
            name: name.into(),
            field,
        }
    }

    /// Token `name` filled from the field named `field` (see [`RelayField::from_name`]):
    /// how the config maps tokens.
    pub fn parse(name: &str, field: &str) -> Result<Self, SpecError> {
        RelayField::from_name(field)
            .map(|f| SourceToken::new(name, f))
            .ok_or_else(|| SpecError::UnknownField {
                token: name.into(),
                field: field.into(),
                known: RelayField::NAMES.into(),
            })
    }
}

/// Everything a traffic-source plugin needs to know, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Plugin kind.
    pub kind: String,
    /// Landing parameters carrying the source's click ID; the first present wins.
    pub click_id_params: Vec<String>,
    /// Landing parameter carrying the click cost.
    pub cost_param: Option<String>,
    /// Landing parameters carrying sub IDs, sub1..subN.
    pub sub_id_params: Vec<String>,
    /// Delimiter style of the source's tokens.
    pub token_style: TokenStyle,
    /// Case rule of the source's token names.
    pub token_case: CaseRule,
    /// The source's own postback tokens; they win over the generic vocabulary.
    pub tokens: Vec<SourceToken>,
    /// Whether clickstamp's generic field names are also accepted, in the source's style.
    pub generic_tokens: bool,
    /// The configured postback template (pasted verbatim from the source).
    pub postback_template: Option<String>,
    /// Whether status changes are relayed, not just first conversions.
    pub relays_status_changes: bool,
    /// Campaign-URL parameters with the source's landing macros, `(param, macro)`.
    pub landing_tokens: Vec<(String, String)>,
}

impl SourceSpec {
    /// A source of `kind` reading its click ID from `click_id_params`, with tokens in
    /// `token_style`, case-insensitive, the generic vocabulary on, no own tokens.
    pub fn new(
        kind: impl Into<String>,
        click_id_params: Vec<String>,
        token_style: TokenStyle,
    ) -> Self {
        SourceSpec {
            kind: kind.into(),
            click_id_params,
            cost_param: None,
            sub_id_params: Vec::new(),
            token_style,
            token_case: CaseRule::Insensitive,
            tokens: Vec::new(),
            generic_tokens: true,
            postback_template: None,
            relays_status_changes: false,
            landing_tokens: Vec::new(),
        }
    }

    /// Add the source token `name` filled from `field`.
    pub fn token(mut self, name: &str, field: RelayField) -> Self {
        self.tokens.push(SourceToken::new(name, field));
        self
    }

    /// Read the cost from landing parameter `param`.
    pub fn cost(mut self, param: &str) -> Self {
        self.cost_param = Some(param.into());
        self
    }

    /// Read sub IDs from these landing parameters.
    pub fn subs(mut self, params: &[&str]) -> Self {
        self.sub_id_params = params.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Campaign-URL parameter `param` carrying the source's landing macro `macro_text`.
    pub fn landing(mut self, param: &str, macro_text: &str) -> Self {
        self.landing_tokens.push((param.into(), macro_text.into()));
        self
    }

    /// Token names must match case-sensitively.
    pub fn case_sensitive(mut self) -> Self {
        self.token_case = CaseRule::Sensitive;
        self
    }
}

/// A traffic source run from a [`SourceSpec`].
#[derive(Debug, Clone)]
pub struct SpecSource {
    spec: SourceSpec,
}

/// A traffic source defined in the config: the same machinery as the built-ins.
pub type CustomSource = SpecSource;
/// The config's description of a traffic source.
pub type CustomSourceSpec = SourceSpec;

impl SpecSource {
    /// Validate `spec` and build the source. Fails on an empty kind, no click-ID
    /// parameter, a parameter or token name that would not survive a URL or the token
    /// scanner, or a postback template that is not an absolute http(s) URL or holds a
    /// token of the source's style in its scheme or host (a relayed value must never
    /// choose where the relay goes). Whether the template's tokens can all be filled is
    /// [`crate::lint::lint_source_template`]'s job.
    pub fn new(spec: SourceSpec) -> Result<SpecSource, SpecError> {
        if spec.kind.trim().is_empty() {
            return Err(SpecError::Empty {
                what: "source kind".into(),
            });
        }
        if spec.click_id_params.is_empty() {
            return Err(SpecError::Empty {
                what: "click_id_params".into(),
            });
        }
        for p in &spec.click_id_params {
            check_param("click_id_params", p)?;
        }
        if let Some(p) = &spec.cost_param {
            check_param("cost_param", p)?;
        }
        for p in &spec.sub_id_params {
            check_param("sub_id_params", p)?;
        }
        for t in &spec.tokens {
            check_macro("postback token", &t.name, spec.token_style)?;
        }
        for (p, _) in &spec.landing_tokens {
            check_param("landing token parameter", p)?;
        }
        if let Some(t) = &spec.postback_template {
            if !is_absolute_http_url(t) {
                return Err(SpecError::NotHttpUrl(t.clone()));
            }
            Template::parse(t, spec.token_style).check_url()?;
        }
        Ok(SpecSource { spec })
    }

    /// Build without validation: for built-in specs, which tests validate.
    pub(crate) fn from_trusted(spec: SourceSpec) -> SpecSource {
        SpecSource { spec }
    }

    /// The spec this source runs.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }
}

impl TrafficSource for SpecSource {
    fn kind(&self) -> &str {
        &self.spec.kind
    }

    fn landing_params(&self, query: &[(String, String)]) -> LandingParams {
        read_landing_params(
            query,
            &self.spec.click_id_params,
            self.spec.cost_param.as_deref(),
            &self.spec.sub_id_params,
        )
    }

    fn token_style(&self) -> TokenStyle {
        self.spec.token_style
    }

    fn token_case(&self) -> CaseRule {
        self.spec.token_case
    }

    fn postback_tokens(&self) -> Vec<SourceToken> {
        let mut out = self.spec.tokens.clone();
        if self.spec.generic_tokens {
            // A source's own token shadows a generic one of the same name (MGID's
            // `{click_id}` is its click ID, not ours).
            let generic: Vec<SourceToken> = RelayField::generic_tokens()
                .into_iter()
                .filter(|g| !out.iter().any(|t| t.name.eq_ignore_ascii_case(&g.name)))
                .collect();
            out.extend(generic);
        }
        out
    }

    fn postback_template(&self) -> Option<&str> {
        self.spec.postback_template.as_deref()
    }

    fn relays_status_changes(&self) -> bool {
        self.spec.relays_status_changes
    }

    fn landing_tokens(&self) -> Vec<(String, String)> {
        self.spec.landing_tokens.clone()
    }
}
